// `splitlm tokenize`, `detokenize` and `make-model --tokenizer tokenizer.json`,
// run as a user would, with the tokenizers in ../shared. Expected ids are
// llama.cpp's (../shared/tokenizers/vectors).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "tests/common/test_util.h"

namespace splitlm {
namespace {

using testing::BinPath;
using testing::RunCommand;
using testing::TempDir;

testing::CommandResult Splitlm(const std::string& args) {
  return RunCommand(BinPath("splitlm") + " " + args);
}

void ExpectFailure(const std::string& args, const std::string& message) {
  auto r = Splitlm(args);
  EXPECT_NE(0, r.exit_code) << args;
  EXPECT_NE(std::string::npos, r.err.find(message)) << args << "\nstderr: " << r.err;
}

TEST(TokenizeCli, TextIdsAndBack) {
  REQUIRE_SHARED(llama3, "tokenizers/llama3/tokenizer.json");
  REQUIRE_SHARED(qwen3, "tokenizers/qwen3");
  auto r = Splitlm("tokenize --tokenizer " + llama3 + " --text 'Hello world'");
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_EQ("9906 1917\n", r.out);
  r = Splitlm("tokenize --tokenizer " + llama3 + " --text 'Hello world' --bos");
  EXPECT_EQ("128000 9906 1917\n", r.out);
  r = Splitlm("tokenize --tokenizer " + qwen3 +
              " --text ' Hello World!' --bos");  // Qwen has no BOS
  EXPECT_EQ("21927 4337 0\n", r.out);
  r = Splitlm("detokenize --tokenizer " + llama3 + " --ids '128000 9906 1917'");
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_EQ("<|begin_of_text|>Hello world\n", r.out);
}

TEST(TokenizeCli, JsonlKeepsTheOrderAndNamesABadLine) {
  REQUIRE_SHARED(gguf, "gguf/ggml-vocab-qwen2.gguf");
  TempDir dir;
  std::ofstream(dir.Sub("in.jsonl")) << "\"Hello world\"\n\"\"\n\" Hello World!\"\n";
  auto r = Splitlm("tokenize --tokenizer " + gguf + " --jsonl " + dir.Sub("in.jsonl"));
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_EQ("[9707,1879]\n[]\n[21927,4337,0]\n", r.out);
  std::ofstream(dir.Sub("ids.jsonl")) << r.out;
  r = Splitlm("detokenize --tokenizer " + gguf + " --jsonl " + dir.Sub("ids.jsonl"));
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_EQ("\"Hello world\"\n\"\"\n\" Hello World!\"\n", r.out);
  std::ofstream(dir.Sub("bad.jsonl")) << "\"fine\"\n42\n";
  ExpectFailure("tokenize --tokenizer " + gguf + " --jsonl " + dir.Sub("bad.jsonl"),
                dir.Sub("bad.jsonl") + ":2: not a JSON string");
  std::ofstream(dir.Sub("badids.jsonl")) << "[1]\n[1, \"x\"]\n";
  ExpectFailure("detokenize --tokenizer " + gguf + " --jsonl " + dir.Sub("badids.jsonl"),
                dir.Sub("badids.jsonl") + ":2: not a JSON array of token ids");
}

TEST(TokenizeCli, BadInputsGiveClearErrors) {
  REQUIRE_SHARED(spm, "tokenizers/llama2/tokenizer.model");
  TempDir dir;
  ExpectFailure("tokenize --tokenizer /nonexistent --text hi",
                "/nonexistent: tokenizer file not found");
  ExpectFailure("tokenize --tokenizer " + spm,
                "give --text TEXT, --text-file FILE or --jsonl FILE");
  ExpectFailure("tokenize --tokenizer " + spm + " --jsonl " + dir.Sub("none.jsonl"),
                "none.jsonl: cannot read the file");
  ExpectFailure("detokenize --tokenizer " + spm + " --ids '1 32000'",
                "token id 32000 is outside the tokenizer's 32000");
  ExpectFailure("detokenize --tokenizer " + spm + " --ids '1 x'", "bad token id \"x\"");
  ExpectFailure("tokenize --tokenizer " + dir.path() + " --text hi",
                "without tokenizer.model or tokenizer.json");
}

TEST(TokenizeCli, MakeModelTakesATokenizerJson) {
  REQUIRE_SHARED(llama3, "tokenizers/llama3/tokenizer.json");
  REQUIRE_SHARED(gguf, "gguf/ggml-vocab-qwen2.gguf");
  TempDir dir;
  const std::string m = dir.Sub("m");
  auto r = Splitlm("make-model --preset tiny --seed 3 --out " + m + " --tokenizer " + llama3 +
                   " --log-level warn");
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_TRUE(std::filesystem::exists(m + "/tokenizer.json"));
  EXPECT_TRUE(std::filesystem::exists(m + "/tokenizer_config.json"));
  std::ifstream in(m + "/config.json");
  const nlohmann::json c = nlohmann::json::parse(in);
  EXPECT_EQ(128256, c.at("vocab_size").get<int>());  // 128,000 tokens and 256 added
  EXPECT_EQ(128000, c.at("bos_token_id").get<int>());
  EXPECT_EQ(128001, c.at("eos_token_id").get<int>());
  // The directory's own tokenizer turns text into a prompt, BOS first.
  r = Splitlm("generate --model " + m +
              " --prompt 'Hello world' --max-tokens 3 --print-ids --ignore-eos --log-level warn");
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_EQ(0u, r.out.rfind("128000 9906 1917 ", 0)) << r.out;
  ExpectFailure("make-model --preset tiny --out " + dir.Sub("x") + " --tokenizer " + gguf,
                "make-model takes a tokenizer.json or a tokenizer.model");
}

}  // namespace
}  // namespace splitlm
