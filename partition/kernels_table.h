// The entry points of one instruction set (internal to partition/): what a
// kernels::Isa names. Each instruction set's kernels are compiled from one
// source with its own flags (kernels_isa.cpp, kernels_quant_isa.cpp,
// kernels_half_isa.cpp); kernels.cpp holds one constant table per set.
#pragma once

#include <cstddef>
#include <cstdint>

#include "partition/kernels.h"

namespace splitlm::partition::kernels {

struct IsaTable {
  const char* name;
  // Panels [p0, p1) of MatMul; x packed in groups of tile_inputs() inputs.
  void (*matmul)(const float* packed, int m, int k, const float* x, int n, float* y,
                 const float* bias, int p0, int p1);
  float (*dot)(const float* a, const float* b, int k);
  float (*read_sum)(const float* p, size_t n);
  int (*tile_inputs)();
  void (*attend)(const float* const* q, int nq, const float* kt, int stride, const float* v,
                 const int* t, int hd, float scale, float* const* scores, float* const* out);
  // QuantMatMul's panels [p0, p1), kF32 and kInt8 (false: no kernel for the type).
  bool (*quant_matmul)(uint32_t type, const uint8_t* packed, int m, int k, const float* x, int n,
                       float* y, int ldy, const float* bias, int p0, int p1);
  bool (*quant8_matmul)(uint32_t type, const uint8_t* packed, int m, int k, const int8_t* xq,
                        const float* xd, const int32_t* xs, int n, float* y, int ldy,
                        const float* bias, int p0, int p1);
  // QuantizeActivations, the same bits (vectorised where it can be).
  void (*quantize_acts)(const float* x, int k, int block, int8_t* q, float* d, int32_t* s16);
  // HalfMatMul's panels [p0, p1) (bf16 false: F16); x packed in groups of
  // half_tile_inputs() inputs.
  void (*half_matmul)(bool bf16, const uint16_t* packed, int m, int k, const float* x, int n,
                      float* y, int ldy, const float* bias, int p0, int p1);
  int (*half_tile_inputs)();
};

}  // namespace splitlm::partition::kernels
