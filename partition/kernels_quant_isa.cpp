// Compiled once per instruction set, like kernels_isa.cpp (see CMakeLists.txt).
#include "partition/kernels_quant_impl.h"

namespace splitlm::partition::kernels::SPLITLM_ISA {
// `type` is a GgmlType number (Q8_0 8, Q4_0 2, Q4_K 12, Q6_K 14); false if
// there is no kernel for it.
bool QuantMatMulEntry(uint32_t type, const uint8_t* packed, int m, int k, const float* x, int n, float* y,
                      int ldy, const float* bias, int p0, int p1) {
  switch (type) {
    case 8: QPanelMatMul<DQ8_0>(packed, m, k, x, n, y, ldy, bias, p0, p1); return true;
    case 2: QPanelMatMul<DQ4_0>(packed, m, k, x, n, y, ldy, bias, p0, p1); return true;
    case 12: QPanelMatMul<DQ4_K>(packed, m, k, x, n, y, ldy, bias, p0, p1); return true;
    case 14: QPanelMatMul<DQ6_K>(packed, m, k, x, n, y, ldy, bias, p0, p1); return true;
    default: return false;
  }
}
}  // namespace splitlm::partition::kernels::SPLITLM_ISA
