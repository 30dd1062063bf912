#include "partition/random_model.h"

#include <ATen/ATen.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "partition/model.h"
#include "partition/tokenizer.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace fs = std::filesystem;
namespace {

uint64_t SplitMix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double Uniform(uint64_t& state) {  // in (0, 1]
  return (static_cast<double>(SplitMix64(state) >> 11) + 1.0) * 0x1.0p-53;
}

// Fills `out` with mean + std * N(0, 1), from a stream keyed by seed and name.
void FillNormal(uint64_t seed, const std::string& name, float mean, float std, float* out,
                size_t n) {
  uint64_t state = Fnv1a64(name.data(), name.size(), seed ^ 0x5eed5eed5eedull);
  for (size_t i = 0; i < n; i += 2) {
    const double r = std::sqrt(-2.0 * std::log(Uniform(state)));
    const double t = 2.0 * M_PI * Uniform(state);
    out[i] = static_cast<float>(mean + std * r * std::cos(t));
    if (i + 1 < n) out[i + 1] = static_cast<float>(mean + std * r * std::sin(t));
  }
}

struct TensorPlan {
  std::string name;
  std::vector<int64_t> shape;
  float mean, std;
};

std::vector<TensorPlan> Plan(const ModelConfig& c) {
  const int64_t h = c.hidden_size, qd = int64_t{c.num_heads} * c.head_dim,
                kvd = int64_t{c.num_kv_heads} * c.head_dim, inter = c.intermediate_size;
  auto lin = [](int64_t in) {
    return static_cast<float>(1.0 / std::sqrt(static_cast<double>(in)));
  };
  std::vector<TensorPlan> p;
  p.push_back({"model.embed_tokens.weight", {c.vocab_size, h}, 0.0f, 1.0f});
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string pre = "model.layers." + std::to_string(l) + ".";
    p.push_back({pre + "input_layernorm.weight", {h}, 1.0f, 0.05f});
    p.push_back({pre + "self_attn.q_proj.weight", {qd, h}, 0.0f, lin(h)});
    p.push_back({pre + "self_attn.k_proj.weight", {kvd, h}, 0.0f, lin(h)});
    p.push_back({pre + "self_attn.v_proj.weight", {kvd, h}, 0.0f, lin(h)});
    if (c.qkv_bias) {
      p.push_back({pre + "self_attn.q_proj.bias", {qd}, 0.0f, 0.02f});
      p.push_back({pre + "self_attn.k_proj.bias", {kvd}, 0.0f, 0.02f});
      p.push_back({pre + "self_attn.v_proj.bias", {kvd}, 0.0f, 0.02f});
    }
    p.push_back({pre + "self_attn.o_proj.weight", {h, qd}, 0.0f, lin(qd)});
    p.push_back({pre + "post_attention_layernorm.weight", {h}, 1.0f, 0.05f});
    p.push_back({pre + "mlp.gate_proj.weight", {inter, h}, 0.0f, lin(h)});
    p.push_back({pre + "mlp.up_proj.weight", {inter, h}, 0.0f, lin(h)});
    p.push_back({pre + "mlp.down_proj.weight", {h, inter}, 0.0f, lin(inter)});
  }
  p.push_back({"model.norm.weight", {h}, 1.0f, 0.05f});
  if (!c.tie_word_embeddings) p.push_back({"lm_head.weight", {c.vocab_size, h}, 0.0f, lin(h)});
  return p;
}

}  // namespace

std::vector<std::string> RandomModelPresets() { return {"tiny", "small", "110m"}; }

ModelConfig PresetConfig(const std::string& preset, Arch arch) {
  ModelConfig c;
  c.arch = arch;
  c.qkv_bias = arch == Arch::kQwen2;
  c.rms_norm_eps = 1e-5;
  if (preset == "tiny") {
    c.hidden_size = 64, c.num_layers = 4, c.num_heads = 4, c.num_kv_heads = 2;
    c.intermediate_size = 172, c.vocab_size = 256, c.max_context = 256;
  } else if (preset == "small") {
    c.hidden_size = 256, c.num_layers = 8, c.num_heads = 8, c.num_kv_heads = 4;
    c.intermediate_size = 704, c.vocab_size = 4096, c.max_context = 512;
  } else if (preset == "110m") {
    c.hidden_size = 768, c.num_layers = 12, c.num_heads = 12, c.num_kv_heads = 12;
    c.intermediate_size = 2048, c.vocab_size = 32000, c.max_context = 1024;
    c.tie_word_embeddings = true;
  } else {
    throw Exception(Exception::kInvalidArgument,
                    "unknown preset \"" + preset + "\" (choose tiny, small or 110m)");
  }
  c.head_dim = c.hidden_size / c.num_heads;
  return c;
}

namespace {

// The preset's config with the tokenizer's vocabulary and special ids (and
// `options.vocab`); `tokenizer_name` gets what the tokenizer is called in the
// directory.
ModelConfig ConfigFor(const RandomModelOptions& options, std::string& tokenizer_name) {
  ModelConfig config = PresetConfig(options.preset, options.arch);
  if (options.vocab < 0 || options.vocab > (1 << 20))
    throw Exception(Exception::kInvalidArgument, "vocab must be in 1..1048576");
  if (!options.tokenizer.empty()) {
    const std::string ext = fs::path(options.tokenizer).extension().string();
    if (ext != ".json" && ext != ".model") {
      throw Exception(
          Exception::kInvalidArgument,
          options.tokenizer + ": make-model takes a tokenizer.json or a tokenizer.model");
    }
    tokenizer_name = ext == ".json" ? "tokenizer.json" : "tokenizer.model";
    auto tok = Tokenizer::Open(options.tokenizer);
    config.vocab_size = tok->vocab_size();
    if (tok->bos_id()) config.bos_token_id = *tok->bos_id();
    if (!tok->eos_ids().empty())
      config.eos_token_ids.assign(tok->eos_ids().begin(), tok->eos_ids().end());
  }
  if (options.vocab > 0) config.vocab_size = options.vocab;
  if (config.bos_token_id >= config.vocab_size) config.bos_token_id = 0;
  std::vector<int>& eos = config.eos_token_ids;
  eos.erase(std::remove_if(eos.begin(), eos.end(), [&](int id) { return id >= config.vocab_size; }),
            eos.end());
  if (eos.empty()) eos.push_back(config.vocab_size > 2 ? 2 : 0);
  return config;
}

uint64_t Elements(const TensorPlan& t) {
  uint64_t n = 1;
  for (int64_t d : t.shape) n *= d;
  return n;
}

// The tensors split into shards of roughly equal size, in order.
struct Shards {
  std::vector<SafetensorsWriter> writers;
  std::vector<std::string> files;
  nlohmann::json weight_map = nlohmann::json::object();
  uint64_t total = 0;  // bytes of all tensors
};

Shards AssignShards(const std::vector<TensorPlan>& plan, const RandomModelOptions& options) {
  Shards shards;
  shards.writers.resize(options.shards);
  shards.files.resize(options.shards);
  for (const auto& t : plan) shards.total += Elements(t) * StoredDTypeSize(options.dtype);
  uint64_t seen = 0;
  for (const auto& t : plan) {
    const int shard = static_cast<int>(std::min<uint64_t>(
        seen * options.shards / std::max<uint64_t>(shards.total, 1), options.shards - 1));
    seen += Elements(t) * StoredDTypeSize(options.dtype);
    shards.writers[shard].Add(t.name, options.dtype, t.shape);
    shards.files[shard] = options.shards == 1 ? "model.safetensors"
                                              : "model-" + std::to_string(shard + 1) + "-of-" +
                                                    std::to_string(options.shards) + ".safetensors";
    shards.weight_map[t.name] = shards.files[shard];
  }
  return shards;
}

// Writes every shard's file, the tensors' values drawn as the plan says.
void WriteShards(const RandomModelOptions& options, const std::string& dir,
                 const std::vector<TensorPlan>& plan, Shards& shards) {
  uint64_t done = 0;
  std::vector<float> buf;
  auto fill = [&](const std::string& name, const TensorInfo& info, uint8_t* dst) {
    const auto& tp = *std::find_if(plan.begin(), plan.end(),
                                   [&](const TensorPlan& x) { return x.name == name; });
    const size_t n = info.bytes / StoredDTypeSize(info.dtype);
    buf.resize(n);
    FillNormal(options.seed, name, tp.mean, tp.std, buf.data(), n);
    if (info.dtype == StoredDType::kF32) {
      std::memcpy(dst, buf.data(), info.bytes);
    } else {
      at::Tensor f = at::from_blob(buf.data(), {static_cast<int64_t>(n)});
      at::Tensor half = f.to(info.dtype == StoredDType::kF16 ? at::kHalf : at::kBFloat16);
      std::memcpy(dst, half.data_ptr(), info.bytes);
    }
    done += info.bytes;
    if (options.progress) options.progress(done, shards.total);
  };
  for (int s = 0; s < options.shards; ++s) {
    if (shards.writers[s].entries().empty()) continue;
    shards.writers[s].Write((fs::path(dir) / shards.files[s]).string(),
                            [&](const std::string& name, const TensorInfo& info, uint8_t* dst) {
                              fill(name, info, dst);
                            });
  }
}

// Copies the tokenizer as `tokenizer_name`, and beside a tokenizer.json its
// BOS/EOS rules and chat template.
void CopyTokenizer(const std::string& tokenizer, const std::string& tokenizer_name,
                   const std::string& dir) {
  std::error_code ec;
  fs::copy_file(tokenizer, fs::path(dir) / tokenizer_name, fs::copy_options::overwrite_existing,
                ec);
  if (ec)
    throw Exception(Exception::kUnavailable,
                    tokenizer + ": cannot copy tokenizer: " + ec.message());
  for (const char* side : {"tokenizer_config.json", "generation_config.json"}) {
    const fs::path from = fs::path(tokenizer).parent_path() / side;
    if (tokenizer_name != "tokenizer.json" || !fs::exists(from)) continue;
    fs::copy_file(from, fs::path(dir) / side, fs::copy_options::overwrite_existing, ec);
    if (ec)
      throw Exception(Exception::kUnavailable, from.string() + ": cannot copy: " + ec.message());
  }
}

}  // namespace

void WriteRandomModel(const RandomModelOptions& options, const std::string& dir) {
  std::string tokenizer_name;  // what the tokenizer is called in the directory
  const ModelConfig config = ConfigFor(options, tokenizer_name);
  if (options.shards < 1 || options.shards > 64)
    throw Exception(Exception::kInvalidArgument, "shards must be in 1..64");
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec)
    throw Exception(Exception::kUnavailable, dir + ": cannot create directory: " + ec.message());

  const std::vector<TensorPlan> plan = Plan(config);
  Shards shards = AssignShards(plan, options);
  WriteShards(options, dir, plan, shards);
  if (options.shards > 1) {
    nlohmann::json index = {{"metadata", {{"total_size", shards.total}}},
                            {"weight_map", shards.weight_map}};
    std::ofstream(fs::path(dir) / "model.safetensors.index.json") << index.dump(2) << "\n";
    fs::remove(fs::path(dir) / "model.safetensors", ec);
  } else {
    fs::remove(fs::path(dir) / "model.safetensors.index.json", ec);
  }
  std::ofstream cfg(fs::path(dir) / "config.json");
  cfg << ModelConfigToJson(config);
  if (!cfg) throw Exception(Exception::kUnavailable, dir + "/config.json: write failed");
  if (!options.tokenizer.empty()) CopyTokenizer(options.tokenizer, tokenizer_name, dir);
}

}  // namespace splitlm::partition
