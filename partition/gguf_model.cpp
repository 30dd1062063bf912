#include "partition/gguf_model.h"

#include <cmath>
#include <cstdint>
#include <utility>

#include "partition/tensor_f32.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

[[noreturn]] void Fail(const GgufFile& file, const std::string& what) {
  throw Exception(Exception::kCorrupt, file.path() + ": " + what);
}

// Reads metadata of one model: keys are "{arch}.{suffix}" unless they start
// with "tokenizer." or "general.".
class Meta {
 public:
  Meta(const GgufFile& file, std::string arch) : file_(file), arch_(std::move(arch)) {}

  std::string Key(const std::string& suffix) const {
    return suffix.rfind("tokenizer.", 0) == 0 || suffix.rfind("general.", 0) == 0
               ? suffix
               : arch_ + "." + suffix;
  }
  const GgufValue* Find(const std::string& suffix) const { return file_.Find(Key(suffix)); }

  // A positive integer up to 2^30; `def` < 0 makes the key required.
  int Int(const std::string& suffix, int def = -1) const {
    const GgufValue* v = Find(suffix);
    if (v == nullptr) {
      if (def < 0) Fail(file_, "missing metadata key \"" + Key(suffix) + "\"");
      return def;
    }
    if (!v->is_integer()) Fail(file_, "metadata key \"" + Key(suffix) + "\" must be an integer");
    if (v->integer <= 0 || v->integer > (int64_t{1} << 30)) {
      Fail(file_, "metadata key \"" + Key(suffix) + "\" = " + std::to_string(v->integer) +
                      " is out of range");
    }
    return static_cast<int>(v->integer);
  }

  // A positive number; `def` < 0 makes the key required.
  double Positive(const std::string& suffix, double def) const {
    const GgufValue* v = Find(suffix);
    if (v == nullptr) {
      if (def < 0) Fail(file_, "missing metadata key \"" + Key(suffix) + "\"");
      return def;
    }
    const double x = v->is_real()      ? v->real
                     : v->is_integer() ? static_cast<double>(v->integer)
                                       : -1;
    if (!(x > 0)) Fail(file_, "metadata key \"" + Key(suffix) + "\" must be a positive number");
    return x;
  }

  // A token id inside the vocabulary, or nullopt when absent.
  std::optional<int> TokenId(const std::string& suffix, int vocab) const {
    const GgufValue* v = Find(suffix);
    if (v == nullptr) return std::nullopt;
    if (!v->is_integer()) Fail(file_, "metadata key \"" + Key(suffix) + "\" must be an integer");
    if (v->integer < 0 || v->integer >= vocab) {
      Fail(file_, "metadata key \"" + Key(suffix) + "\" = " + std::to_string(v->integer) +
                      " is outside the vocabulary of " + std::to_string(vocab));
    }
    return static_cast<int>(v->integer);
  }

 private:
  const GgufFile& file_;
  std::string arch_;
};

std::string DimsString(const std::vector<int64_t>& dims) {
  std::string s = "[";
  for (size_t i = 0; i < dims.size(); ++i) s += (i ? ", " : "") + std::to_string(dims[i]);
  return s + "]";
}

Arch ArchOf(const GgufFile& file) {
  const GgufValue* v = file.Find("general.architecture");
  if (v == nullptr || v->type != GgufType::kString) {
    Fail(file, "missing metadata key \"general.architecture\" (a string such as \"llama\")");
  }
  if (v->text == "llama") return Arch::kLlama;
  if (v->text == "qwen2") return Arch::kQwen2;
  Fail(file, "unsupported architecture \"" + v->text +
                 "\" (general.architecture; supported: llama, qwen2)");
}

// The layer of a tensor named "blk.N....", or -1.
int64_t BlockIndex(const std::string& name) {
  if (name.compare(0, 4, "blk.") != 0) return -1;
  int64_t n = 0;
  size_t i = 4;
  for (; i < name.size() && i < 13 && name[i] >= '0' && name[i] <= '9'; ++i)
    n = n * 10 + (name[i] - '0');
  return i > 4 && i < name.size() && name[i] == '.' ? n : -1;
}

void ReadShapes(const Meta& m, ModelConfig& c, const GgufFile& file) {
  c.num_layers = m.Int("block_count");
  c.hidden_size = m.Int("embedding_length");
  c.intermediate_size = m.Int("feed_forward_length");
  c.num_heads = m.Int("attention.head_count");
  c.num_kv_heads = m.Int("attention.head_count_kv", c.num_heads);
  c.max_context = m.Int("context_length");
  if (m.Find("attention.key_length") == nullptr && c.hidden_size % c.num_heads != 0) {
    Fail(file, "embedding_length " + std::to_string(c.hidden_size) +
                   " is not a multiple of attention.head_count " + std::to_string(c.num_heads));
  }
  c.head_dim = m.Int("attention.key_length", c.hidden_size / c.num_heads);
  if (m.Int("attention.value_length", c.head_dim) != c.head_dim) {
    Fail(file, "\"" + m.Key("attention.value_length") + "\" differs from the key length");
  }
  if (c.head_dim % 2 != 0) Fail(file, "the head dimension must be even for rotary embeddings");
  if (c.num_heads % c.num_kv_heads != 0) {
    Fail(file, "attention.head_count " + std::to_string(c.num_heads) +
                   " is not a multiple of attention.head_count_kv " +
                   std::to_string(c.num_kv_heads));
  }
  if (m.Int("rope.dimension_count", c.head_dim) != c.head_dim) {
    Fail(file, "\"" + m.Key("rope.dimension_count") +
                   "\" = " + std::to_string(m.Int("rope.dimension_count")) +
                   " rotates part of each head; only full rotary (" + std::to_string(c.head_dim) +
                   ") is supported");
  }
}

// Llama 3.1 scaling as llama.cpp's converter stores it: a divisor per rotary
// frequency.
void ReadFreqFactors(const GgufFile& file, const GgufTensor& t, ModelConfig& c) {
  const int64_t half = c.head_dim / 2;
  if (t.dims != std::vector<int64_t>{half}) {
    Fail(file, "tensor \"rope_freqs.weight\" has dims " + DimsString(t.dims) + ", expected [" +
                   std::to_string(half) + "] (half the head dimension)");
  }
  if (!CanConvertToF32(t.type)) {
    Fail(file, "tensor \"rope_freqs.weight\" has type " + GgmlTypeName(t.type) +
                   ", which splitlm cannot load yet");
  }
  c.rope_scaling.freq_factors.resize(static_cast<size_t>(half));
  TensorToF32(TensorRef{file.data(t), t.type, {half}, 0}, c.rope_scaling.freq_factors.data());
  for (float f : c.rope_scaling.freq_factors) {
    if (!(f > 0) || !std::isfinite(f))
      Fail(file, "tensor \"rope_freqs.weight\" holds a factor that is not a positive number");
  }
}

void ReadRope(const Meta& m, ModelConfig& c, const GgufFile& file) {
  c.rope_theta = m.Positive("rope.freq_base", 10000.0);
  c.rms_norm_eps = m.Positive("attention.layer_norm_rms_epsilon", -1);
  std::string type = "none";
  if (const GgufValue* v = m.Find("rope.scaling.type")) {
    if (v->type != GgufType::kString)
      Fail(file, "\"" + m.Key("rope.scaling.type") + "\" must be a string");
    type = v->text;
  }
  const double factor = m.Find("rope.scaling.factor") ? m.Positive("rope.scaling.factor", 1.0)
                                                      : m.Positive("rope.scale_linear", 1.0);
  if (type == "linear" || (type == "none" && m.Find("rope.scale_linear") && factor != 1.0)) {
    c.rope_scaling.kind = RopeScaling::Kind::kLinear;
    c.rope_scaling.factor = factor;
  } else if (type != "none") {
    Fail(file, "unsupported rope scaling \"" + type + "\" (" + m.Key("rope.scaling.type") +
                   "; supported: none, linear)");
  }
  if (const GgufTensor* t = file.FindTensor("rope_freqs.weight")) ReadFreqFactors(file, *t, c);
}

void ReadVocabulary(const Meta& m, ModelConfig& c, const GgufFile& file) {
  const GgufValue* tokens = m.Find("tokenizer.ggml.tokens");
  const GgufTensor* embd = file.FindTensor("token_embd.weight");
  if (tokens != nullptr && tokens->type == GgufType::kArray && !tokens->texts.empty()) {
    c.vocab_size = static_cast<int>(tokens->texts.size());
  } else if (embd != nullptr && embd->dims.size() == 2 && embd->dims[1] > 0 &&
             embd->dims[1] <= (1 << 30)) {
    c.vocab_size = static_cast<int>(embd->dims[1]);
  } else {
    Fail(file,
         "no vocabulary size: neither \"tokenizer.ggml.tokens\" nor a 2-D \"token_embd.weight\"");
  }
  c.bos_token_id = m.TokenId("tokenizer.ggml.bos_token_id", c.vocab_size).value_or(1);
  c.eos_token_ids = {m.TokenId("tokenizer.ggml.eos_token_id", c.vocab_size).value_or(2)};
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    const auto id = m.TokenId(key, c.vocab_size);
    if (id && !c.IsEos(*id)) c.eos_token_ids.push_back(*id);
  }
  if (c.bos_token_id >= c.vocab_size || c.eos_token_ids[0] >= c.vocab_size) {
    Fail(file, "the default BOS/EOS ids 1/2 are outside the vocabulary of " +
                   std::to_string(c.vocab_size));
  }
}

void CheckBlocks(const GgufFile& file, const ModelConfig& c) {
  for (const GgufTensor& t : file.header().tensors) {
    const int64_t block = BlockIndex(t.name);
    if (block >= c.num_layers) {
      Fail(file, "tensor \"" + t.name + "\" belongs to layer " + std::to_string(block) +
                     ", but block_count is " + std::to_string(c.num_layers));
    }
  }
}

// Hugging Face's names of a layer's tensors, after "model.layers.N.", and
// GGUF's after "blk.N.".
constexpr std::pair<const char*, const char*> kLayerNames[] = {
    {"input_layernorm.weight", "attn_norm.weight"},
    {"self_attn.q_proj.weight", "attn_q.weight"},
    {"self_attn.k_proj.weight", "attn_k.weight"},
    {"self_attn.v_proj.weight", "attn_v.weight"},
    {"self_attn.q_proj.bias", "attn_q.bias"},
    {"self_attn.k_proj.bias", "attn_k.bias"},
    {"self_attn.v_proj.bias", "attn_v.bias"},
    {"self_attn.o_proj.weight", "attn_output.weight"},
    {"post_attention_layernorm.weight", "ffn_norm.weight"},
    {"mlp.gate_proj.weight", "ffn_gate.weight"},
    {"mlp.up_proj.weight", "ffn_up.weight"},
    {"mlp.down_proj.weight", "ffn_down.weight"},
};

}  // namespace

ModelConfig GgufModelConfig(const GgufFile& file) {
  ModelConfig c;
  c.arch = ArchOf(file);
  const Meta m(file, c.arch == Arch::kLlama ? "llama" : "qwen2");
  ReadShapes(m, c, file);
  ReadRope(m, c, file);
  ReadVocabulary(m, c, file);
  CheckBlocks(file, c);
  c.tie_word_embeddings = file.FindTensor("output.weight") == nullptr;
  c.qkv_bias = c.arch == Arch::kQwen2 || file.FindTensor("blk.0.attn_q.bias") != nullptr;
  return c;
}

std::string GgufTensorName(const std::string& hf) {
  if (hf == "model.embed_tokens.weight") return "token_embd.weight";
  if (hf == "model.norm.weight") return "output_norm.weight";
  if (hf == "lm_head.weight") return "output.weight";
  static const std::string kPrefix = "model.layers.";
  if (hf.compare(0, kPrefix.size(), kPrefix) != 0) return "";
  const size_t dot = hf.find('.', kPrefix.size());
  if (dot == std::string::npos) return "";
  const std::string layer = hf.substr(kPrefix.size(), dot - kPrefix.size());
  const std::string rest = hf.substr(dot + 1);
  for (const auto& [hf_rest, gguf_rest] : kLayerNames) {
    if (rest == hf_rest) return "blk." + layer + "." + gguf_rest;
  }
  return "";
}

TensorRef GgufTensorRef(const GgufFile& file, const ModelConfig& c, const std::string& hf_name,
                        const std::vector<int64_t>& expected) {
  const std::string name = GgufTensorName(hf_name);
  const GgufTensor* t = name.empty() ? nullptr : file.FindTensor(name);
  if (t == nullptr) {
    Fail(file, "tensor \"" + (name.empty() ? hf_name : name) + "\" (" + hf_name + ") is missing");
  }
  const std::vector<int64_t> shape(t->dims.rbegin(), t->dims.rend());
  if (shape != expected) {
    Fail(file, "tensor \"" + name + "\" has dims " + DimsString(t->dims) +
                   " (innermost first), expected " +
                   DimsString(std::vector<int64_t>(expected.rbegin(), expected.rend())));
  }
  if (!CanConvertToF32(t->type)) {
    Fail(file, "tensor \"" + name + "\" has type " + GgmlTypeName(t->type) +
                   ", which splitlm cannot load yet");
  }
  TensorRef ref{file.data(*t), t->type, shape, 0};
  // llama.cpp rotates adjacent pairs for `llama`; its converter reorders Q
  // and K rows (and biases) so; Hugging Face rotates (d, d + half).
  if (c.arch == Arch::kLlama) {
    if (name.find(".attn_q.") != std::string::npos) ref.interleaved_heads = c.num_heads;
    if (name.find(".attn_k.") != std::string::npos) ref.interleaved_heads = c.num_kv_heads;
  }
  return ref;
}

}  // namespace splitlm::partition
