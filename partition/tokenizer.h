// SentencePiece tokenizer (Llama 2 style tokenizer.model).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace splitlm::partition {

// libsentencepiece embeds its own protobuf, which clashes with LibTorch's
// libprotobuf in one process and crashes at load. So it lives in a small shim
// (libsplitlm_spm.so, built next to the binaries) opened with
// dlopen(RTLD_LOCAL | RTLD_DEEPBIND), keeping its symbols to itself.
// SPLITLM_SPM_SHIM overrides where the shim is looked for.
class Tokenizer {
 public:
  // Throws PartitionError if the shim or `model_path` cannot be loaded.
  static std::unique_ptr<Tokenizer> Open(const std::string& model_path);
  ~Tokenizer();
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids of `text`, without BOS.
  std::vector<int32_t> Encode(const std::string& text) const;
  std::string Decode(const std::vector<int32_t>& ids) const;
  int vocab_size() const;

 private:
  Tokenizer() = default;
  struct Shim;
  std::unique_ptr<Shim> shim_;
  void* handle_ = nullptr;
};

// Parses token ids written as "1 2 3" or "1,2,3". Throws PartitionError
// naming the first item that is not a non-negative integer.
std::vector<int32_t> ParseTokenIds(const std::string& text);

}  // namespace splitlm::partition
