// Kernel bodies, compiled once per instruction set (kernels_avx2.cpp,
// kernels_portable.cpp) inside namespace SPLITLM_ISA. Every path performs the
// same sequence of IEEE fused multiply-adds and additions (see kernels.h).
#include <cmath>
#include <cstring>

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

namespace splitlm::partition::kernels::SPLITLM_ISA {

#if defined(__AVX2__) && defined(__FMA__)
struct V8 {
  __m256 v;
};
inline V8 Zero() { return {_mm256_setzero_ps()}; }
inline V8 Load(const float* p) { return {_mm256_loadu_ps(p)}; }
inline V8 Splat(float x) { return {_mm256_set1_ps(x)}; }
inline void Store(float* p, V8 a) { _mm256_storeu_ps(p, a.v); }
inline V8 Fma(V8 a, V8 b, V8 c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
#elif defined(__aarch64__)
struct V8 {
  float32x4_t lo, hi;
};
inline V8 Zero() { return {vdupq_n_f32(0), vdupq_n_f32(0)}; }
inline V8 Load(const float* p) { return {vld1q_f32(p), vld1q_f32(p + 4)}; }
inline V8 Splat(float x) { return {vdupq_n_f32(x), vdupq_n_f32(x)}; }
inline void Store(float* p, V8 a) {
  vst1q_f32(p, a.lo);
  vst1q_f32(p + 4, a.hi);
}
inline V8 Fma(V8 a, V8 b, V8 c) { return {vfmaq_f32(c.lo, a.lo, b.lo), vfmaq_f32(c.hi, a.hi, b.hi)}; }
#else
struct V8 {
  float f[8];
};
inline V8 Zero() { return V8{}; }
inline V8 Load(const float* p) {
  V8 r;
  std::memcpy(r.f, p, sizeof r.f);
  return r;
}
inline V8 Splat(float x) {
  V8 r;
  for (float& f : r.f) f = x;
  return r;
}
inline void Store(float* p, V8 a) { std::memcpy(p, a.f, sizeof a.f); }
inline V8 Fma(V8 a, V8 b, V8 c) {
  V8 r;
  for (int l = 0; l < 8; ++l) r.f[l] = std::fma(a.f[l], b.f[l], c.f[l]);
  return r;
}
#endif

inline float Finish(V8 acc, float tail) {
  alignas(32) float l[8];
  Store(l, acc);
  return (((l[0] + l[1]) + (l[2] + l[3])) + ((l[4] + l[5]) + (l[6] + l[7]))) + tail;
}

inline float DotImpl(const float* a, const float* b, int k) {
  const int k8 = k & ~7;
  V8 acc = Zero();
  for (int j = 0; j < k8; j += 8) acc = Fma(Load(a + j), Load(b + j), acc);
  float tail = 0.0f;
  for (int j = k8; j < k; ++j) tail = std::fma(a[j], b[j], tail);
  return Finish(acc, tail);
}

// R rows of w against C inputs, each element in the canonical order.
template <int R, int C>
inline void Tile(const float* w, int k, const float* x, float* y, int m, const float* bias) {
  const int k8 = k & ~7;
  V8 acc[R][C];
  for (int r = 0; r < R; ++r)
    for (int c = 0; c < C; ++c) acc[r][c] = Zero();
  for (int j = 0; j < k8; j += 8) {
    V8 xv[C];
    for (int c = 0; c < C; ++c) xv[c] = Load(x + static_cast<size_t>(c) * k + j);
    for (int r = 0; r < R; ++r) {
      V8 wv = Load(w + static_cast<size_t>(r) * k + j);
      for (int c = 0; c < C; ++c) acc[r][c] = Fma(wv, xv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int c = 0; c < C; ++c) {
      const float* wr = w + static_cast<size_t>(r) * k;
      const float* xc = x + static_cast<size_t>(c) * k;
      float tail = 0.0f;
      for (int j = k8; j < k; ++j) tail = std::fma(wr[j], xc[j], tail);
      float s = Finish(acc[r][c], tail);
      if (bias != nullptr) s += bias[r];
      y[static_cast<size_t>(c) * m + r] = s;
    }
  }
}

template <int R>
inline void RowBlock(const float* w, int k, const float* x, int n, float* y, int m,
                     const float* bias) {
  int i = 0;
  for (; i + 4 <= n; i += 4) Tile<R, 4>(w, k, x + static_cast<size_t>(i) * k, y + static_cast<size_t>(i) * m, m, bias);
  switch (n - i) {
    case 3: Tile<R, 3>(w, k, x + static_cast<size_t>(i) * k, y + static_cast<size_t>(i) * m, m, bias); break;
    case 2: Tile<R, 2>(w, k, x + static_cast<size_t>(i) * k, y + static_cast<size_t>(i) * m, m, bias); break;
    case 1: Tile<R, 1>(w, k, x + static_cast<size_t>(i) * k, y + static_cast<size_t>(i) * m, m, bias); break;
    default: break;
  }
}

// Rows [r0, r1) of y = x w^T. Inputs are taken in blocks that stay in L2
// while the rows of w stream past.
inline void MatMulRows(const float* w, int m, int k, const float* x, int n, float* y,
                       const float* bias, int r0, int r1) {
  const int kInputBlock = 64;
  for (int i0 = 0; i0 < n; i0 += kInputBlock) {
    const int nb = n - i0 < kInputBlock ? n - i0 : kInputBlock;
    const float* xb = x + static_cast<size_t>(i0) * k;
    float* yb = y + static_cast<size_t>(i0) * m;
    int r = r0;
    if (nb == 1) {
      for (; r + 8 <= r1; r += 8)
        Tile<8, 1>(w + static_cast<size_t>(r) * k, k, xb, yb + r, m, bias ? bias + r : nullptr);
    }
    for (; r + 2 <= r1; r += 2)
      RowBlock<2>(w + static_cast<size_t>(r) * k, k, xb, nb, yb + r, m, bias ? bias + r : nullptr);
    for (; r < r1; ++r)
      RowBlock<1>(w + static_cast<size_t>(r) * k, k, xb, nb, yb + r, m, bias ? bias + r : nullptr);
  }
}

inline void AttendImpl(const float* q, const float* k, const float* v, int t, int hd,
                       float scale, float* scores, float* out) {
  float mx = -INFINITY;
  for (int j = 0; j < t; ++j) {
    float s = DotImpl(q, k + static_cast<size_t>(j) * hd, hd) * scale;
    scores[j] = s;
    if (s > mx) mx = s;
  }
  float sum = 0.0f;
  for (int j = 0; j < t; ++j) {
    scores[j] = std::exp(scores[j] - mx);
    sum += scores[j];
  }
  for (int j = 0; j < t; ++j) scores[j] = scores[j] / sum;
  const int d8 = hd & ~7;
  for (int d = 0; d < d8; d += 8) {
    V8 acc = Zero();
    for (int j = 0; j < t; ++j) acc = Fma(Splat(scores[j]), Load(v + static_cast<size_t>(j) * hd + d), acc);
    Store(out + d, acc);
  }
  for (int d = d8; d < hd; ++d) {
    float acc = 0.0f;
    for (int j = 0; j < t; ++j) acc = std::fma(scores[j], v[static_cast<size_t>(j) * hd + d], acc);
    out[d] = acc;
  }
}

}  // namespace splitlm::partition::kernels::SPLITLM_ISA
