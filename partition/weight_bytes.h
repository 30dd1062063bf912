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
  std::string format;  // a WeightFormatNames() entry, or "gguf" (a file's own tensor types)
  double embed = 0;      // token_embd, held whole by the device
  double embed_row = 0;  // one row of it: what the embedding reads per token
  // Per layer: every tensor of the layer (matrices, norms, biases).
  std::vector<double> layers;
  std::vector<double> layer_params;        // values of layer l
  std::vector<double> layer_block_params;  // of which in block (quantised) formats
  double head = 0;       // what the head holds beyond the embedding: output_norm + output
                         // (output_norm only when tied to the embedding)
  double head_read = 0;  // the matrix the head reads per token (output, or token_embd when tied)
  double head_block_fraction = 0;  // 1 when that matrix is in a block format
  std::map<std::string, int> tensor_types;  // "Q4_K" -> how many tensors, over the whole model

  double LayersBytes(int begin, int end) const;  // sum of layers [begin, end)
  // Fraction of layer l's values held in a block format (0 for f32).
  double BlockFraction(int layer) const;
  // "q4_k_m: layers 1.19-1.43 MiB (17.0 MiB in all), embedding 3.9 MiB, head 5.2 MiB; Q4_K x 61, Q6_K x 24, F32 x 25"
  std::string Summary() const;
};

// The weights of a model of `config` stored in `format` (computed from the
// shapes). Throws Exception(kInvalidArgument) listing the formats for an unknown name.
WeightBytes WeightBytesOf(const ModelConfig& config, const std::string& format);

// The tensors of a GGUF file as stored (their real types and sizes), grouped
// by part: blk.N.* to layer N, token_embd to the embedding, output_norm and
// output to the head (anything else, e.g. rope_freqs, to the embedding).
// Throws Exception(kCorrupt) naming `path` for a tensor of a layer >= num_layers.
WeightBytes WeightBytesOfGguf(const GgufHeader& header, int num_layers, const std::string& path);

// `format` of `model`; "" or "model" is the model's own format: a GGUF file's
// tensors as stored (read from its header), f32 for a Hugging Face directory
// (splitlm holds those in fp32).
WeightBytes ModelWeightBytes(const Model& model, const std::string& format);

}  // namespace splitlm::partition
