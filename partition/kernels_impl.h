// Kernel bodies, compiled once per instruction set (kernels_isa.cpp) inside
// namespace SPLITLM_ISA. Every path performs the
// same sequence of IEEE fused multiply-adds and additions (see kernels.h).
// On aarch64 the NEON types are used unless SPLITLM_KERNELS_PORTABLE is
// defined (the portable fallback is compiled with it).
#include <cmath>
#include <cstring>

#if (defined(__AVX2__) && defined(__FMA__)) || defined(__AVX512F__)
#include <immintrin.h>
#elif defined(__aarch64__) && !defined(SPLITLM_KERNELS_PORTABLE)
#include <arm_neon.h>
#endif

namespace splitlm::partition::kernels::SPLITLM_ISA {

#if (defined(__AVX2__) && defined(__FMA__)) || defined(__AVX512F__)
struct V8 {
  __m256 v;
};
inline V8 Zero() { return {_mm256_setzero_ps()}; }
inline V8 Load(const float* p) { return {_mm256_loadu_ps(p)}; }
inline V8 Splat(float x) { return {_mm256_set1_ps(x)}; }
inline void Store(float* p, V8 a) { _mm256_storeu_ps(p, a.v); }
inline V8 Fma(V8 a, V8 b, V8 c) { return {_mm256_fmadd_ps(a.v, b.v, c.v)}; }
#elif defined(__aarch64__) && !defined(SPLITLM_KERNELS_PORTABLE)
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
inline V8 Fma(V8 a, V8 b, V8 c) {
  return {vfmaq_f32(c.lo, a.lo, b.lo), vfmaq_f32(c.hi, a.hi, b.hi)};
}
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

// Sixteen lanes: one panel row of packed weights.
#if defined(__AVX512F__)
struct V16 {
  __m512 v;
};
inline V16 Zero16() { return {_mm512_setzero_ps()}; }
inline V16 Load16(const float* p) { return {_mm512_loadu_ps(p)}; }
inline V16 Splat16(float x) { return {_mm512_set1_ps(x)}; }
inline void Store16(float* p, V16 a) { _mm512_storeu_ps(p, a.v); }
inline V16 Fma16(V16 a, V16 b, V16 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
constexpr int kTileInputs = 12;  // x 2 panels: 24 accumulators of the 32 zmm registers
constexpr int kTilePanels = 2;
#else
struct V16 {
  V8 lo, hi;
};
inline V16 Zero16() { return {Zero(), Zero()}; }
inline V16 Load16(const float* p) { return {Load(p), Load(p + 8)}; }
inline V16 Splat16(float x) { return {Splat(x), Splat(x)}; }
inline void Store16(float* p, V16 a) {
  Store(p, a.lo);
  Store(p + 8, a.hi);
}
inline V16 Fma16(V16 a, V16 b, V16 c) { return {Fma(a.lo, b.lo, c.lo), Fma(a.hi, b.hi, c.hi)}; }
// x 1 panel: 12 accumulators of AVX2's 16 ymm registers (NEON: 24 of 32 q
// registers; the portable path leaves it to the compiler).
constexpr int kTileInputs = 6;
constexpr int kTilePanels = 1;
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

// NI inputs (packed [k][NI]) against NP panels of 16 rows. Each output
// element is one fma chain over k in order, whatever NI and NP are.
template <int NI, int NP>
inline void PanelTile(const float* panel, size_t panel_stride, int k, const float* x, float* y,
                      int m, int row0, const float* bias) {
  V16 acc[NI][NP];
  for (int i = 0; i < NI; ++i)
    for (int p = 0; p < NP; ++p) acc[i][p] = Zero16();
  for (int j = 0; j < k; ++j) {
    V16 w[NP];
    for (int p = 0; p < NP; ++p)
      w[p] = Load16(panel + p * panel_stride + static_cast<size_t>(j) * 16);
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
        y[static_cast<size_t>(i) * m + r] = bias != nullptr ? out[l] + bias[r] : out[l];
      }
    }
  }
}

// NI inputs against panels [p0, p1), NP panels at a time.
template <int NI, int NP>
inline void PanelRun(const float* packed, int m, int k, const float* x, float* y, const float* bias,
                     int p0, int p1) {
  const size_t stride = static_cast<size_t>(k) * 16;
  int p = p0;
  for (; p + NP <= p1; p += NP)
    PanelTile<NI, NP>(packed + p * stride, stride, k, x, y, m, p * 16, bias);
  for (; p < p1; ++p) PanelTile<NI, 1>(packed + p * stride, stride, k, x, y, m, p * 16, bias);
}

// The tile for a group of `n` < kTileInputs inputs: more panels at once when
// there are fewer inputs, to keep enough independent chains in flight.
template <int NI>
inline void SmallGroup(int n, const float* packed, int m, int k, const float* x, float* y,
                       const float* bias, int p0, int p1) {
  if constexpr (NI > 0) {
    if (n == NI) {
      constexpr int kAcc = kTileInputs * kTilePanels;
      constexpr int kPanels = kAcc / NI < 4 ? (kAcc / NI > 0 ? kAcc / NI : 1) : 4;
      PanelRun<NI, kPanels>(packed, m, k, x, y, bias, p0, p1);
    } else {
      SmallGroup<NI - 1>(n, packed, m, k, x, y, bias, p0, p1);
    }
  }
}

// Panels [p0, p1) of y = x w^T for all n inputs, x packed by PackInputs:
// a few panels at a time stay in L2 while every input group streams past,
// so the weights are read from memory once per call.
inline void PanelMatMul(const float* packed, int m, int k, const float* xp, int n, float* y,
                        const float* bias, int p0, int p1) {
  const size_t ys = static_cast<size_t>(m);
  const int kPanelStep = 4;
  for (int q0 = p0; q0 < p1; q0 += kPanelStep) {
    const int q1 = q0 + kPanelStep < p1 ? q0 + kPanelStep : p1;
    int i = 0;
    for (; i + kTileInputs <= n; i += kTileInputs) {
      PanelRun<kTileInputs, kTilePanels>(packed, m, k, xp + static_cast<size_t>(i) * k, y + i * ys,
                                         bias, q0, q1);
    }
    if (i < n)
      SmallGroup<kTileInputs - 1>(n - i, packed, m, k, xp + static_cast<size_t>(i) * k, y + i * ys,
                                  bias, q0, q1);
  }
}

// Sums n floats as eight concurrent sequential streams (as many as a matrix
// product's panels keep in flight): the memory-bandwidth probe of the
// benchmark.
inline float ReadSumImpl(const float* p, size_t n) {
  constexpr int kStreams = 8;
  const size_t len = (n / (16 * kStreams)) * 16;
  V16 acc[kStreams];
  for (auto& a : acc) a = Zero16();
  for (size_t i = 0; i < len; i += 16) {
    for (int s = 0; s < kStreams; ++s)
      acc[s] = Fma16(Load16(p + s * len + i), Splat16(1.0f), acc[s]);
  }
  float total = 0;
  for (auto& a : acc) {
    alignas(64) float l[16];
    Store16(l, a);
    for (float v : l) total += v;
  }
  for (size_t i = kStreams * len; i < n; ++i) total += p[i];
  return total;
}

// Attention, one query or a group of NQ queries of one head sharing each
// key and value load. Every score and output value is the same fma chain
// whichever way the queries are grouped (see kernels.h).

// Scores of keys [j, j + 16 * NB) for NQ queries: NQ x NB chains over d.
template <int NQ, int NB>
inline void ScoreBlock(const float* const* q, const float* kt, int stride, int j, int hd,
                       float* const* scores) {
  V16 acc[NQ][NB];
  for (auto& row : acc)
    for (auto& a : row) a = Zero16();
  for (int d = 0; d < hd; ++d) {
    const float* krow = kt + static_cast<size_t>(d) * stride + j;
    V16 kv[NB];
    for (int b = 0; b < NB; ++b) kv[b] = Load16(krow + 16 * b);
    for (int i = 0; i < NQ; ++i) {
      const V16 qd = Splat16(q[i][d]);
      for (int b = 0; b < NB; ++b) acc[i][b] = Fma16(qd, kv[b], acc[i][b]);
    }
  }
  for (int i = 0; i < NQ; ++i)
    for (int b = 0; b < NB; ++b) Store16(scores[i] + j + 16 * b, acc[i][b]);
}

// Scores of one query for keys [j, t).
inline void ScoreTail(const float* q, const float* kt, int stride, int j, int t, int hd,
                      float* scores) {
  for (; j + 64 <= t; j += 64) ScoreBlock<1, 4>(&q, kt, stride, j, hd, &scores);
  for (; j + 16 <= t; j += 16) ScoreBlock<1, 1>(&q, kt, stride, j, hd, &scores);
  for (; j < t; ++j) {
    float acc = 0.0f;
    for (int d = 0; d < hd; ++d) acc = std::fma(q[d], kt[static_cast<size_t>(d) * stride + j], acc);
    scores[j] = acc;
  }
}

inline void Softmax(float* scores, int t, float scale) {
  float mx = -INFINITY;
  for (int j = 0; j < t; ++j) {
    scores[j] = scores[j] * scale;
    if (scores[j] > mx) mx = scores[j];
  }
  float sum = 0.0f;
  for (int j = 0; j < t; ++j) {
    scores[j] = std::exp(scores[j] - mx);
    sum += scores[j];
  }
  for (int j = 0; j < t; ++j) scores[j] = scores[j] / sum;
}

// Output dimensions [d, d + 16 * NB) for NQ queries with key counts t[i]:
// the keys all share are read once for all; each chain then runs on alone.
template <int NQ, int NB>
inline void ValueBlock(const float* const* p, const float* v, const int* t, int hd, int d,
                       float* const* out) {
  int shared = t[0];
  for (int i = 1; i < NQ; ++i) shared = t[i] < shared ? t[i] : shared;
  V16 acc[NQ][NB];
  for (auto& row : acc)
    for (auto& a : row) a = Zero16();
  for (int j = 0; j < shared; ++j) {
    const float* vrow = v + static_cast<size_t>(j) * hd + d;
    V16 vv[NB];
    for (int b = 0; b < NB; ++b) vv[b] = Load16(vrow + 16 * b);
    for (int i = 0; i < NQ; ++i) {
      const V16 pj = Splat16(p[i][j]);
      for (int b = 0; b < NB; ++b) acc[i][b] = Fma16(pj, vv[b], acc[i][b]);
    }
  }
  for (int i = 0; i < NQ; ++i) {
    for (int j = shared; j < t[i]; ++j) {
      const V16 pj = Splat16(p[i][j]);
      for (int b = 0; b < NB; ++b)
        acc[i][b] = Fma16(pj, Load16(v + static_cast<size_t>(j) * hd + d + 16 * b), acc[i][b]);
    }
    for (int b = 0; b < NB; ++b) Store16(out[i] + d + 16 * b, acc[i][b]);
  }
}

template <int NQ>
inline void AttendGroup(const float* const* q, const float* kt, int stride, const float* v,
                        const int* t, int hd, float scale, float* const* scores,
                        float* const* out) {
  int shared = t[0];
  for (int i = 1; i < NQ; ++i) shared = t[i] < shared ? t[i] : shared;
  int j = 0;
  for (; j + 64 <= shared; j += 64) ScoreBlock<NQ, 4>(q, kt, stride, j, hd, scores);
  for (int i = 0; i < NQ; ++i) {
    ScoreTail(q[i], kt, stride, j, t[i], hd, scores[i]);
    Softmax(scores[i], t[i], scale);
  }
  int d = 0;
  for (; d + 64 <= hd; d += 64) ValueBlock<NQ, 4>(scores, v, t, hd, d, out);
  for (; d + 16 <= hd; d += 16) ValueBlock<NQ, 1>(scores, v, t, hd, d, out);
  for (int i = 0; i < NQ; ++i) {
    for (int dd = d; dd < hd; ++dd) {
      float acc = 0.0f;
      for (j = 0; j < t[i]; ++j)
        acc = std::fma(scores[i][j], v[static_cast<size_t>(j) * hd + dd], acc);
      out[i][dd] = acc;
    }
  }
}

// nq queries (any number) in groups of four, then one by one.
inline void AttendImpl(const float* const* q, int nq, const float* kt, int stride, const float* v,
                       const int* t, int hd, float scale, float* const* scores, float* const* out) {
  int i = 0;
  for (; i + 4 <= nq; i += 4)
    AttendGroup<4>(q + i, kt, stride, v, t + i, hd, scale, scores + i, out + i);
  for (; i < nq; ++i) AttendGroup<1>(q + i, kt, stride, v, t + i, hd, scale, scores + i, out + i);
}

}  // namespace splitlm::partition::kernels::SPLITLM_ISA
