// Quantised matrix products on 8-bit activations (kernels_quant.h, "int8"
// layouts), compiled once per instruction set next to kernels_quant_impl.h.
//
// Output element (i, r): for each block b of the row, in order, an exact
// int32 sum s_b of weight codes times activation codes (the offsets of the
// format folded in exactly), then
//   acc = fma(float(s_b), w_scale[r][b] * a_scale[i][b], acc)   from +0,
// and + bias[r] at the end. Integer sums are exact whatever the instruction
// set adds first (VNNI's vpdpbusd, AVX2's vpmaddubsw/vpmaddwd with no
// saturation possible, NEON's sdot or the scalar loop), and the float steps
// are the same IEEE operations in the same order on every path, so a row's
// result is bit-identical across instruction sets, threads and batches.
#include <cstdint>
#include <cstring>

#include "partition/kernels_quant_impl.h"

namespace splitlm::partition::kernels::SPLITLM_ISA {

inline int32_t Load4(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return v;
}

// fp16 bits to fp32, exactly (the portable path; hardware converts the same).
inline float HalfToF(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t e = (h >> 10) & 31, m = h & 0x3FFu;
  uint32_t bits;
  if (e == 31) {
    bits = sign | 0x7F800000u | (m << 13);
  } else if (e == 0) {
    const float f = static_cast<float>(m) * 0x1p-24f;  // exact
    std::memcpy(&bits, &f, 4);
    bits |= sign;
  } else {
    bits = sign | ((e + 112) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// ---- 16 int32 lanes (one per row of a panel) and the block dot products ----
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VNNI__)
struct I16 {
  __m512i v;
};
inline V16 ToF(I16 a) { return {_mm512_cvtepi32_ps(a.v)}; }
inline V16 Halves16(const uint8_t* p) {
  return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
}
inline __m512i Ld64(const uint8_t* p) { return _mm512_loadu_si512(p); }
// Q8_0: chunks of 64 bytes (16 rows x 4 columns) of codes + 128 as u8;
// the offset is taken off through the initial value -128 * sum(a).
inline I16 DotQ8_0(const uint8_t* c, const int8_t* a, int32_t sa) {
  __m512i acc = _mm512_set1_epi32(-128 * sa);
  for (int q = 0; q < 8; ++q)
    acc = _mm512_dpbusd_epi32(acc, Ld64(c + 64 * q), _mm512_set1_epi32(Load4(a + 4 * q)));
  return {acc};
}
// Q4_0: chunks of 64 bytes whose low nibbles are columns 8q..8q+3 and high
// nibbles 8q+4..8q+7, codes 0..15; offset -8 * sum(a).
inline I16 DotQ4_0(const uint8_t* c, const int8_t* a, int32_t sa) {
  const __m512i m = _mm512_set1_epi8(0x0F);
  __m512i acc = _mm512_set1_epi32(-8 * sa);
  for (int q = 0; q < 4; ++q) {
    const __m512i v = Ld64(c + 64 * q);
    acc = _mm512_dpbusd_epi32(acc, _mm512_and_si512(v, m), _mm512_set1_epi32(Load4(a + 8 * q)));
    acc = _mm512_dpbusd_epi32(acc, _mm512_and_si512(_mm512_srli_epi16(v, 4), m),
                              _mm512_set1_epi32(Load4(a + 8 * q + 4)));
  }
  return {acc};
}
// Q4_K: sub-block j (32 columns, 4 chunks) sums times the row's 6-bit scale;
// the mins: sum_j m_j * (sum of a over sub-block j), returned in *mins.
inline I16 DotQ4_K(const uint8_t* g, const int8_t* a, const int32_t* s16, I16* mins) {
  const __m512i m = _mm512_set1_epi8(0x0F);
  __m512i total = _mm512_setzero_si512(), msum = _mm512_setzero_si512();
  for (int j = 0; j < 8; ++j) {
    __m512i acc = _mm512_setzero_si512();
    for (int q = 4 * j; q < 4 * j + 4; ++q) {
      const __m512i v = Ld64(g + 320 + 64 * q);
      acc = _mm512_dpbusd_epi32(acc, _mm512_and_si512(v, m), _mm512_set1_epi32(Load4(a + 8 * q)));
      acc = _mm512_dpbusd_epi32(acc, _mm512_and_si512(_mm512_srli_epi16(v, 4), m),
                                _mm512_set1_epi32(Load4(a + 8 * q + 4)));
    }
    const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 64 + 16 * j));
    const __m128i mn = _mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 192 + 16 * j));
    total = _mm512_add_epi32(total, _mm512_mullo_epi32(acc, _mm512_cvtepu8_epi32(sc)));
    msum =
        _mm512_add_epi32(msum, _mm512_mullo_epi32(_mm512_cvtepu8_epi32(mn),
                                                  _mm512_set1_epi32(s16[2 * j] + s16[2 * j + 1])));
  }
  mins->v = msum;
  return {total};
}
// Q6_K: sub-block j (16 columns): low nibbles in chunks 2j, 2j + 1, high bits
// in chunk j of the second area; codes 0..63, offset -32 * sum(a).
inline I16 DotQ6_K(const uint8_t* g, const int8_t* a, const int32_t* s16) {
  const __m512i m = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x30);
  __m512i total = _mm512_setzero_si512();
  for (int j = 0; j < 16; ++j) {
    const __m512i lo0 = Ld64(g + 288 + 64 * (2 * j)), lo1 = Ld64(g + 288 + 64 * (2 * j + 1));
    const __m512i hb = Ld64(g + 2336 + 64 * j);
    const __m512i c0 =
        _mm512_or_si512(_mm512_and_si512(lo0, m), _mm512_and_si512(_mm512_slli_epi16(hb, 4), m2));
    const __m512i c1 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(lo0, 4), m),
                                       _mm512_and_si512(_mm512_slli_epi16(hb, 2), m2));
    const __m512i c2 = _mm512_or_si512(_mm512_and_si512(lo1, m), _mm512_and_si512(hb, m2));
    const __m512i c3 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(lo1, 4), m),
                                       _mm512_and_si512(_mm512_srli_epi16(hb, 2), m2));
    const int8_t* aj = a + 16 * j;
    __m512i acc = _mm512_set1_epi32(-32 * s16[j]);
    acc = _mm512_dpbusd_epi32(acc, c0, _mm512_set1_epi32(Load4(aj)));
    acc = _mm512_dpbusd_epi32(acc, c1, _mm512_set1_epi32(Load4(aj + 4)));
    acc = _mm512_dpbusd_epi32(acc, c2, _mm512_set1_epi32(Load4(aj + 8)));
    acc = _mm512_dpbusd_epi32(acc, c3, _mm512_set1_epi32(Load4(aj + 12)));
    const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(g + 32 + 16 * j));
    total = _mm512_add_epi32(total, _mm512_mullo_epi32(acc, _mm512_cvtepi8_epi32(sc)));
  }
  return {total};
}
// The K formats' sums for NP panels at once (g[p]: panel p's group), the
// panels' chains interleaved so that the out-of-order core overlaps them
// (a one-thread loop over the 110m's matrices read Q4_K 40% and Q6_K 35%
// faster; Q8_0/Q4_0 gained nothing, so they keep one panel at a time). Each panel's integer sums
// are the ones above (exact in any order).
#define SPLITLM_MULTI_PANEL 1
template <int NP>
inline void DotQ4_KN(const uint8_t* const* g, const int8_t* a, const int32_t* s16, I16* total,
                     I16* mins) {
  const __m512i m = _mm512_set1_epi8(0x0F);
  __m512i t[NP], ms[NP];
  for (int p = 0; p < NP; ++p) t[p] = ms[p] = _mm512_setzero_si512();
#pragma GCC unroll 8
  for (int j = 0; j < 8; ++j) {
    __m512i acc[NP];
    for (int p = 0; p < NP; ++p) acc[p] = _mm512_setzero_si512();
#pragma GCC unroll 4
    for (int q = 4 * j; q < 4 * j + 4; ++q) {
      const __m512i xl = _mm512_set1_epi32(Load4(a + 8 * q)),
                    xh = _mm512_set1_epi32(Load4(a + 8 * q + 4));
      for (int p = 0; p < NP; ++p) {
        const __m512i v = Ld64(g[p] + 320 + 64 * q);
        acc[p] = _mm512_dpbusd_epi32(acc[p], _mm512_and_si512(v, m), xl);
        acc[p] = _mm512_dpbusd_epi32(acc[p], _mm512_and_si512(_mm512_srli_epi16(v, 4), m), xh);
      }
    }
    const __m512i sj = _mm512_set1_epi32(s16[2 * j] + s16[2 * j + 1]);
    for (int p = 0; p < NP; ++p) {
      const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(g[p] + 64 + 16 * j));
      const __m128i mn = _mm_loadu_si128(reinterpret_cast<const __m128i*>(g[p] + 192 + 16 * j));
      t[p] = _mm512_add_epi32(t[p], _mm512_mullo_epi32(acc[p], _mm512_cvtepu8_epi32(sc)));
      ms[p] = _mm512_add_epi32(ms[p], _mm512_mullo_epi32(_mm512_cvtepu8_epi32(mn), sj));
    }
  }
  for (int p = 0; p < NP; ++p) {
    total[p].v = t[p];
    mins[p].v = ms[p];
  }
}
template <int NP>
inline void DotQ6_KN(const uint8_t* const* g, const int8_t* a, const int32_t* s16, I16* r) {
  const __m512i m = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x30);
  __m512i t[NP];
  for (int p = 0; p < NP; ++p) t[p] = _mm512_setzero_si512();
#pragma GCC unroll 16
  for (int j = 0; j < 16; ++j) {
    const int8_t* aj = a + 16 * j;
    const __m512i x0 = _mm512_set1_epi32(Load4(aj)), x1 = _mm512_set1_epi32(Load4(aj + 4));
    const __m512i x2 = _mm512_set1_epi32(Load4(aj + 8)), x3 = _mm512_set1_epi32(Load4(aj + 12));
    const __m512i off = _mm512_set1_epi32(-32 * s16[j]);
    for (int p = 0; p < NP; ++p) {
      const uint8_t* gp = g[p];
      const __m512i lo0 = Ld64(gp + 288 + 64 * (2 * j)), lo1 = Ld64(gp + 288 + 64 * (2 * j + 1));
      const __m512i hb = Ld64(gp + 2336 + 64 * j);
      // (x & 0x0F) | y as one ternary-logic select m ? x : y (0xCA), y
      // holding the two high bits at 4-5 and zeros above.
      const __m512i h0 = _mm512_and_si512(_mm512_slli_epi16(hb, 4), m2);
      const __m512i h1 = _mm512_and_si512(_mm512_slli_epi16(hb, 2), m2);
      const __m512i h2 = _mm512_and_si512(hb, m2),
                    h3 = _mm512_and_si512(_mm512_srli_epi16(hb, 2), m2);
      const __m512i c0 = _mm512_ternarylogic_epi32(m, lo0, h0, 0xCA);
      const __m512i c1 = _mm512_ternarylogic_epi32(m, _mm512_srli_epi16(lo0, 4), h1, 0xCA);
      const __m512i c2 = _mm512_ternarylogic_epi32(m, lo1, h2, 0xCA);
      const __m512i c3 = _mm512_ternarylogic_epi32(m, _mm512_srli_epi16(lo1, 4), h3, 0xCA);
      __m512i acc = _mm512_dpbusd_epi32(off, c0, x0);
      acc = _mm512_dpbusd_epi32(acc, c1, x1);
      acc = _mm512_dpbusd_epi32(acc, c2, x2);
      acc = _mm512_dpbusd_epi32(acc, c3, x3);
      const __m128i sc = _mm_loadu_si128(reinterpret_cast<const __m128i*>(gp + 32 + 16 * j));
      t[p] = _mm512_add_epi32(t[p], _mm512_mullo_epi32(acc, _mm512_cvtepi8_epi32(sc)));
    }
  }
  for (int p = 0; p < NP; ++p) r[p].v = t[p];
}
#elif defined(__AVX2__) && defined(__FMA__)
struct I16 {
  __m256i lo, hi;
};
inline V16 ToF(I16 a) {
#if defined(__AVX512F__)
  return {_mm512_cvtepi32_ps(_mm512_inserti64x4(_mm512_castsi256_si512(a.lo), a.hi, 1))};
#else
  return {{_mm256_cvtepi32_ps(a.lo)}, {_mm256_cvtepi32_ps(a.hi)}};
#endif
}
inline V16 Halves16(const uint8_t* p) {
#if defined(__AVX512F__)
  return {_mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
#else
  return {{_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)))},
          {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 16)))}};
#endif
}
inline __m256i Ld32(const uint8_t* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
// 8 rows (h = 0: rows 0-7, 1: rows 8-15). Q8_0: the codes back to s8, then
// |w| * (a with w's sign): each product <= 128 * 127, a pair <= 32512, so
// vpmaddubsw never saturates.
inline __m256i DotQ8_0Half(const uint8_t* c, const int8_t* a, int h) {
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80)), ones = _mm256_set1_epi16(1);
  __m256i acc = _mm256_setzero_si256();
  for (int q = 0; q < 8; ++q) {
    const __m256i w = _mm256_xor_si256(Ld32(c + 64 * q + 32 * h), flip);
    const __m256i p = _mm256_maddubs_epi16(
        _mm256_sign_epi8(w, w), _mm256_sign_epi8(_mm256_set1_epi32(Load4(a + 4 * q)), w));
    acc = _mm256_add_epi32(acc, _mm256_madd_epi16(p, ones));
  }
  return acc;
}
inline I16 DotQ8_0(const uint8_t* c, const int8_t* a, int32_t) {
  return {DotQ8_0Half(c, a, 0), DotQ8_0Half(c, a, 1)};
}
// Q4_0: nibble * a pairs <= 2 * 15 * 127; the 8 of a block sum to <= 30480
// in int16, so one vpmaddwd per block.
inline __m256i DotQ4_0Half(const uint8_t* c, const int8_t* a, int32_t sa, int h) {
  const __m256i m = _mm256_set1_epi8(0x0F);
  __m256i s16 = _mm256_setzero_si256();
  for (int q = 0; q < 4; ++q) {
    const __m256i v = Ld32(c + 64 * q + 32 * h);
    s16 = _mm256_add_epi16(
        s16, _mm256_maddubs_epi16(_mm256_and_si256(v, m), _mm256_set1_epi32(Load4(a + 8 * q))));
    s16 = _mm256_add_epi16(s16, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), m),
                                                     _mm256_set1_epi32(Load4(a + 8 * q + 4))));
  }
  return _mm256_add_epi32(_mm256_set1_epi32(-8 * sa), _mm256_madd_epi16(s16, _mm256_set1_epi16(1)));
}
inline I16 DotQ4_0(const uint8_t* c, const int8_t* a, int32_t sa) {
  return {DotQ4_0Half(c, a, sa, 0), DotQ4_0Half(c, a, sa, 1)};
}

// Q4_K: per sub-block, 8 vpmaddubsw of nibble * a pairs (<= 3810 each) sum
// to <= 30480 in int16.
inline __m256i DotQ4_KHalf(const uint8_t* g, const int8_t* a, const int32_t* s16, int h,
                           __m256i* mins) {
  const __m256i m = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1);
  __m256i total = _mm256_setzero_si256(), msum = _mm256_setzero_si256();
  for (int j = 0; j < 8; ++j) {
    __m256i s = _mm256_setzero_si256();
    for (int q = 4 * j; q < 4 * j + 4; ++q) {
      const __m256i v = Ld32(g + 320 + 64 * q + 32 * h);
      s = _mm256_add_epi16(
          s, _mm256_maddubs_epi16(_mm256_and_si256(v, m), _mm256_set1_epi32(Load4(a + 8 * q))));
      s = _mm256_add_epi16(s, _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(v, 4), m),
                                                   _mm256_set1_epi32(Load4(a + 8 * q + 4))));
    }
    const __m128i sc = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(g + 64 + 16 * j + 8 * h));
    const __m128i mn = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(g + 192 + 16 * j + 8 * h));
    total = _mm256_add_epi32(
        total, _mm256_mullo_epi32(_mm256_madd_epi16(s, ones), _mm256_cvtepu8_epi32(sc)));
    msum =
        _mm256_add_epi32(msum, _mm256_mullo_epi32(_mm256_cvtepu8_epi32(mn),
                                                  _mm256_set1_epi32(s16[2 * j] + s16[2 * j + 1])));
  }
  *mins = msum;
  return total;
}
inline I16 DotQ4_K(const uint8_t* g, const int8_t* a, const int32_t* s16, I16* mins) {
  I16 r;
  r.lo = DotQ4_KHalf(g, a, s16, 0, &mins->lo);
  r.hi = DotQ4_KHalf(g, a, s16, 1, &mins->hi);
  return r;
}
// Q6_K: codes <= 63, pairs <= 16002; two vpmaddubsw per int16 sum.
inline __m256i DotQ6_KHalf(const uint8_t* g, const int8_t* a, const int32_t* s16, int h) {
  const __m256i m = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30),
                ones = _mm256_set1_epi16(1);
  __m256i total = _mm256_setzero_si256();
  for (int j = 0; j < 16; ++j) {
    const __m256i lo0 = Ld32(g + 288 + 64 * (2 * j) + 32 * h),
                  lo1 = Ld32(g + 288 + 64 * (2 * j + 1) + 32 * h);
    const __m256i hb = Ld32(g + 2336 + 64 * j + 32 * h);
    const __m256i c0 =
        _mm256_or_si256(_mm256_and_si256(lo0, m), _mm256_and_si256(_mm256_slli_epi16(hb, 4), m2));
    const __m256i c1 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lo0, 4), m),
                                       _mm256_and_si256(_mm256_slli_epi16(hb, 2), m2));
    const __m256i c2 = _mm256_or_si256(_mm256_and_si256(lo1, m), _mm256_and_si256(hb, m2));
    const __m256i c3 = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(lo1, 4), m),
                                       _mm256_and_si256(_mm256_srli_epi16(hb, 2), m2));
    const int8_t* aj = a + 16 * j;
    const __m256i p01 =
        _mm256_add_epi16(_mm256_maddubs_epi16(c0, _mm256_set1_epi32(Load4(aj))),
                         _mm256_maddubs_epi16(c1, _mm256_set1_epi32(Load4(aj + 4))));
    const __m256i p23 =
        _mm256_add_epi16(_mm256_maddubs_epi16(c2, _mm256_set1_epi32(Load4(aj + 8))),
                         _mm256_maddubs_epi16(c3, _mm256_set1_epi32(Load4(aj + 12))));
    const __m256i acc = _mm256_add_epi32(
        _mm256_set1_epi32(-32 * s16[j]),
        _mm256_add_epi32(_mm256_madd_epi16(p01, ones), _mm256_madd_epi16(p23, ones)));
    const __m128i sc = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(g + 32 + 16 * j + 8 * h));
    total = _mm256_add_epi32(total, _mm256_mullo_epi32(acc, _mm256_cvtepi8_epi32(sc)));
  }
  return total;
}
inline I16 DotQ6_K(const uint8_t* g, const int8_t* a, const int32_t* s16) {
  return {DotQ6_KHalf(g, a, s16, 0), DotQ6_KHalf(g, a, s16, 1)};
}
#elif defined(__aarch64__) && !defined(SPLITLM_KERNELS_PORTABLE) && defined(__ARM_FEATURE_DOTPROD)
struct I16 {
  int32x4_t v[4];
};
inline V16 ToF(I16 a) {
  return {{vcvtq_f32_s32(a.v[0]), vcvtq_f32_s32(a.v[1])},
          {vcvtq_f32_s32(a.v[2]), vcvtq_f32_s32(a.v[3])}};
}
inline I16 FromInts(const int32_t* v) {
  return {{vld1q_s32(v), vld1q_s32(v + 4), vld1q_s32(v + 8), vld1q_s32(v + 12)}};
}
#define SPLITLM_SCALAR_K 1
inline V16 Halves16(const uint8_t* p) {
  const float16x8_t a = vreinterpretq_f16_u8(vld1q_u8(p)),
                    b = vreinterpretq_f16_u8(vld1q_u8(p + 16));
  return {{vcvt_f32_f16(vget_low_f16(a)), vcvt_high_f32_f16(a)},
          {vcvt_f32_f16(vget_low_f16(b)), vcvt_high_f32_f16(b)}};
}
// Q8_0: the codes back to s8 (xor 0x80), signed dot products.
inline I16 DotQ8_0(const uint8_t* c, const int8_t* a, int32_t) {
  const uint8x16_t flip = vdupq_n_u8(0x80);
  I16 r{{vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0), vdupq_n_s32(0)}};
  for (int q = 0; q < 8; ++q) {
    const int8x16_t x = vreinterpretq_s8_s32(vdupq_n_s32(Load4(a + 4 * q)));
    for (int t = 0; t < 4; ++t) {
      r.v[t] =
          vdotq_s32(r.v[t], vreinterpretq_s8_u8(veorq_u8(vld1q_u8(c + 64 * q + 16 * t), flip)), x);
    }
  }
  return r;
}
inline I16 DotQ4_0(const uint8_t* c, const int8_t* a, int32_t sa) {
  const uint8x16_t m = vdupq_n_u8(0x0F);
  const int32x4_t init = vdupq_n_s32(-8 * sa);
  I16 r{{init, init, init, init}};
  for (int q = 0; q < 4; ++q) {
    const int8x16_t xl = vreinterpretq_s8_s32(vdupq_n_s32(Load4(a + 8 * q)));
    const int8x16_t xh = vreinterpretq_s8_s32(vdupq_n_s32(Load4(a + 8 * q + 4)));
    for (int t = 0; t < 4; ++t) {
      const uint8x16_t v = vld1q_u8(c + 64 * q + 16 * t);
      r.v[t] = vdotq_s32(r.v[t], vreinterpretq_s8_u8(vandq_u8(v, m)), xl);
      r.v[t] = vdotq_s32(r.v[t], vreinterpretq_s8_u8(vshrq_n_u8(v, 4)), xh);
    }
  }
  return r;
}
#else
struct I16 {
  int32_t v[16];
};
inline I16 FromInts(const int32_t* v) {
  I16 r;
  std::memcpy(r.v, v, sizeof r.v);
  return r;
}
#define SPLITLM_SCALAR_K 1
inline V16 ToF(I16 a) {
  alignas(64) float f[16];
  for (int l = 0; l < 16; ++l) f[l] = static_cast<float>(a.v[l]);
  return Load16(f);
}
inline V16 Halves16(const uint8_t* p) {
  alignas(64) float f[16];
  for (int l = 0; l < 16; ++l) f[l] = HalfToF(static_cast<uint16_t>(p[2 * l] | p[2 * l + 1] << 8));
  return Load16(f);
}
inline I16 DotQ8_0(const uint8_t* c, const int8_t* a, int32_t) {
  I16 r;
  for (int l = 0; l < 16; ++l) {
    int32_t s = 0;
    for (int j = 0; j < 32; ++j)
      s += static_cast<int8_t>(c[64 * (j / 4) + 4 * l + j % 4] ^ 0x80) * a[j];
    r.v[l] = s;
  }
  return r;
}
inline I16 DotQ4_0(const uint8_t* c, const int8_t* a, int32_t sa) {
  I16 r;
  for (int l = 0; l < 16; ++l) {
    int32_t s = -8 * sa;
    for (int q = 0; q < 4; ++q) {
      for (int b = 0; b < 4; ++b) {
        const uint8_t v = c[64 * q + 4 * l + b];
        s += (v & 0x0F) * a[8 * q + b] + (v >> 4) * a[8 * q + 4 + b];
      }
    }
    r.v[l] = s;
  }
  return r;
}
#endif

#if defined(SPLITLM_SCALAR_K)
// The K formats with scalar integer sums (portable, and NEON for now).
inline I16 DotQ4_K(const uint8_t* g, const int8_t* a, const int32_t* s16, I16* mins) {
  int32_t total[16], msum[16];
  for (int l = 0; l < 16; ++l) {
    int32_t t = 0, ms = 0;
    for (int j = 0; j < 8; ++j) {
      int32_t s = 0;
      for (int q = 4 * j; q < 4 * j + 4; ++q) {
        for (int b = 0; b < 4; ++b) {
          const uint8_t v = g[320 + 64 * q + 4 * l + b];
          s += (v & 0x0F) * a[8 * q + b] + (v >> 4) * a[8 * q + 4 + b];
        }
      }
      t += s * g[64 + 16 * j + l];
      ms += g[192 + 16 * j + l] * (s16[2 * j] + s16[2 * j + 1]);
    }
    total[l] = t;
    msum[l] = ms;
  }
  *mins = FromInts(msum);
  return FromInts(total);
}
inline I16 DotQ6_K(const uint8_t* g, const int8_t* a, const int32_t* s16) {
  int32_t total[16];
  for (int l = 0; l < 16; ++l) {
    int32_t t = 0;
    for (int j = 0; j < 16; ++j) {
      int32_t s = -32 * s16[j];
      for (int c = 0; c < 16; ++c) {
        const int quad = c / 4, b = c % 4;
        const uint8_t lo = g[288 + 64 * (2 * j + quad / 2) + 4 * l + b];
        const uint8_t hb = g[2336 + 64 * j + 4 * l + b];
        const int code = ((quad % 2 == 0 ? lo & 0x0F : lo >> 4) | (((hb >> (2 * quad)) & 3) << 4));
        s += code * a[16 * j + c];
      }
      t += s * static_cast<int8_t>(g[32 + 16 * j + l]);
    }
    total[l] = t;
  }
  return FromInts(total);
}
#endif

// -x as 0 - x (the same IEEE operation on every path).
inline V16 Neg16(V16 x) { return Sub16(Zero16(), x); }

#if !defined(SPLITLM_MULTI_PANEL)
// One panel after the other where no interleaved K version exists.
template <int NP>
inline void DotQ4_KN(const uint8_t* const* g, const int8_t* a, const int32_t* s16, I16* total,
                     I16* mins) {
  for (int p = 0; p < NP; ++p) total[p] = DotQ4_K(g[p], a, s16, &mins[p]);
}
template <int NP>
inline void DotQ6_KN(const uint8_t* const* g, const int8_t* a, const int32_t* s16, I16* r) {
  for (int p = 0; p < NP; ++p) r[p] = DotQ6_K(g[p], a, s16);
}
#endif

// Panels one input runs against at once (APanelMatMul: each panel its own
// stream of weights, so more panels keep more reads in flight), as measured
// on a 110m's matrices, 2 threads: with AVX-512 VNNI 8 for Q8_0, Q4_0 and
// Q4_K (Q4_0 +18%, Q4_K +9%; AVX-512 without VNNI takes the same, not
// measured); with AVX2 8 for Q4_0 (+17%; Q8_0 gained nothing, Q4_K lost 9%)
// and 4 for the others; 4 elsewhere (not measured; NEON's 32 registers of 4
// floats would hold just 8 panels' accumulators). Q6_K keeps 4 everywhere:
// with 8 it spilled registers and ran 13% slower.
#if defined(__AVX512F__)
constexpr int kWideDecodePanels = 8, kQ4_0DecodePanels = 8;
#elif defined(__AVX2__) && defined(__FMA__)
constexpr int kWideDecodePanels = 4, kQ4_0DecodePanels = 8;
#else
constexpr int kWideDecodePanels = 4, kQ4_0DecodePanels = 4;
#endif

// ---- Formats: one block of one panel ----
// kBlock columns; kBytes packed bytes per panel and block: fp16 d[16], then
// the codes (layouts in kernels_quant.cpp).
// Step: acc plus the block's contribution for input activations a (codes),
// s16 (sums of 16) and scale da; with kMultiPanel, Step<NP> does it for NP
// panels at once (acc[p] += panel p's, its group at g[p]).
struct AQ8_0 {
  static constexpr int kBlock = 32;
  static constexpr size_t kBytes = 544;
  static constexpr bool kMultiPanel = false;
  static constexpr int kDecodePanels = kWideDecodePanels;
  static V16 Step(const uint8_t* g, const int8_t* a, const int32_t* s16, V16 da, V16 acc) {
    return Fma16(ToF(DotQ8_0(g + 32, a, s16[0] + s16[1])), Mul16(Halves16(g), da), acc);
  }
};
struct AQ4_0 {
  static constexpr int kBlock = 32;
  static constexpr size_t kBytes = 288;
  static constexpr bool kMultiPanel = false;
  static constexpr int kDecodePanels = kQ4_0DecodePanels;
  static V16 Step(const uint8_t* g, const int8_t* a, const int32_t* s16, V16 da, V16 acc) {
    return Fma16(ToF(DotQ4_0(g + 32, a, s16[0] + s16[1])), Mul16(Halves16(g), da), acc);
  }
};
// Q4_K (256 columns, 2368 bytes): fp16 d[16], dmin[16]; u8 sc[8][16],
// m[8][16]; 32 nibble chunks as Q4_0's. acc = fma(float(sum_j sc_j s_j),
// d * da, acc), then acc = fma(float(-sum_j m_j sum_j(a)), dmin * da, acc).
struct AQ4_K {
  static constexpr int kBlock = 256;
  static constexpr size_t kBytes = 2368;
  static constexpr bool kMultiPanel = true;
  static constexpr int kDecodePanels = kWideDecodePanels;
  template <int NP>
  static void Step(const uint8_t* const* g, const int8_t* a, const int32_t* s16, V16 da, V16* acc) {
    I16 total[NP], mins[NP];
    DotQ4_KN<NP>(g, a, s16, total, mins);
    for (int p = 0; p < NP; ++p) {
      acc[p] = Fma16(ToF(total[p]), Mul16(Halves16(g[p]), da), acc[p]);
      acc[p] = Fma16(Neg16(ToF(mins[p])), Mul16(Halves16(g[p] + 32), da), acc[p]);
    }
  }
};
// Q6_K (256 columns, 3360 bytes): fp16 d[16]; s8 scale[16][16]; 32 nibble
// chunks (the low 4 bits); 16 chunks of high bits: chunk j, byte 4l + b,
// bits 2t, 2t + 1 = column 16j + 4t + b. acc = fma(float(sum_j sc_j s_j),
// d * da, acc) with s_j over codes - 32.
struct AQ6_K {
  static constexpr int kBlock = 256;
  static constexpr size_t kBytes = 3360;
  static constexpr bool kMultiPanel = true;
  static constexpr int kDecodePanels = 4;
  template <int NP>
  static void Step(const uint8_t* const* g, const int8_t* a, const int32_t* s16, V16 da, V16* acc) {
    I16 dot[NP];
    DotQ6_KN<NP>(g, a, s16, dot);
    for (int p = 0; p < NP; ++p) acc[p] = Fma16(ToF(dot[p]), Mul16(Halves16(g[p]), da), acc[p]);
  }
};

// Activations of one input: codes [k], scales [k / 32], sums of 16 [k / 16].
struct Acts {
  const int8_t* q;
  const float* d;
  const int32_t* s;
};

// NI inputs against NP panels.
template <class D, int NI, int NP>
inline void ATile(const uint8_t* panel, size_t pstride, int k, const Acts* x, float* y, int ldy,
                  int m, int row0, const float* bias) {
  V16 acc[NI][NP];
  for (int i = 0; i < NI; ++i)
    for (int p = 0; p < NP; ++p) acc[i][p] = Zero16();
  const int blocks = k / D::kBlock;
  for (int b = 0; b < blocks; ++b) {
    const uint8_t* g[NP];
    for (int p = 0; p < NP; ++p) g[p] = panel + p * pstride + static_cast<size_t>(b) * D::kBytes;
    for (int i = 0; i < NI; ++i) {
      const int8_t* a = x[i].q + b * D::kBlock;
      const int32_t* s16 = x[i].s + b * (D::kBlock / 16);
      const V16 da = Splat16(x[i].d[b]);
      if constexpr (D::kMultiPanel) {
        D::template Step<NP>(g, a, s16, da, acc[i]);
      } else {
        for (int p = 0; p < NP; ++p) acc[i][p] = D::Step(g[p], a, s16, da, acc[i][p]);
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
inline void ARun(const uint8_t* packed, int m, int k, const Acts* x, float* y, int ldy,
                 const float* bias, int p0, int p1) {
  const size_t stride = static_cast<size_t>(k / D::kBlock) * D::kBytes;
  int p = p0;
  for (; p + NP <= p1; p += NP)
    ATile<D, NI, NP>(packed + p * stride, stride, k, x, y, ldy, m, p * 16, bias);
  if constexpr (NP > 4) {
    for (; p + 4 <= p1; p += 4)
      ATile<D, NI, 4>(packed + p * stride, stride, k, x, y, ldy, m, p * 16, bias);
  }
  for (; p < p1; ++p) ATile<D, NI, 1>(packed + p * stride, stride, k, x, y, ldy, m, p * 16, bias);
}

// Panels [p0, p1) for n inputs: groups of 4 inputs x 2 panels; one input
// against D::kDecodePanels panels at once.
template <class D>
inline void APanelMatMul(const uint8_t* packed, int m, int k, const Acts* x, int n, float* y,
                         int ldy, const float* bias, int p0, int p1) {
  const size_t ys = static_cast<size_t>(ldy);
  constexpr int kPanelStep = 8;
  for (int q0 = p0; q0 < p1; q0 += kPanelStep) {
    const int q1 = q0 + kPanelStep < p1 ? q0 + kPanelStep : p1;
    int i = 0;
    for (; i + 4 <= n; i += 4) ARun<D, 4, 2>(packed, m, k, x + i, y + i * ys, ldy, bias, q0, q1);
    switch (n - i) {
      case 3: ARun<D, 3, 2>(packed, m, k, x + i, y + i * ys, ldy, bias, q0, q1); break;
      case 2: ARun<D, 2, 2>(packed, m, k, x + i, y + i * ys, ldy, bias, q0, q1); break;
      case 1:
        ARun<D, 1, D::kDecodePanels>(packed, m, k, x + i, y + i * ys, ldy, bias, q0, q1);
        break;
      default: break;
    }
  }
}

}  // namespace splitlm::partition::kernels::SPLITLM_ISA
