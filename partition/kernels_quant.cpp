// Packing of GGUF block rows into the panel layout of the quantised kernels,
// and the scalar decoding of one packed row (kernels_quant.h).
//
// Per panel of 16 rows, per column group ("l" is the row in the panel):
//   Q8_0  (32 columns, 576 bytes)   float d[16]; int8 q[32][16]
//   Q4_0  (32 columns, 320 bytes)   float d[16]; uint8 qs[16][16]: byte
//         [c][l] holds column 2c (low nibble) and 2c + 1 (high nibble)
//   Q4_K  (256 columns, 2432 bytes) float d[16], dmin[16]; uint8 sc[8][16],
//         m[8][16] (the 6-bit scales and mins unpacked); uint8 qs[128][16]:
//         byte [c][l] holds column 2c (low nibble) and 2c + 1 (high)
//   Q6_K  (256 columns, 3392 bytes) float d[16]; int8 scale[16][16];
//         uint8 ql[2][64][16], qh[2][32][16]: ggml's ql/qh bytes of each row
//         (block_q6_K), transposed so the 16 rows' bytes are adjacent
// Rows past m are zero (d = 0), so they compute zeros.
//
// The int8-activation layouts (QuantActs::kInt8), per panel and block, with
// the 16 rows' fp16 scales first (uint16 d[16], 32 bytes):
//   Q8_0  (32 columns, 544 bytes)   then 8 chunks of 64 bytes: chunk q,
//         byte 4l + b = code of row l, column 4q + b, plus 128 (as u8)
//   Q4_0  (32 columns, 288 bytes)   then 4 chunks of 64 bytes: chunk q,
//         byte 4l + b = row l's column 8q + b (low nibble) and 8q + 4 + b
//         (high nibble), codes 0..15
//   Q4_K  (256 columns, 2368 bytes) d[16], dmin[16] fp16; u8 sc[8][16],
//         m[8][16]; then 32 nibble chunks as Q4_0's (codes 0..15)
//   Q6_K  (256 columns, 3360 bytes) d[16] fp16; s8 scale[16][16]; 32 chunks
//         of the codes' low 4 bits as Q4_0's; 16 chunks of high bits: chunk
//         j, byte 4l + b, bits 2t..2t+1 = row l's column 16j + 4t + b
// so one 64-byte load is 16 rows x 4 columns, what a 4-way integer dot
// product per row (vpdpbusd, sdot) consumes.
#include "partition/kernels_quant.h"

#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

#include "partition/gguf.h"
#include "partition/kernels.h"
#include "transport/codec.h"
#include "transport/error.h"

namespace splitlm::partition::kernels {
namespace {

struct Layout {
  int group;        // columns per group
  size_t bytes;     // packed bytes per panel and group
  int block_bytes;  // GGUF bytes per block (one group of one row)
};

Layout LayoutOf(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kQ8_0: return {32, 576, 34};
    case GgmlType::kQ4_0: return {32, 320, 18};
    case GgmlType::kQ4_K: return {256, 2432, 144};
    case GgmlType::kQ6_K: return {256, 3392, 210};
    default:
      throw Exception(Exception::kInvalidArgument,
                      "no quantised kernel for weights of type " + GgmlTypeName(type));
  }
}

Layout Int8LayoutOf(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kQ8_0: return {32, 544, 34};
    case GgmlType::kQ4_0: return {32, 288, 18};
    case GgmlType::kQ4_K: return {256, 2368, 144};
    case GgmlType::kQ6_K: return {256, 3360, 210};
    default:
      throw Exception(Exception::kInvalidArgument,
                      "no int8-activation kernel for weights of type " + GgmlTypeName(type));
  }
}

Layout LayoutOf(uint32_t type, QuantActs acts) {
  return acts == QuantActs::kInt8 ? Int8LayoutOf(type) : LayoutOf(type);
}

float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return transport::HalfToFloat(h);
}

void PutFloat(uint8_t* p, float f) { std::memcpy(p, &f, 4); }
float GetFloat(const uint8_t* p) {
  float f;
  std::memcpy(&f, p, 4);
  return f;
}

// ggml's get_scale_min_k4.
void ScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

// Code of column j of a Q4_0 block: qs[j] low nibble for j < 16, else
// qs[j - 16]'s high nibble.
int Q4_0Nibble(const uint8_t* b, int j) { return j < 16 ? b[2 + j] & 0x0F : b[2 + j - 16] >> 4; }
// Code of column j of a Q4_K block: in each 64 columns, qs[32g + c] low
// nibble for the first 32, high nibble for the next.
int Q4_KNibble(const uint8_t* b, int j) {
  const int g = j / 64, c = j % 64;
  return c < 32 ? b[16 + 32 * g + c] & 0x0F : b[16 + 32 * g + c - 32] >> 4;
}

// One GGUF block `b` into row l of the packed group `g`.
void PackBlock(GgmlType type, const uint8_t* b, int l, uint8_t* g) {
  switch (type) {
    case GgmlType::kQ8_0:
      PutFloat(g + 4 * l, Half(b));
      for (int c = 0; c < 32; ++c) g[64 + 16 * c + l] = b[2 + c];
      break;
    case GgmlType::kQ4_0:
      PutFloat(g + 4 * l, Half(b));
      for (int c = 0; c < 16; ++c)
        g[64 + 16 * c + l] =
            static_cast<uint8_t>(Q4_0Nibble(b, 2 * c) | Q4_0Nibble(b, 2 * c + 1) << 4);
      break;
    case GgmlType::kQ4_K:
      PutFloat(g + 4 * l, Half(b));
      PutFloat(g + 64 + 4 * l, Half(b + 2));
      for (int j = 0; j < 8; ++j) ScaleMinK4(j, b + 4, &g[128 + 16 * j + l], &g[256 + 16 * j + l]);
      for (int c = 0; c < 128; ++c)
        g[384 + 16 * c + l] =
            static_cast<uint8_t>(Q4_KNibble(b, 2 * c) | Q4_KNibble(b, 2 * c + 1) << 4);
      break;
    case GgmlType::kQ6_K:
      PutFloat(g + 4 * l, Half(b + 208));
      for (int s = 0; s < 16; ++s) g[64 + 16 * s + l] = b[192 + s];
      for (int c = 0; c < 128; ++c) g[320 + 16 * c + l] = b[c];
      for (int c = 0; c < 64; ++c) g[2368 + 16 * c + l] = b[128 + c];
      break;
    default: break;
  }
}

// Code (0..63) of column j of a Q6_K block.
int Q6_KCode(const uint8_t* b, int j) {
  const int h = j / 128, cc = j % 128, t = cc / 32, i = cc % 32;
  const uint8_t lo = b[64 * h + i + 32 * (t & 1)];
  return (t < 2 ? lo & 0x0F : lo >> 4) | (((b[128 + 32 * h + i] >> (2 * t)) & 3) << 4);
}

void PackQ4_KInt8(const uint8_t* b, int l, uint8_t* g) {
  g[2 * l] = b[0];
  g[2 * l + 1] = b[1];
  g[32 + 2 * l] = b[2];
  g[32 + 2 * l + 1] = b[3];
  for (int j = 0; j < 8; ++j) ScaleMinK4(j, b + 4, &g[64 + 16 * j + l], &g[192 + 16 * j + l]);
  for (int q = 0; q < 32; ++q) {
    for (int t = 0; t < 4; ++t) {
      g[320 + 64 * q + 4 * l + t] =
          static_cast<uint8_t>(Q4_KNibble(b, 8 * q + t) | Q4_KNibble(b, 8 * q + 4 + t) << 4);
    }
  }
}

void PackQ6_KInt8(const uint8_t* b, int l, uint8_t* g) {
  g[2 * l] = b[208];
  g[2 * l + 1] = b[209];
  for (int s = 0; s < 16; ++s) g[32 + 16 * s + l] = b[192 + s];
  for (int q = 0; q < 32; ++q) {
    for (int t = 0; t < 4; ++t) {
      g[288 + 64 * q + 4 * l + t] = static_cast<uint8_t>((Q6_KCode(b, 8 * q + t) & 0x0F) |
                                                         (Q6_KCode(b, 8 * q + 4 + t) & 0x0F) << 4);
    }
  }
  for (int j = 0; j < 16; ++j) {
    for (int c = 0; c < 4; ++c) {
      int hb = 0;
      for (int t = 0; t < 4; ++t) hb |= (Q6_KCode(b, 16 * j + 4 * t + c) >> 4) << (2 * t);
      g[2336 + 64 * j + 4 * l + c] = static_cast<uint8_t>(hb);
    }
  }
}

// One GGUF block `b` into row l of the int8 group `g`.
void PackBlockInt8(GgmlType type, const uint8_t* b, int l, uint8_t* g) {
  if (type == GgmlType::kQ4_K) return PackQ4_KInt8(b, l, g);
  if (type == GgmlType::kQ6_K) return PackQ6_KInt8(b, l, g);
  g[2 * l] = b[0];
  g[2 * l + 1] = b[1];
  uint8_t* c = g + 32;
  if (type == GgmlType::kQ8_0) {
    for (int j = 0; j < 32; ++j)
      c[64 * (j / 4) + 4 * l + j % 4] = static_cast<uint8_t>(b[2 + j] ^ 0x80);
  } else {
    for (int q = 0; q < 4; ++q) {
      for (int t = 0; t < 4; ++t) {
        c[64 * q + 4 * l + t] =
            static_cast<uint8_t>(Q4_0Nibble(b, 8 * q + t) | Q4_0Nibble(b, 8 * q + 4 + t) << 4);
      }
    }
  }
}

// Column j of row l of the int8 group `g`, as DequantizeRow computes it.
float DecodeInt8(GgmlType type, const uint8_t* g, int l, int j) {
  const float d = Half(g + 2 * l);
  if (type == GgmlType::kQ4_K) {
    const int s = j / 32, q = j / 8, t = j % 8;
    const uint8_t v = g[320 + 64 * q + 4 * l + t % 4];
    const float a = d * static_cast<float>(g[64 + 16 * s + l]);
    const float mn = Half(g + 32 + 2 * l) * static_cast<float>(g[192 + 16 * s + l]);
    return a * static_cast<float>(t < 4 ? v & 0x0F : v >> 4) - mn;
  }
  if (type == GgmlType::kQ6_K) {
    const int sub = j / 16, c = j % 16, quad = c / 4, b = c % 4;
    const uint8_t lo = g[288 + 64 * (2 * sub + quad / 2) + 4 * l + b];
    const uint8_t hb = g[2336 + 64 * sub + 4 * l + b];
    const int code = (quad % 2 == 0 ? lo & 0x0F : lo >> 4) | (((hb >> (2 * quad)) & 3) << 4);
    const float a = d * static_cast<float>(static_cast<int8_t>(g[32 + 16 * sub + l]));
    return a * static_cast<float>(code - 32);
  }
  const uint8_t* c = g + 32;
  if (type == GgmlType::kQ8_0) {
    return static_cast<float>(static_cast<int8_t>(c[64 * (j / 4) + 4 * l + j % 4] ^ 0x80)) * d;
  }
  const int q = j / 8, t = j % 8;
  const uint8_t v = c[64 * q + 4 * l + t % 4];
  return static_cast<float>((t < 4 ? v & 0x0F : v >> 4) - 8) * d;
}

// Column j of row l of the packed group `g`, as DequantizeRow computes it.
float Decode(GgmlType type, const uint8_t* g, int l, int j) {
  switch (type) {
    case GgmlType::kQ8_0:
      return static_cast<float>(static_cast<int8_t>(g[64 + 16 * j + l])) * GetFloat(g + 4 * l);
    case GgmlType::kQ4_0: {
      const uint8_t b = g[64 + 16 * (j / 2) + l];
      const int q = (j % 2 == 0 ? b & 0x0F : b >> 4) - 8;
      return static_cast<float>(q) * GetFloat(g + 4 * l);
    }
    case GgmlType::kQ4_K: {
      const int s = j / 32;
      const uint8_t b = g[384 + 16 * (j / 2) + l];
      const int q = j % 2 == 0 ? b & 0x0F : b >> 4;
      const float a = GetFloat(g + 4 * l) * static_cast<float>(g[128 + 16 * s + l]);
      const float mn = GetFloat(g + 64 + 4 * l) * static_cast<float>(g[256 + 16 * s + l]);
      return a * static_cast<float>(q) - mn;
    }
    case GgmlType::kQ6_K: {
      const int h = j / 128, cc = j % 128, t = cc / 32, i = cc % 32;
      const uint8_t lo = g[320 + 16 * (64 * h + i + 32 * (t & 1)) + l];
      const uint8_t hi = g[2368 + 16 * (32 * h + i) + l];
      const int q = ((t < 2 ? lo & 0x0F : lo >> 4) | (((hi >> (2 * t)) & 3) << 4)) - 32;
      const float a =
          GetFloat(g + 4 * l) * static_cast<float>(static_cast<int8_t>(g[64 + 16 * (j / 16) + l]));
      return a * static_cast<float>(q);
    }
    default: return 0.0f;
  }
}

}  // namespace

bool CanPackQuant(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_0:
    case GgmlType::kQ4_K:
    case GgmlType::kQ6_K: return true;
    default: return false;
  }
}

bool HasInt8Kernel(uint32_t type) { return CanPackQuant(type); }

int QuantBlockValues(uint32_t type) { return LayoutOf(type).group; }

size_t QuantPackedBytes(uint32_t type, int m, int k, QuantActs acts) {
  const Layout lay = LayoutOf(type, acts);
  return static_cast<size_t>((m + 15) / 16) * (k / lay.group) * lay.bytes;
}

void PackQuant(uint32_t type, const uint8_t* const* rows, int m, int k, uint8_t* dst,
               QuantActs acts) {
  const Layout lay = LayoutOf(type, acts);
  if (k % lay.group != 0) {
    throw Exception(Exception::kInvalidArgument, "a row of " + std::to_string(k) +
                                                     " values is not a whole number of " +
                                                     GgmlTypeName(type) + " blocks");
  }
  const int groups = k / lay.group, panels = (m + 15) / 16;
  std::memset(dst, 0, QuantPackedBytes(type, m, k, acts));
  auto pack = acts == QuantActs::kInt8 ? PackBlockInt8 : PackBlock;
  ParallelFor(panels, 1, [&](int b, int e) {
    for (int p = b; p < e; ++p) {
      for (int l = 0; l < 16 && p * 16 + l < m; ++l) {
        const uint8_t* row = rows[p * 16 + l];
        for (int gi = 0; gi < groups; ++gi) {
          pack(static_cast<GgmlType>(type), row + static_cast<size_t>(gi) * lay.block_bytes, l,
               dst + (static_cast<size_t>(p) * groups + gi) * lay.bytes);
        }
      }
    }
  });
}

void QuantUnpackRow(uint32_t type, const uint8_t* packed, int k, int r, float* out,
                    QuantActs acts) {
  const Layout lay = LayoutOf(type, acts);
  auto decode = acts == QuantActs::kInt8 ? DecodeInt8 : Decode;
  const int groups = k / lay.group;
  const uint8_t* panel = packed + static_cast<size_t>(r / 16) * groups * lay.bytes;
  for (int gi = 0; gi < groups; ++gi) {
    for (int j = 0; j < lay.group; ++j) {
      out[gi * lay.group + j] =
          decode(static_cast<GgmlType>(type), panel + gi * lay.bytes, r % 16, j);
    }
  }
}

void QuantizeActivations(const float* x, int k, int block, int8_t* q, float* d, int32_t* s16) {
  constexpr float kRound =
      12582912.0f;  // 1.5 * 2^23: (v + kRound) - kRound is v rounded, ties to even
  for (int b0 = 0; b0 < k; b0 += block) {
    const float* xb = x + b0;
    int8_t* qb = q + b0;
    float amax = 0.0f;
    bool finite = true;
    for (int j = 0; j < block; ++j) {
      const float a = std::fabs(xb[j]);
      finite = finite && a <= FLT_MAX;
      amax = a > amax ? a : amax;
    }
    float scale = 0.0f, inv = 0.0f;
    if (!finite) {
      scale = std::numeric_limits<float>::quiet_NaN();
    } else if (amax >= 0x1p-96f) {
      scale = amax / 127.0f;
      inv = 1.0f / scale;
    }
    d[b0 / block] = scale;
    for (int j = 0; j < block; ++j) {
      float v = (xb[j] * inv + kRound) - kRound;
      v = v > 127.0f ? 127.0f : (v < -127.0f ? -127.0f : v);
      qb[j] = static_cast<int8_t>(finite ? static_cast<int>(v) : 0);
    }
    for (int t = 0; t < block / 16; ++t) {
      int32_t sum = 0;
      for (int j = 0; j < 16; ++j) sum += qb[16 * t + j];
      s16[b0 / 16 + t] = sum;
    }
  }
}

}  // namespace splitlm::partition::kernels
