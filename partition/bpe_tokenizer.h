// Byte-level BPE (GPT-2 style: Llama 3, Qwen2/2.5/3, SmolLM), built from a
// tokenizer.json or a GGUF vocabulary with tokenizer.ggml.model = gpt2.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <utility>
#include <vector>

#include "partition/added_tokens.h"
#include "partition/tokenizer.h"

namespace splitlm::partition {

// Everything the byte-level BPE needs, read from a file by its loader.
struct BpeSpec {
  enum class Normalizer { kNfc, kNfd, kNfkc, kNfkd };
  // One pre-tokenizer step, applied to every piece the previous steps made.
  struct PreStep {
    enum class Kind { kSplit, kByteLevel } kind = Kind::kSplit;
    std::string regex;              // kSplit: PCRE2 pattern (UTF, UCP)
    bool keep_matches = true;       // kSplit: Isolated (false: Removed)
    bool invert = false;            // kSplit: the matches are the text kept
    bool add_prefix_space = false;  // kByteLevel
    bool use_regex = false;         // kByteLevel: split with the GPT-2 regex
  };

  std::string source;  // the file, for error messages
  // Byte-level token strings ("Ġthe"); the index is the id. Ids without a
  // token (used only by added tokens, or holes) are empty.
  std::vector<std::string> vocab;
  // Merges in rank order, as the two byte-level token strings.
  std::vector<std::pair<std::string, std::string>> merges;
  bool ignore_merges = false;  // a whole pre-token in the vocab is one token
  std::vector<Normalizer> normalizers;
  std::vector<PreStep> pre_tokenizer;
  // Added/special tokens matched verbatim in the text first: (content, id).
  std::vector<std::pair<std::string, int32_t>> added;
  std::vector<AddedTokenOptions> added_options;  // parallel to `added`, or empty
  SpecialTokens special;
  std::string description;
};

// The GPT-2 pre-tokenizer regex (ByteLevel use_regex).
extern const char kGpt2Regex[];

// Throws Exception(kCorrupt) naming spec.source for an inconsistent vocabulary (a
// merge of tokens not in it, a byte without a token) or a regex PCRE2 refuses.
std::unique_ptr<Tokenizer> MakeBpeTokenizer(BpeSpec spec);

}  // namespace splitlm::partition
