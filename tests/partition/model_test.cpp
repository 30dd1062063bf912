// Loading model directories: every bad input gets an error naming the file.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "partition/error.h"
#include "partition/model.h"
#include "partition/model_config.h"
#include "partition/safetensors.h"
#include "partition/stage.h"
#include "tests/common/test_util.h"

namespace splitlm::partition {
namespace {

using testing::MakeModel;
using testing::TempDir;

// Runs `fn`, expecting a PartitionError whose message contains `needle`.
template <typename F>
void ExpectError(F&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected an error containing \"" << needle << "\"";
  } catch (const PartitionError& e) {
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

const char* kConfig = R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64,
  "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
  "num_key_value_heads": 2, "vocab_size": 100, "max_position_embeddings": 64})";

TEST(ModelConfigTest, ParsesLlamaDefaults) {
  ModelConfig c = ParseModelConfig(kConfig, "config.json");
  EXPECT_EQ(Arch::kLlama, c.arch);
  EXPECT_EQ(16, c.head_dim);
  EXPECT_EQ(2, c.num_kv_heads);
  EXPECT_FALSE(c.qkv_bias);
  EXPECT_FALSE(c.tie_word_embeddings);
  EXPECT_DOUBLE_EQ(10000.0, c.rope_theta);
}

TEST(ModelConfigTest, Qwen2HasBiasesAndMistralParses) {
  std::string q = kConfig;
  q.replace(q.find("LlamaForCausalLM"), 16, "Qwen2ForCausalLM");
  EXPECT_TRUE(ParseModelConfig(q, "q").qkv_bias);
  std::string m = kConfig;
  m.replace(m.find("LlamaForCausalLM"), 16, "MistralForCausalLM");
  EXPECT_EQ(Arch::kMistral, ParseModelConfig(m, "m").arch);
}

TEST(ModelConfigTest, RejectsUnknownArchitecture) {
  std::string s = kConfig;
  s.replace(s.find("LlamaForCausalLM"), 16, "GPT2LMHeadModel");
  ExpectError([&] { ParseModelConfig(s, "dir/config.json"); },
              "dir/config.json: unknown architecture \"GPT2LMHeadModel\"");
}

TEST(ModelConfigTest, RejectsMissingAndBadSizes) {
  ExpectError([] { ParseModelConfig(R"({"architectures": ["LlamaForCausalLM"]})", "c"); },
              "missing key \"hidden_size\"");
  std::string s = kConfig;
  s.replace(s.find("\"hidden_size\": 64"), 17, "\"hidden_size\": -3");
  ExpectError([&] { ParseModelConfig(s, "c"); }, "\"hidden_size\" = -3 is out of range");
  ExpectError([] { ParseModelConfig("not json", "c"); }, "not a valid JSON object");
  std::string g = kConfig;
  g.replace(g.find("\"num_key_value_heads\": 2"), 24, "\"num_key_value_heads\": 3");
  ExpectError([&] { ParseModelConfig(g, "c"); }, "not a multiple of num_key_value_heads 3");
}

TEST(ModelTest, MissingDirectoryAndFiles) {
  TempDir dir;
  ExpectError([&] { Model::Open(dir.Sub("nope")); }, "model directory not found");
  ExpectError([&] { Model::Open(dir.path()); }, "config.json: cannot open");
  WriteText(dir.Sub("config.json"), kConfig);
  ExpectError([&] { Model::Open(dir.path()); }, "neither model.safetensors nor");
}

TEST(ModelTest, MissingAndMisshapedTensors) {
  TempDir dir;
  const std::string m = MakeModel(dir.Sub("m"));
  auto model = Model::Open(m);
  ExpectError([&] { model->Tensor("model.layers.99.mlp.up_proj.weight", {1}); },
              "tensor \"model.layers.99.mlp.up_proj.weight\" is missing");
  ExpectError([&] { model->Tensor("model.norm.weight", {65}); },
              "model.safetensors: tensor \"model.norm.weight\" has shape [64], expected [65]");

  // A config that claims a wider model than the weights hold.
  std::string cfg = ReadText(m + "/config.json");
  cfg.replace(cfg.find("\"intermediate_size\": 172"), 24, "\"intermediate_size\": 173");
  WriteText(m + "/config.json", cfg);
  auto wrong = Model::Open(m);
  ExpectError([&] { StageWeights::Load(*wrong, StageSpec::Device(wrong->config(), 1)); },
              "mlp.gate_proj.weight\" has shape [172, 64], expected [173, 64]");
}

TEST(SafetensorsTest, RejectsCorruptFiles) {
  TempDir dir;
  const std::string p = dir.Sub("x.safetensors");
  WriteText(p, "abc");
  ExpectError([&] { SafetensorsFile::Open(p); }, "too short");
  std::string header = "{\"t\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}";
  auto file = [&](const std::string& h, size_t data) {
    std::string s(8, '\0');
    uint64_t n = h.size();
    for (int i = 0; i < 8; ++i) s[i] = static_cast<char>(n >> (8 * i));
    return s + h + std::string(data, '\0');
  };
  WriteText(p, file(header, 8));
  EXPECT_EQ(1u, SafetensorsFile::Open(p)->tensors().size());
  WriteText(p, file(header, 4));
  ExpectError([&] { SafetensorsFile::Open(p); }, "outside the 4-byte data section");
  std::string bad_dtype = header;
  bad_dtype.replace(bad_dtype.find("F32"), 3, "I64");
  WriteText(p, file(bad_dtype, 8));
  ExpectError([&] { SafetensorsFile::Open(p); }, "unsupported dtype I64");
  std::string bad_size = header;
  bad_size.replace(bad_size.find("[2]"), 3, "[3]");
  WriteText(p, file(bad_size, 8));
  ExpectError([&] { SafetensorsFile::Open(p); }, "do not match its shape");
  std::string huge(8, '\xff');
  WriteText(p, huge + "{}");
  ExpectError([&] { SafetensorsFile::Open(p); }, "exceeds the file size");
  WriteText(p, file("[1, 2]", 0));
  ExpectError([&] { SafetensorsFile::Open(p); }, "header is not a JSON object");
}

TEST(ModelTest, ShardIndexMustNameLocalFiles) {
  TempDir dir;
  RandomModelOptions o;
  o.shards = 2;
  const std::string m = MakeModel(dir.Sub("m"), o);
  EXPECT_TRUE(Model::Open(m)->HasTensor("model.norm.weight"));
  WriteText(m + "/model.safetensors.index.json",
            R"({"weight_map": {"model.norm.weight": "../etc/passwd"}})");
  ExpectError([&] { Model::Open(m); }, "must be a plain file name");
}

TEST(ModelTest, FingerprintDependsOnWeightsLayoutNotOnPath) {
  TempDir dir;
  RandomModelOptions o;
  auto a = Model::Open(MakeModel(dir.Sub("a"), o));
  auto b = Model::Open(MakeModel(dir.Sub("b"), o));
  o.preset = "small";
  auto c = Model::Open(MakeModel(dir.Sub("c"), o));
  EXPECT_EQ(a->fingerprint(), b->fingerprint());
  EXPECT_NE(a->fingerprint(), c->fingerprint());
}

TEST(RandomModelTest, SameSeedSameBytesOtherSeedOtherBytes) {
  TempDir dir;
  RandomModelOptions o;
  o.seed = 7;
  MakeModel(dir.Sub("a"), o);
  MakeModel(dir.Sub("b"), o);
  o.seed = 8;
  MakeModel(dir.Sub("c"), o);
  const std::string a = ReadText(dir.Sub("a/model.safetensors"));
  EXPECT_EQ(a, ReadText(dir.Sub("b/model.safetensors")));
  EXPECT_NE(a, ReadText(dir.Sub("c/model.safetensors")));
  EXPECT_THROW(PresetConfig("huge", Arch::kLlama), PartitionError);
}

}  // namespace
}  // namespace splitlm::partition
