// Compiled once per instruction set, like kernels_isa.cpp (see CMakeLists.txt).
#include "partition/kernels_quant8_impl.h"  // includes kernels_quant_impl.h

#include <vector>

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
}  // namespace splitlm::partition::kernels::SPLITLM_ISA
