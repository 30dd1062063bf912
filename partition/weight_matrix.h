// A weight matrix of a stage as the kernels hold it: fp32 panels
// (kernels::Pack) or rows of ggml blocks repacked for the quantised kernels
// (kernels_quant.h). Block-format matrices multiply 8-bit quantised
// activations (QuantActs::kInt8: exact integer block sums, bit-identical
// across instruction sets, threads and batches, within a documented bound of
// the dequantised fp32 matrix; docs/exactness.md).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "partition/huge_pages.h"
#include "partition/kernels_quant.h"
#include "partition/model.h"

namespace splitlm::partition {

// The format weights are held in, chosen at load (`--weights`, config key
// `model.weights`): "" (native: a GGUF model's Q8_0, Q4_0, Q4_K, Q6_K, F16
// and BF16 matrices stay in their format, Q5_0 and IQ4_NL become the Q8_0
// blocks and Q3_K the Q6_K blocks holding the same values (quant_decode.h),
// everything else (F32, Q4_1, Q5_1, Q2_K, Q5_K) becomes fp32), "f32"
// (everything dequantised), "f16" (values rounded to fp16, held in 16 bits:
// kernels_half.h),
// "q8_0", "q4_0", "q4_k", "q6_k" (each matrix row quantised at load with
// QuantizeRow; a matrix whose rows are not whole blocks stays fp32),
// "q4_k_m" (llama.cpp's Q4_K_M choice for a llama-shaped model: Q6_K for
// the LM head and for v_proj and down_proj in the first and last eighth of
// the layers and every third between, Q4_K for the other matrices).
// Matrices are the q/k/v/o/gate/up/down projections, the LM head and the
// embedding table, tied or not (a stage looks its rows up with Row(); under
// q4_k_m it is Q6_K like the head); norms and biases stay fp32.
// Throws Exception(kInvalidArgument) naming the value and the accepted ones.
void CheckWeightFormat(const std::string& format);
// The accepted values of CheckWeightFormat, comma-separated.
const char* WeightFormats();

// The activations a matrix held in `ggml_type` meets: kInt8 where there is an
// int8 kernel (Q8_0, Q4_0, Q4_K, Q6_K), else kF32. Part of the format's
// identity (Model::fingerprint() says so).
kernels::QuantActs ActsOf(uint32_t ggml_type);

// One part of a matrix as stored, for HeldMatrixLayout: the name, GgmlType
// number and shape (rows, row length) of the tensor, nothing of its data.
struct PartLayout {
  std::string name;  // Hugging Face's, as WeightMatrix::Part
  uint32_t type = 0;
  int64_t rows = 0, cols = 0;
};

// What WeightMatrix::Load(parts, format, num_layers) holds, computed from the
// parts' types and shapes alone: the type each part is held in (F32, F16,
// BF16 or a block type) and the bytes() of the loaded matrix (packed panels
// of 16 rows included). The planning arithmetic of weight_bytes.h uses it, so
// that the scheduler counts the bytes a stage holds, not the file's.
struct HeldLayout {
  std::vector<uint32_t> types;  // per part
  size_t bytes = 0;
};
HeldLayout HeldMatrixLayout(const std::vector<PartLayout>& parts, const std::string& format,
                            int num_layers = 0);

class WeightMatrix {
 public:
  struct Part {
    std::string name;  // Hugging Face's ("model.layers.3.mlp.down_proj.weight")
    TensorRef ref;
  };
  // The rows of `parts` (all [rows_i, k], Hugging Face row order) stacked in
  // `format` (of a model of `num_layers` layers). Parts held in several block
  // types become one segment each; if any part must stay fp32 the whole
  // matrix is fp32. Throws Exception(kInvalidArgument) naming the part if its values
  // cannot be quantised (not finite, or a scale past fp16). Apply runs with
  // the kernels of `isa` (Model::isa() for a stage's matrices).
  static std::shared_ptr<const WeightMatrix> Load(const std::vector<Part>& parts,
                                                  const std::string& format, int num_layers = 0,
                                                  kernels::Isa isa = kernels::Isa::Best());

  // y[i*rows() + r] = sum_j w[r][j] x[i][j] (+ bias[r]); x: [n, cols()].
  void Apply(const float* x, int n, float* y, const float* bias = nullptr) const;
  // Row r, decoded.
  void Row(int r, float* out) const;

  int rows() const { return rows_; }
  int cols() const { return cols_; }
  // Bytes held (all read once per product).
  size_t bytes() const;
  // The formats held, e.g. "q4_k" or "q4_k/q6_k" or "f32".
  std::string format() const;
  // The instruction set Apply runs with.
  kernels::Isa isa() const { return isa_; }

  // One run of rows held in one type (internal: built by Load).
  struct Segment {
    uint32_t type = 0;  // GgmlType: F32 (packed panels), F16/BF16 (16-bit panels) or a block type
    kernels::QuantActs acts = kernels::QuantActs::kF32;
    int row0 = 0, rows = 0;
    // Streamed once per product: in huge pages (huge_pages.h).
    HugePageVector<float> f32;
    HugePageVector<uint8_t> blocks;
    HugePageVector<uint16_t> half;  // F16 or BF16 panels (kernels_half.h)
  };

 private:
  explicit WeightMatrix(kernels::Isa isa) : isa_(isa) {}
  kernels::Isa isa_;
  int rows_ = 0, cols_ = 0;
  std::vector<Segment> segments_;
};

}  // namespace splitlm::partition
