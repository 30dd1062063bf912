// Each function names the ggml function (ggml/src/ggml-quants.c, block
// layouts in ggml-common.h) whose operations it repeats in the same order:
// bit-exactness depends on every fp32 operation and conversion matching.
#include "partition/quant.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <optional>
#include <string>

#include "partition/gguf.h"
#include "partition/quant_decode.h"
#include "transport/codec.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

constexpr int kQk = 32;    // QK8_0, QK4_0
constexpr int kQkK = 256;  // QK_K
constexpr int kQ8_0Bytes = 34, kQ4_0Bytes = 18, kQ4_KBytes = 144, kQ6_KBytes = 210;
constexpr float kGroupMaxEps = 1e-15f;  // GROUP_MAX_EPS

float LoadHalf(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return transport::HalfToFloat(h);
}

// Stores fp16(v) (ggml's GGML_FP32_TO_FP16: round to nearest even) and
// returns it widened back.
float StoreHalf(uint8_t* p, float v) {
  const uint16_t h = transport::FloatToHalf(v);
  std::memcpy(p, &h, 2);
  return transport::HalfToFloat(h);
}

// ggml's nearest_int: round to nearest even through the fp32 mantissa. Exact
// for |v| <= 2^22; outside, like ggml, a meaningless value that callers clamp.
int NearestInt(float v) {
  const float shifted = v + 12582912.f;
  int32_t i;
  std::memcpy(&i, &shifted, 4);
  return (i & 0x007fffff) - 0x00400000;
}

// C's float -> int8_t conversion as x86 performs it (cvttss2si, then the low
// byte): truncation for representable values; 0 for NaN, Inf or values past
// int32, where C leaves it undefined (reached only when 1/d overflows, and
// then the block's fp16 scale is 0, so the value does not matter).
int TruncToInt8(float v) {
  if (!(std::fabs(v) < 2147483648.0f)) return 0;
  return static_cast<int8_t>(
      static_cast<uint8_t>(static_cast<uint32_t>(static_cast<int32_t>(v)) & 0xffu));
}

[[noreturn]] void Fail(const std::string& what) {
  throw Exception(Exception::kInvalidArgument, what);
}

void CheckFinite(uint32_t type, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(x[i])) {
      Fail("cannot quantise to " + GgmlTypeName(type) + ": value " + std::to_string(i) +
           " is not finite");
    }
  }
}

void CheckScale(uint32_t type, float scale, int64_t block) {
  if (!std::isfinite(scale)) {
    Fail("cannot quantise to " + GgmlTypeName(type) + ": the scale of block " +
         std::to_string(block) + " overflows fp16 (values too large for the format)");
  }
}

// ---- Q8_0 ----

// dequantize_row_q8_0.
void DequantizeQ8_0(const uint8_t* b, float* y) {
  const float d = LoadHalf(b);
  const int8_t* q = reinterpret_cast<const int8_t*>(b + 2);
  for (int j = 0; j < kQk; ++j) y[j] = static_cast<float>(q[j]) * d;
}

// quantize_row_q8_0_ref: d = amax/127, q = roundf(x * (1/d)).
void QuantizeQ8_0(const float* x, uint8_t* b, int64_t block) {
  float amax = 0.0f;
  for (int j = 0; j < kQk; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float d = amax / 127;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  CheckScale(static_cast<uint32_t>(GgmlType::kQ8_0), StoreHalf(b, d), block);
  for (int j = 0; j < kQk; ++j) {
    const float x0 = x[j] * id;
    b[2 + j] = static_cast<uint8_t>(TruncToInt8(std::round(x0)));
  }
}

// ---- Q4_0 ----

// dequantize_row_q4_0.
void DequantizeQ4_0(const uint8_t* b, float* y) {
  const float d = LoadHalf(b);
  for (int j = 0; j < kQk / 2; ++j) {
    const int x0 = (b[2 + j] & 0x0F) - 8;
    const int x1 = (b[2 + j] >> 4) - 8;
    y[j] = static_cast<float>(x0) * d;
    y[j + kQk / 2] = static_cast<float>(x1) * d;
  }
}

// quantize_row_q4_0_ref: d = max / -8 with max the signed value of largest
// magnitude (the first one on ties), q = min(15, trunc(x/d + 8.5)).
void QuantizeQ4_0(const float* x, uint8_t* b, int64_t block) {
  float amax = 0.0f, max = 0.0f;
  for (int j = 0; j < kQk; ++j) {
    if (amax < std::fabs(x[j])) {
      amax = std::fabs(x[j]);
      max = x[j];
    }
  }
  const float d = max / -8;
  const float id = d != 0.0f ? 1.0f / d : 0.0f;
  CheckScale(static_cast<uint32_t>(GgmlType::kQ4_0), StoreHalf(b, d), block);
  for (int j = 0; j < kQk / 2; ++j) {
    const float x0 = x[j] * id;
    const float x1 = x[kQk / 2 + j] * id;
    const uint8_t xi0 = static_cast<uint8_t>(std::min(15, TruncToInt8(x0 + 8.5f)));
    const uint8_t xi1 = static_cast<uint8_t>(std::min(15, TruncToInt8(x1 + 8.5f)));
    b[2 + j] = static_cast<uint8_t>(xi0 | (xi1 << 4));
  }
}

// ---- Q4_K ----
// block_q4_K: d at 0, dmin at 2, scales[12] at 4, qs[128] at 16.

// get_scale_min_k4.
void ScaleMinK4(int j, const uint8_t* q, uint8_t* d, uint8_t* m) {
  if (j < 4) {
    *d = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *d = static_cast<uint8_t>((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4));
  }
}

// dequantize_row_q4_K.
void DequantizeQ4_K(const uint8_t* b, float* y) {
  const float d = LoadHalf(b);
  const float min = LoadHalf(b + 2);
  const uint8_t* scales = b + 4;
  const uint8_t* q = b + 16;
  for (int is = 0; is < 8; is += 2, q += 32) {
    uint8_t sc, m;
    ScaleMinK4(is, scales, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = min * static_cast<float>(m);
    ScaleMinK4(is + 1, scales, &sc, &m);
    const float d2 = d * static_cast<float>(sc), m2 = min * static_cast<float>(m);
    for (int l = 0; l < 32; ++l) *y++ = d1 * static_cast<float>(q[l] & 0xF) - m1;
    for (int l = 0; l < 32; ++l) *y++ = d2 * static_cast<float>(q[l] >> 4) - m2;
  }
}

// The weighted squared error of make_qkx2_quants for codes L on the grid
// (scale, min) (use_mad is false for Q4_K).
float GridError(int n, const float* x, const float* weights, const uint8_t* L, float scale,
                float min) {
  float error = 0;
  for (int i = 0; i < n; ++i) {
    float diff = scale * static_cast<float>(L[i]) + min - x[i];
    diff = diff * diff;
    error += weights[i] * diff;
  }
  return error;
}

// make_qkx2_quants: the best affine grid (scale, min <= 0) for n values and
// weights, searching nstep+1 candidate scales. Returns the scale; *the_min
// receives -min.
float MakeQkx2Quants(int n, int nmax, const float* x, const float* weights, uint8_t* L,
                     float* the_min, uint8_t* Laux, float rmin, float rdelta, int nstep) {
  float min = x[0], max = x[0];
  float sum_w = weights[0];
  float sum_x = sum_w * x[0];
  for (int i = 1; i < n; ++i) {
    if (x[i] < min) min = x[i];
    if (x[i] > max) max = x[i];
    const float w = weights[i];
    sum_w += w;
    sum_x += w * x[i];
  }
  if (min > 0) min = 0;
  if (max == min) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    *the_min = -min;
    return 0.f;
  }
  float iscale = static_cast<float>(nmax) / (max - min);
  float scale = 1 / iscale;
  for (int i = 0; i < n; ++i) {
    const int l = NearestInt(iscale * (x[i] - min));
    L[i] = static_cast<uint8_t>(std::max(0, std::min(nmax, l)));
  }
  float best_error = GridError(n, x, weights, L, scale, min);
  for (int is = 0; is <= nstep; ++is) {
    iscale = (rmin + rdelta * static_cast<float>(is) + static_cast<float>(nmax)) / (max - min);
    float sum_l = 0, sum_l2 = 0, sum_xl = 0;
    for (int i = 0; i < n; ++i) {
      int l = NearestInt(iscale * (x[i] - min));
      l = std::max(0, std::min(nmax, l));
      Laux[i] = static_cast<uint8_t>(l);
      const float w = weights[i];
      const float fl = static_cast<float>(l);
      sum_l += w * fl;
      sum_l2 += w * fl * fl;
      sum_xl += w * fl * x[i];
    }
    const float D = sum_w * sum_l2 - sum_l * sum_l;
    if (D > 0) {
      float this_scale = (sum_w * sum_xl - sum_x * sum_l) / D;
      float this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D;
      if (this_min > 0) {
        this_min = 0;
        this_scale = sum_xl / sum_l2;
      }
      const float cur_error = GridError(n, x, weights, Laux, this_scale, this_min);
      if (cur_error < best_error) {
        for (int i = 0; i < n; ++i) L[i] = Laux[i];
        best_error = cur_error;
        scale = this_scale;
        min = this_min;
      }
    }
  }
  *the_min = -min;
  return scale;
}

// The 6-bit scale and min codes of quantize_row_q4_K_ref, packed as
// get_scale_min_k4 reads them.
void PackQ4_KScales(const float* scales, const float* mins, float max_scale, float max_min,
                    uint8_t* packed) {
  const float inv_scale = max_scale > 0 ? 63.f / max_scale : 0.f;
  const float inv_min = max_min > 0 ? 63.f / max_min : 0.f;
  std::memset(packed, 0, 12);
  for (int j = 0; j < kQkK / 32; ++j) {
    uint8_t ls = static_cast<uint8_t>(NearestInt(inv_scale * scales[j]));
    uint8_t lm = static_cast<uint8_t>(NearestInt(inv_min * mins[j]));
    ls = std::min<uint8_t>(63, ls);
    lm = std::min<uint8_t>(63, lm);
    if (j < 4) {
      packed[j] = ls;
      packed[j + 4] = lm;
    } else {
      packed[j + 4] = static_cast<uint8_t>((ls & 0xF) | ((lm & 0xF) << 4));
      packed[j - 4] |= static_cast<uint8_t>((ls >> 4) << 6);
      packed[j - 0] |= static_cast<uint8_t>((lm >> 4) << 6);
    }
  }
}

// quantize_row_q4_K_ref for one super-block.
void QuantizeQ4_K(const float* x, uint8_t* b, int64_t block) {
  uint8_t L[kQkK], Laux[32];
  float weights[32], mins[kQkK / 32], scales[kQkK / 32];
  float max_scale = 0, max_min = 0;
  for (int j = 0; j < kQkK / 32; ++j) {
    float sum_x2 = 0;
    for (int l = 0; l < 32; ++l) sum_x2 += x[32 * j + l] * x[32 * j + l];
    const float av_x = std::sqrt(sum_x2 / 32);
    for (int l = 0; l < 32; ++l) weights[l] = av_x + std::fabs(x[32 * j + l]);
    scales[j] =
        MakeQkx2Quants(32, 15, x + 32 * j, weights, L + 32 * j, &mins[j], Laux, -1.f, 0.1f, 20);
    if (scales[j] > max_scale) max_scale = scales[j];
    if (mins[j] > max_min) max_min = mins[j];
  }
  uint8_t* packed = b + 4;
  PackQ4_KScales(scales, mins, max_scale, max_min, packed);
  const float d_all = StoreHalf(b, max_scale / 63.f);
  const float dmin_all = StoreHalf(b + 2, max_min / 63.f);
  CheckScale(static_cast<uint32_t>(GgmlType::kQ4_K), d_all, block);
  CheckScale(static_cast<uint32_t>(GgmlType::kQ4_K), dmin_all, block);
  for (int j = 0; j < kQkK / 32; ++j) {
    uint8_t sc, m;
    ScaleMinK4(j, packed, &sc, &m);
    const float d = d_all * static_cast<float>(sc);
    if (d == 0.0f) continue;
    const float dm = dmin_all * static_cast<float>(m);
    for (int ii = 0; ii < 32; ++ii) {
      const int l = NearestInt((x[32 * j + ii] + dm) / d);
      L[32 * j + ii] = static_cast<uint8_t>(std::max(0, std::min(15, l)));
    }
  }
  uint8_t* q = b + 16;
  for (int j = 0; j < kQkK; j += 64, q += 32) {
    for (int l = 0; l < 32; ++l) q[l] = static_cast<uint8_t>(L[j + l] | (L[j + l + 32] << 4));
  }
}

// ---- Q6_K ----
// block_q6_K: ql[128] at 0, qh[64] at 128, scales[16] (int8) at 192, d at 208.

// dequantize_row_q6_K.
void DequantizeQ6_K(const uint8_t* b, float* y) {
  const float d = LoadHalf(b + 208);
  const uint8_t* ql = b;
  const uint8_t* qh = b + 128;
  const int8_t* sc = reinterpret_cast<const int8_t*>(b + 192);
  for (int n = 0; n < kQkK; n += 128, y += 128, ql += 64, qh += 32, sc += 8) {
    for (int l = 0; l < 32; ++l) {
      const int is = l / 16;
      const int q1 = ((ql[l + 0] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
      const int q2 = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
      const int q3 = ((ql[l + 0] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
      const int q4 = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
      y[l + 0] = d * static_cast<float>(sc[is + 0]) * static_cast<float>(q1);
      y[l + 32] = d * static_cast<float>(sc[is + 2]) * static_cast<float>(q2);
      y[l + 64] = d * static_cast<float>(sc[is + 4]) * static_cast<float>(q3);
      y[l + 96] = d * static_cast<float>(sc[is + 6]) * static_cast<float>(q4);
    }
  }
}

// The weighted sums of make_qx_quants for the grid 1/iscale (weights x^2,
// rmse_type 1); stores the codes in L when `L` is not null.
void QxSums(int n, int nmax, const float* x, float iscale, int8_t* L, float* sumlx, float* suml2) {
  *sumlx = 0;
  *suml2 = 0;
  for (int i = 0; i < n; ++i) {
    int l = NearestInt(iscale * x[i]);
    l = std::max(-nmax, std::min(nmax - 1, l));
    if (L != nullptr) L[i] = static_cast<int8_t>(l + nmax);
    const float w = x[i] * x[i];
    const float fl = static_cast<float>(l);
    *sumlx += w * x[i] * fl;
    *suml2 += w * fl * fl;
  }
}

// make_qx_quants(n, nmax, x, L, rmse_type = 1, qw = NULL): a symmetric grid
// around the value of largest magnitude, refined over 18 nearby scales.
float MakeQxQuants(int n, int nmax, const float* x, int8_t* L) {
  float max = 0, amax = 0;
  for (int i = 0; i < n; ++i) {
    const float ax = std::fabs(x[i]);
    if (ax > amax) {
      amax = ax;
      max = x[i];
    }
  }
  if (amax < kGroupMaxEps) {
    for (int i = 0; i < n; ++i) L[i] = 0;
    return 0.f;
  }
  float iscale = static_cast<float>(-nmax) / max;
  float sumlx, suml2;
  QxSums(n, nmax, x, iscale, L, &sumlx, &suml2);
  float scale = suml2 != 0.0f ? sumlx / suml2 : 0.0f;
  float best = scale * sumlx;
  for (int is = -9; is <= 9; ++is) {
    if (is == 0) continue;
    iscale = -(static_cast<float>(nmax) + 0.1f * static_cast<float>(is)) / max;
    QxSums(n, nmax, x, iscale, nullptr, &sumlx, &suml2);
    if (suml2 > 0 && sumlx * sumlx > best * suml2) {
      QxSums(n, nmax, x, iscale, L, &sumlx, &suml2);
      scale = sumlx / suml2;
      best = scale * sumlx;
    }
  }
  return scale;
}

// The bit packing of quantize_row_q6_K_ref: codes 0..63 into ql and qh.
void PackQ6_K(const int8_t* L, uint8_t* b) {
  uint8_t* ql = b;
  uint8_t* qh = b + 128;
  for (int j = 0; j < kQkK; j += 128, ql += 64, qh += 32) {
    for (int l = 0; l < 32; ++l) {
      const int q1 = L[j + l + 0] & 0xF, q2 = L[j + l + 32] & 0xF;
      const int q3 = L[j + l + 64] & 0xF, q4 = L[j + l + 96] & 0xF;
      ql[l + 0] = static_cast<uint8_t>(q1 | (q3 << 4));
      ql[l + 32] = static_cast<uint8_t>(q2 | (q4 << 4));
      qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                   ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
    }
  }
}

// quantize_row_q6_K_ref for one super-block.
void QuantizeQ6_K(const float* x, uint8_t* b, int64_t block) {
  int8_t L[kQkK];
  float scales[kQkK / 16];
  float max_scale = 0, max_abs_scale = 0;
  for (int ib = 0; ib < kQkK / 16; ++ib) {
    scales[ib] = MakeQxQuants(16, 32, x + 16 * ib, L + 16 * ib);
    const float abs_scale = std::fabs(scales[ib]);
    if (abs_scale > max_abs_scale) {
      max_abs_scale = abs_scale;
      max_scale = scales[ib];
    }
  }
  if (max_abs_scale < kGroupMaxEps) {
    std::memset(b, 0, kQ6_KBytes);
    return;
  }
  const float iscale = -128.f / max_scale;
  const float d_all = StoreHalf(b + 208, 1 / iscale);
  CheckScale(static_cast<uint32_t>(GgmlType::kQ6_K), d_all, block);
  int8_t* sc = reinterpret_cast<int8_t*>(b + 192);
  for (int ib = 0; ib < kQkK / 16; ++ib)
    sc[ib] = static_cast<int8_t>(std::min(127, NearestInt(iscale * scales[ib])));
  for (int j = 0; j < kQkK / 16; ++j) {
    const float d = d_all * static_cast<float>(sc[j]);
    if (d == 0.0f) continue;
    for (int ii = 0; ii < 16; ++ii) {
      int l = NearestInt(x[16 * j + ii] / d);
      l = std::max(-32, std::min(31, l));
      L[16 * j + ii] = static_cast<int8_t>(l + 32);
    }
  }
  PackQ6_K(L, b);
}

struct Codec {
  int values;
  int bytes;
  void (*dequantize)(const uint8_t*, float*);
  void (*quantize)(const float*, uint8_t*, int64_t);
};

std::optional<Codec> BlockCodec(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kQ8_0: return Codec{kQk, kQ8_0Bytes, DequantizeQ8_0, QuantizeQ8_0};
    case GgmlType::kQ4_0: return Codec{kQk, kQ4_0Bytes, DequantizeQ4_0, QuantizeQ4_0};
    case GgmlType::kQ4_K: return Codec{kQkK, kQ4_KBytes, DequantizeQ4_K, QuantizeQ4_K};
    case GgmlType::kQ6_K: return Codec{kQkK, kQ6_KBytes, DequantizeQ6_K, QuantizeQ6_K};
    default: return std::nullopt;
  }
}

bool IsFloatType(uint32_t type) {
  return type == static_cast<uint32_t>(GgmlType::kF32) ||
         type == static_cast<uint32_t>(GgmlType::kF16) ||
         type == static_cast<uint32_t>(GgmlType::kBF16);
}

// The block codec of `type` after checking `n` against its block; nullopt
// for the float types.
std::optional<Codec> CheckedCodec(uint32_t type, int64_t n, const char* op) {
  const auto codec = BlockCodec(type);
  if (!codec && !IsFloatType(type)) {
    Fail(std::string(op) + ": tensor type " + GgmlTypeName(type) +
         " is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_K and Q6_K are; DequantizeRow also "
         "reads " +
         "Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q5_K and IQ4_NL)");
  }
  const int64_t block = codec ? codec->values : 1;
  if (n < 0 || n % block != 0) {
    Fail(std::string(op) + ": " + std::to_string(n) + " values are not a whole number of " +
         GgmlTypeName(type) + " blocks of " + std::to_string(block));
  }
  return codec;
}

}  // namespace

bool IsQuantizeSupported(uint32_t ggml_type) {
  return IsFloatType(ggml_type) || BlockCodec(ggml_type).has_value();
}

bool IsDequantizeSupported(uint32_t ggml_type) {
  return IsQuantizeSupported(ggml_type) || IsDecodeOnlyType(ggml_type);
}

void DequantizeRow(uint32_t ggml_type, const uint8_t* src, float* dst, int64_t n) {
  if (IsDecodeOnlyType(ggml_type)) {
    const int64_t block = GgmlBlockOf(ggml_type)->values;
    if (n < 0 || n % block != 0) {
      Fail("DequantizeRow: " + std::to_string(n) + " values are not a whole number of " +
           GgmlTypeName(ggml_type) + " blocks of " + std::to_string(block));
    }
    DecodeBlocks(ggml_type, src, dst, n / block);
    return;
  }
  const auto codec = CheckedCodec(ggml_type, n, "DequantizeRow");
  if (codec) {
    for (int64_t i = 0; i < n / codec->values; ++i)
      codec->dequantize(src + i * codec->bytes, dst + i * codec->values);
    return;
  }
  switch (static_cast<GgmlType>(ggml_type)) {
    case GgmlType::kF32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return;
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) dst[i] = LoadHalf(src + 2 * i);
      return;
    default:  // BF16
      for (int64_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = transport::Bf16ToFloat(h);
      }
  }
}

void QuantizeRow(uint32_t ggml_type, const float* src, uint8_t* dst, int64_t n) {
  const auto codec = CheckedCodec(ggml_type, n, "QuantizeRow");
  if (codec) {
    CheckFinite(ggml_type, src, n);
    for (int64_t i = 0; i < n / codec->values; ++i)
      codec->quantize(src + i * codec->values, dst + i * codec->bytes, i);
    return;
  }
  switch (static_cast<GgmlType>(ggml_type)) {
    case GgmlType::kF32: std::memcpy(dst, src, static_cast<size_t>(n) * 4); return;
    case GgmlType::kF16:
      for (int64_t i = 0; i < n; ++i) StoreHalf(dst + 2 * i, src[i]);
      return;
    default:  // BF16: ggml_fp32_to_bf16_row_ref
      for (int64_t i = 0; i < n; ++i) {
        const uint16_t h = transport::FloatToBf16(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
  }
}

}  // namespace splitlm::partition
