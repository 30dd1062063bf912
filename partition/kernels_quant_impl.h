// Quantised matrix-product bodies (see kernels_quant.h), compiled once per
// instruction set inside namespace SPLITLM_ISA next to kernels_impl.h. Each
// decoder turns one column of a 16-row panel into 16 fp32 weights with the
// operations DequantizeRow uses (integer steps are exact; each float multiply
// or subtract is one rounding, never fused); the chain over columns is then
// the fp32 kernel's.
#include <cstdint>

#include "partition/kernels_impl.h"

namespace splitlm::partition::kernels::SPLITLM_ISA {

// ---- 16 bytes and their conversion to 16 floats ----
#if (defined(__AVX2__) && defined(__FMA__)) || defined(__AVX512F__)
struct B16 {
  __m128i v;
};
inline B16 LoadB(const uint8_t* p) {
  return {_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))};
}
inline B16 AndB(B16 a, int mask) {
  return {_mm_and_si128(a.v, _mm_set1_epi8(static_cast<char>(mask)))};
}
inline B16 ShrB(B16 a, int n) {
  return {_mm_and_si128(_mm_srl_epi16(a.v, _mm_cvtsi32_si128(n)),
                        _mm_set1_epi8(static_cast<char>(0xFF >> n)))};
}
inline B16 ShlB(B16 a, int n) {
  return {_mm_and_si128(_mm_sll_epi16(a.v, _mm_cvtsi32_si128(n)),
                        _mm_set1_epi8(static_cast<char>((0xFF << n) & 0xFF)))};
}
inline B16 OrB(B16 a, B16 b) { return {_mm_or_si128(a.v, b.v)}; }
inline B16 SubB(B16 a, int v) { return {_mm_sub_epi8(a.v, _mm_set1_epi8(static_cast<char>(v)))}; }
inline V8 Mul(V8 a, V8 b) { return {_mm256_mul_ps(a.v, b.v)}; }
inline V8 Sub(V8 a, V8 b) { return {_mm256_sub_ps(a.v, b.v)}; }
#else
struct B16 {
  uint8_t b[16];
};
inline B16 LoadB(const uint8_t* p) {
  B16 r;
  std::memcpy(r.b, p, 16);
  return r;
}
inline B16 AndB(B16 a, int mask) {
  for (auto& x : a.b) x = static_cast<uint8_t>(x & mask);
  return a;
}
inline B16 ShrB(B16 a, int n) {
  for (auto& x : a.b) x = static_cast<uint8_t>(x >> n);
  return a;
}
inline B16 ShlB(B16 a, int n) {
  for (auto& x : a.b) x = static_cast<uint8_t>(x << n);
  return a;
}
inline B16 OrB(B16 a, B16 b) {
  for (int i = 0; i < 16; ++i) a.b[i] = static_cast<uint8_t>(a.b[i] | b.b[i]);
  return a;
}
inline B16 SubB(B16 a, int v) {
  for (auto& x : a.b) x = static_cast<uint8_t>(x - v);
  return a;
}
#if defined(__aarch64__) && !defined(SPLITLM_KERNELS_PORTABLE)
inline V8 Mul(V8 a, V8 b) { return {vmulq_f32(a.lo, b.lo), vmulq_f32(a.hi, b.hi)}; }
inline V8 Sub(V8 a, V8 b) { return {vsubq_f32(a.lo, b.lo), vsubq_f32(a.hi, b.hi)}; }
#else
inline V8 Mul(V8 a, V8 b) {
  for (int l = 0; l < 8; ++l) a.f[l] = a.f[l] * b.f[l];
  return a;
}
inline V8 Sub(V8 a, V8 b) {
  for (int l = 0; l < 8; ++l) a.f[l] = a.f[l] - b.f[l];
  return a;
}
#endif
#endif

#if defined(__AVX512F__)
// Bytes as signed 8-bit integers, widened to 16 floats (exact).
inline V16 S8ToF(B16 a) { return {_mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(a.v))}; }
inline V16 Mul16(V16 a, V16 b) { return {_mm512_mul_ps(a.v, b.v)}; }
inline V16 Sub16(V16 a, V16 b) { return {_mm512_sub_ps(a.v, b.v)}; }
#else
#if defined(__AVX2__) && defined(__FMA__)
inline V16 S8ToF(B16 a) {
  return {{_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(a.v))},
          {_mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(a.v, 8)))}};
}
#else
inline V16 S8ToF(B16 a) {
  alignas(64) float f[16];
  for (int i = 0; i < 16; ++i) f[i] = static_cast<float>(static_cast<int8_t>(a.b[i]));
  return Load16(f);
}
#endif
inline V16 Mul16(V16 a, V16 b) { return {Mul(a.lo, b.lo), Mul(a.hi, b.hi)}; }
inline V16 Sub16(V16 a, V16 b) { return {Sub(a.lo, b.lo), Sub(a.hi, b.hi)}; }
#endif

// The two nibbles of 16 bytes as floats: lo[l] = float((b[l] & 15) - off),
// hi[l] = float((b[l] >> 4) - off) (exact).
#if defined(__AVX512F__)
inline void Nibbles(const uint8_t* p, int off, V16* lo, V16* hi) {
  // vpermps reads the low 4 bits of each index: a 16-entry table lookup.
  const __m512 table =
      _mm512_sub_ps(_mm512_setr_ps(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                    _mm512_set1_ps(static_cast<float>(off)));
  const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  lo->v = _mm512_permutexvar_ps(v, table);
  hi->v = _mm512_permutexvar_ps(_mm512_srli_epi32(v, 4), table);
}
#else
inline void Nibbles(const uint8_t* p, int off, V16* lo, V16* hi) {
  const B16 b = LoadB(p);
  *lo = S8ToF(SubB(AndB(b, 0x0F), off));
  *hi = S8ToF(SubB(ShrB(b, 4), off));
}
#endif

inline const float* F(const uint8_t* p) { return reinterpret_cast<const float*>(p); }

// ---- Decoders: one column group of one panel (layouts in kernels_quant.cpp) ----
// kGroup columns in kSubs sub-blocks of kSubCols; Prepare loads a sub-block's
// scales, Weights decodes columns c .. c + kStep - 1 of sub-block s.

struct DQ8_0 {
  static constexpr int kGroup = 32, kSubs = 1, kSubCols = 32;
  static constexpr size_t kBytes = 576;
  struct Sub {
    V16 d;
  };
  static Sub Prepare(const uint8_t* g, int) { return {Load16(F(g))}; }
  static constexpr int kStep = 1;
  static void Weights(const uint8_t* g, const Sub& s, int, int c, V16* w) {
    w[0] = Mul16(S8ToF(LoadB(g + 64 + 16 * c)), s.d);
  }
};

struct DQ4_0 {
  static constexpr int kGroup = 32, kSubs = 1, kSubCols = 32;
  static constexpr size_t kBytes = 320;
  struct Sub {
    V16 d;
  };
  static Sub Prepare(const uint8_t* g, int) { return {Load16(F(g))}; }
  static constexpr int kStep = 2;
  static void Weights(const uint8_t* g, const Sub& s, int, int c, V16* w) {
    V16 lo, hi;
    Nibbles(g + 64 + 8 * c, 8, &lo, &hi);
    w[0] = Mul16(lo, s.d);
    w[1] = Mul16(hi, s.d);
  }
};

struct DQ4_K {
  static constexpr int kGroup = 256, kSubs = 8, kSubCols = 32;
  static constexpr size_t kBytes = 2432;
  struct Sub {
    V16 a, b;
  };
  static Sub Prepare(const uint8_t* g, int s) {
    return {Mul16(Load16(F(g)), S8ToF(LoadB(g + 128 + 16 * s))),
            Mul16(Load16(F(g + 64)), S8ToF(LoadB(g + 256 + 16 * s)))};
  }
  static constexpr int kStep = 2;
  static void Weights(const uint8_t* g, const Sub& s, int sub, int c, V16* w) {
    V16 lo, hi;
    Nibbles(g + 384 + 8 * (32 * sub + c), 0, &lo, &hi);
    w[0] = Sub16(Mul16(s.a, lo), s.b);
    w[1] = Sub16(Mul16(s.a, hi), s.b);
  }
};

struct DQ6_K {
  static constexpr int kGroup = 256, kSubs = 16, kSubCols = 16;
  static constexpr size_t kBytes = 3392;
  struct Sub {
    V16 a;
  };
  static Sub Prepare(const uint8_t* g, int s) {
    return {Mul16(Load16(F(g)), S8ToF(LoadB(g + 64 + 16 * s)))};
  }
  static constexpr int kStep = 1;
  static void Weights(const uint8_t* g, const Sub& s, int sub, int c, V16* w) {
    w[0] = Weight(g, s, sub, c);
  }
  static V16 Weight(const uint8_t* g, const Sub& s, int sub, int c) {
    const int h = sub / 8, t = (sub % 8) / 2, l = (sub % 2) * 16 + c;
    const B16 lo = LoadB(g + 320 + 16 * (64 * h + l + 32 * (t & 1)));
    const B16 nib = t < 2 ? AndB(lo, 0x0F) : ShrB(lo, 4);
    const B16 hi = AndB(ShrB(LoadB(g + 2368 + 16 * (32 * h + l)), 2 * t), 3);
    return Mul16(s.a, S8ToF(SubB(OrB(nib, ShlB(hi, 4)), 32)));
  }
};

// NI inputs (packed [k][NI]) against NP panels: each output element one fma
// chain over j = 0..k-1 in order, as PanelTile.
template <class D, int NI, int NP>
inline void QTile(const uint8_t* panel, size_t pstride, int k, const float* x, float* y, int ldy,
                  int m, int row0, const float* bias) {
  V16 acc[NI][NP];
  for (int i = 0; i < NI; ++i)
    for (int p = 0; p < NP; ++p) acc[i][p] = Zero16();
  const int groups = k / D::kGroup;
  for (int gi = 0; gi < groups; ++gi) {
    const uint8_t* g[NP];
    for (int p = 0; p < NP; ++p) g[p] = panel + p * pstride + static_cast<size_t>(gi) * D::kBytes;
    for (int s = 0; s < D::kSubs; ++s) {
      typename D::Sub sub[NP];
      for (int p = 0; p < NP; ++p) sub[p] = D::Prepare(g[p], s);
      const float* xs = x + static_cast<size_t>(gi * D::kGroup + s * D::kSubCols) * NI;
      for (int c = 0; c < D::kSubCols; c += D::kStep) {
        V16 w[NP][D::kStep];
        for (int p = 0; p < NP; ++p) D::Weights(g[p], sub[p], s, c, w[p]);
        for (int t = 0; t < D::kStep; ++t) {
          for (int i = 0; i < NI; ++i) {
            const V16 xb = Splat16(xs[(c + t) * NI + i]);
            for (int p = 0; p < NP; ++p) acc[i][p] = Fma16(w[p][t], xb, acc[i][p]);
          }
        }
      }
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

template <class D, int NI, int NP>
inline void QPanelRun(const uint8_t* packed, int m, int k, const float* x, float* y, int ldy,
                      const float* bias, int p0, int p1) {
  const size_t stride = static_cast<size_t>(k / D::kGroup) * D::kBytes;
  int p = p0;
  for (; p + NP <= p1; p += NP)
    QTile<D, NI, NP>(packed + p * stride, stride, k, x, y, ldy, m, p * 16, bias);
  for (; p < p1; ++p) QTile<D, NI, 1>(packed + p * stride, stride, k, x, y, ldy, m, p * 16, bias);
}

template <class D, int NI>
inline void QSmallGroup(int n, const uint8_t* packed, int m, int k, const float* x, float* y,
                        int ldy, const float* bias, int p0, int p1) {
  if constexpr (NI > 0) {
    if (n == NI) {
      constexpr int kAcc = kTileInputs * kTilePanels;
      constexpr int kPanels = kAcc / NI < 4 ? (kAcc / NI > 0 ? kAcc / NI : 1) : 4;
      QPanelRun<D, NI, kPanels>(packed, m, k, x, y, ldy, bias, p0, p1);
    } else {
      QSmallGroup<D, NI - 1>(n, packed, m, k, x, y, ldy, bias, p0, p1);
    }
  }
}

// Panels [p0, p1) for all n inputs (packed in groups as for PanelMatMul).
template <class D>
inline void QPanelMatMul(const uint8_t* packed, int m, int k, const float* xp, int n, float* y,
                         int ldy, const float* bias, int p0, int p1) {
  const size_t ys = static_cast<size_t>(ldy);
  const int kPanelStep = 4;
  for (int q0 = p0; q0 < p1; q0 += kPanelStep) {
    const int q1 = q0 + kPanelStep < p1 ? q0 + kPanelStep : p1;
    int i = 0;
    for (; i + kTileInputs <= n; i += kTileInputs) {
      QPanelRun<D, kTileInputs, kTilePanels>(packed, m, k, xp + static_cast<size_t>(i) * k,
                                             y + i * ys, ldy, bias, q0, q1);
    }
    if (i < n)
      QSmallGroup<D, kTileInputs - 1>(n - i, packed, m, k, xp + static_cast<size_t>(i) * k,
                                      y + i * ys, ldy, bias, q0, q1);
  }
}

}  // namespace splitlm::partition::kernels::SPLITLM_ISA
