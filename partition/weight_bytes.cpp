#include "partition/weight_bytes.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <optional>

#include "partition/gguf_model.h"
#include "partition/gguf_quantize.h"
#include "partition/gguf_writer.h"
#include "partition/mapped_file.h"
#include "partition/model.h"
#include "partition/weight_matrix.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

uint32_t T(GgmlType t) { return static_cast<uint32_t>(t); }

GgufTensor F32Tensor(const std::string& name, std::vector<int64_t> dims) {
  GgufTensor t;
  t.name = name;
  t.dims = std::move(dims);
  t.type = T(GgmlType::kF32);
  return t;
}

// The tensors llama.cpp's converter writes for `c`, as F32, in layer order
// (dims innermost first).
GgufHeader F32Header(const ModelConfig& c) {
  GgufHeader h;
  const std::string arch = c.arch == Arch::kQwen2 ? "qwen2" : "llama";
  h.metadata["general.architecture"] = GgufString(arch);
  h.metadata[arch + ".block_count"] = GgufU32(c.num_layers);
  const int64_t hs = c.hidden_size, qd = int64_t(c.num_heads) * c.head_dim,
                kvd = int64_t(c.num_kv_heads) * c.head_dim, ff = c.intermediate_size,
                vocab = c.vocab_size;
  h.tensors.push_back(F32Tensor("token_embd.weight", {hs, vocab}));
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    h.tensors.push_back(F32Tensor(b + "attn_norm.weight", {hs}));
    h.tensors.push_back(F32Tensor(b + "attn_q.weight", {hs, qd}));
    h.tensors.push_back(F32Tensor(b + "attn_k.weight", {hs, kvd}));
    h.tensors.push_back(F32Tensor(b + "attn_v.weight", {hs, kvd}));
    if (c.qkv_bias) {
      h.tensors.push_back(F32Tensor(b + "attn_q.bias", {qd}));
      h.tensors.push_back(F32Tensor(b + "attn_k.bias", {kvd}));
      h.tensors.push_back(F32Tensor(b + "attn_v.bias", {kvd}));
    }
    h.tensors.push_back(F32Tensor(b + "attn_output.weight", {qd, hs}));
    h.tensors.push_back(F32Tensor(b + "ffn_norm.weight", {hs}));
    h.tensors.push_back(F32Tensor(b + "ffn_gate.weight", {hs, ff}));
    h.tensors.push_back(F32Tensor(b + "ffn_up.weight", {hs, ff}));
    h.tensors.push_back(F32Tensor(b + "ffn_down.weight", {ff, hs}));
  }
  h.tensors.push_back(F32Tensor("output_norm.weight", {hs}));
  if (!c.tie_word_embeddings) h.tensors.push_back(F32Tensor("output.weight", {hs, vocab}));
  return h;
}

// The Hugging Face name of GGUF tensor `name` of an F32Header ("" if none).
std::string HfName(const std::string& name) {
  static const char* const kSuffixes[] = {
      "input_layernorm.weight",  "self_attn.q_proj.weight", "self_attn.k_proj.weight",
      "self_attn.v_proj.weight", "self_attn.q_proj.bias",   "self_attn.k_proj.bias",
      "self_attn.v_proj.bias",   "self_attn.o_proj.weight", "post_attention_layernorm.weight",
      "mlp.gate_proj.weight",    "mlp.up_proj.weight",      "mlp.down_proj.weight"};
  for (const char* hf : {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"}) {
    if (GgufTensorName(hf) == name) return hf;
  }
  int layer = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) return "";
  const std::string prefix = "model.layers." + std::to_string(layer) + ".";
  for (const char* suffix : kSuffixes) {
    if (GgufTensorName(prefix + suffix) == name) return prefix + suffix;
  }
  return "";
}

uint64_t Values(const GgufTensor& t) {
  uint64_t n = 1;
  for (int64_t d : t.dims) n *= static_cast<uint64_t>(d);
  return n;
}

// The type of every tensor of `h` (an F32 header) in `format`.
std::vector<uint32_t> Types(const GgufHeader& h, const std::string& format) {
  if (format == "q4_k" || format == "q6_k") {
    // Every quantisable matrix: those llama-quantize would give F16.
    const uint32_t type = T(format == "q4_k" ? GgmlType::kQ4_K : GgmlType::kQ6_K);
    std::vector<uint32_t> types = PlanTensorTypes(h, QuantizeTarget::kF16);
    for (size_t i = 0; i < types.size(); ++i) {
      if (types[i] == T(GgmlType::kF16))
        types[i] = h.tensors[i].dims[0] % 256 == 0 ? type : T(GgmlType::kF32);
    }
    return types;
  }
  std::vector<std::string> notes;
  return PlanTensorTypes(h, *ParseQuantizeTarget(format), &notes);
}

bool IsBlockType(uint32_t type) { return GgmlBlockOf(type)->values > 1; }

// Counts what a stage holds of the tensors of a header stored in given types
// and loaded in `load_format` (weight_matrix.h), into `weights`.
class HeldCounter {
 public:
  HeldCounter(const GgufHeader& h, const std::vector<uint32_t>& types, int num_layers,
              const std::string& path, const std::string& load_format, WeightBytes& weights)
      : num_layers_(num_layers), load_format_(load_format), weights_(weights) {
    for (size_t i = 0; i < h.tensors.size(); ++i) {
      const GgufTensor& t = h.tensors[i];
      ++weights_.tensor_types[GgmlTypeName(types[i])];
      int layer = -1;
      if (std::sscanf(t.name.c_str(), "blk.%d.", &layer) == 1 &&
          (layer < 0 || layer >= num_layers)) {
        throw Exception(Exception::kCorrupt, path + ": tensor \"" + t.name +
                                                 "\" belongs to layer " + std::to_string(layer) +
                                                 " of a model of " + std::to_string(num_layers) +
                                                 " layers");
      }
      by_name_[t.name] = {&t, types[i]};
    }
  }

  bool Has(const std::string& gguf_name) const { return by_name_.count(gguf_name) > 0; }

  // The stored layout of Hugging Face's tensor `hf`, if the file has it.
  std::optional<PartLayout> Layout(const std::string& hf) const {
    auto it = by_name_.find(GgufTensorName(hf));
    if (it == by_name_.end()) return std::nullopt;
    const GgufTensor& t = *it->second.first;
    return PartLayout{hf, it->second.second,
                      static_cast<int64_t>(Values(t) / static_cast<uint64_t>(t.dims[0])),
                      t.dims[0]};
  }

  // A norm or bias, held in fp32: its bytes (its values count in `layer`'s).
  double Vector(const std::string& hf, int layer) {
    const auto p = Layout(hf);
    if (!p) return 0.0;
    if (layer >= 0) weights_.layer_params[layer] += static_cast<double>(p->rows * p->cols);
    return static_cast<double>(p->rows * p->cols) * sizeof(float);
  }

  // The parts stacked as WeightMatrix holds them (values count in `layer`'s).
  HeldLayout Matrix(const std::vector<std::string>& names, int layer) {
    std::vector<PartLayout> parts;
    for (const auto& n : names) {
      if (auto p = Layout(n)) parts.push_back(*p);
    }
    HeldLayout held = HeldMatrixLayout(parts, load_format_, num_layers_);
    for (size_t j = 0; j < parts.size() && layer >= 0; ++j) {
      const auto values = static_cast<double>(parts[j].rows * parts[j].cols);
      weights_.layer_params[layer] += values;
      if (IsBlockType(held.types[j])) weights_.layer_block_params[layer] += values;
    }
    return held;
  }

 private:
  int num_layers_;
  const std::string& load_format_;
  WeightBytes& weights_;
  std::map<std::string, std::pair<const GgufTensor*, uint32_t>> by_name_;
};

// Bytes layer `l` holds: norms, biases and the four matrices.
double LayerBytes(HeldCounter& held, int l) {
  const std::string p = "model.layers." + std::to_string(l) + ".";
  double bytes = held.Vector(p + "input_layernorm.weight", l) +
                 held.Vector(p + "post_attention_layernorm.weight", l);
  for (const char* b : {"q_proj.bias", "k_proj.bias", "v_proj.bias"})
    bytes += held.Vector(p + "self_attn." + b, l);
  bytes += held.Matrix({p + "self_attn.q_proj.weight", p + "self_attn.k_proj.weight",
                        p + "self_attn.v_proj.weight"},
                       l)
               .bytes;
  bytes += held.Matrix({p + "self_attn.o_proj.weight"}, l).bytes;
  bytes += held.Matrix({p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"}, l).bytes;
  bytes += held.Matrix({p + "mlp.down_proj.weight"}, l).bytes;
  return bytes;
}

// What a stage holds of the tensors of `h` stored as `types` and loaded in
// `load_format` (weight_matrix.h): the layers' matrices as WeightMatrix
// holds them (q/k/v stacked, gate/up stacked, o, down), their norms and
// biases in fp32; the embedding table as WeightMatrix holds it (as the tied
// head would be); the head's norm in fp32 and its matrix (output, or
// token_embd when tied) as WeightMatrix holds it. Other tensors (rope_freqs)
// are not held as weights.
WeightBytes Collect(const GgufHeader& h, const std::vector<uint32_t>& types, int num_layers,
                    const std::string& path, const std::string& load_format) {
  WeightBytes w;
  w.layers.assign(num_layers, 0);
  w.layer_params.assign(num_layers, 0);
  w.layer_block_params.assign(num_layers, 0);
  HeldCounter held(h, types, num_layers, path, load_format, w);
  for (int l = 0; l < num_layers; ++l) w.layers[l] = LayerBytes(held, l);
  const bool tied = !held.Has("output.weight");
  const HeldLayout head = held.Matrix({tied ? "model.embed_tokens.weight" : "lm_head.weight"}, -1);
  w.head_read = static_cast<double>(head.bytes);
  w.head = held.Vector("model.norm.weight", -1) + w.head_read;
  w.head_block_fraction = !head.types.empty() && IsBlockType(head.types[0]) ? 1 : 0;
  if (const auto e = held.Layout("model.embed_tokens.weight")) {
    // Held as the head would be (stage.cpp): one row is bytes / rows.
    w.embed = static_cast<double>(held.Matrix({"model.embed_tokens.weight"}, -1).bytes);
    w.embed_row = e->rows > 0 ? std::floor(w.embed / static_cast<double>(e->rows)) : 0;
  }
  // A stage holding a tied head and the embedding looks the rows up in the
  // packed head and keeps no second table (stage.cpp).
  if (tied) w.head -= w.embed;
  return w;
}

std::string MiB(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g MiB", bytes / (1 << 20));
  return buf;
}

}  // namespace

const std::vector<std::string>& WeightFormatNames() {
  static const std::vector<std::string> names = {"f32",  "f16",  "bf16", "q8_0",
                                                 "q4_0", "q4_k", "q6_k", "q4_k_m"};
  return names;
}

std::string WeightFormatList() {
  std::string all;
  for (const auto& n : WeightFormatNames()) all += (all.empty() ? "" : ", ") + n;
  return all;
}

bool IsWeightFormat(const std::string& name) {
  const auto& names = WeightFormatNames();
  return std::find(names.begin(), names.end(), name) != names.end();
}

double WeightBytes::LayersBytes(int begin, int end) const {
  double sum = 0;
  for (int l = begin; l < end; ++l) sum += layers.at(l);
  return sum;
}

double WeightBytes::BlockFraction(int layer) const {
  return layer_params.at(layer) > 0 ? layer_block_params.at(layer) / layer_params.at(layer) : 0;
}

std::string WeightBytes::Summary() const {
  std::string s = format + ": ";
  if (!layers.empty()) {
    const auto [lo, hi] = std::minmax_element(layers.begin(), layers.end());
    s += "layers " + (*lo == *hi ? MiB(*lo) : MiB(*lo) + "-" + MiB(*hi)) + " (" +
         MiB(LayersBytes(0, static_cast<int>(layers.size()))) + " in all), ";
  }
  s += "embedding " + MiB(embed) + ", head " + MiB(head_read) + ";";
  std::vector<std::pair<int, std::string>> counts;
  for (const auto& [type, n] : tensor_types) counts.push_back({-n, type});
  std::sort(counts.begin(), counts.end());
  for (size_t i = 0; i < counts.size(); ++i)
    s += (i ? ", " : " ") + counts[i].second + " x" + std::to_string(-counts[i].first);
  return s;
}

WeightBytes WeightBytesOf(const ModelConfig& config, const std::string& format) {
  if (!IsWeightFormat(format)) {
    throw Exception(
        Exception::kInvalidArgument,
        "weights \"" + format + "\": unknown format (choose " + WeightFormatList() + ")");
  }
  const GgufHeader h = F32Header(config);
  WeightBytes w = Collect(h, Types(h, format), config.num_layers, "weights " + format, "");
  w.format = format;
  return w;
}

WeightBytes WeightBytesOfGguf(const GgufHeader& header, int num_layers, const std::string& path,
                              const std::string& load_format) {
  std::vector<uint32_t> types;
  for (const auto& t : header.tensors) types.push_back(t.type);
  WeightBytes w = Collect(header, types, num_layers, path, load_format);
  w.format = "gguf";
  return w;
}

WeightBytes ModelWeightBytes(const Model& model, const std::string& format) {
  if (!format.empty() && format != "model") return WeightBytesOf(model.config(), format);
  if (model.is_gguf()) {
    auto file = MappedFile::Open(model.dir(), 0, "GGUF file");
    const GgufHeader h = ParseGgufHeader(file->data(), file->size(), model.dir());
    WeightBytes w = WeightBytesOfGguf(h, model.config().num_layers, model.dir(), model.weights());
    if (!model.weights().empty()) w.format = model.weights();
    return w;
  }
  // A directory: its tensors' stored types (F32, F16 or BF16), as loaded.
  const GgufHeader h = F32Header(model.config());
  std::vector<uint32_t> types;
  for (const GgufTensor& t : h.tensors) {
    const std::string hf = HfName(t.name);
    types.push_back(
        !hf.empty() && model.HasTensor(hf)
            ? model.Tensor(hf, std::vector<int64_t>(t.dims.rbegin(), t.dims.rend())).type
            : T(GgmlType::kF32));
  }
  WeightBytes w = Collect(h, types, model.config().num_layers, model.dir(), model.weights());
  const bool all_f32 =
      std::all_of(types.begin(), types.end(), [](uint32_t t) { return t == T(GgmlType::kF32); });
  w.format = !model.weights().empty() ? model.weights() : all_f32 ? "f32" : "model";
  return w;
}

}  // namespace splitlm::partition
