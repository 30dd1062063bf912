// Quantising a GGUF model file as llama.cpp's llama-quantize does without an
// importance matrix (src/llama-quant.cpp): the same tensors are quantised,
// to the same per-tensor types, with ggml's reference rounding (quant.h),
// and the same metadata is written.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "partition/gguf.h"

namespace splitlm::partition {

// The file types splitlm writes, numbered as llama.h `llama_ftype` (the
// value of "general.file_type").
enum class QuantizeTarget : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ8_0 = 7,
  kQ4_K_M = 15,
  kBF16 = 32
};

// "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k_m" (lower case); nullopt for
// anything else.
std::optional<QuantizeTarget> ParseQuantizeTarget(const std::string& name);
std::vector<std::string> QuantizeTargetNames();

enum class TensorOrder {
  kSource,    // the source file's order
  kLlamaCpp,  // llama-quantize's: tensors outside blocks first, then block by
              // block (by number), each group by name; with it the output of
              // an F32 source is llama-quantize's file byte for byte
};

struct QuantizeOptions {
  QuantizeTarget target = QuantizeTarget::kQ8_0;
  TensorOrder order = TensorOrder::kSource;
  // Called after each tensor with source bytes done and total; may be empty.
  std::function<void(uint64_t done, uint64_t total)> progress;
};

// The type each tensor of `header` gets for `target`, in the header's order:
// llama_tensor_get_type for 2-D and larger weights whose name ends in
// "weight" (not norms, not MoE router inputs), the source type for the rest.
// For Q4_K_M: Q6_K for output.weight (token_embd.weight when the embeddings
// are tied), for attn_v.weight and ffn_down in the layers use_more_bits picks
// (the first and last eighth, and every third between), Q4_K otherwise.
// Where llama-quantize would stop (a Q8_0/Q4_0 row that is not a whole number
// of blocks) or pick a type splitlm does not write (Q5_0, Q5_K: K-quant rows
// not a multiple of 256, Falcon, 70B and 8-expert models), the tensor keeps
// its source type and a sentence saying so is appended to `notes`.
std::vector<uint32_t> PlanTensorTypes(const GgufHeader& header, QuantizeTarget target,
                                      std::vector<std::string>* notes = nullptr);

// Reads the GGUF file `src` and writes `out` (via a temporary file renamed at
// the end: on failure `out` is untouched). Keeps every metadata key in order
// except that "general.quantization_version" (2) and "general.file_type" go
// last, as llama.cpp's gguf_set_val puts them. Quantised tensors must come
// from F32, F16 or BF16 sources; others are copied unchanged. Returns the
// notes of PlanTensorTypes (empty when the file is llama-quantize's). Throws
// Exception naming the file, tensor and problem (kNotFound, kCorrupt for
// the source; kInvalidArgument for a type it cannot be made; kUnavailable
// when `out` cannot be written).
std::vector<std::string> QuantizeGguf(const std::string& src, const std::string& out,
                                      const QuantizeOptions& options);

}  // namespace splitlm::partition
