// Matrix products over weights held in ggml's block formats (internal to
// partition/): Q8_0, Q4_0, Q4_K and Q6_K, without dequantising the matrix.
//
// Two kernels per format (QuantActs below): weight matrices use kInt8;
// kF32, described first, keeps the fp32 inputs.
//
// kF32 exactness: output element (i, r) is the same fma chain as
// kernels::MatMul over the dequantised matrix: over j = 0..k-1 in order, acc = fma(w[r][j],
// x[i][j], acc) from +0, then + bias[r], where w[r][j] is the value
// DequantizeRow (partition/quant.h) gives, computed with the same fp32
// operations in the same order (each a single rounding, none fused):
//   Q8_0  w = float(q) * fp16(d)
//   Q4_0  w = float(nibble - 8) * fp16(d)
//   Q4_K  w = (fp16(d) * float(sc)) * float(q) - fp16(dmin) * float(m)
//   Q6_K  w = (fp16(d) * float(scale)) * float(q - 32)
// So the result is bit-identical to dequantise-then-MatMul on every
// instruction set, thread count and batch composition, and a quantised
// matrix costs no accuracy beyond the format's own rounding.
//
// kF32 layout: rows in panels of 16 (m rounded up with zero rows), each panel a
// run of column groups (32 columns for Q8_0/Q4_0, 256 for Q4_K/Q6_K) in which
// the 16 rows' codes of one column sit side by side (16 bytes), so one vector
// load yields a column of the panel; the fp16 scales are widened to fp32
// (exactly) when packed. Bytes per weight: Q8_0 1.125, Q4_0 0.625,
// Q4_K 0.594, Q6_K 0.828 (the GGUF blocks: 1.0625, 0.5625, 0.5625, 0.82).
#pragma once

#include <cstddef>
#include <cstdint>

#include "partition/kernels.h"

namespace splitlm::partition::kernels {

// How a quantised matrix meets its inputs. Part of the identity of a held
// format: the two give different numbers, so both sides of a split must use
// the same one (see weight_matrix.h, docs/exactness.md).
//   kF32   the inputs stay fp32; the exact contract above (bit-identical to
//          dequantise-then-MatMul).
//   kInt8  each input row is quantised per block (32 values for Q8_0/Q4_0,
//          256 for Q4_K/Q6_K) with QuantizeActivations, the block dot
//          products are exact int32 sums, and output element (i, r) is
//            acc = fma(float(s_b), d_w[r][b] * d_x[i][b], acc)
//          over the blocks b in order from +0 (for Q4_K also
//          acc = fma(float(-m_b), dmin_w[r][b] * d_x[i][b], acc) after each),
//          then + bias[r]: bit-identical across instruction sets, thread
//          counts and batch composition, within a measured bound of
//          dequantise-then-MatMul (docs/exactness.md). Layouts with fp16
//          scales, bytes per weight: Q8_0 1.0625, Q4_0 0.5625 (as GGUF),
//          Q4_K 0.578 (the 6-bit scales unpacked), Q6_K 0.820 (as GGUF).
enum class QuantActs { kF32, kInt8 };

// Whether `ggml_type` (GgmlType number) has a packed layout here.
bool CanPackQuant(uint32_t ggml_type);
// Whether it has an int8-activation kernel (all four).
bool HasInt8Kernel(uint32_t ggml_type);
// Columns per block of the type (32 or 256): k must be a multiple.
int QuantBlockValues(uint32_t ggml_type);
// Bytes a packed [m, k] matrix takes.
size_t QuantPackedBytes(uint32_t ggml_type, int m, int k, QuantActs acts = QuantActs::kF32);
// Packs m rows of GGUF blocks (rows[r] points at row r: k / block blocks) into
// `dst` (QuantPackedBytes bytes). kInt8 needs HasInt8Kernel.
void PackQuant(uint32_t ggml_type, const uint8_t* const* rows, int m, int k, uint8_t* dst,
               QuantActs acts = QuantActs::kF32);
// Row r of a packed matrix, dequantised as DequantizeRow would.
void QuantUnpackRow(uint32_t ggml_type, const uint8_t* packed, int k, int r, float* out,
                    QuantActs acts = QuantActs::kF32);

// y[i*ldy + r] = sum_j w[r][j] x[i][j] (+ bias[r]) in the order above, for
// r < m, i < n. `packed` from PackQuant with the same `acts`; x: [n, k].
// Parallel over panels, with `isa`'s kernels.
void QuantMatMul(Isa isa, uint32_t ggml_type, const uint8_t* packed, int m, int k, const float* x,
                 int n, float* y, int ldy, const float* bias = nullptr,
                 QuantActs acts = QuantActs::kF32);

// The activation quantisation of kInt8, the same IEEE operations on every
// instruction set: per block of `block` values (k a multiple), amax = the
// largest |x|; a block with amax < 2^-96 is all zero (d = 0); one with a
// value that is not finite has d = NaN and codes 0 (the NaN reaches the
// output, as in fp32); otherwise d = amax / 127, and q = x * (1 / d)
// rounded to nearest, ties to even, clamped to [-127, 127]. s16[t] is the
// sum of the codes of values 16t .. 16t + 15. q: [k], d: [k / block],
// s16: [k / 16].
void QuantizeActivations(const float* x, int k, int block, int8_t* q, float* d, int32_t* s16);
// The same bits, with `isa`'s vectors (what QuantMatMul runs).
void QuantizeActivations(Isa isa, const float* x, int k, int block, int8_t* q, float* d,
                         int32_t* s16);

}  // namespace splitlm::partition::kernels
