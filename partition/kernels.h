// The hot-path kernels of a stage. Partition's stages call them; main()s and
// tests only name or force the instruction set (ActiveIsa, ForceIsa).
//
// Why not LibTorch's matmul: BLAS picks its blocking and reduction order from
// the matrix shapes, so the same row computed in a batch of 1 (decode), of 512
// (prefill) or of 8 (the cloud batching sessions) rounds differently, and a
// split run that recomputes or batches would drift from the local run. Every
// kernel here computes each output element with one fixed sequence of fused
// multiply-adds that depends only on the inner dimension: a row's result is
// bit-identical whatever else is in the batch, whichever thread computes it,
// and on every instruction set (portable, AVX2, AVX-512 and NEON agree to
// the bit; tests check it).
//
// Matrix products: output element (i, r) = fma chain over j = 0..k-1 in order
// of w[r][j] * x[i][j], starting from +0, then + bias[r]. The weights are
// packed in panels of 16 rows ([ceil(m/16)][k][16], the last panel padded
// with zeros) so that the chain vectorises across rows: any vector width
// computes the same lanes.
//
// Dot is the canonical dot product of length k: eight lane accumulators,
// lane l sums fma(a[8j+l], b[8j+l], acc_l) for j in order; the tail k%8 is a
// scalar fma chain; the result is ((a0+a1)+(a2+a3))+((a4+a5)+(a6+a7)) + tail.
// Attend does not use it: each score and output value is one fma chain in
// order (see Attend below).
#pragma once

#include <cstddef>

namespace splitlm::partition::kernels {

// Instruction set the kernels run with ("avx512f", "avx2+fma", "neon" or
// "portable").
const char* ActiveIsa();
// Forces the portable path (tests compare both); returns the previous value.
bool ForcePortable(bool on);
// Forces an instruction set by name ("portable", "avx2+fma", "avx512f",
// "neon" on aarch64);
// false (and no change) if this build or CPU lacks it. "" restores detection.
bool ForceIsa(const char* name);

// Floats a packed [m, k] matrix takes (m rounded up to a multiple of 16).
size_t PackedSize(int m, int k);
// Packs row-major w [m, k] into panels; `dst` holds PackedSize(m, k) floats.
void Pack(const float* w, int m, int k, float* dst);
// Row r of a packed matrix, unpacked into out[0, k).
void UnpackRow(const float* packed, int k, int r, float* out);

// y[i*m + r] = sum_j w[r][j] x[i][j] (+ bias[r]) for r < m, i < n, in the
// canonical order above. `packed` comes from Pack; x: [n, k]; y: [n, m].
// Parallel over panels of rows.
void MatMul(const float* packed, int m, int k, const float* x, int n, float* y,
            const float* bias = nullptr);

// Sum of p[0, n): a streaming read at full vector width (bandwidth probe).
float ReadSum(const float* p, size_t n);

// The canonical dot product of length k.
float Dot(const float* a, const float* b, int k);

// Attention of nq queries of one head over their keys [0, t[i]):
// scores_ij = fma chain over d of q_i[d] * kt[d*stride + j] (keys stored
// transposed, `stride` apart), times `scale`; p_i = softmax(scores_i);
// out_i[d] = fma chain over j of p_ij * v[j*hd + d]. Queries share loads of
// the keys they have in common, but each value is computed the same way
// whatever the grouping, t, or vector width. scores[i] has room for t[i].
void Attend(const float* const* q, int nq, const float* kt, int stride, const float* v,
            const int* t, int hd, float scale, float* const* scores, float* const* out);

// Runs fn(begin, end) over [0, n) in chunks of at least `grain` on
// at::get_num_threads() threads of the kernels' pool (thread_pool.h).
void ParallelFor(int n, int grain, void (*fn)(void* ctx, int begin, int end), void* ctx);

template <typename F>
void ParallelFor(int n, int grain, F&& f) {
  ParallelFor(n, grain, [](void* ctx, int b, int e) { (*static_cast<F*>(ctx))(b, e); }, &f);
}

}  // namespace splitlm::partition::kernels
