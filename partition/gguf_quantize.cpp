// Mirrors llama.cpp src/llama-quant.cpp: tensor_allows_quantization,
// llama_tensor_get_type_impl (the branches for Q4_0, Q8_0, Q4_K_M, F16, BF16
// and F32), tensor_type_fallback, the weight_name_comparer order of
// llama_model_loader, and the metadata llama_model_quantize_impl writes.
#include "partition/gguf_quantize.h"

#include <algorithm>
#include <cstdio>
#include <map>

#include "partition/gguf_writer.h"
#include "partition/quant.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

constexpr int64_t kQuantizationVersion = 2;  // GGML_QNT_VERSION

uint32_t T(GgmlType t) { return static_cast<uint32_t>(t); }

bool Contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// ggml_n_dims: dimensions up to the last one above 1.
size_t NDims(const GgufTensor& t) {
  size_t n = 1;
  for (size_t i = 0; i < t.dims.size(); ++i) {
    if (t.dims[i] > 1) n = i + 1;
  }
  return n;
}

// tensor_allows_quantization.
bool AllowsQuantization(const GgufTensor& t) {
  if (NDims(t) < 2) return false;
  const std::string& name = t.name;
  if (name.size() < 6 || name.compare(name.size() - 6, 6, "weight") != 0) return false;
  static const char* const kKept[] = {"_norm.weight",
                                      "ffn_gate_inp.weight",
                                      "ffn_gate_tid2eid.weight",
                                      "altup",
                                      "laurel",
                                      "per_layer_model_proj",
                                      "ssm_conv1d",
                                      "shortconv.conv.weight",
                                      "indexer.k_proj.weight",
                                      "indexer.q_proj.weight",
                                      "time_mix_first.weight",
                                      "time_mix_w0.weight",
                                      "time_mix_w1.weight",
                                      "time_mix_w2.weight",
                                      "time_mix_v0.weight",
                                      "time_mix_v1.weight",
                                      "time_mix_v2.weight",
                                      "time_mix_a0.weight",
                                      "time_mix_a1.weight",
                                      "time_mix_a2.weight",
                                      "time_mix_g1.weight",
                                      "time_mix_g2.weight",
                                      "time_mix_decay_w1.weight",
                                      "time_mix_decay_w2.weight",
                                      "time_mix_lerp_fused.weight",
                                      "attn_rel_b.weight",
                                      ".position_embd",
                                      "sam.pos_embd",
                                      "sam.neck.",
                                      "sam.net_",
                                      ".rel_pos",
                                      ".patch_embd",
                                      ".patch_merger",
                                      "a.rvq.codebook",
                                      "mm.a.code_embd"};
  for (const char* k : kKept) {
    if (Contains(name, k)) return false;
  }
  return name != "position_embd.weight" && name != "token_types.weight";
}

// use_more_bits: the first and last eighth of the layers, and every third
// layer between.
bool UseMoreBits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

int LayerOf(const std::string& name) {
  int layer = -1;
  if (std::sscanf(name.c_str(), "blk.%d.", &layer) != 1) return -1;
  return layer;
}

bool IsAttnV(const std::string& name) {
  return Contains(name, "attn_v.weight") || Contains(name, "attn_qkv.weight") ||
         Contains(name, "attn_kv_b.weight");
}

// What llama_tensor_get_type_impl needs to know of the model and the walk.
struct PlanState {
  std::string arch;
  int n_expert = 1;
  int n_layer = 0;
  bool tied_embeddings = true;
  int n_attention_wv = 0, i_attention_wv = 0;
  int n_ffn_down = 0, i_ffn_down = 0;
};

int64_t IntKey(const GgufHeader& h, const std::string& key, int64_t fallback) {
  auto it = h.metadata.find(key);
  return it != h.metadata.end() && it->second.is_integer() ? it->second.integer : fallback;
}

PlanState MakePlanState(const GgufHeader& h) {
  PlanState s;
  auto arch = h.metadata.find("general.architecture");
  if (arch != h.metadata.end()) s.arch = arch->second.text;
  s.n_expert = static_cast<int>(std::max<int64_t>(1, IntKey(h, s.arch + ".expert_count", 1)));
  s.n_layer = static_cast<int>(IntKey(h, s.arch + ".block_count", 0));
  for (const auto& t : h.tensors) {
    if (t.name == "output.weight") s.tied_embeddings = false;
    if (IsAttnV(t.name)) ++s.n_attention_wv;
    if (Contains(t.name, "ffn_down")) ++s.n_ffn_down;
  }
  return s;
}

// The Q4_K_M branches of llama_tensor_get_type_impl for a tensor that is
// neither the output nor the token embedding.
uint32_t Q4KMLayerType(PlanState& s, const std::string& name) {
  uint32_t type = T(GgmlType::kQ4_K);
  if (IsAttnV(name)) {
    if (UseMoreBits(s.i_attention_wv, s.n_attention_wv)) type = T(GgmlType::kQ6_K);
    // LLM_TYPE_70B (Llama with 80 blocks) lifts Q4_K to Q5_K.
    if (s.arch == "llama" && s.n_layer == 80 && type == T(GgmlType::kQ4_K))
      type = T(GgmlType::kQ5_K);
    if (s.n_expert == 8) type = T(GgmlType::kQ8_0);
    ++s.i_attention_wv;
  } else if (Contains(name, "attn_k.weight")) {
    if (s.n_expert == 8) type = T(GgmlType::kQ8_0);
  } else if (Contains(name, "ffn_down")) {
    int i_layer = s.i_ffn_down;
    if (s.n_expert > 1) i_layer = LayerOf(name);
    const int n = s.n_ffn_down;
    if (s.arch == "falcon") {
      type = i_layer < n / 16          ? T(GgmlType::kQ6_K)
             : UseMoreBits(i_layer, n) ? T(GgmlType::kQ5_K)
                                       : type;
    } else if (UseMoreBits(i_layer, n)) {
      type = T(GgmlType::kQ6_K);
    }
    ++s.i_ffn_down;
  } else if (Contains(name, "attn_output.weight")) {
    if (s.arch != "falcon" && s.n_expert == 8) type = T(GgmlType::kQ5_K);
  }
  return type;
}

// tensor_type_fallback: a row that is not a whole number of blocks. Where
// llama.cpp has no fallback (it stops), nullopt: the tensor keeps its type.
std::optional<uint32_t> Fallback(const GgufTensor& t, uint32_t type) {
  const int64_t ncols = t.dims[0];
  if (ncols % GgmlBlockOf(type)->values == 0) return type;
  uint32_t fallback;
  if (type == T(GgmlType::kQ4_K)) {
    fallback = T(GgmlType::kQ5_0);
  } else if (type == T(GgmlType::kQ6_K)) {
    fallback = T(GgmlType::kQ8_0);
  } else {
    return std::nullopt;
  }
  return ncols % GgmlBlockOf(fallback)->values == 0 ? fallback : T(GgmlType::kF16);
}

uint32_t DefaultType(QuantizeTarget target) {
  switch (target) {
    case QuantizeTarget::kF32: return T(GgmlType::kF32);
    case QuantizeTarget::kF16: return T(GgmlType::kF16);
    case QuantizeTarget::kBF16: return T(GgmlType::kBF16);
    case QuantizeTarget::kQ4_0: return T(GgmlType::kQ4_0);
    case QuantizeTarget::kQ8_0: return T(GgmlType::kQ8_0);
    case QuantizeTarget::kQ4_K_M: return T(GgmlType::kQ4_K);
  }
  return T(GgmlType::kF32);
}

// llama_tensor_get_type for one tensor, visited in llama.cpp's order;
// nullopt where llama-quantize has no type for it.
std::optional<uint32_t> TensorType(PlanState& s, const GgufTensor& t, QuantizeTarget target) {
  if (!AllowsQuantization(t)) return t.type;
  uint32_t type = DefaultType(target);
  const auto block = GgmlBlockOf(type);
  if (block->values == 1) return type;  // not a quantised type: no mixture
  const bool output =
      t.name == "output.weight" || (s.tied_embeddings && t.name == "token_embd.weight");
  if (output) {
    if (s.arch == "falcon" || t.dims[0] % block->values != 0) {
      type = T(GgmlType::kQ8_0);
    } else if (type != T(GgmlType::kQ8_0)) {
      type = T(GgmlType::kQ6_K);
    }
  } else if (target == QuantizeTarget::kQ4_K_M && t.name != "token_embd.weight") {
    type = Q4KMLayerType(s, t.name);
  } else if (IsAttnV(t.name)) {
    if (s.n_expert == 8) type = T(GgmlType::kQ8_0);
    ++s.i_attention_wv;
  } else if (Contains(t.name, "attn_k.weight") && s.n_expert == 8) {
    type = T(GgmlType::kQ8_0);
  }
  return Fallback(t, type);
}

// weight_name_comparer: by block number (none first), then by name.
bool LlamaCppBefore(const GgufTensor* a, const GgufTensor* b) {
  const int la = LayerOf(a->name), lb = LayerOf(b->name);
  if (la != lb) return la < lb;
  return a->name < b->name;
}

std::vector<const GgufTensor*> Ordered(const GgufHeader& h, TensorOrder order) {
  std::vector<const GgufTensor*> out;
  for (const auto& t : h.tensors) out.push_back(&t);
  if (order == TensorOrder::kLlamaCpp) std::stable_sort(out.begin(), out.end(), LlamaCppBefore);
  return out;
}

void CopyMetadata(const GgufHeader& h, QuantizeTarget target, GgufWriter& w) {
  for (const auto& key : h.key_order) {
    if (key == "general.quantization_version" || key == "general.file_type") continue;
    w.AddKeyValue(key, h.metadata.at(key));
  }
  GgufValue v;
  v.type = GgufType::kUint32;
  v.integer = kQuantizationVersion;
  w.AddKeyValue("general.quantization_version", v);
  v.integer = static_cast<int64_t>(target);
  w.AddKeyValue("general.file_type", v);
}

// Converts `t` row by row into `type` and writes it.
void WriteConverted(const GgufFile& src, const GgufTensor& t, uint32_t type, GgufWriter& w) {
  if (type == t.type) {
    w.WriteTensorData(src.data(t), t.bytes);
    return;
  }
  if (t.type != T(GgmlType::kF32) && t.type != T(GgmlType::kF16) && t.type != T(GgmlType::kBF16)) {
    throw Exception(Exception::kInvalidArgument,
                    src.path() + ": tensor \"" + t.name + "\" is " + GgmlTypeName(t.type) +
                        ": making it " + GgmlTypeName(type) +
                        " needs an F32, F16 or BF16 source (start from the unquantised file)");
  }
  const int64_t row = t.dims[0];
  const uint64_t src_row_bytes =
      GgmlBlockOf(t.type)->bytes * static_cast<uint64_t>(row / GgmlBlockOf(t.type)->values);
  const auto block = GgmlBlockOf(type);
  std::vector<float> values(static_cast<size_t>(row));
  std::vector<uint8_t> out(static_cast<size_t>(row / block->values * block->bytes));
  const uint8_t* in = src.data(t);
  for (uint64_t at = 0; at < t.bytes; at += src_row_bytes) {
    DequantizeRow(t.type, in + at, values.data(), row);
    try {
      QuantizeRow(type, values.data(), out.data(), row);
    } catch (const Exception& e) {
      throw Exception(e.code(), src.path() + ": tensor \"" + t.name + "\" row " +
                                    std::to_string(at / src_row_bytes) + ": " + e.what());
    }
    w.WriteTensorData(out.data(), out.size());
  }
}

}  // namespace

std::optional<QuantizeTarget> ParseQuantizeTarget(const std::string& name) {
  static const std::map<std::string, QuantizeTarget> kNames = {
      {"f32", QuantizeTarget::kF32},   {"f16", QuantizeTarget::kF16},
      {"bf16", QuantizeTarget::kBF16}, {"q8_0", QuantizeTarget::kQ8_0},
      {"q4_0", QuantizeTarget::kQ4_0}, {"q4_k_m", QuantizeTarget::kQ4_K_M}};
  auto it = kNames.find(name);
  if (it == kNames.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> QuantizeTargetNames() {
  return {"f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m"};
}

std::vector<uint32_t> PlanTensorTypes(const GgufHeader& header, QuantizeTarget target,
                                      std::vector<std::string>* notes) {
  PlanState state = MakePlanState(header);
  std::map<const GgufTensor*, uint32_t> types;
  for (const GgufTensor* t : Ordered(header, TensorOrder::kLlamaCpp)) {
    const std::optional<uint32_t> type = TensorType(state, *t, target);
    std::string note;
    if (!type) {
      note = "row length " + std::to_string(t->dims[0]) + " is not a multiple of the " +
             GgmlTypeName(DefaultType(target)) + " block (llama-quantize stops here)";
    } else if (*type != t->type && !IsQuantizeSupported(*type)) {
      note =
          "llama-quantize would make it " + GgmlTypeName(*type) + ", a type splitlm does not write";
    }
    types[t] = note.empty() ? *type : t->type;
    if (!note.empty() && notes != nullptr) {
      notes->push_back("tensor \"" + t->name + "\" stays " + GgmlTypeName(t->type) + ": " + note);
    }
  }
  std::vector<uint32_t> out;
  for (const auto& t : header.tensors) out.push_back(types.at(&t));
  return out;
}

std::vector<std::string> QuantizeGguf(const std::string& src_path, const std::string& out_path,
                                      const QuantizeOptions& options) {
  const auto src = GgufFile::Open(src_path);
  const GgufHeader& h = src->header();
  if (IntKey(h, "split.count", 1) > 1) {
    throw Exception(
        Exception::kInvalidArgument,
        src_path + ": a split GGUF file (split.count > 1) is not supported: merge it first");
  }
  std::vector<std::string> notes;
  const std::vector<uint32_t> types = PlanTensorTypes(h, options.target, &notes);
  std::map<const GgufTensor*, uint32_t> type_of;
  uint64_t total = 0;
  for (size_t i = 0; i < h.tensors.size(); ++i) {
    type_of[&h.tensors[i]] = types[i];
    total += h.tensors[i].bytes;
  }
  GgufWriter w(out_path);
  CopyMetadata(h, options.target, w);
  const auto order = Ordered(h, options.order);
  for (const GgufTensor* t : order) w.AddTensor(t->name, t->dims, type_of.at(t));
  uint64_t done = 0;
  for (const GgufTensor* t : order) {
    WriteConverted(*src, *t, type_of.at(t), w);
    done += t->bytes;
    if (options.progress) options.progress(done, total);
  }
  w.Commit();
  return notes;
}

}  // namespace splitlm::partition
