// GGUF files: llama.cpp's own files parse with the values it wrote, and every
// malformed header gets an error naming the key or tensor and the problem.
#include "partition/gguf.h"

#include <gtest/gtest.h>

#include <cstring>
#include <fstream>
#include <functional>

#include "tests/common/gguf_bytes.h"
#include "tests/common/test_util.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

using testing::GgufBytes;
using testing::TempDir;

GgufHeader Parse(const std::string& bytes) {
  return ParseGgufHeader(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size(), "x.gguf");
}

std::string ErrorOf(const std::string& bytes) {
  try {
    Parse(bytes);
  } catch (const Exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(GgufTest, AValidFileParsesWithItsMetadataAndTensors) {
  GgufBytes b;
  b.Header(2, 3)
      .KvU32("llama.block_count", 2)
      .Str("general.architecture")
      .Put<uint32_t>(8)
      .Str("llama");
  b.Str("tokenizer.ggml.tokens")
      .Put<uint32_t>(9)
      .Put<uint32_t>(8)
      .Put<uint64_t>(2)
      .Str("<s>")
      .Str("a");
  b.Tensor("w", {32, 2}, static_cast<uint32_t>(GgmlType::kQ8_0), 0);
  b.Tensor("n", {3}, static_cast<uint32_t>(GgmlType::kF32), 96);
  b.Data(96 + 12);
  const GgufHeader h = Parse(b.str());
  EXPECT_EQ(3u, h.version);
  EXPECT_EQ(2, h.metadata.at("llama.block_count").integer);
  EXPECT_EQ("llama", h.metadata.at("general.architecture").text);
  EXPECT_EQ(std::vector<std::string>({"<s>", "a"}), h.metadata.at("tokenizer.ggml.tokens").texts);
  ASSERT_EQ(2u, h.tensors.size());
  EXPECT_EQ(std::vector<int64_t>({32, 2}), h.tensors[0].dims);
  EXPECT_EQ(68u, h.tensors[0].bytes);  // two Q8_0 blocks of 34 bytes
  EXPECT_EQ(h.data_start, h.tensors[0].offset);
  EXPECT_EQ(0u, h.data_start % 32);
  EXPECT_EQ(h.data_start + 96, h.tensors[1].offset);
}

TEST(GgufTest, MalformedHeadersAreErrorsNamingTheProblem) {
  const uint32_t q8 = static_cast<uint32_t>(GgmlType::kQ8_0);
  EXPECT_EQ("x.gguf: not a GGUF file (no \"GGUF\" magic)", ErrorOf("GGML\3\0\0\0"));
  EXPECT_EQ("x.gguf: GGUF version 1 is not supported (2 and 3 are)",
            ErrorOf(GgufBytes().Header(0, 0, 1).str()));
  EXPECT_EQ(
      "x.gguf: truncated: the file ends at byte 40 while reading the value of \"abcdefgh\" (type)",
      ErrorOf(GgufBytes().Header(0, 1).Str("abcdefgh").str()));
  EXPECT_EQ("x.gguf: the metadata count 1000000 is more than the rest of the file can hold",
            ErrorOf(GgufBytes().Header(0, 1000000).str()));
  EXPECT_EQ("x.gguf: the value of \"k\" (type): unknown value type 13",
            ErrorOf(GgufBytes().Header(0, 1).Str("k").Put<uint32_t>(13).str()));
  EXPECT_EQ("x.gguf: the value of \"k\": arrays of arrays are not supported",
            ErrorOf(GgufBytes()
                        .Header(0, 1)
                        .Str("k")
                        .Put<uint32_t>(9)
                        .Put<uint32_t>(9)
                        .Put<uint64_t>(1)
                        .str()));
  EXPECT_EQ("x.gguf: metadata key \"k\" appears twice",
            ErrorOf(GgufBytes().Header(0, 2).KvU32("k", 1).KvU32("k", 2).str()));
  EXPECT_EQ("x.gguf: \"general.alignment\" must be an integer power of two up to 65536",
            ErrorOf(GgufBytes().Header(0, 1).KvU32("general.alignment", 24).str()));
  EXPECT_EQ("x.gguf: tensor \"w\": unknown tensor type 99",
            ErrorOf(GgufBytes().Header(1, 0).Tensor("w", {32}, 99, 0).Data(64).str()));
  EXPECT_EQ("x.gguf: tensor \"w\": 5 dimensions (1 to 4 are allowed)",
            ErrorOf(GgufBytes().Header(1, 0).Tensor("w", {1, 1, 1, 1, 1}, 0, 0).Data(64).str()));
  EXPECT_EQ("x.gguf: tensor \"w\": row length 48 is not a multiple of the Q8_0 block of 32",
            ErrorOf(GgufBytes().Header(1, 0).Tensor("w", {48}, q8, 0).Data(64).str()));
  EXPECT_EQ("x.gguf: tensor \"w\": offset 8 is not a multiple of the alignment 32",
            ErrorOf(GgufBytes().Header(1, 0).Tensor("w", {32}, q8, 8).Data(64).str()));
  EXPECT_EQ(
      "x.gguf: tensor \"w\": its 34 bytes at data offset 32 end past the end of the file "
      "(the data section has 64 bytes)",
      ErrorOf(GgufBytes().Header(1, 0).Tensor("w", {32}, q8, 32).Data(64).str()));
  EXPECT_EQ("x.gguf: tensor \"b\" overlaps tensor \"a\"", ErrorOf(GgufBytes()
                                                                      .Header(2, 0)
                                                                      .Tensor("a", {64}, q8, 0)
                                                                      .Tensor("b", {32}, q8, 64)
                                                                      .Data(128)
                                                                      .str()));
  EXPECT_EQ("x.gguf: tensor \"a\" appears twice", ErrorOf(GgufBytes()
                                                              .Header(2, 0)
                                                              .Tensor("a", {32}, q8, 0)
                                                              .Tensor("a", {32}, q8, 64)
                                                              .Data(128)
                                                              .str()));
  // Every prefix of a valid file is an error, never a crash or a hang.
  GgufBytes b;
  b.Header(1, 1).KvU32("k", 1).Tensor("w", {32}, q8, 0).Data(34);
  for (size_t n = 0; n < b.str().size(); ++n) {
    EXPECT_NE("(no error)", ErrorOf(b.str().substr(0, n))) << n;
  }
  EXPECT_EQ("(no error)", ErrorOf(b.str()));
}

TEST(GgufTest, ReadsTheFilesLlamaCppWrote) {
  const auto shared = testing::SharedDir();
  if (!shared) GTEST_SKIP() << "../shared (with gguf/) not found: set SPLITLM_SHARED";
  auto stories = GgufFile::Open(*shared + "/gguf/stories260K-f32.gguf");
  EXPECT_EQ(3u, stories->header().version);
  EXPECT_EQ(48u, stories->header().tensors.size());
  EXPECT_EQ("llama", stories->Find("general.architecture")->text);
  EXPECT_EQ(5, stories->Find("llama.block_count")->integer);
  EXPECT_EQ(512u, stories->Find("tokenizer.ggml.tokens")->texts.size());
  EXPECT_FLOAT_EQ(
      1e-5f, static_cast<float>(stories->Find("llama.attention.layer_norm_rms_epsilon")->real));
  const GgufTensor* embd = stories->FindTensor("token_embd.weight");
  ASSERT_NE(nullptr, embd);
  EXPECT_EQ(std::vector<int64_t>({64, 512}), embd->dims);
  EXPECT_EQ(static_cast<uint32_t>(GgmlType::kF32), embd->type);

  auto q4km = GgufFile::Open(*shared + "/gguf/synthk-q4_k_m.gguf");
  std::map<std::string, int> types;
  for (const auto& t : q4km->header().tensors) ++types[GgmlTypeName(t.type)];
  EXPECT_GT(types["Q4_K"], 0);
  EXPECT_GT(types["Q6_K"], 0);
  EXPECT_GT(types["F32"], 0);
  for (const char* name :
       {"ggml-vocab-llama-bpe.gguf", "ggml-vocab-qwen2.gguf", "ggml-vocab-llama-spm.gguf",
        "llama-2-tiny-random.gguf", "synthk-f32.gguf", "synthk-q8_0.gguf", "synthk-q4_0.gguf"}) {
    EXPECT_NO_THROW(GgufFile::Open(*shared + "/gguf/" + name)) << name;
  }
  EXPECT_EQ(
      "gpt2",
      GgufFile::Open(*shared + "/gguf/ggml-vocab-qwen2.gguf")->Find("tokenizer.ggml.model")->text);
}

TEST(GgufTest, OpenRefusesWhatIsNotAFile) {
  TempDir dir;
  try {
    GgufFile::Open(dir.path());
    ADD_FAILURE() << "expected an error";
  } catch (const Exception& e) {
    EXPECT_EQ(dir.path() + ": not a regular file (a directory)", std::string(e.what()));
  }
}

}  // namespace
}  // namespace splitlm::partition
