// ggml block formats splitlm reads but does not write: the types llama.cpp's
// quantiser falls back to when a row is not a whole number of 256-value
// super-blocks (a Q4_K_M file of Qwen2.5-0.5B, n_embd 896, holds Q5_0 and
// Q8_0), and those of older or smaller files. Decoding repeats ggml's
// reference dequantize_row_* (ggml-quants.c; block layouts in ggml-common.h)
// operation for operation, each fp32 operation a single rounding (the project
// compiles with -ffp-contract=off):
//
//   Q4_1   32 values in 20 bytes: d, m (fp16), qs[16] (element j the low
//          nibble of qs[j], j+16 its high nibble).  x = float(q)*d + m
//   Q5_0   32 values in 22 bytes: d (fp16), qh[4] (bit j: the fifth bit of
//          element j), qs[16] as Q4_1.            x = float(q - 16) * d
//   Q5_1   32 values in 24 bytes: d, m (fp16), qh[4], qs[16].
//                                                  x = float(q)*d + m
//   Q2_K   256 values in 84 bytes: scales[16] (low nibble scale, high nibble
//          min, one per 16 values), qs[64] (2 bits), d, dmin (fp16).
//                                      x = (d*float(sc))*float(q) - dmin*float(m)
//   Q3_K   256 values in 110 bytes: hmask[32], qs[64] (2 low bits), scales[12]
//          (sixteen 6-bit scales, stored +32), d (fp16).
//                                      x = (d*float(sc - 32)) * float(q - 4)
//          (q the 3-bit code: the high bit set in hmask adds 4)
//   Q5_K   256 values in 176 bytes: d, dmin (fp16), scales[12] (as Q4_K),
//          qh[32], qs[128].            x = (d*float(sc))*float(q) - dmin*float(m)
//   IQ4_NL 32 values in 18 bytes: d (fp16), qs[16] as Q4_1; q indexes the
//          non-linear table kvalues_iq4nl.     x = d * float(kvalues[q])
//
// Three of them hold values that another format holds exactly, with the same
// single-rounding product, so the matrix kernels of that format compute them
// without widening (TranscodeRow): Q5_0 and IQ4_NL are Q8_0 blocks (same d,
// the int8 value q - 16 or kvalues[q]); Q3_K is a Q6_K block (same d, int8
// scale sc - 32, 6-bit code q + 32).
#pragma once

#include <cstdint>
#include <optional>

namespace splitlm::partition {

// Whether DecodeBlocks knows `ggml_type` (a GgmlType number).
bool IsDecodeOnlyType(uint32_t ggml_type);

// Decodes `blocks` whole blocks of `ggml_type` at `src` (no alignment needed)
// into blocks * block_values floats. Returns false, writing nothing, for a
// type IsDecodeOnlyType rejects.
bool DecodeBlocks(uint32_t ggml_type, const uint8_t* src, float* dst, int64_t blocks);

// The format whose blocks hold `ggml_type`'s values exactly (Q8_0 for Q5_0
// and IQ4_NL, Q6_K for Q3_K), or nullopt.
std::optional<uint32_t> ExactBlockForm(uint32_t ggml_type);

// Rewrites a row of n values of `ggml_type` as blocks of
// ExactBlockForm(ggml_type) (dst holds that type's row bytes); every value
// decodes to the same float bits. n must be a multiple of the block size.
// Returns false, writing nothing, for a type without an exact form.
bool TranscodeRow(uint32_t ggml_type, const uint8_t* src, uint8_t* dst, int64_t n);

}  // namespace splitlm::partition
