// A GGUF model file of llama.cpp (architectures `llama` and `qwen2`) seen as
// splitlm's model: hyper-parameters from its metadata, and Hugging Face's
// tensor names mapped onto GGUF's ("model.layers.3.mlp.up_proj.weight" is
// "blk.3.ffn_up.weight"), with GGUF's innermost-first dims turned round and
// llama.cpp's RoPE row order of `llama` Q and K undone when read.
#pragma once

#include <string>
#include <vector>

#include "partition/gguf.h"
#include "partition/model.h"
#include "partition/model_config.h"

namespace splitlm::partition {

// Reads the hyper-parameters from `file`'s metadata ({arch}.block_count,
// .embedding_length, .feed_forward_length, .attention.head_count[_kv],
// .attention.layer_norm_rms_epsilon, .context_length, .rope.freq_base,
// .rope.dimension_count, .attention.key_length, .rope.scaling.*,
// tokenizer.ggml.*). The vocabulary size is the token list's length, else
// token_embd's; the head is tied iff there is no `output.weight`. Throws
// Exception(kCorrupt) naming the file, the key or tensor and the problem: an
// architecture other than llama and qwen2, a missing or mistyped key, a
// partial rotary dimension, an unsupported rope scaling (yarn), a
// rope_freqs.weight (Llama 3.1's frequency factors, read into
// rope_scaling.freq_factors) of the wrong size or with a factor <= 0,
// special ids outside the vocabulary, tensors of layers past block_count.
ModelConfig GgufModelConfig(const GgufFile& file);

// The GGUF name of Hugging Face's tensor `hf_name`, or "" if it has none.
std::string GgufTensorName(const std::string& hf_name);

// The tensor `hf_name` of `file`, whose shape in Hugging Face's order must be
// `expected`. Throws Exception(kCorrupt) naming the file and both names if it is
// missing, of another shape, or of a type splitlm cannot load.
TensorRef GgufTensorRef(const GgufFile& file, const ModelConfig& config, const std::string& hf_name,
                        const std::vector<int64_t>& expected);

}  // namespace splitlm::partition
