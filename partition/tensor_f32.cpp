#include "partition/tensor_f32.h"

#include <cstring>
#include <vector>

#include "partition/gguf.h"
#include "partition/quant.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

// llama.cpp's converter stores the rows of each head of a `llama` model's Q
// and K as pairs (j, j + half) side by side: stored row 2j + i is Hugging
// Face's row i * half + j. Moves `rows` rows of `row_len` floats back.
void UninterleaveHeads(const float* src, int64_t rows, int64_t row_len, int heads, float* dst) {
  const int64_t per_head = rows / heads, half = per_head / 2;
  const size_t row_bytes = static_cast<size_t>(row_len) * sizeof(float);
  for (int64_t h = 0; h < heads; ++h) {
    for (int64_t i = 0; i < 2; ++i) {
      for (int64_t j = 0; j < half; ++j) {
        std::memcpy(dst + (h * per_head + i * half + j) * row_len,
                    src + (h * per_head + 2 * j + i) * row_len, row_bytes);
      }
    }
  }
}

}  // namespace

bool CanConvertToF32(uint32_t type) { return IsDequantizeSupported(type); }

void TensorToF32(const TensorRef& t, float* dst) {
  const std::optional<GgmlBlock> block = GgmlBlockOf(t.type);
  if (!block || !CanConvertToF32(t.type)) {
    throw Exception(Exception::kInvalidArgument,
                    "tensors of type " + GgmlTypeName(t.type) + " cannot be loaded yet");
  }
  int64_t numel = 1;
  for (int64_t d : t.shape) numel *= d;
  const int64_t row_len = t.shape.empty() ? 1 : t.shape.back();
  const int64_t rows = row_len == 0 ? 0 : numel / row_len;
  const size_t row_bytes = static_cast<size_t>(row_len / block->values) * block->bytes;
  std::vector<float> staged;
  float* out = dst;
  if (t.interleaved_heads > 0) {
    staged.resize(static_cast<size_t>(numel));
    out = staged.data();
  }
  const auto* src = static_cast<const uint8_t*>(t.data);
  for (int64_t r = 0; r < rows; ++r)
    DequantizeRow(t.type, src + r * row_bytes, out + r * row_len, row_len);
  if (t.interleaved_heads > 0) {
    // A vector (a bias) is interleaved element by element.
    const bool vector = t.shape.size() == 1;
    UninterleaveHeads(staged.data(), vector ? numel : rows, vector ? 1 : row_len,
                      t.interleaved_heads, dst);
  }
}

}  // namespace splitlm::partition
