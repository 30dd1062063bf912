#include "partition/hf_to_gguf.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>
#include <vector>

#include "partition/gguf.h"
#include "partition/gguf_model.h"
#include "partition/gguf_vocab.h"
#include "partition/gguf_writer.h"
#include "partition/model.h"
#include "partition/tensor_f32.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

// One tensor to write: its Hugging Face name and shape (outermost first),
// and for `llama` Q/K the heads whose rows are reordered.
struct Planned {
  std::string hf_name;
  std::vector<int64_t> shape;
  int interleave_heads = 0;
};

std::vector<Planned> PlanTensors(const Model& model) {
  const ModelConfig& c = model.config();
  const int64_t h = c.hidden_size, qd = int64_t{c.num_heads} * c.head_dim,
                kvd = int64_t{c.num_kv_heads} * c.head_dim, inter = c.intermediate_size;
  const bool llama = c.arch == Arch::kLlama;
  std::vector<Planned> out{{"model.embed_tokens.weight", {c.vocab_size, h}}};
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    out.push_back({p + "input_layernorm.weight", {h}});
    out.push_back({p + "self_attn.q_proj.weight", {qd, h}, llama ? c.num_heads : 0});
    out.push_back({p + "self_attn.k_proj.weight", {kvd, h}, llama ? c.num_kv_heads : 0});
    out.push_back({p + "self_attn.v_proj.weight", {kvd, h}});
    if (c.qkv_bias) {
      out.push_back({p + "self_attn.q_proj.bias", {qd}, llama ? c.num_heads : 0});
      out.push_back({p + "self_attn.k_proj.bias", {kvd}, llama ? c.num_kv_heads : 0});
      out.push_back({p + "self_attn.v_proj.bias", {kvd}});
    }
    out.push_back({p + "self_attn.o_proj.weight", {h, qd}});
    out.push_back({p + "post_attention_layernorm.weight", {h}});
    out.push_back({p + "mlp.gate_proj.weight", {inter, h}});
    out.push_back({p + "mlp.up_proj.weight", {inter, h}});
    out.push_back({p + "mlp.down_proj.weight", {h, inter}});
  }
  out.push_back({"model.norm.weight", {h}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head.weight", {c.vocab_size, h}});
  return out;
}

// The inverse of the loader's un-permutation (tensor_f32.cpp): Hugging
// Face's row i * half + j of a head is stored as row 2j + i.
std::vector<float> InterleaveHeads(const std::vector<float>& src, int64_t rows, int64_t row_len,
                                   int heads) {
  std::vector<float> dst(src.size());
  const int64_t per_head = rows / heads, half = per_head / 2;
  for (int64_t hd = 0; hd < heads; ++hd) {
    for (int64_t i = 0; i < 2; ++i) {
      for (int64_t j = 0; j < half; ++j) {
        std::memcpy(&dst[static_cast<size_t>((hd * per_head + 2 * j + i) * row_len)],
                    &src[static_cast<size_t>((hd * per_head + i * half + j) * row_len)],
                    static_cast<size_t>(row_len) * sizeof(float));
      }
    }
  }
  return dst;
}

void AddMetadata(const Model& model, const GgufVocab& vocab, GgufWriter& w) {
  const ModelConfig& c = model.config();
  const std::string arch = c.arch == Arch::kLlama ? "llama" : "qwen2";
  const std::string name =
      std::filesystem::path(model.dir()).lexically_normal().filename().string();
  w.AddKeyValue("general.architecture", GgufString(arch));
  w.AddKeyValue("general.type", GgufString("model"));
  w.AddKeyValue("general.name", GgufString(name.empty() ? "model" : name));
  w.AddKeyValue(arch + ".block_count", GgufU32(c.num_layers));
  w.AddKeyValue(arch + ".context_length", GgufU32(c.max_context));
  w.AddKeyValue(arch + ".embedding_length", GgufU32(c.hidden_size));
  w.AddKeyValue(arch + ".feed_forward_length", GgufU32(c.intermediate_size));
  w.AddKeyValue(arch + ".attention.head_count", GgufU32(c.num_heads));
  w.AddKeyValue(arch + ".attention.head_count_kv", GgufU32(c.num_kv_heads));
  w.AddKeyValue(arch + ".rope.freq_base", GgufF32(c.rope_theta));
  w.AddKeyValue(arch + ".attention.layer_norm_rms_epsilon", GgufF32(c.rms_norm_eps));
  if (c.head_dim * c.num_heads != c.hidden_size) {
    w.AddKeyValue(arch + ".attention.key_length", GgufU32(c.head_dim));
    w.AddKeyValue(arch + ".attention.value_length", GgufU32(c.head_dim));
  }
  if (c.rope_scaling.kind == RopeScaling::Kind::kLinear) {
    w.AddKeyValue(arch + ".rope.scaling.type", GgufString("linear"));
    w.AddKeyValue(arch + ".rope.scaling.factor", GgufF32(c.rope_scaling.factor));
  }
  w.AddKeyValue(arch + ".vocab_size", GgufU32(c.vocab_size));
  w.AddKeyValue(arch + ".rope.dimension_count", GgufU32(c.head_dim));
  if (vocab.keys.empty()) {
    w.AddKeyValue("tokenizer.ggml.model", GgufString("none"));
    w.AddKeyValue("tokenizer.ggml.bos_token_id", GgufU32(c.bos_token_id));
    w.AddKeyValue("tokenizer.ggml.eos_token_id", GgufU32(c.eos_token_ids.at(0)));
  }
  for (const auto& [key, value] : vocab.keys) w.AddKeyValue(key, value);
  w.AddKeyValue(kSourceIdentityKey, GgufString(IdentityToHex(model.identity())));
  w.AddKeyValue("general.quantization_version", GgufU32(2));
  w.AddKeyValue("general.file_type", GgufU32(0));  // LLAMA_FTYPE_ALL_F32
}

// Llama 3 rope scaling as llama.cpp's convert_hf_to_gguf.py stores it
// (LlamaModel.generate_extra_tensors): a divisor per rotary frequency,
// computed as its torch float32 operations do (Python scalars are rounded to
// float32 where they meet a tensor).
std::vector<float> Llama3FreqFactors(const ModelConfig& c) {
  const RopeScaling& rs = c.rope_scaling;
  const float factor = static_cast<float>(rs.factor);
  const float low = static_cast<float>(rs.low_freq_factor);
  const float old_context = static_cast<float>(rs.original_max_position);
  const float low_wavelen = static_cast<float>(rs.original_max_position / rs.low_freq_factor);
  const float high_wavelen = static_cast<float>(rs.original_max_position / rs.high_freq_factor);
  const float spread = static_cast<float>(rs.high_freq_factor - rs.low_freq_factor);
  std::vector<float> factors;
  for (int i = 0; i < c.head_dim; i += 2) {
    const float e = static_cast<float>(i) / static_cast<float>(c.head_dim);
    const float freq = 1.0f / std::pow(static_cast<float>(c.rope_theta), e);
    const float wavelen = static_cast<float>(2 * M_PI) / freq;
    if (wavelen < high_wavelen) {
      factors.push_back(1.0f);
    } else if (wavelen > low_wavelen) {
      factors.push_back(factor);
    } else {
      const float smooth = (old_context / wavelen - low) / spread;
      factors.push_back(1.0f / ((1.0f - smooth) / factor + smooth));
    }
  }
  return factors;
}

}  // namespace

std::string IdentityToHex(uint64_t identity) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(identity));
  return buf;
}

std::optional<uint64_t> IdentityFromHex(const std::string& text) {
  if (text.size() != 16) return std::nullopt;
  uint64_t v = 0;
  for (char ch : text) {
    int d = ch >= '0' && ch <= '9' ? ch - '0' : ch >= 'a' && ch <= 'f' ? ch - 'a' + 10 : -1;
    if (d < 0) return std::nullopt;
    v = v << 4 | static_cast<uint64_t>(d);
  }
  return v;
}

std::vector<std::string> ConvertToGguf(const Model& model, const std::string& out,
                                       const ConvertOptions& options) {
  if (model.is_gguf()) {
    throw Exception(Exception::kInvalidArgument,
                    model.dir() + " is already a GGUF file: quantize it directly");
  }
  const ModelConfig& c = model.config();
  if (!c.rope_scaling.freq_factors.empty()) {
    throw Exception(Exception::kInvalidArgument,
                    model.dir() + ": rope frequency factors of a directory cannot be converted");
  }
  const std::vector<Planned> plan = PlanTensors(model);
  const GgufVocab vocab = ReadGgufVocab(model.dir(), c.vocab_size);
  GgufWriter w(out);
  AddMetadata(model, vocab, w);
  // Llama 3 scaling: llama.cpp's converter writes no scaling keys but the
  // factors, as the first tensor.
  const bool llama3 = c.rope_scaling.kind == RopeScaling::Kind::kLlama3;
  const std::vector<float> freq_factors = llama3 ? Llama3FreqFactors(c) : std::vector<float>();
  if (llama3) {
    w.AddTensor("rope_freqs.weight", {static_cast<int64_t>(freq_factors.size())},
                static_cast<uint32_t>(GgmlType::kF32));
  }
  for (const Planned& t : plan) {
    w.AddTensor(GgufTensorName(t.hf_name), std::vector<int64_t>(t.shape.rbegin(), t.shape.rend()),
                static_cast<uint32_t>(GgmlType::kF32));
  }
  if (llama3) {
    w.WriteTensorData(reinterpret_cast<const uint8_t*>(freq_factors.data()),
                      freq_factors.size() * sizeof(float));
  }
  int done = 0;
  for (const Planned& t : plan) {
    int64_t numel = 1;
    for (int64_t d : t.shape) numel *= d;
    std::vector<float> data(static_cast<size_t>(numel));
    TensorToF32(model.Tensor(t.hf_name, t.shape), data.data());
    if (t.interleave_heads > 0) {
      const bool vector = t.shape.size() == 1;
      data = InterleaveHeads(data, vector ? numel : t.shape[0], vector ? 1 : t.shape[1],
                             t.interleave_heads);
    }
    w.WriteTensorData(reinterpret_cast<const uint8_t*>(data.data()), data.size() * sizeof(float));
    if (options.progress) options.progress(++done, static_cast<int>(plan.size()));
  }
  w.Commit();
  if (vocab.note.empty()) return {};
  return {vocab.note};
}

}  // namespace splitlm::partition
