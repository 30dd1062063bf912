// Each decoder names the ggml function (ggml/src/ggml-quants.c) whose fp32
// operations it repeats in the same order.
#include "partition/quant_decode.h"

#include <cstring>

#include "partition/gguf.h"
#include "transport/codec.h"

namespace splitlm::partition {
namespace {

constexpr int kQk = 32;
constexpr int kQkK = 256;
constexpr int8_t kIq4nlValues[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};

constexpr uint32_t T(GgmlType t) { return static_cast<uint32_t>(t); }

float Half(const uint8_t* p) {
  uint16_t h;
  std::memcpy(&h, p, 2);
  return transport::HalfToFloat(h);
}

// The five-bit codes of a Q5_0/Q5_1 block: qh at `qh`, qs at `qs`.
void Codes5(const uint8_t* qh_bytes, const uint8_t* qs, int* q) {
  uint32_t qh;
  std::memcpy(&qh, qh_bytes, 4);
  for (int j = 0; j < kQk / 2; ++j) {
    q[j] = (qs[j] & 0x0F) | static_cast<int>(((qh >> j) << 4) & 0x10);
    q[j + kQk / 2] = (qs[j] >> 4) | static_cast<int>((qh >> (j + 12)) & 0x10);
  }
}

// dequantize_row_q4_1.
void DecodeQ4_1(const uint8_t* b, float* y) {
  const float d = Half(b), m = Half(b + 2);
  for (int j = 0; j < kQk / 2; ++j) {
    y[j] = static_cast<float>(b[4 + j] & 0x0F) * d + m;
    y[j + kQk / 2] = static_cast<float>(b[4 + j] >> 4) * d + m;
  }
}

// dequantize_row_q5_0.
void DecodeQ5_0(const uint8_t* b, float* y) {
  const float d = Half(b);
  int q[kQk];
  Codes5(b + 2, b + 6, q);
  for (int j = 0; j < kQk; ++j) y[j] = static_cast<float>(q[j] - 16) * d;
}

// dequantize_row_q5_1.
void DecodeQ5_1(const uint8_t* b, float* y) {
  const float d = Half(b), m = Half(b + 2);
  int q[kQk];
  Codes5(b + 4, b + 8, q);
  for (int j = 0; j < kQk; ++j) y[j] = static_cast<float>(q[j]) * d + m;
}

// dequantize_row_iq4_nl.
void DecodeIq4Nl(const uint8_t* b, float* y) {
  const float d = Half(b);
  for (int j = 0; j < kQk / 2; ++j) {
    y[j] = d * static_cast<float>(kIq4nlValues[b[2 + j] & 0x0F]);
    y[j + kQk / 2] = d * static_cast<float>(kIq4nlValues[b[2 + j] >> 4]);
  }
}

// dequantize_row_q2_K. block_q2_K: scales[16] at 0, qs[64] at 16, d at 80,
// dmin at 82. Value i has the 2 bits (qs[32*(i/128) + i%32] >> 2*((i%128)/32)) & 3
// and the scale byte i/16.
void DecodeQ2_K(const uint8_t* b, float* y) {
  const float d = Half(b + 80), min = Half(b + 82);
  for (int i = 0; i < kQkK; ++i) {
    const uint8_t sc = b[i / 16];
    const float dl = d * static_cast<float>(sc & 0xF), ml = min * static_cast<float>(sc >> 4);
    const int q = (b[16 + 32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3;
    y[i] = dl * static_cast<float>(q) - ml;
  }
}

// The sixteen 6-bit scales of a Q3_K block (stored + 32), as
// dequantize_row_q3_K unpacks them.
int Q3_KScale(const uint8_t* scales, int j) {
  const int low = j < 8 ? scales[j] & 0xF : scales[j - 8] >> 4;
  return low | (((scales[8 + j % 4] >> (2 * (j / 4))) & 3) << 4);
}

// The signed 3-bit code (-4..3) of value i of a Q3_K block: 2 bits from qs
// as Q2_K, minus 4 unless bit i/32 of hmask[i%32] is set.
int Q3_KCode(const uint8_t* b, int i) {
  const int low = (b[32 + 32 * (i / 128) + i % 32] >> (2 * ((i % 128) / 32))) & 3;
  const bool high = (b[i % 32] >> (i / 32)) & 1;
  return low - (high ? 0 : 4);
}

// dequantize_row_q3_K. block_q3_K: hmask[32] at 0, qs[64] at 32,
// scales[12] at 96, d at 108.
void DecodeQ3_K(const uint8_t* b, float* y) {
  const float d_all = Half(b + 108);
  for (int i = 0; i < kQkK; ++i) {
    const float dl = d_all * static_cast<float>(Q3_KScale(b + 96, i / 16) - 32);
    y[i] = dl * static_cast<float>(Q3_KCode(b, i));
  }
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

// dequantize_row_q5_K. block_q5_K: d at 0, dmin at 2, scales[12] at 4,
// qh[32] at 16, qs[128] at 48.
void DecodeQ5_K(const uint8_t* b, float* y) {
  const float d = Half(b), min = Half(b + 2);
  const uint8_t* qh = b + 16;
  const uint8_t* ql = b + 48;
  for (int g = 0; g < 4; ++g, ql += 32) {
    uint8_t sc, m;
    ScaleMinK4(2 * g, b + 4, &sc, &m);
    const float d1 = d * static_cast<float>(sc), m1 = min * static_cast<float>(m);
    ScaleMinK4(2 * g + 1, b + 4, &sc, &m);
    const float d2 = d * static_cast<float>(sc), m2 = min * static_cast<float>(m);
    const int u1 = 1 << (2 * g), u2 = 2 << (2 * g);
    for (int l = 0; l < 32; ++l)
      *y++ = d1 * static_cast<float>((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
    for (int l = 0; l < 32; ++l)
      *y++ = d2 * static_cast<float>((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
  }
}

struct Decoder {
  int values;
  int bytes;
  void (*decode)(const uint8_t*, float*);
};

std::optional<Decoder> DecoderOf(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kQ4_1: return Decoder{kQk, 20, DecodeQ4_1};
    case GgmlType::kQ5_0: return Decoder{kQk, 22, DecodeQ5_0};
    case GgmlType::kQ5_1: return Decoder{kQk, 24, DecodeQ5_1};
    case GgmlType::kIQ4_NL: return Decoder{kQk, 18, DecodeIq4Nl};
    case GgmlType::kQ2_K: return Decoder{kQkK, 84, DecodeQ2_K};
    case GgmlType::kQ3_K: return Decoder{kQkK, 110, DecodeQ3_K};
    case GgmlType::kQ5_K: return Decoder{kQkK, 176, DecodeQ5_K};
    default: return std::nullopt;
  }
}

// A Q5_0 or IQ4_NL block as a Q8_0 block (34 bytes: d, int8 q[32]).
void ToQ8_0(uint32_t type, const uint8_t* b, uint8_t* out) {
  std::memcpy(out, b, 2);
  int8_t* q = reinterpret_cast<int8_t*>(out + 2);
  if (type == T(GgmlType::kQ5_0)) {
    int codes[kQk];
    Codes5(b + 2, b + 6, codes);
    for (int j = 0; j < kQk; ++j) q[j] = static_cast<int8_t>(codes[j] - 16);
  } else {
    for (int j = 0; j < kQk / 2; ++j) {
      q[j] = kIq4nlValues[b[2 + j] & 0x0F];
      q[j + kQk / 2] = kIq4nlValues[b[2 + j] >> 4];
    }
  }
}

// A Q3_K block as a Q6_K block (210 bytes: ql[128], qh[64], int8
// scales[16], d), packed as quantize_row_q6_K_ref packs its codes.
void Q3_KToQ6_K(const uint8_t* b, uint8_t* out) {
  uint8_t L[kQkK];
  for (int i = 0; i < kQkK; ++i) L[i] = static_cast<uint8_t>(Q3_KCode(b, i) + 32);
  uint8_t* ql = out;
  uint8_t* qh = out + 128;
  for (int j = 0; j < kQkK; j += 128, ql += 64, qh += 32) {
    for (int l = 0; l < 32; ++l) {
      ql[l] = static_cast<uint8_t>((L[j + l] & 0xF) | ((L[j + l + 64] & 0xF) << 4));
      ql[l + 32] = static_cast<uint8_t>((L[j + l + 32] & 0xF) | ((L[j + l + 96] & 0xF) << 4));
      qh[l] = static_cast<uint8_t>((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) |
                                   ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
    }
  }
  for (int s = 0; s < 16; ++s)
    out[192 + s] = static_cast<uint8_t>(static_cast<int8_t>(Q3_KScale(b + 96, s) - 32));
  std::memcpy(out + 208, b + 108, 2);
}

}  // namespace

bool IsDecodeOnlyType(uint32_t ggml_type) { return DecoderOf(ggml_type).has_value(); }

bool DecodeBlocks(uint32_t ggml_type, const uint8_t* src, float* dst, int64_t blocks) {
  const auto d = DecoderOf(ggml_type);
  if (!d) return false;
  for (int64_t i = 0; i < blocks; ++i) d->decode(src + i * d->bytes, dst + i * d->values);
  return true;
}

std::optional<uint32_t> ExactBlockForm(uint32_t ggml_type) {
  switch (static_cast<GgmlType>(ggml_type)) {
    case GgmlType::kQ5_0:
    case GgmlType::kIQ4_NL: return T(GgmlType::kQ8_0);
    case GgmlType::kQ3_K: return T(GgmlType::kQ6_K);
    default: return std::nullopt;
  }
}

bool TranscodeRow(uint32_t ggml_type, const uint8_t* src, uint8_t* dst, int64_t n) {
  if (!ExactBlockForm(ggml_type)) return false;
  if (ggml_type == T(GgmlType::kQ3_K)) {
    for (int64_t i = 0; i < n / kQkK; ++i) Q3_KToQ6_K(src + i * 110, dst + i * 210);
    return true;
  }
  const int in_bytes = ggml_type == T(GgmlType::kQ5_0) ? 22 : 18;
  for (int64_t i = 0; i < n / kQk; ++i) ToQ8_0(ggml_type, src + i * in_bytes, dst + i * 34);
  return true;
}

}  // namespace splitlm::partition
