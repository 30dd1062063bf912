// 16-bit-weight matrix-product bodies (see kernels_half.h), compiled once per
// instruction set (kernels_half_isa.cpp) inside namespace SPLITLM_ISA. The
// vector types and the tile shape are kernels_impl.h's: only the weight load
// differs from kernels::MatMul's PanelTile, widening 16 lanes exactly.
#include <cstdint>
#include <cstring>

#include "partition/kernels_impl.h"
#include "transport/codec.h"

namespace splitlm::partition::kernels::SPLITLM_ISA {

// Sixteen 16-bit weights widened to fp32 lanes.
#if defined(__AVX512F__)
inline V16 LoadF16(const uint16_t* p) {
  return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
}
inline V16 LoadBf16(const uint16_t* p) {
  const __m512i w = _mm512_cvtepu16_epi32(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  return {_mm512_castsi512_ps(_mm512_slli_epi32(w, 16))};
}
#elif defined(__AVX2__) && defined(__F16C__)
inline V8 LoadF16x8(const uint16_t* p) {
  return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))};
}
inline V8 LoadBf16x8(const uint16_t* p) {
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return {_mm256_castsi256_ps(_mm256_slli_epi32(w, 16))};
}
inline V16 LoadF16(const uint16_t* p) { return {LoadF16x8(p), LoadF16x8(p + 8)}; }
inline V16 LoadBf16(const uint16_t* p) { return {LoadBf16x8(p), LoadBf16x8(p + 8)}; }
#elif defined(__aarch64__) && !defined(SPLITLM_KERNELS_PORTABLE)
inline float32x4_t F16x4(const uint16_t* p) {
  return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
}
inline float32x4_t Bf16x4(const uint16_t* p) {
  return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
}
inline V16 LoadF16(const uint16_t* p) {
  return {V8{F16x4(p), F16x4(p + 4)}, V8{F16x4(p + 8), F16x4(p + 12)}};
}
inline V16 LoadBf16(const uint16_t* p) {
  return {V8{Bf16x4(p), Bf16x4(p + 4)}, V8{Bf16x4(p + 8), Bf16x4(p + 12)}};
}
#else
inline V16 LoadF16(const uint16_t* p) {
  alignas(64) float f[16];
  for (int l = 0; l < 16; ++l) f[l] = transport::HalfToFloat(p[l]);
  return Load16(f);
}
inline V16 LoadBf16(const uint16_t* p) {
  alignas(64) float f[16];
  for (int l = 0; l < 16; ++l) f[l] = transport::Bf16ToFloat(p[l]);
  return Load16(f);
}
#endif

template <bool kBf16>
inline V16 LoadHalf16(const uint16_t* p) {
  if constexpr (kBf16) {
    return LoadBf16(p);
  } else {
    return LoadF16(p);
  }
}

// NI inputs (packed [k][NI]) against NP panels of 16 rows: PanelTile with
// 16-bit weights. y[i*ldy + r].
template <bool kBf16, int NI, int NP>
inline void HalfPanelTile(const uint16_t* panel, size_t panel_stride, int k, const float* x,
                          float* y, int ldy, int m, int row0, const float* bias) {
  V16 acc[NI][NP];
  for (int i = 0; i < NI; ++i)
    for (int p = 0; p < NP; ++p) acc[i][p] = Zero16();
  for (int j = 0; j < k; ++j) {
    V16 w[NP];
    for (int p = 0; p < NP; ++p)
      w[p] = LoadHalf16<kBf16>(panel + p * panel_stride + static_cast<size_t>(j) * 16);
    for (int i = 0; i < NI; ++i) {
      const V16 xb = Splat16(x[static_cast<size_t>(j) * NI + i]);
      for (int p = 0; p < NP; ++p) acc[i][p] = Fma16(w[p], xb, acc[i][p]);
    }
  }
  for (int i = 0; i < NI; ++i) {
    for (int p = 0; p < NP; ++p) {
      alignas(64) float out[16];
      Store16(out, acc[i][p]);
      for (int l = 0; l < 16; ++l) {
        const int r = row0 + p * 16 + l;
        if (r >= m) break;
        y[static_cast<size_t>(i) * ldy + r] = bias != nullptr ? out[l] + bias[r] : out[l];
      }
    }
  }
}

template <bool kBf16, int NI, int NP>
inline void HalfPanelRun(const uint16_t* packed, int m, int k, const float* x, float* y, int ldy,
                         const float* bias, int p0, int p1) {
  const size_t stride = static_cast<size_t>(k) * 16;
  int p = p0;
  for (; p + NP <= p1; p += NP) {
    HalfPanelTile<kBf16, NI, NP>(packed + p * stride, stride, k, x, y, ldy, m, p * 16, bias);
  }
  for (; p < p1; ++p)
    HalfPanelTile<kBf16, NI, 1>(packed + p * stride, stride, k, x, y, ldy, m, p * 16, bias);
}

template <bool kBf16, int NI>
inline void HalfSmallGroup(int n, const uint16_t* packed, int m, int k, const float* x, float* y,
                           int ldy, const float* bias, int p0, int p1) {
  if constexpr (NI > 0) {
    if (n == NI) {
      constexpr int kAcc = kTileInputs * kTilePanels;
      constexpr int kPanels = kAcc / NI < 4 ? (kAcc / NI > 0 ? kAcc / NI : 1) : 4;
      HalfPanelRun<kBf16, NI, kPanels>(packed, m, k, x, y, ldy, bias, p0, p1);
    } else {
      HalfSmallGroup<kBf16, NI - 1>(n, packed, m, k, x, y, ldy, bias, p0, p1);
    }
  }
}

// Panels [p0, p1) for all n inputs, x packed in groups of kTileInputs.
template <bool kBf16>
inline void HalfPanelMatMul(const uint16_t* packed, int m, int k, const float* xp, int n, float* y,
                            int ldy, const float* bias, int p0, int p1) {
  const int kPanelStep = 4;
  for (int q0 = p0; q0 < p1; q0 += kPanelStep) {
    const int q1 = q0 + kPanelStep < p1 ? q0 + kPanelStep : p1;
    int i = 0;
    for (; i + kTileInputs <= n; i += kTileInputs) {
      HalfPanelRun<kBf16, kTileInputs, kTilePanels>(packed, m, k, xp + static_cast<size_t>(i) * k,
                                                    y + static_cast<size_t>(i) * ldy, ldy, bias, q0,
                                                    q1);
    }
    if (i < n) {
      HalfSmallGroup<kBf16, kTileInputs - 1>(n - i, packed, m, k, xp + static_cast<size_t>(i) * k,
                                             y + static_cast<size_t>(i) * ldy, ldy, bias, q0, q1);
    }
  }
}

}  // namespace splitlm::partition::kernels::SPLITLM_ISA
