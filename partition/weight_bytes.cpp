#include "partition/weight_bytes.h"

#include <algorithm>
#include <cstdio>

#include "partition/gguf_quantize.h"
#include "partition/mapped_file.h"
#include "partition/model.h"
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
  GgufValue a;
  a.type = GgufType::kString;
  a.text = arch;
  h.metadata["general.architecture"] = a;
  GgufValue n;
  n.type = GgufType::kUint32;
  n.integer = c.num_layers;
  h.metadata[arch + ".block_count"] = n;
  const int64_t hs = c.hidden_size, qd = int64_t(c.num_heads) * c.head_dim, kvd = int64_t(c.num_kv_heads) * c.head_dim,
                ff = c.intermediate_size, vocab = c.vocab_size;
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

uint64_t TensorBytes(const GgufTensor& t, uint32_t type) {
  const auto block = GgmlBlockOf(type);
  uint64_t rows = 1;
  for (size_t i = 1; i < t.dims.size(); ++i) rows *= static_cast<uint64_t>(t.dims[i]);
  return rows * static_cast<uint64_t>(t.dims[0] / block->values) * block->bytes;
}

uint64_t Values(const GgufTensor& t) {
  uint64_t n = 1;
  for (int64_t d : t.dims) n *= static_cast<uint64_t>(d);
  return n;
}

bool IsBlockType(uint32_t type) { return GgmlBlockOf(type)->values > 1; }

// The type of every tensor of `h` (an F32 header) in `format`.
std::vector<uint32_t> Types(const GgufHeader& h, const std::string& format) {
  if (format == "q4_k" || format == "q6_k") {
    // Every quantisable matrix: those llama-quantize would give F16.
    const uint32_t type = T(format == "q4_k" ? GgmlType::kQ4_K : GgmlType::kQ6_K);
    std::vector<uint32_t> types = PlanTensorTypes(h, QuantizeTarget::kF16);
    for (size_t i = 0; i < types.size(); ++i) {
      if (types[i] == T(GgmlType::kF16)) types[i] = h.tensors[i].dims[0] % 256 == 0 ? type : T(GgmlType::kF32);
    }
    return types;
  }
  std::vector<std::string> notes;
  return PlanTensorTypes(h, *ParseQuantizeTarget(format), &notes);
}

// Adds tensor `t` stored as `type` to its part of `w`.
void Add(WeightBytes& w, const GgufTensor& t, uint32_t type, int num_layers, const std::string& path) {
  const double bytes = static_cast<double>(TensorBytes(t, type));
  ++w.tensor_types[GgmlTypeName(type)];
  int layer = -1;
  if (std::sscanf(t.name.c_str(), "blk.%d.", &layer) == 1) {
    if (layer < 0 || layer >= num_layers) {
      throw Exception(Exception::kCorrupt, path + ": tensor \"" + t.name + "\" belongs to layer " +
                                               std::to_string(layer) + " of a model of " + std::to_string(num_layers) +
                                               " layers");
    }
    w.layers[layer] += bytes;
    w.layer_params[layer] += static_cast<double>(Values(t));
    if (IsBlockType(type)) w.layer_block_params[layer] += static_cast<double>(Values(t));
  } else if (t.name == "output.weight") {
    w.head += bytes;
    w.head_read = bytes;
    w.head_block_fraction = IsBlockType(type) ? 1 : 0;
  } else if (t.name == "output_norm.weight") {
    w.head += bytes;
  } else {
    w.embed += bytes;
    if (t.name == "token_embd.weight") {
      w.embed_row = static_cast<double>(TensorBytes(t, type)) / static_cast<double>(Values(t) / t.dims[0]);
    }
  }
}

WeightBytes Collect(const GgufHeader& h, const std::vector<uint32_t>& types, int num_layers, const std::string& path) {
  WeightBytes w;
  w.layers.assign(num_layers, 0);
  w.layer_params.assign(num_layers, 0);
  w.layer_block_params.assign(num_layers, 0);
  bool tied = true;
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    Add(w, h.tensors[i], types[i], num_layers, path);
    tied = tied && h.tensors[i].name != "output.weight";
  }
  if (tied) {  // the head reads the embedding matrix
    for (size_t i = 0; i < h.tensors.size(); ++i) {
      if (h.tensors[i].name != "token_embd.weight") continue;
      w.head_read = static_cast<double>(TensorBytes(h.tensors[i], types[i]));
      w.head_block_fraction = IsBlockType(types[i]) ? 1 : 0;
    }
  }
  return w;
}

std::string MiB(double bytes) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g MiB", bytes / (1 << 20));
  return buf;
}

}  // namespace

const std::vector<std::string>& WeightFormatNames() {
  static const std::vector<std::string> names = {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k", "q4_k_m"};
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
    s += "layers " + (*lo == *hi ? MiB(*lo) : MiB(*lo) + "-" + MiB(*hi)) + " (" + MiB(LayersBytes(0, static_cast<int>(layers.size()))) +
         " in all), ";
  }
  s += "embedding " + MiB(embed) + ", head " + MiB(head_read) + ";";
  std::vector<std::pair<int, std::string>> counts;
  for (const auto& [type, n] : tensor_types) counts.push_back({-n, type});
  std::sort(counts.begin(), counts.end());
  for (size_t i = 0; i < counts.size(); ++i) s += (i ? ", " : " ") + counts[i].second + " x" + std::to_string(-counts[i].first);
  return s;
}

WeightBytes WeightBytesOf(const ModelConfig& config, const std::string& format) {
  if (!IsWeightFormat(format)) {
    throw Exception(Exception::kInvalidArgument,
                    "weights \"" + format + "\": unknown format (choose " + WeightFormatList() + ")");
  }
  const GgufHeader h = F32Header(config);
  WeightBytes w = Collect(h, Types(h, format), config.num_layers, "weights " + format);
  w.format = format;
  return w;
}

WeightBytes WeightBytesOfGguf(const GgufHeader& header, int num_layers, const std::string& path) {
  std::vector<uint32_t> types;
  for (const auto& t : header.tensors) types.push_back(t.type);
  WeightBytes w = Collect(header, types, num_layers, path);
  w.format = "gguf";
  return w;
}

WeightBytes ModelWeightBytes(const Model& model, const std::string& format) {
  if (!format.empty() && format != "model") return WeightBytesOf(model.config(), format);
  if (!model.is_gguf()) return WeightBytesOf(model.config(), "f32");
  auto file = MappedFile::Open(model.dir(), 0, "GGUF file");
  const GgufHeader h = ParseGgufHeader(file->data(), file->size(), model.dir());
  return WeightBytesOfGguf(h, model.config().num_layers, model.dir());
}

}  // namespace splitlm::partition
