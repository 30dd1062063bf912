// One interface for every tokenizer splitlm reads: Hugging Face tokenizer.json
// (byte-level BPE), SentencePiece tokenizer.model, and the vocabulary a GGUF
// file carries (tokenizer.ggml.*). Tokenizer::Open picks the kind from what
// the path holds.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace splitlm::partition {

// The special tokens of a vocabulary and how a prompt starts.
struct SpecialTokens {
  std::optional<int32_t> bos_id;
  bool add_bos = false;          // whether a prompt starts with bos_id
  std::vector<int32_t> eos_ids;  // every id that ends a generation, no duplicates
  std::string bos_token;         // their text, for chat templates ("" if none)
  std::string eos_token;
};

// How tokenizers are opened: set by main (and tests), not by the
// environment or a global.
struct TokenizerOptions {
  // The SentencePiece shim to load (libsplitlm_spm.so, spm_tokenizer.h);
  // "" = DefaultSpmShimPath().
  std::string spm_shim;
};

// Thread-safe for concurrent Encode/Decode once opened.
class Tokenizer {
 public:
  // `path` is a model directory, a tokenizer.json, a tokenizer.model or a
  // .gguf file. In a directory, tokenizer.model wins over tokenizer.json (the
  // SentencePiece file is what Llama 2 / Mistral's tokenizer.json was converted
  // from, and libsentencepiece is its reference); then tokenizer.json. Next to
  // a tokenizer.json, tokenizer_config.json and generation_config.json give the
  // BOS/EOS rules. Throws Exception naming the file and the problem:
  // kNotFound (not found, unreadable), kCorrupt (malformed, or a feature
  // splitlm does not implement).
  static std::unique_ptr<Tokenizer> Open(const std::string& path,
                                         const TokenizerOptions& options = {});
  virtual ~Tokenizer() = default;
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // Token ids of `text`, without BOS: special and added tokens written in the
  // text are recognised (Hugging Face encode(text, add_special_tokens=False)).
  // Throws Exception(kInvalidArgument) if `text` is not valid UTF-8 (byte-level BPE).
  virtual std::vector<int32_t> Encode(const std::string& text) const = 0;
  // The text of `ids`, special tokens included. Invalid UTF-8 (a character cut
  // between ids) becomes U+FFFD, as Hugging Face does. No clean-up of spaces
  // before punctuation. Throws Exception(kInvalidArgument) for an id outside the vocabulary.
  virtual std::string Decode(const std::vector<int32_t>& ids) const = 0;
  // The raw bytes token `id` adds to a decoded text (may be part of a UTF-8
  // character; a SentencePiece "▁" is a space, so the first token of a text
  // may carry the space that Decode drops). Throws for an id out of range.
  virtual std::string TokenBytes(int32_t id) const = 0;
  // One past the largest id (added tokens included).
  virtual int vocab_size() const = 0;

  std::optional<int32_t> bos_id() const { return special_.bos_id; }
  bool add_bos() const { return special_.add_bos; }
  const std::vector<int32_t>& eos_ids() const { return special_.eos_ids; }
  bool IsEos(int32_t id) const;
  const std::string& bos_token() const { return special_.bos_token; }
  const std::string& eos_token() const { return special_.eos_token; }
  // "tokenizer.json (byte-level BPE)", ... for logs.
  const std::string& description() const { return description_; }

 protected:
  Tokenizer() = default;
  SpecialTokens special_;
  std::string description_;
};

// Parses token ids written as "1 2 3" or "1,2,3". Throws Exception(kInvalidArgument)
// naming the first item that is not a non-negative integer.
std::vector<int32_t> ParseTokenIds(const std::string& text);

// The end-of-sequence ids in `dir`/generation_config.json (eos_token_id, an
// integer or a list); empty if the file or key is absent. Throws
// Exception(kCorrupt) naming the file if it is malformed.
std::vector<int32_t> GenerationConfigEosIds(const std::string& dir);

}  // namespace splitlm::partition
