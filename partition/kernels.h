// The hot-path kernels of a stage (internal to partition/).
//
// Why not LibTorch's matmul: BLAS picks its blocking and reduction order from
// the matrix shapes, so the same row computed in a batch of 1 (decode), of 512
// (prefill) or of 8 (the cloud batching sessions) rounds differently, and a
// split run that recomputes or batches would drift from the local run. Every
// kernel here computes each output element with one fixed sequence of fused
// multiply-adds that depends only on the inner dimension: a row's result is
// bit-identical whatever else is in the batch, whichever thread computes it,
// and on every instruction set (the AVX2 and the portable path agree to the
// bit; tests check it).
//
// The canonical dot product of length k: eight lane accumulators, lane l sums
// fma(a[8j+l], b[8j+l], acc_l) for j in order; the tail k%8 is a scalar fma
// chain; the result is ((a0+a1)+(a2+a3))+((a4+a5)+(a6+a7)) + tail.
#pragma once

#include <cstddef>

namespace splitlm::partition::kernels {

// Instruction set the kernels run with ("avx2+fma" or "portable").
const char* ActiveIsa();
// Forces the portable path (tests compare both); returns the previous value.
bool ForcePortable(bool on);

// y[i*m + r] = dot(w row r, x row i) (+ bias[r]) for r < m, i < n.
// w: [m, k] row-major; x: [n, k]; y: [n, m]. Parallel over rows of w.
void MatMul(const float* w, int m, int k, const float* x, int n, float* y,
            const float* bias = nullptr);

// The canonical dot product of length k.
float Dot(const float* a, const float* b, int k);

// out[d] = sum_j p_j * v_j[d] for j < t, accumulated in j order with one fma
// per term, where p = softmax(scale * dot(q, k_j)). k_j = k + j*hd, likewise v.
// `scores` has room for t floats.
void Attend(const float* q, const float* k, const float* v, int t, int hd, float scale,
            float* scores, float* out);

// Runs fn(begin, end) over [0, n) on the LibTorch intra-op thread pool, in
// chunks of at least `grain`.
void ParallelFor(int n, int grain, void (*fn)(void* ctx, int begin, int end), void* ctx);

template <typename F>
void ParallelFor(int n, int grain, F&& f) {
  ParallelFor(n, grain, [](void* ctx, int b, int e) { (*static_cast<F*>(ctx))(b, e); }, &f);
}

}  // namespace splitlm::partition::kernels
