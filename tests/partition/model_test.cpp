// Loading model directories: every bad input gets an error naming the file.
#include <gtest/gtest.h>

#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "partition/model.h"
#include "partition/model_config.h"
#include "partition/safetensors.h"
#include "partition/stage.h"
#include "tests/common/test_util.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

using testing::MakeModel;
using testing::TempDir;

// Runs `fn`, expecting a Exception whose message contains `needle`.
template <typename F>
void ExpectError(F&& fn, const std::string& needle) {
  try {
    fn();
    ADD_FAILURE() << "expected an error containing \"" << needle << "\"";
  } catch (const Exception& e) {
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
  ExpectError([&] { Model::Open(dir.Sub("nope")); }, "model not found");
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
  ExpectError([&] { SafetensorsFile::Open(p); }, "data_offsets span 8 bytes, its shape needs 12");
  std::string huge(8, '\xff');
  WriteText(p, huge + "{}");
  ExpectError([&] { SafetensorsFile::Open(p); }, "is over the 104857600-byte limit");
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
  EXPECT_THROW(PresetConfig("huge", Arch::kLlama), Exception);
}

TEST(ModelTest, FingerprintCoversTheWeightsContent) {
  TempDir dir;
  RandomModelOptions o;
  o.preset = "small";
  o.seed = 1;
  const std::string a = MakeModel(dir.Sub("a"), o);
  o.seed = 2;
  const std::string b = MakeModel(dir.Sub("b"), o);
  const uint64_t fa = Model::Open(a)->fingerprint();
  EXPECT_NE(fa, Model::Open(b)->fingerprint()) << "same shapes, other weights";

  // One byte of the last tensor changed, headers untouched.
  std::string bytes = ReadText(a + "/model.safetensors");
  bytes[bytes.size() - 1] ^= 0x01;
  WriteText(a + "/model.safetensors", bytes);
  EXPECT_NE(fa, Model::Open(a)->fingerprint());
}

// A one-tensor model directory whose safetensors header is `header` (with
// `data_bytes` bytes of data after it).
std::string WriteRawSafetensors(const std::string& path, const std::string& header,
                                size_t data_bytes) {
  std::string file(8, '\0');
  for (int i = 0; i < 8; ++i) file[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  file += header + std::string(data_bytes, '\0');
  WriteText(path, file);
  return file;
}

TEST(SafetensorsTest, OverlappingTensorsAreRefused) {
  TempDir dir;
  const std::string path = dir.Sub("x.safetensors");
  WriteRawSafetensors(path,
                      R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},)"
                      R"( "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}})",
                      24);
  ExpectError(
      [&] { SafetensorsFile::Open(path); },
      "x.safetensors: tensor \"b\": data_offsets [8, 24) overlap those of tensor \"a\" [0, 16)");
  // Adjacent tensors and empty ones are fine.
  WriteRawSafetensors(path,
                      R"({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},)"
                      R"( "e": {"dtype": "F32", "shape": [0], "data_offsets": [4, 4]},)"
                      R"( "b": {"dtype": "F32", "shape": [2], "data_offsets": [16, 24]}})",
                      24);
  EXPECT_EQ(3u, SafetensorsFile::Open(path)->tensors().size());
}

TEST(SafetensorsTest, AHeaderLongerThanTheFileSaysWhatIsNeeded) {
  TempDir dir;
  const std::string path = dir.Sub("x.safetensors");
  std::string file = WriteRawSafetensors(path, "{}", 0);
  file[0] = 100;  // claims a 100-byte header; the file has 10 bytes
  WriteText(path, file);
  ExpectError([&] { SafetensorsFile::Open(path); },
              "header length 100 needs a file of at least 108 bytes, the file has 10");
}

TEST(ModelTest, SpecialIdsOutsideTheVocabularyAreRefused) {
  std::string c = kConfig;
  c.insert(c.size() - 1, R"(, "eos_token_id": 100)");
  ExpectError([&] { ParseModelConfig(c, "config.json"); },
              "config.json: \"eos_token_id\" = 100 is outside the vocabulary (vocab_size 100)");
  c = kConfig;
  c.insert(c.size() - 1, R"(, "eos_token_id": [2, 18446744073709551615])");
  ExpectError([&] { ParseModelConfig(c, "config.json"); },
              "\"eos_token_id\" = 18446744073709551615 is outside");
  c = kConfig;
  c.insert(c.size() - 1, R"(, "bos_token_id": -1)");
  ExpectError([&] { ParseModelConfig(c, "config.json"); }, "\"bos_token_id\" = -1 is outside");
  c = kConfig;
  c.replace(c.find("\"vocab_size\": 100"), 17, "\"vocab_size\": 2");  // the default EOS id is 2
  ExpectError(
      [&] { ParseModelConfig(c, "config.json"); },
      "\"eos_token_id (default, key absent)\" = 2 is outside the vocabulary (vocab_size 2)");
  c = kConfig;
  c.insert(c.size() - 1, R"(, "bos_token_id": 0, "eos_token_id": [98, 99])");
  EXPECT_EQ(std::vector<int>({98, 99}), ParseModelConfig(c, "config.json").eos_token_ids);
}

TEST(ModelConfigTest, ValuesOfTheWrongTypeAreErrorsNamingTheKey) {
  // Found by fuzz_model_files: a number as rope_type escaped as a JSON library exception.
  std::string c = kConfig;
  c.insert(c.size() - 1, R"(, "rope_scaling": {"rope_type": 32, "factor": 2})");
  ExpectError([&] { ParseModelConfig(c, "config.json"); },
              "config.json: \"rope_type\" must be a string");
  c = kConfig;
  c.insert(c.size() - 1, R"(, "tie_word_embeddings": "yes")");
  ExpectError([&] { ParseModelConfig(c, "config.json"); },
              "config.json: \"tie_word_embeddings\" must be true or false");
}

TEST(ModelTest, LayersPastNumHiddenLayersAreRefused) {
  TempDir dir;
  const std::string m = MakeModel(dir.Sub("m"));  // 4 layers
  std::string config = ReadText(m + "/config.json");
  const size_t at = config.find("\"num_hidden_layers\": 4");
  ASSERT_NE(std::string::npos, at) << config;
  config.replace(at, 22, "\"num_hidden_layers\": 2");
  WriteText(m + "/config.json", config);
  ExpectError([&] { Model::Open(m); },
              "model.safetensors: tensor \"model.layers.2.input_layernorm.weight\" belongs to "
              "layer 2, but " +
                  m + "/config.json has \"num_hidden_layers\" = 2");
}

TEST(ModelTest, FilesThatAreNotRegularAreRefusedWithoutBlocking) {
  TempDir dir;
  const std::string m = MakeModel(dir.Sub("m"));
  namespace fs = std::filesystem;
  // A FIFO with no writer: opening it for reading would block forever.
  fs::rename(m + "/config.json", dir.Sub("config.json"));
  ASSERT_EQ(0, ::mkfifo((m + "/config.json").c_str(), 0600));
  ExpectError([&] { Model::Open(m); }, "config.json: not a regular file (a FIFO)");
  fs::remove(m + "/config.json");
  fs::create_symlink("/dev/zero", m + "/config.json");
  ExpectError([&] { Model::Open(m); }, "config.json: not a regular file (a character device)");
  fs::remove(m + "/config.json");
  fs::rename(dir.Sub("config.json"), m + "/config.json");

  fs::rename(m + "/model.safetensors", dir.Sub("weights"));
  ASSERT_EQ(0, ::mkfifo((m + "/model.safetensors").c_str(), 0600));
  ExpectError([&] { Model::Open(m); }, "model.safetensors: not a regular file (a FIFO)");
}

TEST(ModelTest, AnOversizedConfigIsRefusedBeforeItIsRead) {
  TempDir dir;
  const std::string m = MakeModel(dir.Sub("m"));
  const std::string config = ReadText(m + "/config.json");
  WriteText(m + "/config.json", config + std::string(size_t{5} << 20, ' '));
  ExpectError([&] { Model::Open(m); },
              "config.json: larger than the 4 MiB limit for this kind of file");
}

}  // namespace
}  // namespace splitlm::partition
