// The heterogeneous pair: the aarch64 splitlm-device (cross-built into
// build-arm64/ by `cmake/bootstrap.sh cross-arm64`, run under qemu-aarch64
// by `cmake/bootstrap.sh run-arm64`) against the x86 splitlm-cloud on TCP
// loopback gives the x86 local run's tokens, and finishes alone with the same
// tokens when the cloud dies. The cases are small: emulation is slow.
// Without the aarch64 build the tests skip, unless SPLITLM_REQUIRE_ARM64=1
// (set by `cmake/bootstrap.sh test` after it cross-built), where they fail.
#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <fstream>

#include "tests/common/test_util.h"

namespace splitlm {
namespace {

using testing::BinPath;
using testing::Process;
using testing::RunCommand;

constexpr int kTokens = 16;
const char* const kPrompt = "1 403 407 261";

bool Arm64Built() { return std::ifstream(SPLITLM_ARM64_DIR "/bin/splitlm-device").good(); }

#define REQUIRE_ARM64()                                                        \
  if (!Arm64Built()) {                                                         \
    const char* req = std::getenv("SPLITLM_REQUIRE_ARM64");                    \
    if (req != nullptr && std::string(req) == "1")                             \
      FAIL() << SPLITLM_ARM64_DIR "/bin/splitlm-device is missing";            \
    GTEST_SKIP() << SPLITLM_ARM64_DIR                                          \
        "/bin/splitlm-device is absent (bash cmake/bootstrap.sh cross-arm64)"; \
  }

// `name` from build-arm64/bin under qemu-aarch64, through the documented command.
std::string Arm64(const std::string& name) {
  return "ARM64_BUILD_DIR='" SPLITLM_ARM64_DIR "' bash '" SPLITLM_SOURCE_DIR
         "/cmake/bootstrap.sh' run-arm64 " +
         name;
}

std::string Local(const std::string& model) {
  auto r = RunCommand(BinPath("splitlm") + " generate --threads 1 --model " + model +
                      " --prompt-ids '" + kPrompt + "' --max-tokens " + std::to_string(kTokens) +
                      " --print-ids --ignore-eos");
  EXPECT_EQ(0, r.exit_code) << r.err;
  return r.out;
}

std::string StartCloud(std::unique_ptr<Process>& p, const std::string& model,
                       const std::string& extra = "") {
  p = std::make_unique<Process>(BinPath("splitlm-cloud") + " --model " + model +
                                " --bind 'tcp://127.0.0.1:*' --threads 1 " + extra);
  auto ep = p->WaitFor("listening on ", 60000);
  EXPECT_TRUE(ep.has_value()) << p->Stderr();
  return ep.value_or("");
}

// A test worker that stops itself on its `freeze_at`th Forward, before
// answering it, for the test to kill (tests/cloud/fault_worker.cpp).
std::string StartFaultWorker(std::unique_ptr<Process>& p, const std::string& model, int freeze_at) {
  p = std::make_unique<Process>(BinPath("splitlm-fault-worker") + " --model " + model +
                                " --bind 'tcp://127.0.0.1:*' --threads 1 --freeze-at " +
                                std::to_string(freeze_at));
  auto ep = p->WaitFor("listening on ", 60000);
  EXPECT_TRUE(ep.has_value()) << p->Stderr();
  return ep.value_or("");
}

testing::CommandResult Arm64Device(const std::string& model, const std::string& ep, int cut,
                                   const std::string& extra = "") {
  return RunCommand(Arm64("splitlm-device") + " --threads 1 --model " + model + " --cloud " + ep +
                    " --cut " + std::to_string(cut) + " " + extra + " generate --prompt-ids '" +
                    kPrompt + "' --max-tokens " + std::to_string(kTokens) +
                    " --print-ids --ignore-eos");
}

TEST(Arm64PairTest, Arm64DeviceWithX86CloudGivesTheX86LocalTokensAtCuts1And3) {
  REQUIRE_SHARED(model, "models/stories260K");
  REQUIRE_ARM64();
  const std::string expected = Local(model);
  ASSERT_NE("", expected);
  std::unique_ptr<Process> cloud;
  const std::string ep = StartCloud(cloud, model);
  for (int cut : {1, 3}) {
    auto r = Arm64Device(model, ep, cut);
    ASSERT_EQ(0, r.exit_code) << r.err;
    EXPECT_EQ(expected, r.out) << "cut " << cut;
    EXPECT_NE(std::string::npos,
              r.err.find(std::to_string(kTokens) + " from the cloud, 0 on the device"))
        << r.err;
  }
  cloud->Signal(SIGTERM);
  EXPECT_EQ(0, cloud->Wait()) << cloud->Stderr();
}

TEST(Arm64PairTest, Arm64DeviceFinishesLocallyWithTheSameTokensWhenTheX86CloudIsKilled) {
  REQUIRE_SHARED(model, "models/stories260K");
  REQUIRE_ARM64();
  const std::string expected = Local(model);
  std::unique_ptr<Process> cloud;
  const std::string ep = StartFaultWorker(cloud, model, 6);
  testing::KillWhenFrozen killer(*cloud);
  auto r =
      Arm64Device(model, ep, 3,
                  "--fallback local --step-deadline-ms 10000 --heartbeat-ms 50 --retry-ms 600000");
  ASSERT_TRUE(killer.Killed()) << "the worker never reached its 6th forward\n" << cloud->Stderr();
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_EQ(expected, r.out);
  EXPECT_EQ(128 + SIGKILL, cloud->Wait());
  EXPECT_NE(std::string::npos, r.err.find("1 fallbacks")) << r.err;
}

// The whole model on each ISA: teacher-forced scores (argmax, margin and
// log-probability, printed to the last bit) of aarch64 NEON, aarch64
// portable and x86 agree.
TEST(Arm64PairTest, Arm64AndX86ScoresAgreeToTheBit) {
  REQUIRE_SHARED(model, "models/stories260K");
  REQUIRE_ARM64();
  const std::string args = std::string(" score --threads 1 --model ") + model + " --prompt-ids '" +
                           kPrompt + " 260 300 280 1 7 42 99 100' --json";
  auto x86 = RunCommand(BinPath("splitlm") + args);
  ASSERT_EQ(0, x86.exit_code) << x86.err;
  ASSERT_NE(std::string::npos, x86.out.find("perplexity")) << x86.out;
  // The debug line names the kernels in use (and OpenBLAS, not the reference BLAS).
  auto neon = RunCommand(Arm64("splitlm") + " --log-level debug" + args);
  ASSERT_EQ(0, neon.exit_code) << neon.err;
  EXPECT_NE(std::string::npos, neon.err.find("kernels=neon")) << neon.err;
  EXPECT_EQ(x86.out, neon.out);
  auto portable =
      RunCommand("SPLITLM_KERNELS=portable " + Arm64("splitlm") + " --log-level debug" + args);
  ASSERT_EQ(0, portable.exit_code) << portable.err;
  EXPECT_NE(std::string::npos, portable.err.find("kernels=portable")) << portable.err;
  EXPECT_EQ(x86.out, portable.out);
}

}  // namespace
}  // namespace splitlm
