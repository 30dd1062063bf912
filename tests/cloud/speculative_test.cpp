// Speculative decoding across the split (protocol 1.4): whatever the drafts,
// the tokens are exactly those of a local run without them, at every cut,
// for every number of drafts, greedy and sampled, and through a fallback.
#include <gtest/gtest.h>

#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <fstream>
#include <thread>

#include "cloud/speculation.h"
#include "cloud/worker.h"
#include "device/agent.h"
#include "device/draft_model_drafter.h"
#include "device/draft_policy.h"
#include "device/drafter.h"
#include "device/early_exit_drafter.h"
#include "partition/model.h"
#include "scheduler/profile.h"
#include "tests/common/stories260k.h"
#include "tests/common/test_util.h"
#include "transport/error.h"

namespace splitlm {
namespace {

std::shared_ptr<spdlog::logger> NullLog() {
  return std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::null_sink_mt>());
}

// Drafts from a known continuation of the prompt: exactly it (every draft
// accepted), or each token shifted by one (every draft rejected).
class ScriptedDrafter : public device::Drafter {
 public:
  ScriptedDrafter(std::vector<int32_t> sequence, int shift, int vocab)
      : sequence_(std::move(sequence)), shift_(shift), vocab_(vocab) {}
  std::string name() const override { return "scripted"; }
  std::vector<int32_t> Propose(const std::vector<int32_t>& ids, int k) const override {
    std::vector<int32_t> out;
    for (size_t i = ids.size(); i < sequence_.size() && static_cast<int>(out.size()) < k; ++i) {
      out.push_back((sequence_[i] + shift_) % vocab_);
    }
    return out;
  }

 private:
  std::vector<int32_t> sequence_;
  int shift_, vocab_;
};

class SpeculativeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = partition::Model::Open(testing::MakeModel(dir_.Sub("tiny")));
    StartWorker();
  }
  void StartWorker(size_t kv_budget = size_t{2} << 30) {
    cloud::WorkerOptions o;
    o.server.bind = "tcp://127.0.0.1:*";
    o.server.log = NullLog();
    o.log = NullLog();
    o.kv_budget_bytes = kv_budget;
    stop_ = false;
    worker_ = std::make_unique<cloud::Worker>(*model_, o, ctx_, cloud_metrics_);
    thread_ = std::thread([this] { worker_->Run(stop_); });
  }
  void StopWorker() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    worker_.reset();
  }
  void TearDown() override { StopWorker(); }
  int layers() const { return model_->config().num_layers; }
  device::AgentOptions Options(int cut, std::shared_ptr<const device::Drafter> drafter,
                               int max_drafts) {
    device::AgentOptions o;
    o.cut = cut;
    o.fallback = device::Fallback::kFail;  // any failure would show
    o.channel.endpoint = worker_->endpoint();
    o.log = NullLog();
    o.drafter = std::move(drafter);
    o.max_drafts = max_drafts;
    return o;
  }
  device::GenerateResult Run(const device::AgentOptions& o, const device::GenerateRequest& r) {
    transport::Metrics m;
    device::Agent agent(*model_, o, ctx_, m);
    return agent.Generate(r);
  }
  // The reference: everything on the device, no drafts.
  std::vector<int32_t> Local(const device::GenerateRequest& r) {
    return Run(Options(layers(), nullptr, 1), r).tokens;
  }
  // The model drafters: early exit, the model itself as its own draft model
  // (every draft accepted), and another random model of the same vocabulary
  // (mostly rejected).
  struct Named {
    std::string name;
    std::shared_ptr<const device::Drafter> drafter;
  };
  std::vector<Named> ModelDrafters() {
    partition::RandomModelOptions other;
    other.seed = 7;
    return {{"early-exit", std::make_shared<device::EarlyExitDrafter>(*model_)},
            {"draft:self", std::make_shared<device::DraftModelDrafter>(model_->dir(), *model_)},
            {"draft:other", std::make_shared<device::DraftModelDrafter>(
                                testing::MakeModel(dir_.Sub("other"), other), *model_)}};
  }
  std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }

  testing::TempDir dir_;
  std::unique_ptr<partition::Model> model_;
  zmq::context_t ctx_;
  transport::Metrics cloud_metrics_;
  std::unique_ptr<cloud::Worker> worker_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Round trips for `tokens` tokens when every draft is accepted: the prompt's
// step, then the drafts (as DraftLength grows them, never past the end) and
// one more token per step.
int StepsWhenAllAccepted(int tokens, int max_drafts) {
  device::DraftLength length(max_drafts);
  int steps = 1;
  for (int left = tokens - 1; left > 0; ++steps) {
    const int d = std::min(length.k(), left - 1);
    if (d > 0) length.Observe(d, d);
    left -= d + 1;
  }
  return steps;
}

TEST_F(SpeculativeTest, GreedyTokensEqualALocalRunAtEveryCutForEveryDrafterAndK) {
  const device::GenerateRequest req{{1, 7, 3, 7, 3, 9}, 24, {}, false};
  const auto want = Local(req);
  const int vocab = model_->config().vocab_size;
  const auto all_good = std::make_shared<ScriptedDrafter>(Concat(req.prompt, want), 0, vocab);
  const auto all_bad = std::make_shared<ScriptedDrafter>(Concat(req.prompt, want), 1, vocab);
  const auto lookup = std::make_shared<device::PromptLookupDrafter>();
  const auto drafters = ModelDrafters();
  for (int cut = 0; cut < layers(); ++cut) {
    for (int k = 1; k <= device::kMaxDraftsPerStep; ++k) {
      SCOPED_TRACE("cut " + std::to_string(cut) + ", k " + std::to_string(k));
      const auto good = Run(Options(cut, all_good, k), req);
      EXPECT_EQ(want, good.tokens);
      EXPECT_GT(good.drafted, 0);
      EXPECT_EQ(good.drafted, good.accepted) << "every scripted draft is the local run's token";
      // The first step carries the prompt; then as many tokens per round
      // trip as the adapting draft length allows, plus one.
      EXPECT_EQ(StepsWhenAllAccepted(static_cast<int>(want.size()), k), good.cloud_steps);
      const auto bad = Run(Options(cut, all_bad, k), req);
      EXPECT_EQ(want, bad.tokens);
      EXPECT_GT(bad.drafted, 0);
      EXPECT_EQ(0, bad.accepted) << "every shifted draft differs from the local run's token";
      EXPECT_EQ(static_cast<int>(want.size()), bad.cloud_steps);
      EXPECT_EQ(want, Run(Options(cut, lookup, k), req).tokens);
      for (const auto& d : drafters) {
        SCOPED_TRACE(d.name);
        const auto got = Run(Options(cut, d.drafter, k), req);
        EXPECT_EQ(want, got.tokens);
        EXPECT_GT(got.drafted, 0);
        if (d.name == "draft:self")
          EXPECT_EQ(got.drafted, got.accepted) << "the model drafting for itself";
      }
    }
  }
  EXPECT_GT(cloud_metrics_.Get("splitlm_cloud_drafts_accepted_total"), 0);
}

TEST_F(SpeculativeTest, SampledTokensEqualTheRunWithoutDraftsWithTheSameSeed) {
  device::GenerateRequest req{{1, 7, 3, 7, 3, 9}, 24, {}, false};
  req.sampling.temperature = 1.5f;
  req.sampling.top_k = 40;
  req.sampling.top_p = 0.95f;
  req.sampling.seed = 1234;
  const auto want = Local(req);
  req.sampling.seed = 99;
  ASSERT_NE(want, Local(req)) << "the seed must matter for this test to mean anything";
  req.sampling.seed = 1234;
  const int vocab = model_->config().vocab_size;
  const auto all_good = std::make_shared<ScriptedDrafter>(Concat(req.prompt, want), 0, vocab);
  const auto lookup = std::make_shared<device::PromptLookupDrafter>();
  for (int cut : {0, 2}) {
    for (int k : {1, 3, 8}) {
      SCOPED_TRACE("cut " + std::to_string(cut) + ", k " + std::to_string(k));
      // The sampled continuation as drafts: every one is the token the
      // worker draws at that position, so all are accepted.
      const auto good = Run(Options(cut, all_good, k), req);
      EXPECT_EQ(want, good.tokens);
      EXPECT_EQ(good.drafted, good.accepted);
      EXPECT_LT(good.cloud_steps, static_cast<int>(want.size()));
      EXPECT_EQ(want, Run(Options(cut, lookup, k), req).tokens);
      for (const auto& d : ModelDrafters()) {
        SCOPED_TRACE(d.name);
        const auto got = Run(Options(cut, d.drafter, k), req);
        EXPECT_EQ(want, got.tokens);
        // The same draws at the same positions from the same logits.
        if (d.name == "draft:self")
          EXPECT_EQ(got.drafted, got.accepted) << "the model drafting for itself";
      }
    }
  }
}

TEST_F(SpeculativeTest, PromptLookupNeedsFewerRoundTripsThanTokensWhereTheOutputRepeats) {
  // The local run's own continuation, repeated, as the prompt: the model
  // continues it the way it did, and lookup finds each next token there.
  const device::GenerateRequest probe{{1, 7, 3}, 40, {}, false};
  const auto cont = Local(probe);
  device::GenerateRequest req{
      Concat(Concat(probe.prompt, cont),
             Concat(probe.prompt, std::vector<int32_t>(cont.begin(), cont.begin() + 4))),
      32,
      {},
      false};
  const auto want = Local(req);
  const auto got = Run(Options(2, std::make_shared<device::PromptLookupDrafter>(), 8), req);
  EXPECT_EQ(want, got.tokens);
  EXPECT_LT(got.cloud_steps, static_cast<int>(got.tokens.size()))
      << got.accepted << " of " << got.drafted << " drafts accepted";
  EXPECT_GT(got.accepted, 0);
}

TEST_F(SpeculativeTest, TheCloudGoingAwayMidSpeculationFinishesLocallyWithIdenticalTokens) {
  const device::GenerateRequest req{{1, 7, 3, 7, 3, 9}, 30, {}, false};
  const auto want = Local(req);
  auto drafters = ModelDrafters();
  drafters.push_back({"scripted", std::make_shared<ScriptedDrafter>(Concat(req.prompt, want), 0,
                                                                    model_->config().vocab_size)});
  for (const auto& d : drafters) {
    SCOPED_TRACE(d.name);
    if (!worker_) StartWorker();  // the last case took it away
    auto o = Options(2, d.drafter, 4);
    o.fallback = device::Fallback::kLocal;
    o.step_deadline = std::chrono::milliseconds(2000);
    o.retry_interval = std::chrono::milliseconds(600000);  // stay local
    o.channel.heartbeat_interval = std::chrono::milliseconds(200);
    transport::Metrics m;
    device::Agent agent(*model_, o, ctx_, m);
    int seen = 0;
    auto got = agent.Generate(req, [&](int32_t) {
      if (++seen == 3) {  // the next step, with its drafts, gets no answer
        stop_ = true;
        thread_.join();
        worker_.reset();
      }
      return true;
    });
    EXPECT_EQ(want, got.tokens);
    EXPECT_EQ(1, got.fallbacks);
    EXPECT_GT(got.drafted, 0);
    EXPECT_GT(got.local_steps, 0);
  }
}

TEST_F(SpeculativeTest, AnEvictedSessionIsRebuiltMidSpeculationWithIdenticalTokens) {
  // A worker whose KV budget holds about one session at cut 0: while A waits
  // between two steps, B's generation evicts it, and A's next speculative
  // step finds its session gone.
  StopWorker();
  StartWorker(40 << 10);
  const device::GenerateRequest ra{{1, 5, 9}, 30, {}, false}, rb{{1, 6, 7, 8}, 30, {}, false};
  const auto want_a = Local(ra), want_b = Local(rb);
  for (const auto& d : ModelDrafters()) {
    SCOPED_TRACE(d.name);
    transport::Metrics ma, mb;
    device::Agent a(*model_, Options(0, d.drafter, 4), ctx_, ma),
        b(*model_, Options(0, d.drafter, 4), ctx_, mb);
    bool b_ran = false;
    auto got_a = a.Generate(ra, [&](int32_t) {
      if (!b_ran) {
        b_ran = true;
        EXPECT_EQ(want_b, b.Generate(rb).tokens);
      }
      return true;
    });
    EXPECT_EQ(want_a, got_a.tokens);
    EXPECT_GE(ma.Get("splitlm_device_evictions_total"), 1.0);
  }
}

TEST_F(SpeculativeTest, TheCutMovingMidSpeculationKeepsTheTokens) {
  // As WorkerTest.AutoCutMovesMidGenerationWithIdenticalTokens, drafting:
  // a device profile 100x slower than the worker, a link that collapses at
  // token 10 (the cut moves to the device) and recovers at 25 (back).
  scheduler::ProfileOptions po;
  auto profile = scheduler::MeasureProfile(*model_, po);
  for (auto& row : profile.layer_decode_us)
    for (double& v : row) v *= 100;
  for (auto& row : profile.layer_prefill_us)
    for (double& v : row) v *= 100;
  profile.head_decode_us *= 100;
  std::ofstream(dir_.Sub("slow.json")) << profile.ToJson();
  scheduler::Link fast, slow;
  fast.rtt_ms = 0.01;
  fast.up_mbit_s = fast.down_mbit_s = 1e5;
  slow.rtt_ms = 1e4;
  slow.up_mbit_s = slow.down_mbit_s = 0.01;
  const device::GenerateRequest req{{1, 2, 3, 1, 2}, 40, {}, false};
  const auto want = Local(req);
  auto drafters = ModelDrafters();
  drafters.push_back({"prompt-lookup", std::make_shared<device::PromptLookupDrafter>()});
  for (const auto& d : drafters) {
    SCOPED_TRACE(d.name);
    device::AgentOptions o = Options(layers(), d.drafter, 4);
    o.fallback = device::Fallback::kLocal;
    o.auto_cut.enabled = true;
    o.auto_cut.profile_path = dir_.Sub("slow.json");
    o.auto_cut.follow_drift = false;
    o.auto_cut.plan.device.threads = 1;
    o.auto_cut.plan.constraints.privacy_floor = 1;
    o.auto_cut.replan_every = 1;
    transport::Metrics m;
    device::Agent agent(*model_, o, ctx_, m);
    agent.OverrideLink(fast);
    int seen = 0;
    auto got = agent.Generate(req, [&](int32_t) {
      ++seen;
      if (seen == 10) agent.OverrideLink(slow);
      if (seen == 25) agent.OverrideLink(fast);
      return true;
    });
    EXPECT_EQ(want, got.tokens);
    EXPECT_EQ(2, got.recuts);
    EXPECT_GT(got.drafted, 0);
  }
}

TEST_F(SpeculativeTest, ADraftModelOfAnotherVocabularyIsRefusedByName) {
  partition::RandomModelOptions other;
  other.vocab = model_->config().vocab_size + 1;
  const std::string path = testing::MakeModel(dir_.Sub("other-vocab"), other);
  try {
    device::DraftModelDrafter d(path, *model_);
    FAIL() << "a draft model of another vocabulary was accepted";
  } catch (const Exception& e) {
    EXPECT_NE(std::string::npos, std::string(e.what()).find(path)) << e.what();
    EXPECT_NE(std::string::npos,
              std::string(e.what()).find("vocabulary of " + std::to_string(other.vocab)))
        << e.what();
  }
  const auto spec = device::ParseSpeculate("draft:" + dir_.Sub("nothing-here") + ":3");
  EXPECT_THROW(device::MakeDrafter(spec, *model_), Exception);
}

TEST_F(SpeculativeTest, EarlyExitHoldsTheHeadAndReportsItsBytes) {
  const device::EarlyExitDrafter d(*model_);
  const auto& c = model_->config();
  // At least the head's matrix in fp32 (the tiny model's weights are fp32).
  EXPECT_GE(d.bytes(), static_cast<size_t>(c.vocab_size) * c.hidden_size * sizeof(float));
  EXPECT_EQ(0u, device::PromptLookupDrafter().bytes());
}

// stories260K: real text, where the drafters' acceptance is what it is on a
// trained model; the tokens stay llama2.c's whatever the drafter.
TEST(SpeculativeStories260K, EveryDrafterGivesTheReferenceTokensAtEveryCut) {
  REQUIRE_SHARED(dir, "models/stories260K");
  auto model = partition::Model::Open(dir);
  cloud::WorkerOptions wo;
  wo.server.bind = "tcp://127.0.0.1:*";
  wo.server.log = NullLog();
  wo.log = NullLog();
  zmq::context_t ctx;
  transport::Metrics cm;
  cloud::Worker worker(*model, wo, ctx, cm);
  std::atomic<bool> stop{false};
  std::thread thread([&] { worker.Run(stop); });
  const auto& want_all = testing::Stories260KGreedyFromBos();
  const std::vector<int32_t> want(want_all.begin() + 1, want_all.end());
  testing::TempDir tmp;
  partition::RandomModelOptions random;
  random.vocab = model->config().vocab_size;
  const std::vector<std::pair<std::string, std::shared_ptr<const device::Drafter>>> drafters = {
      {"prompt-lookup", std::make_shared<device::PromptLookupDrafter>()},
      {"early-exit", std::make_shared<device::EarlyExitDrafter>(*model)},
      {"draft:self", std::make_shared<device::DraftModelDrafter>(dir, *model)},
      {"draft:random", std::make_shared<device::DraftModelDrafter>(
                           testing::MakeModel(tmp.Sub("random"), random), *model)}};
  for (int cut = 0; cut < model->config().num_layers; ++cut) {
    for (const auto& [name, drafter] : drafters) {
      SCOPED_TRACE("cut " + std::to_string(cut) + ", " + name);
      device::AgentOptions o;
      o.cut = cut;
      o.fallback = device::Fallback::kFail;
      o.channel.endpoint = worker.endpoint();
      o.log = NullLog();
      o.drafter = drafter;
      transport::Metrics m;
      device::Agent agent(*model, o, ctx, m);
      const auto got = agent.Generate({{1}, static_cast<int>(want.size()), {}, false});
      EXPECT_EQ(want, got.tokens);
      EXPECT_GT(got.drafted, 0);
      if (name == "draft:self") EXPECT_EQ(got.drafted, got.accepted);
      EXPECT_LE(got.cloud_steps, static_cast<int>(want.size()));
      // The EWMA is a rate, and the gauge the scheduler reads carries it.
      EXPECT_GE(got.acceptance_ewma, 0.0);
      EXPECT_LE(got.acceptance_ewma, 1.0);
      EXPECT_EQ(got.acceptance_ewma,
                m.Get("splitlm_device_draft_acceptance_ewma{drafter=\"" + drafter->name() + "\"}"));
    }
  }
  stop = true;
  thread.join();
}

TEST(DraftLength, GrowsOnFullAcceptanceShrinksOnRejectionWithinBounds) {
  device::DraftLength k(8);
  EXPECT_EQ(4, k.k());
  k.Observe(4, 4);
  EXPECT_EQ(5, k.k());
  for (int i = 0; i < 10; ++i) k.Observe(k.k(), k.k());
  EXPECT_EQ(8, k.k());
  k.Observe(8, 2);
  EXPECT_EQ(3, k.k());
  k.Observe(3, 0);
  EXPECT_EQ(1, k.k());
  k.Observe(1, 0);
  EXPECT_EQ(1, k.k());
  EXPECT_EQ(2, device::DraftLength(2).k());
}

TEST(PromptLookup, ProposesWhatFollowedTheLatestEarlierOccurrenceOfTheLongestSuffix) {
  device::PromptLookupDrafter d;
  // "5 6" occurs twice before the end; the latest is followed by 9 4 5 6.
  EXPECT_EQ((std::vector<int32_t>{9, 4, 5}), d.Propose({5, 6, 7, 1, 5, 6, 9, 4, 5, 6}, 3));
  EXPECT_EQ((std::vector<int32_t>{9}), d.Propose({5, 6, 9, 4, 5, 6}, 1));
  EXPECT_TRUE(d.Propose({1, 2, 3}, 4).empty());  // nothing repeats
  EXPECT_TRUE(d.Propose({}, 4).empty());
  // Running into the end, the repetition goes on: "1" was followed by "2 1",
  // so "2 1 2 1"; a run of one token continues as that token.
  EXPECT_EQ((std::vector<int32_t>{2, 1, 2, 1}), d.Propose({1, 2, 1}, 4));
  EXPECT_EQ((std::vector<int32_t>{7, 7, 7}), d.Propose({3, 7, 7, 7}, 3));
}

// ParseSpeculate's message for `text`, "" when it parses.
std::string SpeculateError(const std::string& text, const std::string& where = "speculate") {
  try {
    device::ParseSpeculate(text, where);
  } catch (const Exception& e) {
    EXPECT_EQ(Exception::kInvalidArgument, e.code());
    return e.what();
  }
  return "";
}

TEST(ParseSpeculate, AcceptsEveryDrafterWithAPathAndK) {
  const auto e = device::ParseSpeculate("early-exit:5");
  EXPECT_EQ("early-exit", e.drafter);
  EXPECT_EQ(5, e.max_drafts);
  auto d = device::ParseSpeculate("draft:/models/small.gguf:2");
  EXPECT_EQ("draft", d.drafter);
  EXPECT_EQ("/models/small.gguf", d.path);
  EXPECT_EQ(2, d.max_drafts);
  d = device::ParseSpeculate("draft:models/one-layer");
  EXPECT_EQ("models/one-layer", d.path);
  EXPECT_EQ(8, d.max_drafts);
  for (const char* bad : {"draft", "draft:", "draft::3", "draft:m:9", "draft:m:0",
                          "early-exit:", "early-exit:12", "early"}) {
    EXPECT_EQ("speculate: ", SpeculateError(bad).substr(0, 11)) << bad;
  }
}

TEST(DraftPolicy, KGrowsWithTheRoundTripAndAcceptanceAndShrinksWithTheDeviceCost) {
  EXPECT_EQ(8, device::LinkDraftCap(1.0, 50, 1, 8)) << "every draft accepted: every k gains";
  EXPECT_EQ(1, device::LinkDraftCap(0.0, 50, 1, 8)) << "nothing accepted: drafts only cost";
  EXPECT_EQ(8, device::LinkDraftCap(0.9, 200, 0.1, 8)) << "a long round trip, high acceptance";
  EXPECT_EQ(1, device::LinkDraftCap(0.5, 1, 10, 8)) << "a device row costs ten round trips";
  int last = 1;
  for (double rt : {0.1, 1.0, 5.0, 20.0, 75.0, 300.0}) {
    const int k = device::LinkDraftCap(0.8, rt, 2.0, 8);
    EXPECT_GE(k, last) << "k never shrinks as the round trip grows (rt " << rt << ")";
    last = k;
  }
  last = 1;
  for (double a : {0.1, 0.3, 0.5, 0.7, 0.9, 0.99}) {
    const int k = device::LinkDraftCap(a, 20, 2.0, 8);
    EXPECT_GE(k, last) << "k never shrinks as acceptance grows (a " << a << ")";
    last = k;
  }
  EXPECT_DOUBLE_EQ(1.0 + 0.5 + 0.25, device::ExpectedTokensPerStep(0.5, 2));
}

TEST(DraftPolicy, TheMeterStartsAtTheFirstStepAndWeighsTheNewestByAQuarter) {
  device::DraftMeter m;
  EXPECT_FALSE(m.measured());
  EXPECT_EQ(8, m.Cap(8));
  m.Observe(4, 4, 2.0, 5, 30.0);
  EXPECT_EQ(1.0, m.acceptance());
  EXPECT_EQ(30.0, m.round_trip_ms());
  EXPECT_DOUBLE_EQ(0.4, m.row_ms());
  m.Observe(4, 0, 2.0, 5, 30.0);
  EXPECT_DOUBLE_EQ(0.75, m.acceptance());
  m.Observe(0, 0, 1.0, 1, 30.0);  // a step without drafts tells nothing
  EXPECT_EQ(2, m.steps());
}

TEST(ParseSpeculate, AcceptsTheDrafterAndKAndNamesWhatIsWrong) {
  EXPECT_EQ("", device::ParseSpeculate("off").drafter);
  EXPECT_EQ("", device::ParseSpeculate("").drafter);
  const auto s = device::ParseSpeculate("prompt-lookup:3");
  EXPECT_EQ("prompt-lookup", s.drafter);
  EXPECT_EQ(3, s.max_drafts);
  EXPECT_EQ(8, device::ParseSpeculate("prompt-lookup").max_drafts);
  for (const char* bad :
       {"prompt-lookup:0", "prompt-lookup:9", "prompt-lookup:", "prompt-lookup:x"})
    EXPECT_EQ("speculate: ", SpeculateError(bad).substr(0, 11)) << bad;
  EXPECT_EQ("--speculate: the number of drafts after ':' must be 1..8, not \"9\"",
            SpeculateError("prompt-lookup:9", "--speculate"));
  EXPECT_EQ(
      "speculate: unknown drafter \"magic\" (known: prompt-lookup, early-exit, draft:PATH, or off)",
      SpeculateError("magic"));
  EXPECT_EQ(
      "speculate: draft needs a model: draft:PATH or draft:PATH:K (PATH a model directory or "
      ".gguf file)",
      SpeculateError("draft:"));
}

TEST(VerifyDrafts, KeepsTheLongestAgreeingPrefixAndAddsItsOwnNextToken) {
  // Three rows over a vocabulary of 4: the greedy choices are 2, 1, 3.
  const std::vector<float> logits = {0, 0, 5, 0, /**/ 0, 5, 0, 0, /**/ 0, 0, 0, 5};
  partition::SamplingParams greedy;
  auto all = cloud::VerifyDrafts(logits.data(), 4, {2, 1}, greedy, 10);
  EXPECT_EQ(2u, all.accepted);
  EXPECT_EQ((std::vector<int32_t>{2, 1, 3}), all.tokens);
  auto first = cloud::VerifyDrafts(logits.data(), 4, {2, 0}, greedy, 10);
  EXPECT_EQ(1u, first.accepted);
  EXPECT_EQ((std::vector<int32_t>{2, 1}), first.tokens);
  auto none = cloud::VerifyDrafts(logits.data(), 4, {3, 1}, greedy, 10);
  EXPECT_EQ(0u, none.accepted);
  EXPECT_EQ((std::vector<int32_t>{2}), none.tokens);
}

}  // namespace
}  // namespace splitlm
