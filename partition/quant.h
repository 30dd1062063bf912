// ggml's block formats, bit-compatible with GGUF files written by llama.cpp:
// rows of F32, F16, BF16, Q8_0, Q4_0, Q4_K and Q6_K values converted to and
// from fp32.
//
// Dequantisation defines the exact values splitlm computes with: kernels
// that read blocks directly must reproduce DequantizeRow bit for bit. It is
// plain scalar code with the operation order below (the project compiles
// with -ffp-contract=off, so no multiply-add is fused). fp16(h) is the exact
// binary16 -> fp32 widening; every product is a single fp32 rounding.
//
//   F32   4 bytes per value, copied.
//   F16   IEEE binary16, widened exactly.  BF16: the high half of an fp32.
//   Q8_0  32 values in 34 bytes: d (fp16), q[32] (int8).
//         x[j] = fp16(d) * float(q[j])
//   Q4_0  32 values in 18 bytes: d (fp16), qs[16]. Element j is the low
//         nibble of qs[j], element j+16 its high nibble.
//         x[j] = float(nibble - 8) * fp16(d)
//   Q4_K  256 values in 144 bytes: d, dmin (fp16), scales[12] (eight 6-bit
//         scales sc and eight 6-bit mins m, packed as ggml's
//         get_scale_min_k4), qs[128]. The 64 values of group g (g = 0..3) use
//         qs[32g .. 32g+31]: low nibbles are sub-block 2g, high nibbles 2g+1.
//         x = (fp16(d) * float(sc)) * float(q) - fp16(dmin) * float(m)
//   Q6_K  256 values in 210 bytes: ql[128] (low 4 bits), qh[64] (high 2
//         bits), scales[16] (int8, one per 16 values), d (fp16) last; the
//         bit layout is ggml's (ggml-common.h block_q6_K).
//         x = (fp16(d) * float(scale)) * float(q - 32)
//
// Quantisation is ggml's reference rounding (ggml-quants.c
// quantize_row_*_ref, which llama-quantize uses when no importance matrix is
// given), operation for operation, so a row quantised here has the bytes
// llama.cpp writes. Error bounds per value (checked by quant_test.cpp; amax
// is the largest |x| of the block, fp16 rounding of the scale included):
//   Q8_0  |x - x'| <= amax/127 * (0.5 + 127 * 2^-11) + 2^-18
//   Q4_0  |x - x'| <= amax/8 * (1 + 8 * 2^-11) + 2^-21   (the value of the
//         sign opposite to the block's extreme can lose a full step: +8d is
//         stored as +7d, as in ggml)
//   Q4_K, Q6_K  the scales come from a search (make_qkx2_quants /
//         make_qx_quants) and have no closed-form bound; the tests check
//         |x - x'| <= range/8 + 2^-14 (Q4_K, range = max(x) - min(0, min(x))
//         of the 256 values) and <= amax/16 + 2^-12 (Q6_K). The absolute
//         terms are the fp16 super-block scales' rounding, which is coarse
//         when they are subnormal: Q6_K's d is about amax/4096, so weights
//         below ~0.25 in magnitude already get a subnormal d.
#pragma once

#include <cstdint>

namespace splitlm::partition {

// Writes n values decoded from the row at `src` to `dst`. `ggml_type` is a
// GgmlType number: F32, F16, BF16, Q8_0, Q4_0, Q4_K or Q6_K, or one of the
// types splitlm reads but does not write (partition/quant_decode.h: Q4_1,
// Q5_0, Q5_1, Q2_K, Q3_K, Q5_K, IQ4_NL); `n` must be a
// non-negative multiple of the type's block (32 or 256 values). `src` holds
// n / block * block_bytes bytes (no alignment required). Throws
// Exception(kInvalidArgument) naming the type for any other type or a bad `n`.
void DequantizeRow(uint32_t ggml_type, const uint8_t* src, float* dst, int64_t n);

// Encodes n values from `src` into `dst` (n / block * block_bytes bytes) with
// ggml's reference rounding; same types and `n` rule as DequantizeRow. For
// the block types every value must be finite and the block scales must fit
// fp16 (|x| up to about 8e6 for Q8_0, 5e5 for Q4_0, 4e6 for Q4_K, 2e8 for Q6_K):
// otherwise Exception(kInvalidArgument) naming the index (where ggml would write a block
// that llama.cpp's validation rejects). F16 and BF16 round to nearest even
// (values past fp16's range become infinite, as in ggml); F32 is copied.
void QuantizeRow(uint32_t ggml_type, const float* src, uint8_t* dst, int64_t n);

// Whether QuantizeRow (and DequantizeRow) accept `ggml_type`.
bool IsQuantizeSupported(uint32_t ggml_type);
// Whether DequantizeRow accepts `ggml_type`.
bool IsDequantizeSupported(uint32_t ggml_type);

}  // namespace splitlm::partition
