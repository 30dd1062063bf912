// `splitlm quantize` as a user runs it: llama.cpp's F32 fixture becomes
// llama-quantize's own Q8_0 and Q4_0 files byte for byte, Q4_K_M gets
// llama-quantize's per-tensor types and blocks, and bad input fails with a
// clear message and no output file.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <vector>

#include "partition/gguf.h"
#include "tests/common/test_util.h"

namespace splitlm {
namespace {

using testing::BinPath;
using testing::RunCommand;
using testing::TempDir;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class QuantizeCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const auto shared = testing::SharedDir();
    if (!shared) GTEST_SKIP() << "../shared (with gguf/) not found: set SPLITLM_SHARED";
    gguf_ = *shared + "/gguf/";
  }
  testing::CommandResult Quantize(const std::string& type, const std::string& out,
                                  const std::string& extra = "") {
    return RunCommand(BinPath("splitlm") + " --log-level warn quantize --model " + gguf_ +
                      "synthk-f32.gguf --type " + type + " --out " + out + " " + extra);
  }
  std::string gguf_;
  TempDir dir_;
};

TEST_F(QuantizeCliTest, Q8_0AndQ4_0FilesAreLlamaQuantizesByteForByte) {
  for (const char* type : {"q8_0", "q4_0"}) {
    const std::string out = dir_.Sub(std::string(type) + ".gguf");
    auto r = Quantize(type, out, "--tensor-order llama");
    ASSERT_EQ(0, r.exit_code) << r.err;
    EXPECT_TRUE(ReadAll(gguf_ + "synthk-" + type + ".gguf") == ReadAll(out))
        << type << ": the files differ";
  }
}

TEST_F(QuantizeCliTest, Q4_K_MFileIsLlamaQuantizesByteForByte) {
  const std::string out = dir_.Sub("q4_k_m.gguf");
  auto r = Quantize("q4_k_m", out, "--tensor-order llama");
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_TRUE(ReadAll(gguf_ + "synthk-q4_k_m.gguf") == ReadAll(out)) << "the files differ";
}

TEST_F(QuantizeCliTest, SourceOrderKeepsTheSourcesTensorOrderWithLlamaCppsBlocks) {
  const std::string out = dir_.Sub("q4_k_m.gguf");
  auto r = Quantize("q4_k_m", out);
  ASSERT_EQ(0, r.exit_code) << r.err;
  const auto src = partition::GgufFile::Open(gguf_ + "synthk-f32.gguf");
  const auto theirs = partition::GgufFile::Open(gguf_ + "synthk-q4_k_m.gguf");
  const auto mine = partition::GgufFile::Open(out);
  ASSERT_EQ(src->header().tensors.size(), mine->header().tensors.size());
  for (size_t i = 0; i < src->header().tensors.size(); ++i) {
    const auto& t = mine->header().tensors[i];
    EXPECT_EQ(src->header().tensors[i].name, t.name);
    const auto* ref = theirs->FindTensor(t.name);
    EXPECT_EQ(partition::GgmlTypeName(ref->type), partition::GgmlTypeName(t.type)) << t.name;
    ASSERT_EQ(ref->bytes, t.bytes) << t.name;
    EXPECT_EQ(0, std::memcmp(theirs->data(*ref), mine->data(t), t.bytes)) << t.name;
  }
  EXPECT_EQ(theirs->header().key_order, mine->header().key_order);
  EXPECT_EQ(15, mine->Find("general.file_type")->integer);
}

TEST_F(QuantizeCliTest, F16KeepsNormsAndConvertsMatrices) {
  const std::string out = dir_.Sub("f16.gguf");
  auto r = Quantize("f16", out);
  ASSERT_EQ(0, r.exit_code) << r.err;
  const auto mine = partition::GgufFile::Open(out);
  EXPECT_EQ(0u, mine->FindTensor("output_norm.weight")->type);
  EXPECT_EQ(1u, mine->FindTensor("blk.0.attn_q.weight")->type);
  EXPECT_EQ(1, mine->Find("general.file_type")->integer);
}

TEST_F(QuantizeCliTest, BadInputFailsClearlyAndWritesNothing) {
  const std::string out = dir_.Sub("x.gguf");
  auto r = Quantize("q5_1", out);
  EXPECT_NE(0, r.exit_code);
  EXPECT_NE(std::string::npos, r.err.find("--type")) << r.err;
  r = RunCommand(BinPath("splitlm") + " quantize --model " + dir_.Sub("missing.gguf") +
                 " --type q8_0 --out " + out);
  EXPECT_NE(0, r.exit_code);
  EXPECT_NE(std::string::npos, r.err.find(dir_.Sub("missing.gguf"))) << r.err;
  // A quantised source is refused (re-quantising loses precision).
  r = RunCommand(BinPath("splitlm") + " quantize --model " + gguf_ +
                 "synthk-q8_0.gguf --type q4_0 --out " + out);
  EXPECT_NE(0, r.exit_code);
  EXPECT_NE(std::string::npos, r.err.find("needs an F32, F16 or BF16 source")) << r.err;
  EXPECT_TRUE(std::filesystem::is_empty(dir_.path()));
}

TEST_F(QuantizeCliTest, RowsThatAreNoWholeBlockKeepTheirTypeWithAWarning) {
  // stories260K: hidden 64 (no Q4_K block: llama.cpp falls back to Q5_0,
  // which splitlm does not write), feed-forward 172 (no Q4_0 block: llama-quantize stops).
  const std::string out = dir_.Sub("q4_0.gguf");
  auto r = RunCommand(BinPath("splitlm") + " quantize --model " + gguf_ +
                      "stories260K-f32.gguf --type q4_0 --out " + out);
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_NE(std::string::npos, r.err.find("tensor \"blk.0.ffn_down.weight\" stays F32: row length "
                                          "172 is not a multiple of the Q4_0 block"))
      << r.err;
  const auto mine = partition::GgufFile::Open(out);
  EXPECT_EQ(0u, mine->FindTensor("blk.0.ffn_down.weight")->type);
  EXPECT_EQ(2u, mine->FindTensor("blk.0.ffn_up.weight")->type);
  r = RunCommand(BinPath("splitlm") + " quantize --model " + gguf_ +
                 "stories260K-f32.gguf --type q4_k_m --out " + out);
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_NE(std::string::npos,
            r.err.find("llama-quantize would make it Q5_0, a type splitlm does not write"))
      << r.err;
}

// Needs no ../shared: a generated Hugging Face directory is converted, then
// quantised, and the results generate as the directory does (F32) or at
// least run at every cut (Q8_0); no temporary file is left behind.
TEST(QuantizeDirectoryCli, ADirectoryBecomesAGgufThatGeneratesItsTokens) {
  TempDir dir;
  const std::string hf = testing::MakeModel(dir.Sub("hf"));
  const std::string splitlm = BinPath("splitlm") + " --log-level warn ";
  auto generate = [&](const std::string& model, int cut) {
    auto r = RunCommand(splitlm + "generate --model " + model + " --cut " + std::to_string(cut) +
                        " --prompt-ids '1 7 9' --max-tokens 10 --print-ids");
    EXPECT_EQ(0, r.exit_code) << r.err;
    return r.out;
  };
  for (const char* type : {"f32", "q8_0", "q4_k_m"}) {
    const std::string out = dir.Sub(std::string(type) + ".gguf");
    auto q = RunCommand(splitlm + "quantize --model " + hf + " --type " + type + " --out " + out);
    ASSERT_EQ(0, q.exit_code) << q.err;
    const int64_t file_type = partition::GgufFile::Open(out)->Find("general.file_type")->integer;
    EXPECT_EQ(std::string(type) == "f32", file_type == 0)
        << type << ": general.file_type " << file_type;
    for (int cut : {0, 1, 2}) {
      const std::string tokens = generate(out, cut);
      EXPECT_EQ(generate(out, 4), tokens) << type << " at cut " << cut;
      if (std::string(type) == "f32") EXPECT_EQ(generate(hf, cut), tokens) << "cut " << cut;
    }
  }
  for (const auto& entry : std::filesystem::directory_iterator(dir.path())) {
    EXPECT_EQ(std::string::npos, entry.path().string().find(".tmp")) << entry.path();
  }
  auto bad = RunCommand(splitlm + "quantize --model " + dir.Sub("missing") + " --type q8_0 --out " +
                        dir.Sub("x.gguf"));
  EXPECT_NE(0, bad.exit_code);
  EXPECT_NE(std::string::npos, bad.err.find("missing")) << bad.err;
  EXPECT_FALSE(std::filesystem::exists(dir.Sub("x.gguf")));
}

TEST(QuantEvalCli, PrintsOneRowPerFormatAfterTheReferenceAndRefusesBadInput) {
  TempDir dir;
  const std::string hf = testing::MakeModel(dir.Sub("hf"));
  const std::string splitlm = BinPath("splitlm") + " --log-level warn ";
  auto r = RunCommand(splitlm + "quant-eval --model " + hf +
                      " --types f16,q8_0 --tokens 40 --sequence-length 12 --json");
  ASSERT_EQ(0, r.exit_code) << r.err;
  std::vector<nlohmann::json> rows;
  std::istringstream lines(r.out);
  for (std::string line; std::getline(lines, line);) rows.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(3u, rows.size()) << r.out;
  EXPECT_EQ(0.0, rows[0]["mean_kl"].get<double>());
  EXPECT_EQ(1.0, rows[0]["top1_agreement"].get<double>());
  EXPECT_EQ("f16", rows[1]["format"]);
  EXPECT_EQ("q8_0", rows[2]["format"]);
  EXPECT_LT(rows[1]["file_bytes"].get<double>(), rows[0]["file_bytes"].get<double>());
  EXPECT_EQ(40, rows[1]["positions"].get<int>());

  auto bad = RunCommand(splitlm + "quant-eval --model " + hf + " --types q8_0,q9");
  EXPECT_NE(0, bad.exit_code);
  EXPECT_NE(std::string::npos, bad.err.find("unknown format \"q9\"")) << bad.err;
  ASSERT_EQ(
      0, RunCommand(splitlm + "quantize --model " + hf + " --type q8_0 --out " + dir.Sub("q8.gguf"))
             .exit_code);
  auto quantised = RunCommand(splitlm + "quant-eval --model " + dir.Sub("q8.gguf") + " --tokens 8");
  EXPECT_NE(0, quantised.exit_code);
  EXPECT_NE(std::string::npos, quantised.err.find("the reference must be F32, F16 or BF16"))
      << quantised.err;
}

}  // namespace
}  // namespace splitlm
