// How many bytes a model's weights take, part by part (embedding, each layer,
// head), when stored in a given format: what a side of a split holds in
// memory and reads per token. Planning arithmetic only (the scheduler's
// memory and time model); it loads and converts nothing.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "partition/gguf.h"
#include "partition/model_config.h"

namespace splitlm::partition {

class Model;

// The formats a side of a split can be planned with (lower case):
//   f32, f16, bf16     every matrix in that type;
//   q8_0, q4_0, q4_k_m what `splitlm quantize --type` writes: llama-quantize's
//                      per-tensor rules (gguf_quantize.h PlanTensorTypes), e.g.
//                      Q4_K_M = Q6_K for the output matrix, for attn_v and
//                      ffn_down in the layers use_more_bits picks (first and
//                      last eighth, every third between), Q4_K otherwise;
//                      q4_0 also gives the output matrix Q6_K;
//   q4_k, q6_k         every matrix in that type.
// Norms and biases stay F32 in all of them; a matrix whose rows are not a
// whole number of blocks keeps F32 (the source type).
const std::vector<std::string>& WeightFormatNames();
// "f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, q4_k_m" for error messages.
std::string WeightFormatList();
bool IsWeightFormat(const std::string& name);

struct WeightBytes {
  // A WeightFormatNames() entry, "gguf" (a file's own tensor types) or
  // "model" (a directory's F16/BF16 tensors as stored).
  std::string format;
  // token_embd, held whole by a device without the head, in the load format
  // as WeightMatrix holds it (as the tied head would be)
  double embed = 0;
  double embed_row = 0;  // one row of it (embed / rows): what the embedding reads per token
  // Per layer: every tensor of the layer (matrices, norms, biases).
  std::vector<double> layers;
  std::vector<double> layer_params;        // values of layer l
  std::vector<double> layer_block_params;  // of which in block (quantised) formats
  // What a stage holding the embedding adds by holding the head too:
  // output_norm + its matrix (output, or token_embd when tied); when tied the
  // packed head is the embedding table (one copy), so `embed` is taken off
  // (leaving output_norm). A cloud stage
  // holding the head without the embedding holds head + embed when tied.
  double head = 0;
  double head_read = 0;  // the matrix the head reads per token (output, or token_embd when tied)
  double head_block_fraction = 0;           // 1 when that matrix is in a block format
  std::map<std::string, int> tensor_types;  // "Q4_K" -> how many tensors, over the whole model

  double LayersBytes(int begin, int end) const;  // sum of layers [begin, end)
  // Fraction of layer l's values held in a block format (0 for f32).
  double BlockFraction(int layer) const;
  // "q4_k_m: layers 1.19-1.43 MiB (17.0 MiB in all), embedding 3.9 MiB, head 5.2 MiB; Q4_K x 61,
  // Q6_K x 24, F32 x 25"
  std::string Summary() const;
};

// What a stage holds of a model of `config` whose file is in `format`
// (computed from the shapes: the types above, then held as
// WeightBytesOfGguf says). Throws Exception(kInvalidArgument) listing the
// formats for an unknown name.
WeightBytes WeightBytesOf(const ModelConfig& config, const std::string& format);

// What a stage holds of the tensors of a GGUF file loaded with `load_format`
// (weight_matrix.h; "" keeps the file's types): each matrix as WeightMatrix
// holds it (HeldMatrixLayout: Q5_0 and IQ4_NL as Q8_0 blocks, Q3_K as Q6_K,
// Q4_1, Q5_1, Q2_K, Q5_K and F32 widened to fp32 panels, F16/BF16 in 16
// bits, a stack of q/k/v or gate/up widened whole if one part is; packed
// panels of 16 rows included), norms and biases in fp32, the embedding table
// as WeightMatrix holds it (as the tied head would be), the head matrix (output, or token_embd
// when tied) as WeightMatrix holds it. So the scheduler's memory and
// bytes-per-token are a stage's, not the file's. Throws Exception(kCorrupt)
// naming `path` for a tensor of a layer >= num_layers.
WeightBytes WeightBytesOfGguf(const GgufHeader& header, int num_layers, const std::string& path,
                              const std::string& load_format = "");

// `format` of `model`; "" or "model" is what the model holds as opened
// (Model::Open's weight format): a GGUF file's tensors (WeightBytesOfGguf), a
// Hugging Face directory's F32/F16/BF16 tensors as loaded.
WeightBytes ModelWeightBytes(const Model& model, const std::string& format);

}  // namespace splitlm::partition
