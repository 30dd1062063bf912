#define SPLITLM_ISA avx2
#include "partition/kernels_impl.h"

namespace splitlm::partition::kernels::avx2 {
void MatMulRowsEntry(const float* w, int m, int k, const float* x, int n, float* y,
                     const float* bias, int r0, int r1) {
  MatMulRows(w, m, k, x, n, y, bias, r0, r1);
}
float DotEntry(const float* a, const float* b, int k) { return DotImpl(a, b, k); }
void AttendEntry(const float* q, const float* k, const float* v, int t, int hd, float scale,
                 float* scores, float* out) {
  AttendImpl(q, k, v, t, hd, scale, scores, out);
}
}  // namespace splitlm::partition::kernels::avx2
