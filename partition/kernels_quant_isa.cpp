// Compiled once per instruction set, like kernels_isa.cpp (see CMakeLists.txt).
#include "partition/kernels_quant8_impl.h"  // includes kernels_quant_impl.h

#include <cfloat>
#include <limits>
#include <vector>

#include "partition/kernels_quant.h"

namespace splitlm::partition::kernels::SPLITLM_ISA {
// `type` is a GgmlType number (Q8_0 8, Q4_0 2, Q4_K 12, Q6_K 14); false if
// there is no kernel for it.
bool QuantMatMulEntry(uint32_t type, const uint8_t* packed, int m, int k, const float* x, int n,
                      float* y, int ldy, const float* bias, int p0, int p1) {
  switch (type) {
    case 8: QPanelMatMul<DQ8_0>(packed, m, k, x, n, y, ldy, bias, p0, p1); return true;
    case 2: QPanelMatMul<DQ4_0>(packed, m, k, x, n, y, ldy, bias, p0, p1); return true;
    case 12: QPanelMatMul<DQ4_K>(packed, m, k, x, n, y, ldy, bias, p0, p1); return true;
    case 14: QPanelMatMul<DQ6_K>(packed, m, k, x, n, y, ldy, bias, p0, p1); return true;
    default: return false;
  }
}

// The int8-activation layouts; x[i] are the quantised activations of input i.
bool Quant8MatMulEntry(uint32_t type, const uint8_t* packed, int m, int k, const int8_t* xq,
                       const float* xd, const int32_t* xs, int n, float* y, int ldy,
                       const float* bias, int p0, int p1) {
  thread_local std::vector<Acts> a;
  a.resize(static_cast<size_t>(n));
  const int bs = type == 8 || type == 2 ? 32 : 256;
  for (int i = 0; i < n; ++i) {
    const size_t r = static_cast<size_t>(i);
    a[r] = {xq + r * k, xd + r * (k / bs), xs + r * (k / 16)};
  }
  switch (type) {
    case 8: APanelMatMul<AQ8_0>(packed, m, k, a.data(), n, y, ldy, bias, p0, p1); break;
    case 2: APanelMatMul<AQ4_0>(packed, m, k, a.data(), n, y, ldy, bias, p0, p1); break;
    case 12: APanelMatMul<AQ4_K>(packed, m, k, a.data(), n, y, ldy, bias, p0, p1); break;
    case 14: APanelMatMul<AQ6_K>(packed, m, k, a.data(), n, y, ldy, bias, p0, p1); break;
    default: return false;
  }
  return true;
}

// QuantizeActivations with vectors: per lane the same IEEE operations (|x|,
// the comparisons, x * inv, + and - 1.5 * 2^23, the clamp), the block's
// largest |x| and its scale found exactly as there, so the codes, scales and
// sums are the same bits; the reference itself where no vector form is here.
// Lanes::Amax gives a block's largest |x| (false if a value is not finite),
// Lanes::Codes16 writes the codes of 16 values and returns their sum.
template <class Lanes>
void QuantizeActsWith(const float* x, int k, int block, int8_t* q, float* d, int32_t* s16) {
  for (int b0 = 0; b0 < k; b0 += block) {
    float m = 0.0f;
    if (!Lanes::Amax(x + b0, block, &m)) {
      d[b0 / block] = std::numeric_limits<float>::quiet_NaN();
      std::memset(q + b0, 0, static_cast<size_t>(block));
      for (int t = 0; t < block / 16; ++t) s16[b0 / 16 + t] = 0;
      continue;
    }
    float scale = 0.0f, inv = 0.0f;
    if (m >= 0x1p-96f) {
      scale = m / 127.0f;
      inv = 1.0f / scale;
    }
    d[b0 / block] = scale;
    for (int j = 0; j < block; j += 16)
      s16[(b0 + j) / 16] = Lanes::Codes16(x + b0 + j, inv, q + b0 + j);
  }
}

#if defined(__AVX512F__)
struct ActLanes {
  static bool Amax(const float* xb, int block, float* m) {
    __m512 amax = _mm512_setzero_ps();
    __mmask16 finite = 0xFFFF;
    for (int j = 0; j < block; j += 16) {
      const __m512 a = _mm512_abs_ps(_mm512_loadu_ps(xb + j));
      finite &= _mm512_cmp_ps_mask(a, _mm512_set1_ps(FLT_MAX), _CMP_LE_OQ);
      amax = _mm512_max_ps(amax, a);
    }
    *m = _mm512_reduce_max_ps(amax);
    return finite == 0xFFFF;
  }
  static int32_t Codes16(const float* x, float inv, int8_t* q) {
    const __m512 round = _mm512_set1_ps(12582912.0f);
    __m512 v = _mm512_sub_ps(
        _mm512_add_ps(_mm512_mul_ps(_mm512_loadu_ps(x), _mm512_set1_ps(inv)), round), round);
    v = _mm512_min_ps(_mm512_max_ps(v, _mm512_set1_ps(-127.0f)), _mm512_set1_ps(127.0f));
    const __m512i c = _mm512_cvttps_epi32(v);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q), _mm512_cvtepi32_epi8(c));
    return _mm512_reduce_add_epi32(c);
  }
};
void QuantizeActsEntry(const float* x, int k, int block, int8_t* q, float* d, int32_t* s16) {
  QuantizeActsWith<ActLanes>(x, k, block, q, d, s16);
}
#elif defined(__AVX2__) && defined(__FMA__)
struct ActLanes {
  static bool Amax(const float* xb, int block, float* m) {
    const __m256 abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
    __m256 amax = _mm256_setzero_ps();
    int finite = 0xFF;
    for (int j = 0; j < block; j += 8) {
      const __m256 a = _mm256_and_ps(_mm256_loadu_ps(xb + j), abs);
      finite &= _mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_set1_ps(FLT_MAX), _CMP_LE_OQ));
      amax = _mm256_max_ps(amax, a);
    }
    __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(amax), _mm256_extractf128_ps(amax, 1));
    m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
    *m = _mm_cvtss_f32(_mm_max_ss(m4, _mm_shuffle_ps(m4, m4, 1)));
    return finite == 0xFF;
  }
  static int32_t Codes16(const float* x, float inv, int8_t* q) {
    const __m256 round = _mm256_set1_ps(12582912.0f);
    __m256i c[2];
    for (int h = 0; h < 2; ++h) {
      const __m256 v = _mm256_sub_ps(
          _mm256_add_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 8 * h), _mm256_set1_ps(inv)), round),
          round);
      c[h] = _mm256_cvttps_epi32(
          _mm256_min_ps(_mm256_max_ps(v, _mm256_set1_ps(-127.0f)), _mm256_set1_ps(127.0f)));
    }
    // Codes within +-127: the saturating packs are exact; 0xD8 restores order.
    const __m256i w = _mm256_permute4x64_epi64(_mm256_packs_epi32(c[0], c[1]), 0xD8);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q),
                     _mm_packs_epi16(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1)));
    const __m256i s = _mm256_add_epi32(c[0], c[1]);
    __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
    s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
    return _mm_cvtsi128_si32(s4);
  }
};
void QuantizeActsEntry(const float* x, int k, int block, int8_t* q, float* d, int32_t* s16) {
  QuantizeActsWith<ActLanes>(x, k, block, q, d, s16);
}
#else
void QuantizeActsEntry(const float* x, int k, int block, int8_t* q, float* d, int32_t* s16) {
  QuantizeActivations(x, k, block, q, d, s16);
}
#endif
}  // namespace splitlm::partition::kernels::SPLITLM_ISA
