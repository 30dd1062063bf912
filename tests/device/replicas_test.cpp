// Replicas: several real splitlm-cloud processes on loopback, many device
// agents (threads of this process): sessions placed on the least loaded
// worker give the tokens of a local run and spread over the workers; a
// worker killed mid-run is failed over with identical tokens and no local
// fallback; a draining worker gets no new session and finishes its own.
#include <gtest/gtest.h>

#include <ATen/Parallel.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <csignal>
#include <map>
#include <mutex>
#include <numeric>
#include <thread>

#include "device/agent.h"
#include "device/drafter.h"
#include "device/replicas.h"
#include "partition/model.h"
#include "tests/common/test_util.h"
#include "transport/error.h"

namespace splitlm {
namespace {

using std::chrono::milliseconds;
using testing::BinPath;
using testing::Process;

constexpr int kTokens = 64;

std::vector<int32_t> Prompt(int i) { return {1, static_cast<int32_t>(7 + 3 * i), 42}; }

// Generations that start one after another, each once the previous one has
// its first token (its session is open on its worker, so the next placement
// sees it counted), and that then wait at their first token until released.
class Staircase {
 public:
  // Blocks until the generations before `i` have their first token.
  void WaitTurn(int i) {
    std::unique_lock<std::mutex> lock(m_);
    cv_.wait(lock, [&] { return placed_ >= i; });
  }
  // At a generation's first token: counted, then held until Release().
  void Placed() {
    std::unique_lock<std::mutex> lock(m_);
    ++placed_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_; });
  }
  void WaitPlaced(int n) {
    std::unique_lock<std::mutex> lock(m_);
    cv_.wait(lock, [&] { return placed_ >= n; });
  }
  void Release() {
    std::lock_guard<std::mutex> lock(m_);
    released_ = true;
    cv_.notify_all();
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  int placed_ = 0;
  bool released_ = false;
};

class ReplicasTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    at::set_num_threads(1);
    dir_ = new testing::TempDir();
    model_dir_ = new std::string(testing::MakeModel(dir_->Sub("tiny")));
    model_ = partition::Model::Open(*model_dir_).release();
    // The local runs every device's tokens must equal.
    transport::Metrics metrics;
    zmq::context_t ctx;
    device::AgentOptions o;
    o.cut = model_->config().num_layers;
    device::Agent local(*model_, o, ctx, metrics);
    expected_ = new std::vector<std::vector<int32_t>>();
    for (int i = 0; i < 12; ++i)
      expected_->push_back(local.Generate({Prompt(i), kTokens, {}, false}).tokens);
  }
  static void TearDownTestSuite() {
    delete model_;
    delete model_dir_;
    delete dir_;
    delete expected_;
  }

  // Starts a worker; returns its endpoint.
  static std::string StartWorker(std::unique_ptr<Process>& p, const std::string& extra = "") {
    p = std::make_unique<Process>(BinPath("splitlm-cloud") + " --model " + *model_dir_ +
                                  " --bind 'tcp://127.0.0.1:*' --threads 1 --log-level info " +
                                  extra);
    auto ep = p->WaitFor("listening on ", 60000);
    EXPECT_TRUE(ep.has_value()) << p->Stderr();
    return ep.value_or("");
  }

  // Starts a test worker that stops itself on its `freeze_at`th Forward,
  // before answering it, for the test to kill (tests/cloud/fault_worker.cpp).
  static std::string StartFaultWorker(std::unique_ptr<Process>& p, int freeze_at,
                                      const std::string& extra = "") {
    p = std::make_unique<Process>(BinPath("splitlm-fault-worker") + " --model " + *model_dir_ +
                                  " --bind 'tcp://127.0.0.1:*' --threads 1 --freeze-at " +
                                  std::to_string(freeze_at) + " " + extra);
    auto ep = p->WaitFor("listening on ", 60000);
    EXPECT_TRUE(ep.has_value()) << p->Stderr();
    return ep.value_or("");
  }

  device::AgentOptions Options(const std::vector<std::string>& workers) {
    device::AgentOptions o;
    o.cut = 2;
    o.fallback = device::Fallback::kFail;  // any fallback would end the generation in an error
    o.clouds = workers;
    o.channel.heartbeat_interval = milliseconds(100);
    o.step_deadline =
        milliseconds(30000);  // never reached: a dead worker is noticed by its heartbeats
    o.log =
        std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::null_sink_mt>());
    return o;
  }

  // Runs device i (0..n-1) in its own thread, each on the staircase.
  std::vector<device::GenerateResult> RunDevices(const std::vector<std::string>& workers, int n,
                                                 Staircase& stairs,
                                                 std::vector<std::string>* errors) {
    std::vector<std::unique_ptr<device::Agent>> agents;
    for (int i = 0; i < n; ++i)
      agents.push_back(std::make_unique<device::Agent>(*model_, Options(workers), ctx_, metrics_));
    std::vector<device::GenerateResult> results(n);
    errors->assign(n, "");
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([&, i] {
        stairs.WaitTurn(i);
        bool first = true;
        try {
          results[i] = agents[i]->Generate({Prompt(i), kTokens, {}, false}, [&](int32_t) {
            if (first) stairs.Placed();
            first = false;
            return true;
          });
        } catch (const std::exception& e) {
          (*errors)[i] = e.what();
          stairs.Placed();  // let the others go on
        }
      });
    }
    stairs.WaitPlaced(n);
    stairs.Release();
    for (auto& t : threads) t.join();
    return results;
  }

  static testing::TempDir* dir_;
  static std::string* model_dir_;
  static partition::Model* model_;
  static std::vector<std::vector<int32_t>>* expected_;
  zmq::context_t ctx_;
  transport::Metrics metrics_;
};
testing::TempDir* ReplicasTest::dir_ = nullptr;
std::string* ReplicasTest::model_dir_ = nullptr;
partition::Model* ReplicasTest::model_ = nullptr;
std::vector<std::vector<int32_t>>* ReplicasTest::expected_ = nullptr;

TEST_F(ReplicasTest, TwelveDevicesOnThreeWorkersGetTheLocalTokensAndSpread) {
  std::unique_ptr<Process> w[3];
  std::vector<std::string> eps;
  for (auto& p : w) eps.push_back(StartWorker(p));
  Staircase stairs;
  std::vector<std::string> errors;
  const auto results = RunDevices(eps, 12, stairs, &errors);
  std::map<std::string, int> sessions;
  for (int i = 0; i < 12; ++i) {
    ASSERT_EQ("", errors[i]) << "device " << i;
    EXPECT_EQ((*expected_)[i], results[i].tokens) << "device " << i;
    EXPECT_EQ(kTokens, results[i].cloud_steps) << "device " << i;
    ++sessions[results[i].worker];
  }
  for (const auto& ep : eps) {
    EXPECT_LE(sessions[ep], 6) << ep << " got more than half the sessions";
    EXPECT_GE(sessions[ep], 1) << ep << " got none";
  }
}

TEST_F(ReplicasTest, AWorkerKilledMidRunIsFailedOverWithIdenticalTokensAndNoFallback) {
  std::unique_ptr<Process> w[3];
  std::vector<std::string> eps;
  // Its 4 sessions x 64 steps: killed (SIGKILL, by this test) about half-way through.
  eps.push_back(StartFaultWorker(w[0], 120));
  eps.push_back(StartWorker(w[1]));
  eps.push_back(StartWorker(w[2]));
  testing::KillWhenFrozen killer(*w[0]);
  Staircase stairs;
  std::vector<std::string> errors;
  const auto results = RunDevices(eps, 12, stairs, &errors);
  ASSERT_TRUE(killer.Killed()) << "the worker never reached its 120th forward\n" << w[0]->Stderr();
  std::vector<double> times;
  for (int i = 0; i < 12; ++i) {
    ASSERT_EQ("", errors[i]) << "device " << i
                             << " (fallback: fail, so no local fallback happened)";
    EXPECT_EQ((*expected_)[i], results[i].tokens) << "device " << i;
    EXPECT_EQ(0, results[i].fallbacks);
    EXPECT_EQ(0, results[i].local_steps);
    times.insert(times.end(), results[i].failover_ms.begin(), results[i].failover_ms.end());
  }
  EXPECT_EQ(128 + SIGKILL, w[0]->Wait());
  ASSERT_FALSE(times.empty()) << "no session was failed over";
  std::sort(times.begin(), times.end());
  const double median = times[times.size() / 2], max = times.back();
  std::cout << "failover of " << times.size() << " sessions: median " << median << " ms, max "
            << max << " ms (heartbeat 100 ms x 3)\n";
  RecordProperty("failovers", static_cast<int>(times.size()));
  RecordProperty("failover_median_ms", std::to_string(median));
  RecordProperty("failover_max_ms", std::to_string(max));
}

// Asks `endpoint` for its Hello until it says it is draining.
void WaitDraining(zmq::context_t& ctx, const partition::Model& model, const std::string& endpoint) {
  transport::ClientOptions co;
  co.endpoint = endpoint;
  transport::ClientChannel ch(ctx, co);
  transport::Hello h;
  h.model_fingerprint = model.fingerprint();
  h.model_identity = model.identity();
  h.hidden_size = model.config().hidden_size;
  h.num_layers = model.config().num_layers;
  while (true) {
    ASSERT_TRUE(ch.Send(h));
    auto in = ch.Receive(milliseconds(10000));
    ASSERT_TRUE(in.has_value()) << "no answer from " << endpoint;
    if (auto* r = std::get_if<transport::Hello>(&in->message); r && r->draining) return;
  }
}

TEST_F(ReplicasTest, ADrainingWorkerGetsNoNewSessionAndFinishesItsOwn) {
  std::unique_ptr<Process> a, b;
  const std::string ep_a = StartWorker(a), ep_b = StartWorker(b);
  // Devices 0 and 2 on B, device 1 on A (each given that worker alone); held
  // at their first token, so A holds one session and B two.
  const std::vector<std::vector<std::string>> only = {{ep_b}, {ep_a}, {ep_b}};
  Staircase stairs;
  std::vector<std::unique_ptr<device::Agent>> agents;
  for (int i = 0; i < 3; ++i) {
    auto o = Options({});
    o.channel.endpoint = only[i][0];
    agents.push_back(std::make_unique<device::Agent>(*model_, o, ctx_, metrics_));
  }
  std::vector<device::GenerateResult> results(3);
  std::vector<std::thread> threads;
  for (int i = 0; i < 3; ++i) {
    threads.emplace_back([&, i] {
      stairs.WaitTurn(i);
      bool first = true;
      results[i] = agents[i]->Generate({Prompt(i), kTokens, {}, false}, [&](int32_t) {
        if (first) stairs.Placed();
        first = false;
        return true;
      });
    });
  }
  stairs.WaitPlaced(3);
  a->Signal(SIGTERM);
  WaitDraining(ctx_, *model_, ep_a);
  // Placed between the two, device 3 would take A (fewer sessions) but for
  // its draining.
  device::Agent late_agent(*model_, Options({ep_a, ep_b}), ctx_, metrics_);
  const auto late = late_agent.Generate({Prompt(3), kTokens, {}, false});
  EXPECT_EQ(ep_b, late.worker);
  EXPECT_EQ((*expected_)[3], late.tokens);
  stairs.Release();
  for (auto& t : threads) t.join();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ((*expected_)[i], results[i].tokens) << "device " << i;
    EXPECT_EQ(kTokens, results[i].cloud_steps)
        << "device " << i << ": every step answered where it started";
    EXPECT_EQ(only[i][0], results[i].worker) << "device " << i;
  }
  EXPECT_EQ(0, a->Wait()) << "drained and exited\n" << a->Stderr();
  EXPECT_NE(std::string::npos, a->Stderr().find("drained: no session open")) << a->Stderr();
}

TEST_F(ReplicasTest, ADnsNameIsResolvedToItsAddressesAndTheSessionPlacedOnOne) {
  std::unique_ptr<Process> w;
  const std::string ep = StartWorker(w);  // tcp://127.0.0.1:PORT
  const std::string port = ep.substr(ep.rfind(':') + 1);
  // localhost may also resolve to ::1, where nothing listens: placement
  // skips an address that refuses or does not answer.
  device::Agent agent(*model_, Options({"dns://localhost:" + port}), ctx_, metrics_);
  const auto r = agent.Generate({Prompt(5), kTokens, {}, false});
  EXPECT_EQ((*expected_)[5], r.tokens);
  EXPECT_EQ(ep, r.worker);
  EXPECT_EQ(0, r.failovers);
}

// A pipeline of workers: the device's cut K, a worker holding [K, M) that
// sends its hidden states on to one holding [M, L) and the head.
TEST_F(ReplicasTest, APipelineOfTwoWorkersGivesTheLocalTokensAtSeveralCuts) {
  for (auto [k, m] : {std::pair{1, 2}, std::pair{0, 3}}) {
    std::unique_ptr<Process> last, middle;
    const std::string ep_last = StartWorker(last, "--min-cut " + std::to_string(m));
    const std::string ep = StartWorker(
        middle, "--layers " + std::to_string(k) + ":" + std::to_string(m) + " --next " + ep_last);
    auto o = Options({});
    o.cut = k;
    o.channel.endpoint = ep;
    device::Agent agent(*model_, o, ctx_, metrics_);
    for (int i : {2, 9}) {
      const auto r = agent.Generate({Prompt(i), kTokens, {}, false});
      EXPECT_EQ((*expected_)[i], r.tokens) << "K " << k << " M " << m << " device " << i;
      EXPECT_EQ(kTokens, r.cloud_steps);
    }
    // Speculative steps through the chain: the last worker verifies, the
    // middle one forgets the rejected rows as it does.
    o.drafter = device::MakeDrafter({"prompt-lookup", "", 8}, *model_);
    device::Agent speculating(*model_, o, ctx_, metrics_);
    const std::vector<int32_t> repetitive = {1, 5, 6, 7, 5, 6, 7, 5, 6};
    device::Agent local(
        *model_,
        [&] {
          device::AgentOptions lo;
          lo.cut = model_->config().num_layers;
          return lo;
        }(),
        ctx_, metrics_);
    const auto want = local.Generate({repetitive, kTokens, {}, false}).tokens;
    const auto r = speculating.Generate({repetitive, kTokens, {}, false});
    EXPECT_EQ(want, r.tokens) << "speculative, K " << k << " M " << m;
    EXPECT_GT(r.drafted, 0);
  }
}

TEST_F(ReplicasTest, APipelineWhoseLastWorkerDiesFallsBackWithIdenticalTokens) {
  std::unique_ptr<Process> last, middle;
  const std::string ep_last = StartFaultWorker(last, 20, "--min-cut 3");
  testing::KillWhenFrozen killer(*last);
  const std::string ep = StartWorker(middle, "--layers 1:3 --next " + ep_last);
  auto o = Options({});
  o.cut = 1;
  o.channel.endpoint = ep;
  o.fallback = device::Fallback::kLocal;
  o.retry_interval = milliseconds(600000);  // stays on the device once there
  device::Agent agent(*model_, o, ctx_, metrics_);
  const auto r = agent.Generate({Prompt(4), kTokens, {}, false});
  EXPECT_EQ((*expected_)[4], r.tokens);
  EXPECT_EQ(1, r.fallbacks);
  EXPECT_EQ(19, r.cloud_steps)
      << "the last worker answers 19 steps (through the first) and dies at the 20th";
  EXPECT_EQ(kTokens - 19, r.local_steps);
  ASSERT_TRUE(killer.Killed()) << last->Stderr();
  EXPECT_EQ(128 + SIGKILL, last->Wait());
}

TEST_F(ReplicasTest, SplitlmDeviceTakesAListOfWorkersAndNamesABadEntry) {
  std::unique_ptr<Process> w1, w2;
  const std::string list = StartWorker(w1) + "," + StartWorker(w2);
  const std::string local =
      testing::RunCommand(BinPath("splitlm") + " generate --threads 1 --model " + *model_dir_ +
                          " --prompt-ids '1 7 42' --max-tokens 24 --print-ids --ignore-eos")
          .out;
  auto device = [&](const std::string& cloud) {
    return testing::RunCommand(
        BinPath("splitlm-device") + " --threads 1 --model " + *model_dir_ + " --cloud '" + cloud +
        "' --cut 2 generate --prompt-ids '1 7 42' --max-tokens 24 --print-ids --ignore-eos");
  };
  const auto r = device(list);
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_EQ(local, r.out);
  EXPECT_NE(std::string::npos, r.err.find("0 failovers to another worker")) << r.err;
  const auto bad = device(list + ",http://x:1");
  EXPECT_NE(0, bad.exit_code);
  EXPECT_NE(std::string::npos,
            bad.err.find("--cloud / device.cloud: cloud entry 'http://x:1': unknown scheme"))
      << bad.err;
}

TEST(CloudList, ParsesEntriesAndNamesWhatIsWrong) {
  EXPECT_EQ((std::vector<std::string>{"tcp://a:5555", "dns://w.svc:6000"}),
            device::ParseCloudList("tcp://a:5555, dns://w.svc:6000"));
  auto error = [](const std::string& text) {
    try {
      device::ParseCloudList(text);
    } catch (const Exception& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(
      "cloud list 'tcp://a:1,': an empty entry (expected tcp://HOST:PORT[,...] or dns://NAME:PORT)",
      error("tcp://a:1,"));
  EXPECT_EQ(
      "cloud entry 'http://a:1': unknown scheme (expected tcp://, dns://, ipc:// or inproc://)",
      error("http://a:1"));
  EXPECT_EQ("cloud entry 'dns://w.svc': expected HOST:PORT after the scheme", error("dns://w.svc"));
  EXPECT_EQ("cloud entry 'tcp://a:99999': port '99999' is not a number 0..65535",
            error("tcp://a:99999"));
}

TEST(Replicas, ResolvesNamesToEveryAddressAndAgainAfterTheInterval) {
  std::vector<std::string> answer = {"10.0.0.1", "fd00::2"};
  int asked = 0;
  device::Replicas r({"tcp://a:1", "dns://w.svc:5555"}, milliseconds(1000),
                     [&](const std::string& host) {
                       EXPECT_EQ("w.svc", host);
                       ++asked;
                       return answer;
                     });
  EXPECT_TRUE(r.several());
  const auto t0 = device::Replicas::Clock::time_point{} + std::chrono::hours(1);
  EXPECT_EQ((std::vector<std::string>{"tcp://a:1", "tcp://10.0.0.1:5555", "tcp://[fd00::2]:5555"}),
            r.Endpoints(t0));
  answer = {"10.0.0.3"};
  EXPECT_EQ(3u, r.Endpoints(t0 + milliseconds(999)).size()) << "resolved again before the interval";
  EXPECT_EQ((std::vector<std::string>{"tcp://a:1", "tcp://10.0.0.3:5555"}),
            r.Endpoints(t0 + milliseconds(1000)));
  answer = {};
  EXPECT_EQ((std::vector<std::string>{"tcp://a:1", "tcp://10.0.0.3:5555"}),
            r.Endpoints(t0 + milliseconds(2000)))
      << "a name that does not resolve keeps its last addresses";
  EXPECT_EQ(3, asked);
  EXPECT_FALSE(device::Replicas({"tcp://a:1"}, milliseconds(1000)).several());
}

TEST(Replicas, LocalhostResolvesThroughTheSystemResolver) {
  const auto addrs = device::SystemResolve("localhost");
  ASSERT_FALSE(addrs.empty());
  EXPECT_TRUE(std::find(addrs.begin(), addrs.end(), "127.0.0.1") != addrs.end() ||
              std::find(addrs.begin(), addrs.end(), "::1") != addrs.end());
  EXPECT_TRUE(device::SystemResolve("no-such-host.invalid").empty());
}

}  // namespace
}  // namespace splitlm
