// Stored tensors to fp32: the one place where F16/BF16 (and, through
// DequantizeRow, quantised GGUF types) become the floats stages compute with,
// and where llama.cpp's interleaved RoPE row order is undone.
#pragma once

#include <cstdint>

#include "partition/model.h"

namespace splitlm::partition {

// Whether TensorToF32 can convert elements of ggml type `type`.
bool CanConvertToF32(uint32_t type);

// Writes `t` as fp32 to `dst` (the product of t.shape floats, row-major in
// t.shape's order, rows in Hugging Face's order). Conversions are exact for
// F32, F16 and BF16. Throws PartitionError if t.type cannot be converted
// (callers check CanConvertToF32 first to name the tensor).
void TensorToF32(const TensorRef& t, float* dst);

}  // namespace splitlm::partition
