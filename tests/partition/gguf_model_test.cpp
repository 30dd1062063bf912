// GGUF model files as splitlm models: llama.cpp's stories260K gives the Hugging
// Face checkpoint's numbers bit for bit, and every bad file is an error
// naming the file, the key or tensor, and the problem.
#include "partition/gguf_model.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "partition/gguf.h"
#include "partition/gguf_quantize.h"
#include "partition/gguf_writer.h"
#include "partition/hf_to_gguf.h"
#include "partition/model.h"
#include "partition/random_model.h"
#include "partition/stage.h"
#include "partition/tensor_f32.h"
#include "tests/common/gguf_bytes.h"
#include "tests/common/stories260k.h"
#include "tests/common/test_util.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

using testing::GgufBytes;
using testing::TempDir;

std::vector<float> F32(const Model& m, const std::string& name, const std::vector<int64_t>& shape) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  std::vector<float> out(static_cast<size_t>(n));
  TensorToF32(m.Tensor(name, shape), out.data());
  return out;
}

// Logits of every prefix's last position, one position at a time.
std::vector<float> AllLogits(const Model& m, const std::vector<int32_t>& ids) {
  const ModelConfig& c = m.config();
  Stage stage(StageWeights::Load(m, StageSpec::Device(c, c.num_layers)));
  std::vector<float> all(ids.size() * c.vocab_size);
  for (size_t i = 0; i < ids.size(); ++i)
    stage.Forward({&ids[i], nullptr, 1}, &all[i * c.vocab_size]);
  return all;
}

TEST(GgufModel, Stories260KHasTheHuggingFaceConfig) {
  REQUIRE_SHARED(gguf, "gguf/stories260K-f32.gguf");
  REQUIRE_SHARED(hf, "models/stories260K");
  auto g = Model::Open(gguf);
  auto h = Model::Open(hf);
  const ModelConfig &a = g->config(), &b = h->config();
  EXPECT_TRUE(g->is_gguf());
  EXPECT_EQ(Arch::kLlama, a.arch);
  EXPECT_EQ(b.hidden_size, a.hidden_size);
  EXPECT_EQ(b.num_layers, a.num_layers);
  EXPECT_EQ(b.num_heads, a.num_heads);
  EXPECT_EQ(b.num_kv_heads, a.num_kv_heads);
  EXPECT_EQ(b.head_dim, a.head_dim);
  EXPECT_EQ(b.intermediate_size, a.intermediate_size);
  EXPECT_EQ(b.vocab_size, a.vocab_size);
  EXPECT_EQ(128, a.max_context);  // llama2.c's converter writes its seq_len
  EXPECT_EQ(b.rope_theta, a.rope_theta);
  EXPECT_EQ(static_cast<float>(b.rms_norm_eps), static_cast<float>(a.rms_norm_eps));
  EXPECT_FALSE(a.tie_word_embeddings);  // the converter stores output.weight
  EXPECT_FALSE(a.qkv_bias);
  EXPECT_EQ(1, a.bos_token_id);
  EXPECT_EQ(std::vector<int>{2}, a.eos_token_ids);
  EXPECT_EQ(gguf, g->tokenizer_path().value_or(""));  // the file carries its vocabulary
}

TEST(GgufModel, Stories260KWeightsEqualTheHuggingFaceOnesBitwise) {
  REQUIRE_SHARED(gguf, "gguf/stories260K-f32.gguf");
  REQUIRE_SHARED(hf, "models/stories260K");
  auto g = Model::Open(gguf);
  auto h = Model::Open(hf);
  const ModelConfig& c = h->config();
  const int64_t hs = c.hidden_size, qd = int64_t{c.num_heads} * c.head_dim,
                kvd = int64_t{c.num_kv_heads} * c.head_dim, ff = c.intermediate_size;
  std::map<std::string, std::vector<int64_t>> shapes = {
      {"model.embed_tokens.weight", {c.vocab_size, hs}}, {"model.norm.weight", {hs}}};
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    shapes[p + "input_layernorm.weight"] = {hs};
    shapes[p + "self_attn.q_proj.weight"] = {qd, hs};
    shapes[p + "self_attn.k_proj.weight"] = {kvd, hs};
    shapes[p + "self_attn.v_proj.weight"] = {kvd, hs};
    shapes[p + "self_attn.o_proj.weight"] = {hs, qd};
    shapes[p + "post_attention_layernorm.weight"] = {hs};
    shapes[p + "mlp.gate_proj.weight"] = {ff, hs};
    shapes[p + "mlp.up_proj.weight"] = {ff, hs};
    shapes[p + "mlp.down_proj.weight"] = {hs, ff};
  }
  for (const auto& [name, shape] : shapes) {
    const std::vector<float> a = F32(*g, name, shape), b = F32(*h, name, shape);
    EXPECT_EQ(0, std::memcmp(a.data(), b.data(), a.size() * sizeof(float))) << name;
  }
  // The Hugging Face checkpoint ties its head to the embedding.
  const std::vector<float> head = F32(*g, "lm_head.weight", {c.vocab_size, hs});
  const std::vector<float> embed = F32(*h, "model.embed_tokens.weight", {c.vocab_size, hs});
  EXPECT_EQ(0, std::memcmp(head.data(), embed.data(), head.size() * sizeof(float)));
}

TEST(GgufModel, Stories260KGivesTheReferenceGreedyIdsAtEveryCut) {
  REQUIRE_SHARED(gguf, "gguf/stories260K-f32.gguf");
  auto m = Model::Open(gguf);
  const std::vector<int32_t>& expected = testing::Stories260KGreedyFromBos();
  for (int cut = 0; cut <= m->config().num_layers; ++cut) {
    EXPECT_EQ(expected, testing::GreedySplit(*m, cut, {1}, static_cast<int>(expected.size())))
        << "cut " << cut;
  }
}

TEST(GgufModel, Stories260KLogitsEqualTheHuggingFaceOnesBitwise) {
  REQUIRE_SHARED(gguf, "gguf/stories260K-f32.gguf");
  REQUIRE_SHARED(hf, "models/stories260K");
  const std::vector<int32_t>& ids = testing::Stories260KGreedyFromBos();
  const std::vector<float> a = AllLogits(*Model::Open(gguf), ids);
  const std::vector<float> b = AllLogits(*Model::Open(hf), ids);
  ASSERT_EQ(a.size(), b.size());
  size_t differing = 0;
  for (size_t i = 0; i < a.size(); ++i) differing += std::memcmp(&a[i], &b[i], sizeof(float)) != 0;
  EXPECT_EQ(0u, differing) << "of " << a.size() << " logits";
}

TEST(GgufModel, Llama2TinyRandomWithF16MatricesGeneratesAlikeAtEveryCut) {
  REQUIRE_SHARED(gguf, "gguf/llama-2-tiny-random.gguf");
  auto m = Model::Open(gguf);
  const ModelConfig& c = m->config();
  EXPECT_EQ(8, c.hidden_size);
  EXPECT_EQ(1, c.num_layers);
  EXPECT_EQ(2, c.num_heads);
  EXPECT_EQ(32, c.intermediate_size);
  EXPECT_EQ(32000, c.vocab_size);
  EXPECT_EQ(4096, c.max_context);
  const std::vector<int32_t> local = testing::GreedySplit(*m, 1, {1, 450, 4996}, 16);
  EXPECT_EQ(local, testing::GreedySplit(*m, 0, {1, 450, 4996}, 16));
  for (int32_t id : local) {
    EXPECT_GE(id, 0);
    EXPECT_LT(id, 32000);
  }
}

TEST(GgufModel, FingerprintCoversTheTensorBytes) {
  REQUIRE_SHARED(gguf, "gguf/stories260K-f32.gguf");
  TempDir dir;
  const std::string copy = dir.Sub("copy.gguf");
  std::filesystem::copy_file(gguf, copy);
  const uint64_t original = Model::Open(gguf)->fingerprint();
  EXPECT_EQ(original, Model::Open(copy)->fingerprint());
  const GgufTensor* t = GgufFile::Open(copy)->FindTensor("blk.4.ffn_down.weight");
  ASSERT_NE(nullptr, t);
  {
    std::fstream f(copy, std::ios::in | std::ios::out | std::ios::binary);
    const auto at = static_cast<std::streamoff>(t->offset + 5);
    f.seekg(at);
    const char byte = static_cast<char>(f.get() ^ 1);
    f.seekp(at);
    f.put(byte);
  }
  EXPECT_NE(original, Model::Open(copy)->fingerprint());
}

// Writes `file` again at `out` with its metadata passed through `edit`.
template <typename Edit>
void RewriteMetadata(const GgufFile& file, const std::string& out, Edit edit) {
  GgufWriter w(out);
  for (const auto& k : file.header().key_order) {
    GgufValue v = *file.Find(k);
    edit(k, v);
    w.AddKeyValue(k, v);
  }
  for (const auto& t : file.header().tensors) w.AddTensor(t.name, t.dims, t.type);
  for (const auto& t : file.header().tensors) w.WriteTensorData(file.data(t), t.bytes);
  w.Commit();
}

TEST(GgufModel, TheSameModelQuantisedKeepsItsIdentityAndChangesItsFingerprint) {
  REQUIRE_SHARED(f32, "gguf/synthk-f32.gguf");
  const auto source = Model::Open(f32);
  EXPECT_EQ("f32", source->weight_formats());
  for (const char* name : {"synthk-q8_0.gguf", "synthk-q4_0.gguf", "synthk-q4_k_m.gguf"}) {
    const std::string path = testing::SharedPath(std::string("gguf/") + name);
    ASSERT_FALSE(path.empty()) << name << " is missing beside synthk-f32.gguf";
    const auto quantised = Model::Open(path);
    EXPECT_EQ(source->identity(), quantised->identity())
        << name << ": llama-quantize keeps the metadata";
    EXPECT_NE(source->fingerprint(), quantised->fingerprint()) << name;
    EXPECT_NE("f32", quantised->weight_formats()) << name;
  }
  EXPECT_NE(
      std::string::npos,
      Model::Open(testing::SharedPath("gguf/synthk-q4_k_m.gguf"))->weight_formats().find("q4_k"));
  // Another model of other shapes and metadata.
  REQUIRE_SHARED(stories, "gguf/stories260K-f32.gguf");
  EXPECT_NE(source->identity(), Model::Open(stories)->identity());
}

TEST(GgufModel, IdentityCoversTheMetadataButNotTheFileType) {
  REQUIRE_SHARED(f32, "gguf/synthk-f32.gguf");
  const auto file = GgufFile::Open(f32);
  TempDir dir;
  auto rewrite = [&](const std::string& key, int64_t value) {
    const std::string out = dir.Sub(key + ".gguf");
    RewriteMetadata(*file, out, [&](const std::string& k, GgufValue& v) {
      if (k == key) v.integer = value;
    });
    return Model::Open(out);
  };
  const uint64_t identity = Model::Open(f32)->identity();
  EXPECT_EQ(identity, rewrite("general.file_type", 7)->identity());
  EXPECT_NE(identity, rewrite("llama.context_length", 77)->identity());
}

// A tiny GGUF model written field by field: hidden 32, two heads of 16,
// feed-forward 32, vocabulary 8, `layers` blocks, every tensor F32 unless
// `types` says otherwise; `u32` holds the integer metadata ("" values drop a
// key: see MiniGguf's callers).
struct MiniModel {
  std::string arch = "llama";
  std::map<std::string, uint32_t> u32 = {
      {"block_count", 2},          {"embedding_length", 32},       {"feed_forward_length", 32},
      {"attention.head_count", 2}, {"attention.head_count_kv", 2}, {"context_length", 16}};
  std::vector<std::pair<std::string, std::vector<uint64_t>>> tensors;
  std::map<std::string, uint32_t> types;

  explicit MiniModel(int layers = 2) {
    tensors = {
        {"token_embd.weight", {32, 8}}, {"output_norm.weight", {32}}, {"output.weight", {32, 8}}};
    for (int l = 0; l < layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      for (const char* n : {"attn_norm", "ffn_norm"}) tensors.push_back({p + n + ".weight", {32}});
      for (const char* n :
           {"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}) {
        tensors.push_back({p + n + ".weight", {32, 32}});
      }
    }
  }
  void Drop(const std::string& name) {
    for (size_t i = 0; i < tensors.size(); ++i) {
      if (tensors[i].first == name) tensors.erase(tensors.begin() + static_cast<long>(i));
    }
  }
  std::string Bytes() const {
    GgufBytes b;
    b.Header(tensors.size(), u32.size() + 2);
    b.KvStr("general.architecture", arch).KvF32(arch + ".attention.layer_norm_rms_epsilon", 1e-5f);
    for (const auto& [key, v] : u32) b.KvU32(arch + "." + key, v);
    uint64_t offset = 0;
    std::vector<uint64_t> sizes;
    for (const auto& [name, dims] : tensors) {
      const uint32_t type = types.count(name) ? types.at(name) : 0;
      const GgmlBlock block = *GgmlBlockOf(type);
      uint64_t n = 1;
      for (uint64_t d : dims) n *= d;
      b.Tensor(name, dims, type, offset);
      sizes.push_back(n / block.values * block.bytes);
      offset += (sizes.back() + 31) / 32 * 32;
    }
    b.Data(offset);
    return b.str();
  }
};

// The error of opening `model` and loading all of it, or "(no error)".
std::string ErrorOf(const MiniModel& model, const std::string& path) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << model.Bytes();
  try {
    auto m = Model::Open(path);
    StageWeights::Load(*m, StageSpec::Device(m->config(), m->config().num_layers));
  } catch (const Exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(GgufModel, BadFilesAreErrorsNamingTheFileTheKeyOrTensorAndTheProblem) {
  TempDir dir;
  const std::string path = dir.Sub("m.gguf");
  EXPECT_EQ("(no error)", ErrorOf(MiniModel(), path));
  MiniModel m;
  m.arch = "gpt2";
  EXPECT_EQ(
      path + ": unsupported architecture \"gpt2\" (general.architecture; supported: llama, qwen2)",
      ErrorOf(m, path));
  m = MiniModel();
  m.u32.erase("block_count");
  EXPECT_EQ(path + ": missing metadata key \"llama.block_count\"", ErrorOf(m, path));
  m = MiniModel();
  m.u32["attention.head_count_kv"] = 3;
  EXPECT_EQ(path + ": attention.head_count 2 is not a multiple of attention.head_count_kv 3",
            ErrorOf(m, path));
  m = MiniModel();
  m.u32["rope.dimension_count"] = 8;
  EXPECT_EQ(
      path +
          ": \"llama.rope.dimension_count\" = 8 rotates part of each head; only full rotary (16) "
          "is supported",
      ErrorOf(m, path));
  m = MiniModel();
  m.Drop("blk.1.ffn_up.weight");
  EXPECT_EQ(
      path + ": tensor \"blk.1.ffn_up.weight\" (model.layers.1.mlp.up_proj.weight) is missing",
      ErrorOf(m, path));
  m = MiniModel();
  m.tensors[5].second = {32, 16};  // blk.0.attn_q.weight
  EXPECT_EQ(
      path +
          ": tensor \"blk.0.attn_q.weight\" has dims [32, 16] (innermost first), expected [32, 32]",
      ErrorOf(m, path));
  m = MiniModel();
  m.types["blk.0.ffn_down.weight"] = static_cast<uint32_t>(GgmlType::kMXFP4);
  EXPECT_EQ(
      path + ": tensor \"blk.0.ffn_down.weight\" has type MXFP4, which splitlm cannot load yet",
      ErrorOf(m, path));
  m = MiniModel(3);
  EXPECT_EQ(path + ": tensor \"blk.2.attn_norm.weight\" belongs to layer 2, but block_count is 2",
            ErrorOf(m, path));
  m = MiniModel();
  m.arch = "qwen2";
  EXPECT_EQ(
      path + ": tensor \"blk.0.attn_q.bias\" (model.layers.0.self_attn.q_proj.bias) is missing",
      ErrorOf(m, path));
  m = MiniModel();
  m.tensors.push_back({"rope_freqs.weight", {4}});
  EXPECT_EQ(
      path + ": tensor \"rope_freqs.weight\" has dims [4], expected [8] (half the head dimension)",
      ErrorOf(m, path));
}

TEST(GgufModel, TiedHeadWhenOutputIsAbsent) {
  TempDir dir;
  MiniModel m;
  m.Drop("output.weight");
  std::ofstream(dir.Sub("m.gguf"), std::ios::binary) << m.Bytes();
  auto model = Model::Open(dir.Sub("m.gguf"));
  EXPECT_TRUE(model->config().tie_word_embeddings);
  EXPECT_FALSE(model->HasTensor("lm_head.weight"));
  EXPECT_NO_THROW(StageWeights::Load(*model, StageSpec::Cloud(model->config(), 0)));
}

// A stage reads only its own layers' tensors: a device at cut 1 loads even
// though block 1 holds a tensor it could not convert; the cloud cannot.
TEST(GgufModel, AStageReadsOnlyItsOwnLayers) {
  TempDir dir;
  MiniModel m;
  m.types["blk.1.ffn_down.weight"] = static_cast<uint32_t>(GgmlType::kMXFP4);
  std::ofstream(dir.Sub("m.gguf"), std::ios::binary) << m.Bytes();
  auto model = Model::Open(dir.Sub("m.gguf"));
  EXPECT_NO_THROW(StageWeights::Load(*model, StageSpec::Device(model->config(), 1)));
  EXPECT_THROW(StageWeights::Load(*model, StageSpec::Cloud(model->config(), 1)), Exception);
}

TEST(GgufModel, OpenSaysWhatItWantsForAFileOfAHuggingFaceModel) {
  REQUIRE_SHARED(hf, "models/stories260K");
  try {
    Model::Open(hf + "/model.safetensors");
    ADD_FAILURE() << "expected an error";
  } catch (const Exception& e) {
    EXPECT_EQ(
        hf + "/model.safetensors: give the Hugging Face model's directory, not one of its files "
             "(a file is read as GGUF)",
        std::string(e.what()));
  }
  TempDir dir;
  std::ofstream(dir.Sub("x.bin")) << "not a model at all";
  try {
    Model::Open(dir.Sub("x.bin"));
    ADD_FAILURE() << "expected an error";
  } catch (const Exception& e) {
    EXPECT_EQ(dir.Sub("x.bin") + ": not a GGUF file (no \"GGUF\" magic)", std::string(e.what()));
  }
}

TEST(GgufModel, OpenSaysWhatItWantsForAMissingPath) {
  try {
    Model::Open("/nonexistent/model.gguf");
    ADD_FAILURE() << "expected an error";
  } catch (const Exception& e) {
    EXPECT_EQ(
        "/nonexistent/model.gguf: model not found (give a Hugging Face model directory or a .gguf "
        "file)",
        std::string(e.what()));
  }
}

// Copies the GGUF file `src` to `dst` with `extra` metadata and, if
// `freq_factor` > 0, a rope_freqs.weight of `half` copies of it.
void CopyGguf(const std::string& src, const std::string& dst,
              const std::vector<std::pair<std::string, GgufValue>>& extra, int64_t half,
              float freq_factor) {
  auto in = GgufFile::Open(src);
  GgufWriter w(dst);
  for (const std::string& key : in->header().key_order)
    w.AddKeyValue(key, in->header().metadata.at(key));
  for (const auto& [key, value] : extra) w.AddKeyValue(key, value);
  for (const GgufTensor& t : in->header().tensors) w.AddTensor(t.name, t.dims, t.type);
  if (freq_factor > 0)
    w.AddTensor("rope_freqs.weight", {half}, static_cast<uint32_t>(GgmlType::kF32));
  for (const GgufTensor& t : in->header().tensors) w.WriteTensorData(in->data(t), t.bytes);
  const std::vector<float> factors(static_cast<size_t>(half), freq_factor);
  if (freq_factor > 0)
    w.WriteTensorData(reinterpret_cast<const uint8_t*>(factors.data()), factors.size() * 4);
  w.Commit();
}

// rope_freqs.weight divides each rotary frequency, as llama.cpp does: factors
// of 2 equal linear scaling by 2 bit for bit, factors of 1 change nothing.
TEST(GgufModel, RopeFrequencyFactorsDivideTheFrequencies) {
  REQUIRE_SHARED(gguf, "gguf/stories260K-f32.gguf");
  TempDir dir;
  GgufValue linear, two;
  linear.type = GgufType::kString;
  linear.text = "linear";
  two.type = GgufType::kFloat32;
  two.real = 2.0;
  CopyGguf(gguf, dir.Sub("ff2.gguf"), {}, 4, 2.0f);
  CopyGguf(gguf, dir.Sub("ff1.gguf"), {}, 4, 1.0f);
  CopyGguf(gguf, dir.Sub("linear2.gguf"),
           {{"llama.rope.scaling.type", linear}, {"llama.rope.scaling.factor", two}}, 4, 0);
  auto ff2 = Model::Open(dir.Sub("ff2.gguf"));
  EXPECT_EQ(std::vector<float>(4, 2.0f), ff2->config().rope_scaling.freq_factors);
  const std::vector<int32_t>& ids = testing::Stories260KGreedyFromBos();
  const std::vector<float> base = AllLogits(*Model::Open(gguf), ids);
  const std::vector<float> scaled = AllLogits(*ff2, ids);
  EXPECT_EQ(scaled, AllLogits(*Model::Open(dir.Sub("linear2.gguf")), ids));
  EXPECT_EQ(base, AllLogits(*Model::Open(dir.Sub("ff1.gguf")), ids));
  EXPECT_NE(base, scaled);
}

// Writes the Hugging Face model `hf` as llama.cpp's convert_hf_to_gguf.py
// would (F32): metadata, dims innermost first, and for `llama` the Q and K
// rows of each head permuted as its `permute` does (reshape(n_head, 2,
// head_dim / 2, ...).swapaxes(1, 2)): HF row i * half + j goes to 2j + i.
void WriteGgufLikeLlamaCpp(const Model& hf, const std::string& path) {
  const ModelConfig& c = hf.config();
  const std::string arch = c.arch == Arch::kQwen2 ? "qwen2" : "llama";
  GgufWriter w(path);
  GgufValue name;
  name.type = GgufType::kString;
  name.text = arch;
  w.AddKeyValue("general.architecture", name);
  w.AddKeyValue(arch + ".block_count", GgufU32(c.num_layers));
  w.AddKeyValue(arch + ".context_length", GgufU32(c.max_context));
  w.AddKeyValue(arch + ".embedding_length", GgufU32(c.hidden_size));
  w.AddKeyValue(arch + ".feed_forward_length", GgufU32(c.intermediate_size));
  w.AddKeyValue(arch + ".attention.head_count", GgufU32(c.num_heads));
  w.AddKeyValue(arch + ".attention.head_count_kv", GgufU32(c.num_kv_heads));
  w.AddKeyValue(arch + ".rope.freq_base", GgufF32(c.rope_theta));
  w.AddKeyValue(arch + ".attention.layer_norm_rms_epsilon", GgufF32(c.rms_norm_eps));
  w.AddKeyValue("tokenizer.ggml.bos_token_id", GgufU32(c.bos_token_id));
  w.AddKeyValue("tokenizer.ggml.eos_token_id", GgufU32(c.eos_token_ids[0]));
  const int64_t h = c.hidden_size, qd = int64_t{c.num_heads} * c.head_dim,
                kvd = int64_t{c.num_kv_heads} * c.head_dim, ff = c.intermediate_size;
  std::vector<std::pair<std::string, std::vector<int64_t>>> shapes = {
      {"model.embed_tokens.weight", {c.vocab_size, h}}, {"model.norm.weight", {h}}};
  if (hf.HasTensor("lm_head.weight")) shapes.push_back({"lm_head.weight", {c.vocab_size, h}});
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    shapes.push_back({p + "input_layernorm.weight", {h}});
    shapes.push_back({p + "self_attn.q_proj.weight", {qd, h}});
    shapes.push_back({p + "self_attn.k_proj.weight", {kvd, h}});
    shapes.push_back({p + "self_attn.v_proj.weight", {kvd, h}});
    if (c.qkv_bias) {
      shapes.push_back({p + "self_attn.q_proj.bias", {qd}});
      shapes.push_back({p + "self_attn.k_proj.bias", {kvd}});
      shapes.push_back({p + "self_attn.v_proj.bias", {kvd}});
    }
    shapes.push_back({p + "self_attn.o_proj.weight", {h, qd}});
    shapes.push_back({p + "post_attention_layernorm.weight", {h}});
    shapes.push_back({p + "mlp.gate_proj.weight", {ff, h}});
    shapes.push_back({p + "mlp.up_proj.weight", {ff, h}});
    shapes.push_back({p + "mlp.down_proj.weight", {h, ff}});
  }
  for (const auto& [hf_name, shape] : shapes) {
    w.AddTensor(GgufTensorName(hf_name), std::vector<int64_t>(shape.rbegin(), shape.rend()),
                static_cast<uint32_t>(GgmlType::kF32));
  }
  for (const auto& [hf_name, shape] : shapes) {
    std::vector<float> v = F32(hf, hf_name, shape);
    const bool q = hf_name.find("q_proj") != std::string::npos,
               k = hf_name.find("k_proj") != std::string::npos;
    if (c.arch == Arch::kLlama && (q || k)) {
      const int64_t heads = q ? c.num_heads : c.num_kv_heads, half = c.head_dim / 2;
      const int64_t row = shape.size() == 2 ? shape[1] : 1;
      std::vector<float> permuted(v.size());
      for (int64_t hh = 0; hh < heads; ++hh)
        for (int64_t i = 0; i < 2; ++i)
          for (int64_t j = 0; j < half; ++j)
            std::copy_n(&v[((hh * 2 + i) * half + j) * row], row,
                        &permuted[(hh * c.head_dim + 2 * j + i) * row]);
      v.swap(permuted);
    }
    w.WriteTensorData(reinterpret_cast<const uint8_t*>(v.data()), v.size() * sizeof(float));
  }
  w.Commit();
}

// A random Hugging Face model converted as llama.cpp does (the converter,
// and the independent writer above: the same tensor bytes) gives the same
// logits bit for bit: llama (grouped-query attention, permuted Q/K) and qwen2
// (biases, no permutation); quantising keeps the directory's identity.
TEST(GgufModel, ADirectoryConvertedToGgufGivesItsLogitsBitwiseAndKeepsItsIdentityWhenQuantised) {
  for (Arch arch : {Arch::kLlama, Arch::kQwen2}) {
    TempDir dir;
    RandomModelOptions options;
    options.arch = arch;
    options.seed = 6;
    testing::MakeModel(dir.Sub("hf"), options);
    auto hf = Model::Open(dir.Sub("hf"));
    ConvertToGguf(*hf, dir.Sub("converted.gguf"));
    WriteGgufLikeLlamaCpp(*hf, dir.Sub("reference.gguf"));
    auto converted = GgufFile::Open(dir.Sub("converted.gguf"));
    auto reference = GgufFile::Open(dir.Sub("reference.gguf"));
    ASSERT_EQ(reference->header().tensors.size(), converted->header().tensors.size());
    for (const GgufTensor& want : reference->header().tensors) {
      const GgufTensor* got = converted->FindTensor(want.name);
      ASSERT_NE(nullptr, got) << want.name;
      EXPECT_EQ(want.dims, got->dims) << want.name;
      ASSERT_EQ(want.bytes, got->bytes) << want.name;
      EXPECT_EQ(0, std::memcmp(reference->data(want), converted->data(*got), want.bytes))
          << want.name;
    }
    auto gguf = Model::Open(dir.Sub("converted.gguf"));
    EXPECT_EQ(hf->config().qkv_bias, gguf->config().qkv_bias);
    EXPECT_EQ(hf->config().tie_word_embeddings, gguf->config().tie_word_embeddings);
    const std::vector<int32_t> ids = {1, 17, 99, 3, 200, 45, 8, 130};
    EXPECT_EQ(AllLogits(*hf, ids), AllLogits(*gguf, ids)) << ArchName(arch);
    EXPECT_EQ(hf->identity(), gguf->identity());
    EXPECT_NE(hf->fingerprint(), gguf->fingerprint());

    QuantizeOptions q;
    q.target = QuantizeTarget::kQ8_0;
    QuantizeGguf(dir.Sub("converted.gguf"), dir.Sub("q8_0.gguf"), q);
    auto quantised = Model::Open(dir.Sub("q8_0.gguf"));
    EXPECT_EQ(hf->identity(), quantised->identity()) << "quantising keeps the source identity";
    EXPECT_NE(std::string::npos, quantised->weight_formats().find("q8_0"))
        << quantised->weight_formats();
  }
}

TEST(GgufModel, ABadSourceIdentityIsAnErrorNamingTheKey) {
  TempDir dir;
  testing::MakeModel(dir.Sub("hf"), RandomModelOptions{});
  ConvertToGguf(*Model::Open(dir.Sub("hf")), dir.Sub("m.gguf"));
  const auto file = GgufFile::Open(dir.Sub("m.gguf"));
  RewriteMetadata(*file, dir.Sub("bad.gguf"), [](const std::string& k, GgufValue& v) {
    if (k == kSourceIdentityKey) v.text = "not-hex";
  });
  try {
    Model::Open(dir.Sub("bad.gguf"));
    FAIL() << "a bad identity was accepted";
  } catch (const Exception& e) {
    EXPECT_NE(std::string::npos, std::string(e.what()).find(kSourceIdentityKey)) << e.what();
  }
  EXPECT_THROW(ConvertToGguf(*Model::Open(dir.Sub("m.gguf")), dir.Sub("again.gguf")), Exception);
}

}  // namespace
}  // namespace splitlm::partition
