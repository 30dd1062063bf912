// The cloud worker in-process, driven by agents and by raw channels: evicted
// sessions are reported and rebuilt, and bad requests get their error codes.
#include <gtest/gtest.h>

#include <spdlog/spdlog.h>

#include <cstring>
#include <fstream>
#include <thread>

#include "cloud/worker.h"
#include "device/agent.h"
#include "partition/model.h"
#include "partition/stage.h"
#include "scheduler/hardware.h"
#include "scheduler/profile.h"
#include "sim/in_process_worker.h"
#include "sim/rig.h"
#include "tests/common/test_util.h"
#include "transport/error.h"
#include "transport/null_logger.h"

namespace splitlm {
namespace {

class WorkerTest : public ::testing::Test {
 protected:
  void SetUp() override { model_ = partition::Model::Open(testing::MakeModel(dir_.Sub("tiny"))); }
  // The library's in-process worker (sim/), serving until reset.
  void Start(size_t kv_budget) {
    cloud::WorkerOptions o;
    o.kv_budget_bytes = kv_budget;
    worker_ = std::make_unique<sim::InProcessWorker>(*model_, ctx_, cloud_metrics_,
                                                     transport::NullLogger(), o);
  }
  void TearDown() override { worker_.reset(); }
  device::AgentOptions AgentOpts(int cut) {
    device::AgentOptions o;
    o.cut = cut;
    o.fallback = device::Fallback::kFail;  // any failure would show
    o.channel.endpoint = worker_->endpoint();
    o.log = transport::NullLogger();
    return o;
  }
  std::vector<int32_t> LocalTokens(const std::vector<int32_t>& prompt, int n) {
    device::AgentOptions o;
    o.cut = model_->config().num_layers;
    transport::Metrics m;
    device::Agent local(*model_, o, ctx_, m);
    return local.Generate({prompt, n, {}, false}).tokens;
  }

  // A slow emulated device (~16 ms a token on the tiny model, slept for
  // real) reaching its own worker through a relay with `delay_ms` each way
  // (the simulation's rig), `--cut auto` from all-local; its profile is the
  // roofline of `claimed` (that of the emulated device unless given).
  static scheduler::HardwareProfile SlowDevice() {
    scheduler::HardwareProfile hw;
    hw.name = "slow";
    hw.kind = "device";
    hw.memory_bandwidth_gb_s = 0.05;
    hw.compute_gflop_s = 10;
    hw.bandwidth_efficiency = hw.compute_efficiency = 1;
    return hw;
  }
  struct EmulatedAuto {
    EmulatedAuto(WorkerTest& t, double delay_ms, const scheduler::HardwareProfile& claimed)
        : rig(*t.model_, RigOptions(delay_ms), t.ctx_) {
      device::AgentOptions o;
      o.cut = t.model_->config().num_layers;
      o.fallback = device::Fallback::kLocal;
      o.log = transport::NullLogger();
      o.auto_cut.enabled = true;
      o.auto_cut.device_profile =
          scheduler::RooflineProfile(claimed, t.model_->config(), t.model_->fingerprint());
      o.auto_cut.plan.device.threads = 1;
      o.auto_cut.plan.constraints.privacy_floor = 1;
      options = rig.AgentOptions(o);
    }
    static sim::RigOptions RigOptions(double delay_ms) {
      sim::RigOptions ro;
      ro.device = SlowDevice();
      ro.link.link.delay_ms = delay_ms;
      ro.log = transport::NullLogger();
      return ro;
    }
    sim::Rig rig;
    device::AgentOptions options;
  };

  testing::TempDir dir_;
  std::unique_ptr<partition::Model> model_;
  zmq::context_t ctx_;
  transport::Metrics cloud_metrics_;
  std::unique_ptr<sim::InProcessWorker> worker_;
};

TEST_F(WorkerTest, EvictedSessionIsRebuiltTransparently) {
  Start(/*kv_budget=*/40 << 10);  // about one session's KV at cut 0
  transport::Metrics ma, mb;
  device::Agent a(*model_, AgentOpts(0), ctx_, ma), b(*model_, AgentOpts(0), ctx_, mb);
  const std::vector<int32_t> pa = {1, 5, 9}, pb = {1, 6, 7, 8};
  const auto want_a = LocalTokens(pa, 30), want_b = LocalTokens(pb, 30);
  bool b_ran = false;
  // While A is idle between two steps, B fills the budget: A is evicted.
  auto got_a = a.Generate({pa, 30, {}, false}, [&](int32_t) {
    if (!b_ran) {
      b_ran = true;
      EXPECT_EQ(want_b, b.Generate({pb, 30, {}, false}).tokens);
    }
    return true;
  });
  EXPECT_EQ(want_a, got_a.tokens);
  EXPECT_EQ(30, got_a.cloud_steps);
  EXPECT_GE(cloud_metrics_.Get("splitlm_cloud_evictions_total"), 1.0);
  EXPECT_GE(ma.Get("splitlm_device_evictions_total"), 1.0);
}

TEST_F(WorkerTest, LocalFallbackMovesBackToTheCloudWhenItReturns) {
  // The test paces the events: the cloud goes away after token 5, comes back
  // at token 10, and the generation goes on until the device has moved back
  // to the cloud (then five more tokens). Only the tokens and the events the
  // test caused are asserted, so a slow machine changes nothing: the lost
  // worker is noticed by its connection and heartbeats, and the step
  // deadline (also the probe's) is long enough that the probe waiting in
  // the socket while the worker restarts is answered, however long that takes.
  partition::RandomModelOptions small;
  small.preset = "small";
  model_ = partition::Model::Open(testing::MakeModel(dir_.Sub("small"), small));
  Start(size_t{1} << 30);
  const std::string endpoint = worker_->endpoint();
  device::AgentOptions o = AgentOpts(2);
  o.fallback = device::Fallback::kLocal;
  o.step_deadline = std::chrono::milliseconds(120000);
  o.retry_interval = std::chrono::milliseconds(1);  // probe at every step while away
  o.channel.heartbeat_interval = std::chrono::milliseconds(200);
  if (getenv("DEBUG_LOG")) o.log = spdlog::default_logger();
  transport::Metrics m;
  device::Agent agent(*model_, o, ctx_, m);
  const std::vector<int32_t> prompt = {1, 3};
  const int max_tokens = model_->config().max_context - 2;
  const auto want = LocalTokens(prompt, max_tokens);
  int seen = 0, after_recovery = 0;
  double hellos_before_restart = 0;
  auto got = agent.Generate({prompt, max_tokens, {}, false}, [&](int32_t) {
    ++seen;
    if (seen == 5) worker_.reset();  // the cloud goes away...
    if (seen == 10) {                // ...and comes back on the same endpoint
      hellos_before_restart = cloud_metrics_.Get("splitlm_cloud_hellos_total");
      worker_ = std::make_unique<sim::InProcessWorker>(
          *model_, ctx_, cloud_metrics_, transport::NullLogger(), cloud::WorkerOptions{},
          transport::SteadyClock(), endpoint);
      // Hold the generation until the new worker has answered a probe, so
      // the answer is there for one of the next steps to pick up.
      const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(60);
      while (cloud_metrics_.Get("splitlm_cloud_hellos_total") == hellos_before_restart &&
             std::chrono::steady_clock::now() < give_up) {
        std::this_thread::yield();
      }
    }
    if (m.Get("splitlm_device_recoveries_total") >= 1) ++after_recovery;
    return after_recovery < 5;
  });
  EXPECT_LT(hellos_before_restart, cloud_metrics_.Get("splitlm_cloud_hellos_total"))
      << "no probe reached the new worker";
  ASSERT_LE(got.tokens.size(), want.size());
  EXPECT_EQ(std::vector<int32_t>(want.begin(), want.begin() + got.tokens.size()), got.tokens);
  EXPECT_GE(got.fallbacks, 1);
  EXPECT_GE(got.recoveries, 1) << "the cloud came back but the device stayed local for "
                               << got.tokens.size() << " tokens";
  EXPECT_GE(got.local_steps, 5) << "tokens 6 to 10 had no cloud";
  EXPECT_EQ(static_cast<int>(got.tokens.size()), got.cloud_steps + got.local_steps);
}

TEST_F(WorkerTest, AutoCutMovesMidGenerationWithIdenticalTokens) {
  Start(size_t{1} << 30);
  // A device profile 100x slower than the worker: splitting at the privacy
  // floor wins on a fast link, running everything here on a terrible one.
  scheduler::ProfileOptions po;
  auto profile = scheduler::MeasureProfile(*model_, po);
  for (auto& row : profile.layer_decode_us)
    for (double& v : row) v *= 100;
  for (auto& row : profile.layer_prefill_us)
    for (double& v : row) v *= 100;
  profile.head_decode_us *= 100;
  std::ofstream(dir_.Sub("slow.json")) << profile.ToJson();

  device::AgentOptions o = AgentOpts(model_->config().num_layers);
  o.fallback = device::Fallback::kLocal;
  o.auto_cut.enabled = true;
  o.auto_cut.profile_path = dir_.Sub("slow.json");
  o.auto_cut.follow_drift = false;  // real steps would show the profile is fake
  o.auto_cut.plan.device.threads = 1;
  o.auto_cut.plan.constraints.privacy_floor = 1;
  o.auto_cut.replan_every = 1;
  transport::Metrics m;
  device::Agent agent(*model_, o, ctx_, m);
  scheduler::Link fast, slow;
  fast.rtt_ms = 0.01;
  fast.up_mbit_s = fast.down_mbit_s = 1e5;
  slow.rtt_ms = 1e4;
  slow.up_mbit_s = slow.down_mbit_s = 0.01;
  agent.OverrideLink(fast);
  const std::vector<int32_t> prompt = {1, 2, 3};
  const auto want = LocalTokens(prompt, 40);
  int seen = 0;
  auto got = agent.Generate({prompt, 40, {}, false}, [&](int32_t) {
    ++seen;
    if (seen == 10) agent.OverrideLink(slow);  // the link collapses: move to the device
    if (seen == 25) agent.OverrideLink(fast);  // and recovers: back to the cloud
    return true;
  });
  EXPECT_EQ(want, got.tokens);
  EXPECT_EQ(1, got.cut);
  EXPECT_EQ(2, got.recuts);
  EXPECT_EQ(1, got.final_cut);
  EXPECT_EQ(0, got.fallbacks);
}

TEST_F(WorkerTest, AutoCutOnTheDeviceNoticesTheLinkRecoverAndReturnsToTheCloud) {
  // An emulated slow device (~16 ms a token on the tiny model, slept for
  // real): behind a 100 ms round trip it runs everything here; once the
  // relay's delay drops, its pings see the new round trip and the cut moves
  // back to the cloud within the same generation.
  EmulatedAuto rig(*this, /*delay_ms=*/50, SlowDevice());
  device::AgentOptions o = rig.options;
  o.auto_cut.replan_every = 1;
  transport::Metrics m;
  device::Agent agent(*model_, o, ctx_, m, rig.rig.clock());
  const std::vector<int32_t> prompt = {1, 2, 3};
  const int n = 200;
  const auto want = LocalTokens(prompt, n);
  int seen = 0;
  bool moved =
      false;  // the round trips are real time: asserted is that the cut moved, not how often
  auto got = agent.Generate({prompt, n, {}, false}, [&](int32_t) {
    if (++seen == 5) rig.rig.relay().SetConditions({0, 0, 0.5, 0});
    moved = moved || agent.cut() == 1;
    return true;
  });
  EXPECT_EQ(want, got.tokens);
  EXPECT_EQ(model_->config().num_layers, got.cut)
      << "a 100 ms round trip should keep everything here";
  EXPECT_TRUE(moved) << "the recovered link was not noticed";
  EXPECT_GE(got.recuts, 1);
}

TEST_F(WorkerTest, AutoCutLearnsTheDeviceIsSlowerThanItsProfileAndMovesToTheCloud) {
  // The device's profile claims ten times the speed it has (a profile cached
  // before the phone grew hot): at a 4 ms round trip it starts with
  // everything here. Its real steps (~16 ms, emulated and slept) show the
  // drift, and the re-plan moves the cut to the cloud, with the same tokens.
  scheduler::HardwareProfile claimed = SlowDevice();
  claimed.memory_bandwidth_gb_s *= 10;
  claimed.compute_gflop_s *= 10;
  EmulatedAuto rig(*this, /*delay_ms=*/2, claimed);
  device::AgentOptions o = rig.options;
  o.auto_cut.replan_every = 2;
  transport::Metrics m;
  device::Agent agent(*model_, o, ctx_, m, rig.rig.clock());
  const std::vector<int32_t> prompt = {1, 2, 3};
  const int n = 24;
  const auto want = LocalTokens(prompt, n);
  bool moved =
      false;  // the 4 ms round trip is real time: asserted is that the cut moved, not how often
  auto got = agent.Generate({prompt, n, {}, false}, [&](int32_t) {
    moved = moved || agent.cut() == 1;
    return true;
  });
  EXPECT_EQ(want, got.tokens);
  EXPECT_EQ(model_->config().num_layers, got.cut)
      << "the claimed profile should keep everything here at first";
  EXPECT_TRUE(moved) << "the slow steps were not noticed";
  EXPECT_GE(got.recuts, 1);
  EXPECT_GT(m.Get("splitlm_device_compute_drift{side=\"device\"}"), 3.0);
}

TEST_F(WorkerTest, ThroughAnEmulatedLinkWithAnOutageTokensStayIdentical) {
  // The device reaches the worker through the shaping relay (5 ms each way),
  // whose outage schedule runs on the rig's clock, and the test moves that
  // clock: the link is cut from 100 s to 101 s, which the test reaches at
  // token 5 by advancing the clock 100 s, and leaves once the device is on
  // its own by advancing it past the end. The device's deadlines and retry
  // times are on the same clock; the worker's session timeouts (minutes)
  // are not reached. The rest is event-driven: the generation goes on until
  // the device has returned to the cloud (and five tokens more).
  partition::RandomModelOptions small;
  small.preset = "small";
  model_ = partition::Model::Open(testing::MakeModel(dir_.Sub("small"), small));
  const std::vector<int32_t> prompt = {1, 4};
  const int max_tokens = model_->config().max_context - 2;
  const auto want = LocalTokens(prompt, max_tokens);
  sim::RigOptions ro;
  ro.link.link.delay_ms = 5;
  ro.link.outages = {{100, 101, true}};
  ro.log = transport::NullLogger();
  sim::Rig rig(*model_, ro, ctx_);
  device::AgentOptions o;
  o.cut = 2;
  o.log = transport::NullLogger();
  o = rig.AgentOptions(o);
  o.fallback = device::Fallback::kLocal;
  o.step_deadline = std::chrono::milliseconds(2000);
  o.retry_interval = std::chrono::milliseconds(100);
  o.channel.heartbeat_interval = std::chrono::milliseconds(30);
  transport::Metrics m;
  device::Agent agent(*model_, o, ctx_, m, rig.clock());
  int seen = 0, after_recovery = 0;
  bool cut = false, restored = false;
  auto got = agent.Generate({prompt, max_tokens, {}, false}, [&](int32_t) {
    if (++seen == 5 && !cut) {  // the link goes down
      cut = true;
      rig.clock().Advance(std::chrono::seconds(100) -
                          std::chrono::duration_cast<std::chrono::nanoseconds>(
                              std::chrono::duration<double>(rig.relay().elapsed_s())));
    }
    if (cut && !restored && m.Get("splitlm_device_fallbacks_total") >= 1) {  // ...and comes back
      restored = true;
      rig.clock().Advance(std::chrono::seconds(1));
    }
    if (m.Get("splitlm_device_recoveries_total") >= 1) ++after_recovery;
    return after_recovery < 5;
  });
  ASSERT_LE(got.tokens.size(), want.size());
  EXPECT_EQ(std::vector<int32_t>(want.begin(), want.begin() + got.tokens.size()), got.tokens);
  EXPECT_TRUE(restored) << "the outage was not noticed";
  EXPECT_GE(got.fallbacks, 1) << "the outage was not noticed";
  EXPECT_GE(got.recoveries, 1) << "the link came back but the device stayed local for "
                               << got.tokens.size() << " tokens";
  EXPECT_GT(got.local_steps, 0);
  EXPECT_GT(got.cloud_steps, 0);
}

TEST_F(WorkerTest, ABadPipelineRangeIsNamedWithoutAFlag) {
  cloud::WorkerOptions o;
  o.server.bind = "tcp://127.0.0.1:*";
  o.log = o.server.log = transport::NullLogger();
  o.min_cut = 2;
  o.layer_end = model_->config().num_layers;  // the next hop would hold no layer
  try {
    cloud::Worker w(*model_, o, ctx_, cloud_metrics_);
    FAIL() << "a pipeline stage up to the last layer was accepted";
  } catch (const Exception& e) {
    EXPECT_EQ(Exception::kInvalidArgument, e.code());
    const std::string range = "pipeline layer range [min_cut, layer_end) = [2, " +
                              std::to_string(model_->config().num_layers) + ")";
    EXPECT_EQ(0u, std::string(e.what()).find(range)) << e.what();
  }
}

TEST_F(WorkerTest, BadRequestsGetTheirErrorCodes) {
  Start(size_t{1} << 30);
  transport::ClientOptions co;
  co.endpoint = worker_->endpoint();
  co.log = transport::NullLogger();
  transport::ClientChannel ch(ctx_, co);
  auto expect_error = [&](transport::ErrorCode code) {
    auto in = ch.Receive(std::chrono::milliseconds(10000));
    ASSERT_TRUE(in.has_value());
    auto* e = std::get_if<transport::Error>(&in->message);
    ASSERT_NE(nullptr, e) << transport::MessageName(in->message);
    EXPECT_EQ(code, e->code) << e->message;
  };
  const auto& c = model_->config();
  transport::Hello h;
  h.model_fingerprint = model_->fingerprint() + 1;
  h.hidden_size = c.hidden_size;
  h.num_layers = c.num_layers;
  ch.Send(h);
  expect_error(transport::ErrorCode::kModelMismatch);
  h.model_fingerprint = model_->fingerprint();
  h.protocol_major = 9;
  ch.Send(h);
  expect_error(transport::ErrorCode::kVersionMismatch);

  transport::Forward f;
  f.session_id = 77;
  f.count = 1;
  f.tensor = {transport::Codec::kF32, 1, static_cast<uint32_t>(c.hidden_size),
              static_cast<uint64_t>(c.hidden_size) * 4};
  ch.Send(f, zmq::message_t(f.tensor.bytes));
  expect_error(transport::ErrorCode::kUnknownSession);

  ch.Send(transport::OpenSession{77, 99, transport::Codec::kF32, false});
  expect_error(transport::ErrorCode::kBadCut);
  ch.Send(transport::OpenSession{77, 2, transport::Codec::kF32, false});
  auto opened = ch.Receive(std::chrono::milliseconds(10000));
  ASSERT_TRUE(opened.has_value());
  EXPECT_TRUE(std::get<transport::OpenSession>(opened->message).ack);

  ch.Send(f, zmq::message_t(f.tensor.bytes - 4));  // short payload
  expect_error(transport::ErrorCode::kBadTensor);
  f.first_position = 3;  // does not continue the session (at 0)
  ch.Send(f, zmq::message_t(f.tensor.bytes));
  expect_error(transport::ErrorCode::kBadPosition);
  f.first_position = 0;
  f.tensor.codec = transport::Codec::kInt8;  // the session was opened for f32
  ch.Send(f, zmq::message_t(f.tensor.bytes));
  expect_error(transport::ErrorCode::kBadTensor);
  // A NaN in an f32 payload is data, not a protocol fault; a valid request
  // still gets its token.
  f.tensor.codec = transport::Codec::kF32;
  zmq::message_t zeros(f.tensor.bytes);
  std::memset(zeros.data(), 0, zeros.size());
  ch.Send(f, std::move(zeros));
  auto ok = ch.Receive(std::chrono::milliseconds(10000));
  ASSERT_TRUE(ok.has_value());
  ASSERT_TRUE(std::holds_alternative<transport::ForwardResult>(ok->message))
      << transport::MessageName(ok->message);
  EXPECT_EQ(1u, std::get<transport::ForwardResult>(ok->message).tokens.size());
}

}  // namespace
}  // namespace splitlm
