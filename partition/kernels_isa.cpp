// Compiled once per instruction set, with SPLITLM_ISA naming the namespace
// (portable, avx2, avx512) and the matching -m flags: see CMakeLists.txt.
#include "partition/kernels_impl.h"

namespace splitlm::partition::kernels::SPLITLM_ISA {
void MatMulEntry(const float* packed, int m, int k, const float* x, int n, float* y,
                 const float* bias, int p0, int p1) {
  PanelMatMul(packed, m, k, x, n, y, bias, p0, p1);
}
int TileInputsEntry() { return kTileInputs; }
float ReadSumEntry(const float* p, size_t n) { return ReadSumImpl(p, n); }
float DotEntry(const float* a, const float* b, int k) { return DotImpl(a, b, k); }
void AttendEntry(const float* const* q, int nq, const float* kt, int stride, const float* v,
                 const int* t, int hd, float scale, float* const* scores, float* const* out) {
  AttendImpl(q, nq, kt, stride, v, t, hd, scale, scores, out);
}
}  // namespace splitlm::partition::kernels::SPLITLM_ISA
