// The hot-path kernels of a stage. Partition's stages call them with the
// instruction set chosen when the model was opened (Model::Open's `isa`);
// main()s choose it (Isa::Choose of $SPLITLM_KERNELS), tests name each one
// (Isa::Available) to compare them. Nothing here is global: every call names
// its instruction set.
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
#include <optional>
#include <string_view>
#include <vector>

namespace splitlm::partition::kernels {

struct IsaTable;  // the entry points of one instruction set (kernels_table.h)

// An instruction set the kernels run with: "portable", "avx2+fma" (with F16C),
// "avx512f" or "neon". A value naming a fixed table of entry points (one
// pointer: copy it freely, from any thread); a weight matrix or stage keeps
// the one it was loaded with, so a call costs one indirect jump and no
// lookup. Every instruction set gives the same bits (see above).
class Isa {
 public:
  // The best one this build has and this CPU runs: AVX-512F, else
  // AVX2+FMA+F16C, else NEON (every ARMv8-A CPU), else portable. A function
  // of the CPU alone.
  static Isa Best();
  static Isa Portable();
  // By name ("avx2" and "avx512" are accepted for "avx2+fma" and "avx512f");
  // nullopt for an unknown name or one this build or CPU cannot run.
  static std::optional<Isa> Named(std::string_view name);
  // What a main() reads from a setting such as $SPLITLM_KERNELS: null or ""
  // gives Best(), a name Named(name). Throws Exception(kInvalidArgument)
  // naming `setting`, the value and the available ones otherwise.
  static Isa Choose(const char* name, std::string_view setting = "instruction set");
  // Every instruction set this build and CPU can run, portable first (tests
  // compare them).
  static std::vector<Isa> Available();

  const char* name() const;
  // The entry points (internal to partition/: kernels_table.h).
  const IsaTable& table() const { return *table_; }
  friend bool operator==(Isa a, Isa b) { return a.table_ == b.table_; }
  friend bool operator!=(Isa a, Isa b) { return a.table_ != b.table_; }

 private:
  explicit Isa(const IsaTable* table) : table_(table) {}
  const IsaTable* table_;
};

// Floats a packed [m, k] matrix takes (m rounded up to a multiple of 16).
size_t PackedSize(int m, int k);
// Packs row-major w [m, k] into panels; `dst` holds PackedSize(m, k) floats.
void Pack(const float* w, int m, int k, float* dst);
// Row r of a packed matrix, unpacked into out[0, k).
void UnpackRow(const float* packed, int k, int r, float* out);

// y[i*m + r] = sum_j w[r][j] x[i][j] (+ bias[r]) for r < m, i < n, in the
// canonical order above. `packed` comes from Pack; x: [n, k]; y: [n, m].
// Parallel over panels of rows.
void MatMul(Isa isa, const float* packed, int m, int k, const float* x, int n, float* y,
            const float* bias = nullptr);

// Sum of p[0, n): a streaming read at the vector width of `isa` (bandwidth
// probe).
float ReadSum(Isa isa, const float* p, size_t n);

// The canonical dot product of length k.
float Dot(Isa isa, const float* a, const float* b, int k);

// Attention of nq queries of one head over their keys [0, t[i]):
// scores_ij = fma chain over d of q_i[d] * kt[d*stride + j] (keys stored
// transposed, `stride` apart), times `scale`; p_i = softmax(scores_i);
// out_i[d] = fma chain over j of p_ij * v[j*hd + d]. Queries share loads of
// the keys they have in common, but each value is computed the same way
// whatever the grouping, t, or vector width. scores[i] has room for t[i].
void Attend(Isa isa, const float* const* q, int nq, const float* kt, int stride, const float* v,
            const int* t, int hd, float scale, float* const* scores, float* const* out);

// Runs fn(begin, end) over [0, n) on as many threads as LibTorch's intra-op
// setting (at::get_num_threads(), --threads), in chunks of at least `grain`
// that the threads take in turn (which thread runs a chunk varies: fn must
// not depend on it). The threads are splitlm's own (thread_pool.h).
void ParallelFor(int n, int grain, void (*fn)(void* ctx, int begin, int end), void* ctx);

template <typename F>
void ParallelFor(int n, int grain, F&& f) {
  ParallelFor(
      n, grain, [](void* ctx, int b, int e) { (*static_cast<F*>(ctx))(b, e); }, &f);
}

}  // namespace splitlm::partition::kernels
