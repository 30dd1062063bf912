#include "partition/kernels_half.h"

#include <algorithm>
#include <cstring>
#include <vector>

#include "partition/gguf.h"
#include "partition/kernels.h"
#include "partition/kernels_table.h"
#include "transport/codec.h"
#include "transport/error.h"

namespace splitlm::partition::kernels {

namespace {

// x [n, k] packed group by group ([k][group]) in groups of `tile` inputs, as
// kernels::MatMul packs its inputs; x itself for one input.
const float* PackInputs(const float* x, int n, int k, int tile, std::vector<float>& buffer) {
  if (n <= 1) return x;
  buffer.resize(static_cast<size_t>(n) * k);
  for (int i0 = 0; i0 < n; i0 += tile) {
    const int g = std::min(tile, n - i0);
    float* out = buffer.data() + static_cast<size_t>(i0) * k;
    for (int j = 0; j < k; ++j)
      for (int ii = 0; ii < g; ++ii)
        out[static_cast<size_t>(j) * g + ii] = x[static_cast<size_t>(i0 + ii) * k + j];
  }
  return buffer.data();
}

bool IsBf16(uint32_t type) { return type == static_cast<uint32_t>(GgmlType::kBF16); }

}  // namespace

bool IsHalfType(uint32_t type) {
  return type == static_cast<uint32_t>(GgmlType::kF16) ||
         type == static_cast<uint32_t>(GgmlType::kBF16);
}

size_t HalfPackedSize(int m, int k) { return static_cast<size_t>((m + 15) / 16) * 16 * k; }

void PackHalf(const uint16_t* const* rows, int m, int k, uint16_t* dst) {
  const int panels = (m + 15) / 16;
  for (int p = 0; p < panels; ++p) {
    uint16_t* panel = dst + static_cast<size_t>(p) * k * 16;
    for (int j = 0; j < k; ++j) {
      for (int l = 0; l < 16; ++l) {
        const int r = p * 16 + l;
        panel[static_cast<size_t>(j) * 16 + l] = r < m ? rows[r][j] : 0;
      }
    }
  }
}

void HalfUnpackRow(uint32_t type, const uint16_t* packed, int k, int r, float* out) {
  const uint16_t* panel = packed + static_cast<size_t>(r / 16) * k * 16 + r % 16;
  for (int j = 0; j < k; ++j) {
    const uint16_t h = panel[static_cast<size_t>(j) * 16];
    out[j] = IsBf16(type) ? transport::Bf16ToFloat(h) : transport::HalfToFloat(h);
  }
}

void HalfMatMul(Isa isa_value, uint32_t type, const uint16_t* packed, int m, int k, const float* x,
                int n, float* y, int ldy, const float* bias) {
  if (!IsHalfType(type))
    throw Exception(Exception::kInvalidArgument,
                    "no 16-bit kernel for weights of type " + GgmlTypeName(type));
  const IsaTable& isa = isa_value.table();
  thread_local std::vector<float> buffer;
  const float* xp = PackInputs(x, n, k, isa.half_tile_inputs(), buffer);
  const bool bf16 = IsBf16(type);
  // As MatMul: panels of ~64K weights or more per task.
  const int panels = (m + 15) / 16;
  const int grain = std::max(1, 65536 / (16 * k));
  ParallelFor(panels, grain, [&](int b, int e) {
    isa.half_matmul(bf16, packed, m, k, xp, n, y, ldy, bias, b, e);
  });
}

}  // namespace splitlm::partition::kernels
