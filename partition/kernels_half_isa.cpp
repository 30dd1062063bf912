// Compiled once per instruction set, like kernels_isa.cpp (see CMakeLists.txt).
#include "partition/kernels_half_impl.h"

namespace splitlm::partition::kernels::SPLITLM_ISA {
// Panels [p0, p1) of the product with F16 (bf16 false) or BF16 weights; x
// packed in groups of HalfTileInputsEntry() inputs.
void HalfMatMulEntry(bool bf16, const uint16_t* packed, int m, int k, const float* x, int n,
                     float* y, int ldy, const float* bias, int p0, int p1) {
  if (bf16) {
    HalfPanelMatMul<true>(packed, m, k, x, n, y, ldy, bias, p0, p1);
  } else {
    HalfPanelMatMul<false>(packed, m, k, x, n, y, ldy, bias, p0, p1);
  }
}
int HalfTileInputsEntry() { return kTileInputs; }
}  // namespace splitlm::partition::kernels::SPLITLM_ISA
