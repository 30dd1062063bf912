// Stored tensors to fp32: the one place where F16/BF16 and quantised GGUF
// types (through DequantizeRow, partition/quant.h) become the floats stages
// compute with, and where llama.cpp's interleaved RoPE row order is undone.
#pragma once

#include <cstdint>

#include "partition/model.h"

namespace splitlm::partition {

// Whether TensorToF32 can convert elements of ggml type `type`: F32, F16,
// BF16, Q8_0, Q4_0, Q4_K, Q6_K, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL.
bool CanConvertToF32(uint32_t type);

// Writes `t` as fp32 to `dst` (the product of t.shape floats, row-major in
// t.shape's order, rows in Hugging Face's order). Float types convert
// exactly; block types decode as DequantizeRow defines. Throws Exception(kInvalidArgument) if
// t.type cannot be converted (callers check CanConvertToF32 first to name the tensor).
void TensorToF32(const TensorRef& t, float* dst);

}  // namespace splitlm::partition
