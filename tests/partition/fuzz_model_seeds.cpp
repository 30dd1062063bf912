// Writes a seed corpus for fuzz_model_files: a valid safetensors file,
// config.json files and a GGUF file, each behind the fuzzer's selector byte.
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string header =
      R"({"__metadata__": {"format": "pt"}, "a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]},)"
      R"( "b": {"dtype": "BF16", "shape": [4], "data_offsets": [16, 24]}})";
  std::string st(8, '\0');
  for (int i = 0; i < 8; ++i) st[i] = static_cast<char>((header.size() >> (8 * i)) & 0xff);
  st += header + std::string(24, '\x3f');
  const std::string configs[] = {
      R"({"architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
          "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
          "max_position_embeddings": 64, "bos_token_id": 1, "eos_token_id": [2, 3],
          "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}})",
      R"({"architectures": ["Qwen2ForCausalLM"], "hidden_size": 96, "intermediate_size": 128, "head_dim": 32,
          "num_hidden_layers": 1, "num_attention_heads": 3, "vocab_size": 10, "max_position_embeddings": 8,
          "tie_word_embeddings": true, "rope_theta": 1e6, "eos_token_id": 9})",
  };
  std::ofstream(std::string(argv[1]) + "/safetensors.bin", std::ios::binary)
      << std::string(1, '\0') + st;  // selector 0: safetensors
  // A GGUF v3 file: two metadata values (one an array of strings), two tensors.
  std::string gguf;
  auto put = [&gguf](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) gguf.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
  };
  auto str = [&](const std::string& s) {
    put(s.size(), 8);
    gguf += s;
  };
  put(0x46554747, 4), put(3, 4), put(2, 8), put(2, 8);
  str("llama.block_count"), put(4, 4), put(1, 4);
  str("tokenizer.ggml.tokens"), put(9, 4), put(8, 4), put(2, 8), str("<s>"), str("a");
  str("w"), put(2, 4), put(32, 8), put(2, 8), put(8, 4), put(0, 8);  // Q8_0, two rows
  str("n"), put(1, 4), put(4, 8), put(0, 4), put(96, 8);             // F32
  while (gguf.size() % 32) gguf.push_back('\0');
  gguf.append(96 + 16, '\x22');
  std::ofstream(std::string(argv[1]) + "/gguf.bin", std::ios::binary)
      << std::string(1, '\2') + gguf;
  // A GGUF file of one row in each type splitlm decodes (and one it does
  // not: IQ2_XXS), each with its block's bytes.
  struct Row {
    const char* name;
    uint32_t type, values, bytes;
  };
  const Row rows[] = {{"q4_1", 3, 32, 20},     {"q5_0", 6, 32, 22},    {"q5_1", 7, 32, 24},
                      {"q2_k", 10, 256, 84},   {"q3_k", 11, 256, 110}, {"q5_k", 13, 256, 176},
                      {"iq4_nl", 20, 32, 18},  {"f16", 1, 32, 64},     {"bf16", 30, 32, 64},
                      {"iq2_xxs", 16, 256, 66}};
  gguf.clear();
  put(0x46554747, 4), put(3, 4), put(sizeof rows / sizeof rows[0], 8), put(0, 8);
  uint64_t offset = 0;
  for (const Row& r : rows) {
    str(r.name), put(1, 4), put(r.values, 8), put(r.type, 4), put(offset, 8);
    offset += (r.bytes + 31) / 32 * 32;
  }
  while (gguf.size() % 32) gguf.push_back('\0');
  for (const Row& r : rows) {
    for (uint32_t i = 0; i < (r.bytes + 31) / 32 * 32; ++i)
      gguf.push_back(static_cast<char>((i * 37 + r.type) & 0xff));
  }
  std::ofstream(std::string(argv[1]) + "/gguf-types.bin", std::ios::binary)
      << std::string(1, '\2') + gguf;
  int n = 0;
  for (const auto& c : configs) {
    std::ofstream(std::string(argv[1]) + "/config-" + std::to_string(n++) + ".bin",
                  std::ios::binary)
        << std::string(1, '\1') + c;  // selector 1: config.json
  }
  return 0;
}
