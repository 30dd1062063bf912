// The hyper-parameters of a Hugging Face Llama-family model (config.json).
#pragma once

#include <string>
#include <vector>

namespace splitlm::partition {

enum class Arch { kLlama, kMistral, kQwen2 };

// Name as Hugging Face writes it in "architectures", e.g. "LlamaForCausalLM".
const char* ArchName(Arch arch);

struct RopeScaling {
  enum class Kind { kNone, kLinear, kLlama3 };
  Kind kind = Kind::kNone;
  double factor = 1.0;
  double low_freq_factor = 1.0;      // llama3 only
  double high_freq_factor = 4.0;     // llama3 only
  int original_max_position = 8192;  // llama3 only
  // Divisors of the head_dim / 2 rotary frequencies, applied after `kind`'s
  // scaling (GGUF's rope_freqs.weight: llama.cpp's form of Llama 3.1
  // scaling); empty for none.
  std::vector<float> freq_factors;
};

struct ModelConfig {
  Arch arch = Arch::kLlama;
  int hidden_size = 0;
  int num_layers = 0;
  int num_heads = 0;
  int num_kv_heads = 0;  // grouped-query attention when < num_heads
  int head_dim = 0;      // hidden_size / num_heads unless config says otherwise
  int intermediate_size = 0;
  int vocab_size = 0;
  int max_context = 0;  // max_position_embeddings
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  RopeScaling rope_scaling;
  bool tie_word_embeddings = false;
  bool qkv_bias = false;  // Qwen2 has biases on q, k and v
  int bos_token_id = 1;
  std::vector<int> eos_token_ids{2};

  bool IsEos(int token) const;
};

// Parses the text of a config.json. `origin` (usually the file path) prefixes
// every error message. Throws Exception(kCorrupt) on an unknown architecture, a
// missing or non-positive size, or inconsistent head counts.
ModelConfig ParseModelConfig(const std::string& json_text, const std::string& origin);

// Serialises `config` as a Hugging Face config.json.
std::string ModelConfigToJson(const ModelConfig& config);

}  // namespace splitlm::partition
