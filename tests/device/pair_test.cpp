// The deployable pair as real processes on loopback: split generation equals
// the local run, a killed cloud is survived with identical tokens, sixteen
// devices share one worker (with evictions rebuilt transparently). The tests
// kill workers themselves: a splitlm-fault-worker stops at a chosen step and
// the test sends it SIGKILL (testing::KillWhenFrozen).
#include <gtest/gtest.h>

#include <csignal>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "tests/common/test_util.h"

namespace splitlm {
namespace {

using testing::BinPath;
using testing::Process;
using testing::RunCommand;
using testing::TempDir;

class PairTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    auto r = RunCommand(BinPath("splitlm") + " make-model --preset tiny --seed 3 --out " + Model());
    ASSERT_EQ(0, r.exit_code) << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string Model() { return dir_->Sub("tiny"); }

  // Starts a worker; returns its endpoint (read back from its first line).
  static std::string StartCloud(std::unique_ptr<Process>& p,
                                const std::string& bind = "tcp://127.0.0.1:*",
                                const std::string& extra = "") {
    p = std::make_unique<Process>(BinPath("splitlm-cloud") + " --model " + Model() + " --bind '" +
                                  bind + "' --threads 1 " + extra);
    auto ep = p->WaitFor("listening on ", 60000);
    EXPECT_TRUE(ep.has_value()) << p->Stderr();
    return ep.value_or("");
  }

  // Starts a test worker that stops itself on its `freeze_at`th Forward,
  // before answering it, for the test to kill (tests/cloud/fault_worker.cpp).
  static std::string StartFaultWorker(std::unique_ptr<Process>& p, int freeze_at) {
    p = std::make_unique<Process>(BinPath("splitlm-fault-worker") + " --model " + Model() +
                                  " --bind 'tcp://127.0.0.1:*' --threads 1 --freeze-at " +
                                  std::to_string(freeze_at));
    auto ep = p->WaitFor("listening on ", 60000);
    EXPECT_TRUE(ep.has_value()) << p->Stderr();
    return ep.value_or("");
  }

  static std::string Local(const std::string& prompt, int tokens) {
    auto r = RunCommand(BinPath("splitlm") + " generate --threads 1 --model " + Model() +
                        " --prompt-ids '" + prompt + "' --max-tokens " + std::to_string(tokens) +
                        " --print-ids --ignore-eos");
    EXPECT_EQ(0, r.exit_code) << r.err;
    return r.out;
  }

  static testing::CommandResult Device(const std::string& endpoint, int cut,
                                       const std::string& prompt, int tokens,
                                       const std::string& extra = "") {
    return RunCommand(BinPath("splitlm-device") + " --threads 1 --model " + Model() + " --cloud " +
                      endpoint + " --cut " + std::to_string(cut) + " " + extra +
                      " generate --prompt-ids '" + prompt + "' --max-tokens " +
                      std::to_string(tokens) + " --print-ids --ignore-eos");
  }

  static TempDir* dir_;
};
TempDir* PairTest::dir_ = nullptr;

TEST_F(PairTest, SplitThroughTwoProcessesEqualsTheLocalRun) {
  std::unique_ptr<Process> cloud;
  const std::string ep = StartCloud(cloud);
  const std::string expected = Local("1 7 42", 48);
  for (int cut : {0, 1, 2, 3}) {
    auto r = Device(ep, cut, "1 7 42", 48);
    ASSERT_EQ(0, r.exit_code) << r.err;
    EXPECT_EQ(expected, r.out) << "cut " << cut;
    EXPECT_NE(std::string::npos, r.err.find("48 from the cloud, 0 on the device")) << r.err;
  }
  cloud->Signal(SIGTERM);
  EXPECT_EQ(0, cloud->Wait()) << "clean shutdown on SIGTERM\n" << cloud->Stderr();
}

TEST_F(PairTest, AModelWithTheSameShapesAndOtherWeightsIsRefusedAtHello) {
  TempDir other;
  const std::string model = other.Sub("tiny-seed-4");  // the suite's model has seed 3
  auto made = RunCommand(BinPath("splitlm") + " make-model --preset tiny --seed 4 --out " + model);
  ASSERT_EQ(0, made.exit_code) << made.err;
  std::unique_ptr<Process> cloud;
  const std::string ep = StartCloud(cloud);
  for (const char* fallback : {"fail", "local"}) {
    auto r = RunCommand(BinPath("splitlm-device") + " --threads 1 --model " + model + " --cloud " +
                        ep + " --cut 2 --fallback " + fallback +
                        " generate --prompt-ids '1 7' --max-tokens 4 --print-ids");
    EXPECT_NE(0, r.exit_code) << "fallback " << fallback << ": " << r.out;
    EXPECT_EQ("", r.out) << "no tokens from a mismatched pair";
    EXPECT_NE(std::string::npos, r.err.find("same shapes, other weights or configuration"))
        << r.err;
  }
  cloud->Signal(SIGTERM);
  EXPECT_EQ(0, cloud->Wait());
  EXPECT_NE(std::string::npos, cloud->Stderr().find("refused hello")) << cloud->Stderr();
}

TEST_F(PairTest, AGgufModelSplitsThroughTwoProcessesWithTheReferenceIds) {
  const auto shared = testing::SharedDir();
  const std::string gguf = shared ? *shared + "/gguf/stories260K-f32.gguf" : "";
  if (gguf.empty() || !std::ifstream(gguf))
    GTEST_SKIP() << "../shared/gguf/stories260K-f32.gguf is absent (set SPLITLM_SHARED)";
  Process cloud(BinPath("splitlm-cloud") + " --model " + gguf +
                " --bind 'tcp://127.0.0.1:*' --threads 1");
  const auto ep = cloud.WaitFor("listening on ", 60000);
  ASSERT_TRUE(ep.has_value()) << cloud.Stderr();
  // llama2.c's and llama.cpp's greedy ids for the checkpoint (the first 21).
  const std::string expected =
      "1 461 461 401 401 401 461 378 455 473 456 435 299 362 409 283 264 283 452 288 13\n";
  for (int cut : {0, 2, 5}) {
    auto r = RunCommand(BinPath("splitlm-device") + " --threads 1 --model " + gguf + " --cloud " +
                        *ep + " --cut " + std::to_string(cut) +
                        " generate --prompt-ids 1 --max-tokens 20 --print-ids");
    ASSERT_EQ(0, r.exit_code) << r.err;
    EXPECT_EQ(expected, r.out) << "cut " << cut;
  }
  cloud.Signal(SIGTERM);
  EXPECT_EQ(0, cloud.Wait()) << cloud.Stderr();
}

TEST_F(PairTest, TheSameModelInAnotherFormatSplitsWithAWarningOrIsRefusedWhenExactnessIsRequired) {
  REQUIRE_SHARED(f32, "gguf/synthk-f32.gguf");
  REQUIRE_SHARED(q8, "gguf/synthk-q8_0.gguf");
  Process cloud(BinPath("splitlm-cloud") + " --model " + f32 +
                " --bind 'tcp://127.0.0.1:*' --threads 1");
  const auto ep = cloud.WaitFor("listening on ", 60000);
  ASSERT_TRUE(ep.has_value()) << cloud.Stderr();
  const std::string device = BinPath("splitlm-device") + " --threads 1 --model " + q8 +
                             " --cloud " + *ep + " --cut 1 --fallback fail ";
  const std::string gen = " generate --prompt-ids '1 7' --max-tokens 4 --print-ids";
  auto warned = RunCommand(device + gen);
  ASSERT_EQ(0, warned.exit_code) << warned.err;
  EXPECT_NE("", warned.out);
  EXPECT_NE(std::string::npos, warned.err.find("tokens may differ from a local run")) << warned.err;
  EXPECT_NE(std::string::npos, warned.err.find("theirs f32, ours q8_0")) << warned.err;

  auto refused = RunCommand(device + "--require-exact" + gen);
  EXPECT_NE(0, refused.exit_code) << refused.out;
  EXPECT_EQ("", refused.out);
  EXPECT_NE(std::string::npos, refused.err.find("require_exact")) << refused.err;
  cloud.Signal(SIGTERM);
  EXPECT_EQ(0, cloud.Wait()) << cloud.Stderr();
  EXPECT_NE(std::string::npos, cloud.Stderr().find("tokens may differ"))
      << "the worker warns too: " << cloud.Stderr();
}

TEST_F(PairTest, WeightsQuantisedAtLoadOnOneSideAreTheSameModelInAnotherFormat) {
  std::unique_ptr<Process> cloud;
  const std::string ep = StartCloud(cloud);
  const std::string device = BinPath("splitlm-device") + " --threads 1 --model " + Model() +
                             " --cloud " + ep + " --cut 2 --fallback fail ";
  const std::string gen = " generate --prompt-ids '1 7' --max-tokens 4 --print-ids";
  auto same = RunCommand(device + "--weights f32 --require-exact" + gen);
  ASSERT_EQ(0, same.exit_code) << same.err;
  EXPECT_EQ(std::string::npos, same.err.find("may differ")) << same.err;
  auto warned = RunCommand(device + "--weights q8_0" + gen);
  ASSERT_EQ(0, warned.exit_code) << warned.err;
  EXPECT_NE(std::string::npos, warned.err.find("ours q8_0 (at load)")) << warned.err;
  auto refused = RunCommand(device + "--weights q8_0 --require-exact" + gen);
  EXPECT_NE(0, refused.exit_code);
  EXPECT_EQ("", refused.out);
  EXPECT_NE(std::string::npos, refused.err.find("require_exact")) << refused.err;
  cloud->Signal(SIGTERM);
  EXPECT_EQ(0, cloud->Wait());
}

TEST_F(PairTest, KilledCloudFallsBackLocallyWithIdenticalTokensAndARestartSplitsAgain) {
  std::unique_ptr<Process> cloud;
  const std::string ep = StartFaultWorker(cloud, 10);
  const std::string expected = Local("1 9", 64);
  testing::KillWhenFrozen killer(*cloud);
  auto r = Device(ep, 2, "1 9", 64,
                  "--fallback local --step-deadline-ms 3000 --heartbeat-ms 50 --retry-ms 600000");
  ASSERT_TRUE(killer.Killed()) << "the worker never reached its 10th forward\n" << cloud->Stderr();
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_EQ(expected, r.out);
  EXPECT_EQ(128 + SIGKILL, cloud->Wait());
  EXPECT_NE(std::string::npos, r.err.find("1 fallbacks")) << r.err;
  // The worker comes back on the same endpoint: the next request splits.
  StartCloud(cloud, ep);
  auto again = Device(ep, 2, "1 9", 64, "--fallback local");
  ASSERT_EQ(0, again.exit_code) << again.err;
  EXPECT_EQ(expected, again.out);
  EXPECT_NE(std::string::npos, again.err.find("64 from the cloud, 0 on the device; 0 fallbacks"))
      << again.err;
}

TEST_F(PairTest, SpeculativeSplitEqualsTheLocalRunAndSurvivesACloudKilledMidSpeculation) {
  std::unique_ptr<Process> cloud;
  const std::string ep = StartFaultWorker(cloud, 4);
  const std::string prompt = "1 7 3 7 3 7 3";  // lookup always finds a draft here
  const std::string expected = Local(prompt, 40);
  // Forwards 2 and on carry drafts: the worker dies with the 4th unanswered.
  testing::KillWhenFrozen killer(*cloud);
  auto r = Device(ep, 2, prompt, 40,
                  "--speculate prompt-lookup:4 --fallback local --step-deadline-ms 3000 "
                  "--heartbeat-ms 50 --retry-ms 600000");
  ASSERT_TRUE(killer.Killed()) << "the worker never reached its 4th forward\n" << cloud->Stderr();
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_EQ(expected, r.out);
  EXPECT_EQ(128 + SIGKILL, cloud->Wait());
  EXPECT_NE(std::string::npos, r.err.find("1 fallbacks")) << r.err;
  EXPECT_NE(std::string::npos, r.err.find("speculative (prompt-lookup): 3 round trips")) << r.err;
  StartCloud(cloud, ep);
  for (const std::string& spec :
       std::vector<std::string>{"prompt-lookup", "early-exit:3", "draft:" + Model() + ":5"}) {
    for (int cut : {0, 3}) {
      auto again = Device(ep, cut, prompt, 40, "--speculate " + spec);
      ASSERT_EQ(0, again.exit_code) << again.err;
      EXPECT_EQ(expected, again.out) << spec << ", cut " << cut;
      EXPECT_NE(std::string::npos, again.err.find("0 fallbacks")) << again.err;
    }
  }
  // The same tokens from `splitlm generate --cut` in one process.
  auto one = RunCommand(
      BinPath("splitlm") + " generate --threads 1 --model " + Model() + " --prompt-ids '" + prompt +
      "' --max-tokens 40 --print-ids --ignore-eos --cut 2 --speculate early-exit");
  ASSERT_EQ(0, one.exit_code) << one.err;
  EXPECT_EQ(expected, one.out);
  EXPECT_NE(std::string::npos, one.err.find("speculative (early-exit)")) << one.err;
  auto bad = Device(ep, 2, prompt, 4, "--speculate prompt-lookup:9");
  EXPECT_NE(0, bad.exit_code);
  EXPECT_NE(
      std::string::npos,
      bad.err.find("--speculate / device.speculate: the number of drafts after ':' must be 1..8"))
      << bad.err;
  const std::string other = dir_->Sub("tiny-vocab-300");
  ASSERT_EQ(0,
            RunCommand(BinPath("splitlm") + " make-model --preset tiny --vocab 300 --out " + other)
                .exit_code);
  bad = Device(ep, 2, prompt, 4, "--speculate draft:" + other);
  EXPECT_NE(0, bad.exit_code);
  EXPECT_NE(std::string::npos, bad.err.find("--speculate / device.speculate: draft model " + other +
                                            " has a vocabulary of 300 tokens"))
      << bad.err;
}

TEST_F(PairTest, WaitModeResumesOnARestartedCloudWithIdenticalTokens) {
  std::unique_ptr<Process> cloud;
  const std::string ep = StartFaultWorker(cloud, 5);
  const std::string expected = Local("1 2 3", 40);
  testing::KillWhenFrozen killer(*cloud);
  Process device(
      BinPath("splitlm-device") + " --threads 1 --model " + Model() + " --cloud " + ep +
      " --cut 1 --fallback wait --wait-deadline-ms 60000 --step-deadline-ms 1000 --heartbeat-ms 50"
      " generate --prompt-ids '1 2 3' --max-tokens 40 --print-ids --ignore-eos");
  ASSERT_TRUE(killer.Killed()) << "the worker never reached its 5th forward\n" << cloud->Stderr();
  EXPECT_EQ(128 + SIGKILL, cloud->Wait());
  StartCloud(cloud, ep);  // the device is waiting for it
  auto line = device.ReadLine(60000);
  ASSERT_TRUE(line.has_value()) << device.Stderr();
  EXPECT_EQ(expected, *line + "\n");
  EXPECT_EQ(0, device.Wait()) << device.Stderr();
  EXPECT_NE(std::string::npos, device.Stderr().find("0 on the device")) << device.Stderr();
}

TEST_F(PairTest, ARestartedWorkerIsNoticedByItsInstanceIdAndUsedAtOnce) {
  std::unique_ptr<Process> cloud;
  const std::string ep = StartFaultWorker(cloud, 5);
  const std::string expected = Local("1 2 3", 40);
  testing::KillWhenFrozen killer(*cloud);
  // The lost step would be given up only after 10 minutes, and fail mode
  // has no local fallback: the generation can finish only by noticing the
  // new worker's instance id and rebuilding the session there.
  Process device(BinPath("splitlm-device") + " --threads 1 --model " + Model() + " --cloud " + ep +
                 " --cut 1 --fallback fail --step-deadline-ms 600000 --heartbeat-ms 2000"
                 " generate --prompt-ids '1 2 3' --max-tokens 40 --print-ids --ignore-eos");
  ASSERT_TRUE(killer.Killed()) << "the worker never reached its 5th forward\n" << cloud->Stderr();
  EXPECT_EQ(128 + SIGKILL, cloud->Wait());
  // Frozen while the worker restarts, the device cannot count the restart's
  // length as missed heartbeats; it resumes with a heartbeat to the new one.
  device.Signal(SIGSTOP);
  StartCloud(cloud, ep);
  device.Signal(SIGCONT);
  auto line = device.ReadLine(120000);
  ASSERT_TRUE(line.has_value()) << device.Stderr();
  EXPECT_EQ(expected, *line + "\n");
  EXPECT_EQ(0, device.Wait()) << device.Stderr();
  EXPECT_NE(std::string::npos,
            device.Stderr().find(
                "40 from the cloud, 0 on the device; 0 fallbacks, 0 recoveries, 1 cloud restarts"))
      << device.Stderr();
}

TEST_F(PairTest, FailModeReportsAClearError) {
  // Nothing listens at this endpoint: reserve a port by binding, then stop.
  std::unique_ptr<Process> cloud;
  const std::string ep = StartCloud(cloud);
  cloud->Signal(SIGKILL);
  cloud->Wait();
  auto r = Device(ep, 1, "1", 8, "--fallback fail --step-deadline-ms 600000 --heartbeat-ms 500");
  EXPECT_NE(0, r.exit_code);
  EXPECT_NE(std::string::npos,
            r.err.find("cloud " + ep +
                       ": connection refused (nothing accepts connections there) "
                       "(fallback: fail); is splitlm-cloud running at --cloud?"))
      << r.err;
}

TEST_F(PairTest, RefusedCurveHandshakesAreReportedWithTheKeyFlags) {
  TempDir keys;
  for (const char* name : {"cloud", "dev", "other"}) {
    auto k = RunCommand(BinPath("splitlm") + " keygen --out " + keys.Sub(name));
    ASSERT_EQ(0, k.exit_code) << k.err;
  }
  std::unique_ptr<Process> cloud;
  const std::string ep =
      StartCloud(cloud, "tcp://127.0.0.1:*",
                 "--key " + keys.Sub("cloud.key") + " --allow " + keys.Sub("other.pub"));
  const std::string refused =
      "cloud " + ep +
      ": handshake refused: the worker did not accept our CURVE keys, or only "
      "one side uses CURVE (fallback: fail); check --server-key";
  const std::string fail = "--fallback fail --step-deadline-ms 600000 --heartbeat-ms 500 ";
  for (const std::string& keys_given : {"--key " + keys.Sub("dev.key") + " --server-key " +
                                            keys.Sub("cloud.pub"),  // not on the allow-list
                                        "--key " + keys.Sub("other.key") + " --server-key " +
                                            keys.Sub("dev.pub"),  // wrong server key
                                        std::string()}) {         // no CURVE at all
    auto r = Device(ep, 1, "1", 4, fail + keys_given);
    EXPECT_NE(0, r.exit_code) << keys_given;
    EXPECT_NE(std::string::npos, r.err.find(refused)) << keys_given << "\n" << r.err;
  }
  auto ok =
      Device(ep, 1, "1", 4,
             fail + "--key " + keys.Sub("other.key") + " --server-key " + keys.Sub("cloud.pub"));
  EXPECT_EQ(0, ok.exit_code) << ok.err;
}

TEST_F(PairTest, SixteenDevicesShareOneWorkerThroughEvictions) {
  std::unique_ptr<Process> cloud;
  // A KV budget far below 16 sessions' needs: sessions get evicted and their
  // devices rebuild them.
  const std::string ep =
      StartCloud(cloud, "tcp://127.0.0.1:*", "--kv-budget-mb 0.4 --log-level info");
  std::vector<std::unique_ptr<Process>> devices;
  std::vector<std::string> prompts;
  for (int i = 0; i < 16; ++i) {
    prompts.push_back("1 " + std::to_string(10 + i) + " " + std::to_string(100 + 7 * i));
    devices.push_back(std::make_unique<Process>(
        BinPath("splitlm-device") + " --threads 1 --model " + Model() + " --cloud " + ep +
        " --cut " + std::to_string(i % 4) + " --step-deadline-ms 30000 generate --prompt-ids '" +
        prompts.back() + "' --max-tokens 64 --print-ids --ignore-eos"));
  }
  int rebuilt = 0;
  for (int i = 0; i < 16; ++i) {
    auto line = devices[i]->ReadLine(120000);
    ASSERT_TRUE(line.has_value()) << devices[i]->Stderr();
    EXPECT_EQ(0, devices[i]->Wait()) << devices[i]->Stderr();
    EXPECT_EQ(Local(prompts[i], 64), *line + "\n") << "device " << i;
    const std::string err = devices[i]->Stderr();
    EXPECT_NE(std::string::npos, err.find("0 on the device")) << err;
    rebuilt += err.find("rebuilding") != std::string::npos;
  }
  // Evictions here depend on how the sixteen interleave; the deterministic
  // eviction test is WorkerTest.EvictedSessionIsRebuiltTransparently.
  std::printf("sessions rebuilt after eviction: %d of 16\n", rebuilt);
  cloud->Signal(SIGINT);
  EXPECT_EQ(0, cloud->Wait());
}

TEST_F(PairTest, AutoCutFollowsTheProfilesAndKeepsTheTokens) {
  std::unique_ptr<Process> cloud;
  const std::string ep = StartCloud(cloud);
  const std::string expected = Local("1 4 8", 24);
  // On loopback with equal speeds, running everything here wins.
  TempDir dir;
  std::ofstream(dir.Sub("auto.toml"))
      << "[device]\nauto_cut = true\n[scheduler]\nprivacy_floor = 1\n";
  auto r = RunCommand(BinPath("splitlm-device") + " --threads 1 --model " + Model() + " --cloud " +
                      ep + " --config " + dir.Sub("auto.toml") +
                      " generate --prompt-ids '1 4 8' --max-tokens 24 --print-ids --ignore-eos");
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_EQ(expected, r.out);
  EXPECT_NE(std::string::npos, r.err.find("auto cut 4 ")) << r.err;
  // A device profile 1000x slower than the cloud's: as little as possible
  // here, the privacy floor. The profile is fake, so the agent must not
  // correct it from the real steps (scheduler.follow_drift = false). The
  // round trips are real time: a busy machine may make a re-plan move the
  // cut during the generation, so the choice at the start is asserted (by a
  // margin of tens of ms a token), not where every token was computed.
  ASSERT_EQ(0, RunCommand(BinPath("splitlm") + " profile --threads 1 --model " + Model() +
                          " --out " + dir.Sub("dev.json"))
                   .exit_code);
  std::ifstream in(dir.Sub("dev.json"));
  nlohmann::json prof = nlohmann::json::parse(in);
  for (auto& row : prof["layer_decode_us"])
    for (auto& v : row) v = v.get<double>() * 1000;
  for (auto& row : prof["layer_prefill_us"])
    for (auto& v : row) v = v.get<double>() * 1000;
  std::ofstream(dir.Sub("slow.json")) << prof.dump();
  std::ofstream(dir.Sub("slow.toml")) << "[device]\nauto_cut = true\n[scheduler]\nprivacy_floor = "
                                         "1\nfollow_drift = false\ndevice_profile = \""
                                      << dir.Sub("slow.json") << "\"\n";
  r = RunCommand(BinPath("splitlm-device") + " --threads 1 --model " + Model() + " --cloud " + ep +
                 " --config " + dir.Sub("slow.toml") +
                 " generate --prompt-ids '1 4 8' --max-tokens 24 --print-ids --ignore-eos");
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_EQ(expected, r.out);
  EXPECT_NE(std::string::npos, r.err.find("auto cut 1 ")) << r.err;
}

TEST_F(PairTest, BadOptionsGiveClearErrors) {
  auto r = RunCommand(BinPath("splitlm-device") + " --model " + Model() +
                      " --cut 9 generate --prompt-ids 1");
  EXPECT_NE(0, r.exit_code);
  EXPECT_NE(std::string::npos, r.err.find("cut 9 is out of range")) << r.err;
  r = RunCommand(BinPath("splitlm-cloud") + " --model " + Model() + " --bind tcp://0.0.0.0:0");
  EXPECT_NE(0, r.exit_code);
  EXPECT_NE(std::string::npos, r.err.find("without CURVE")) << r.err;
  r = RunCommand(BinPath("splitlm-cloud") + " --model " + Model() + " --min-cut 7");
  EXPECT_NE(0, r.exit_code);
  EXPECT_NE(std::string::npos, r.err.find("min_cut 7 is outside 0..4")) << r.err;
}

}  // namespace
}  // namespace splitlm
