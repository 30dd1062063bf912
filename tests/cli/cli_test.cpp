// The splitlm command line, run as a user would: exact tokens across cuts,
// and a clear error with a non-zero exit for every bad input.
#include <gtest/gtest.h>

#include <fstream>

#include "tests/common/test_util.h"

namespace splitlm {
namespace {

using testing::BinPath;
using testing::RunCommand;
using testing::TempDir;

class CliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    auto r = RunCommand(BinPath("splitlm") + " make-model --preset tiny --seed 1 --out " + Model());
    ASSERT_EQ(0, r.exit_code) << r.err;
  }
  static void TearDownTestSuite() { delete dir_; }
  static std::string Model() { return dir_->Sub("tiny"); }
  static testing::CommandResult Splitlm(const std::string& args) {
    return RunCommand(BinPath("splitlm") + " " + args);
  }
  static void ExpectFailure(const std::string& args, const std::string& message) {
    auto r = Splitlm(args);
    EXPECT_NE(0, r.exit_code) << args;
    EXPECT_NE(std::string::npos, r.err.find(message)) << args << "\nstderr: " << r.err;
  }
  static TempDir* dir_;
};
TempDir* CliTest::dir_ = nullptr;

TEST_F(CliTest, SplitGenerationPrintsTheLocalTokensAtEveryCut) {
  const std::string base = "generate --model " + Model() + " --prompt-ids \"1 5 9\" --max-tokens 40 --print-ids";
  auto local = Splitlm(base);
  ASSERT_EQ(0, local.exit_code) << local.err;
  ASSERT_EQ(0u, local.out.rfind("1 5 9 ", 0)) << local.out;
  for (int cut = 0; cut <= 4; ++cut) {
    auto split = Splitlm(base + " --cut " + std::to_string(cut));
    ASSERT_EQ(0, split.exit_code) << split.err;
    EXPECT_EQ(local.out, split.out) << "cut " << cut;
  }
}

TEST_F(CliTest, SampledGenerationIsReproducible) {
  const std::string args = "generate --model " + Model() +
                           " --prompt-ids 1 --max-tokens 30 --temperature 0.9 --top-p 0.9 --seed 7 --print-ids";
  auto a = Splitlm(args), b = Splitlm(args + " --cut 2");
  ASSERT_EQ(0, a.exit_code) << a.err;
  EXPECT_EQ(a.out, b.out);
}

TEST_F(CliTest, BadInputsGiveClearErrors) {
  ExpectFailure("generate --model /nonexistent --prompt-ids 1", "/nonexistent: model directory not found");
  ExpectFailure("generate --model " + Model() + " --cut 9 --prompt-ids 1",
                "cut 9 is out of range: the model has 4 layers");
  ExpectFailure("generate --model " + Model() + " --prompt-ids \"1 x 3\"", "bad token id \"x\"");
  ExpectFailure("generate --model " + Model() + " --prompt-ids 999", "outside the vocabulary of 256");
  ExpectFailure("generate --model " + Model() + " --prompt hello", "has no tokenizer.model");
  ExpectFailure("generate --model " + Model() + " --prompt-ids 1 --top-p 0", "top_p must be in (0, 1]");
  ExpectFailure("generate --model " + Model() + " --prompt-ids 1 --codec fp8", "--codec");
  ExpectFailure("make-model --preset huge --out " + dir_->Sub("x"), "--preset");
  std::string long_prompt;
  for (int i = 0; i < 300; ++i) long_prompt += "1 ";
  ExpectFailure("generate --model " + Model() + " --prompt-ids \"" + long_prompt + "\"",
                "prompt of 300 tokens is longer than the context of 256");
}

TEST_F(CliTest, UnknownArchitectureAndMissingTensorAreReported) {
  TempDir tmp;
  const std::string m = tmp.Sub("m");
  ASSERT_EQ(0, Splitlm("make-model --preset tiny --out " + m).exit_code);
  std::ofstream(m + "/config.json") << R"({"architectures": ["FalconForCausalLM"]})";
  ExpectFailure("generate --model " + m + " --prompt-ids 1", "unknown architecture \"FalconForCausalLM\"");
  ASSERT_EQ(0, Splitlm("make-model --preset tiny --out " + m).exit_code);
  std::ofstream(m + "/model.safetensors", std::ios::trunc) << "garbage!";
  ExpectFailure("generate --model " + m + " --prompt-ids 1", "model.safetensors: header length");
}

TEST_F(CliTest, SimRunsAScenarioThroughTheEmulatedLink) {
  auto r = Splitlm("sim --threads 1 --model " + Model() + " --cut 2 --delay-ms 2 --prompts 2 --tokens 8 --json --log-level warn");
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_NE(std::string::npos, r.out.find("\"token_agreement\":1.0")) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("\"cuts\":[2,2]")) << r.out;
  EXPECT_NE(std::string::npos, r.out.find("\"fallbacks\":0")) << r.out;
  ExpectFailure("sim --model " + Model() + " --outage 5:1", "--outage \"5:1\": expected START:END");
}

TEST_F(CliTest, CodecsRunAndF32IsExact) {
  const std::string base = "generate --model " + Model() + " --prompt-ids 1 --max-tokens 20 --print-ids --cut 2";
  auto f32 = Splitlm(base + " --codec f32");
  ASSERT_EQ(0, f32.exit_code);
  for (const char* codec : {"f16", "bf16", "int8"}) {
    auto r = Splitlm(base + " --codec " + codec);
    ASSERT_EQ(0, r.exit_code) << codec << r.err;
    EXPECT_EQ(0u, r.out.rfind("1 ", 0));
  }
}

}  // namespace
}  // namespace splitlm
