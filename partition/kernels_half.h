// Matrix products over weights held as 16-bit floats (internal to
// partition/): F16 (IEEE binary16) and BF16 (the high half of an fp32), two
// bytes per weight instead of four.
//
// Exactness: widening binary16 or bfloat16 to fp32 is exact, so the kernels
// widen each weight as they load it and then run kernels::MatMul's fma chain
// unchanged: output element (i, r) = fma chain over j = 0..k-1 in order of
// widen(w[r][j]) * x[i][j] from +0, then + bias[r]. The result is bit for bit
// kernels::MatMul over the widened matrix, on every instruction set (F16C's
// vcvtph2ps on x86, vcvt_f32_f16 on NEON, a scalar widening elsewhere agree
// on every non-NaN value), thread count and batch composition.
//
// Layout: as kernels::Pack, in panels of 16 rows ([m/16][k][16] uint16, rows
// past m zero), so one 32-byte load gives a column of a panel.
#pragma once

#include <cstddef>
#include <cstdint>

#include "partition/kernels.h"

namespace splitlm::partition::kernels {

// Whether `ggml_type` (a GgmlType number) is F16 or BF16.
bool IsHalfType(uint32_t ggml_type);
// uint16 values a packed [m, k] matrix takes.
size_t HalfPackedSize(int m, int k);
// Packs m rows of k 16-bit values (rows[r] points at row r) into `dst`
// (HalfPackedSize values).
void PackHalf(const uint16_t* const* rows, int m, int k, uint16_t* dst);
// Row r of a packed matrix, widened to fp32.
void HalfUnpackRow(uint32_t ggml_type, const uint16_t* packed, int k, int r, float* out);

// y[i*ldy + r] = sum_j w[r][j] x[i][j] (+ bias[r]) in the order above, for
// r < m, i < n; `packed` from PackHalf, x: [n, k]. Parallel over panels,
// with `isa`'s kernels (every Isa has 16-bit ones: Isa's AVX2 needs F16C).
// Throws Exception(kInvalidArgument) for a type other than F16 and BF16.
void HalfMatMul(Isa isa, uint32_t ggml_type, const uint16_t* packed, int m, int k, const float* x,
                int n, float* y, int ldy, const float* bias = nullptr);

}  // namespace splitlm::partition::kernels
