// SentencePiece-style tokenization from a plain vocabulary (pieces, scores,
// types), as llama.cpp does it for GGUF files with tokenizer.ggml.model =
// llama: libsentencepiece needs the .model protobuf, which a GGUF lacks.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "partition/tokenizer.h"

namespace splitlm::partition {

struct SpmVocabSpec {
  // GGUF tokenizer.ggml.token_type values.
  enum TokenType : int32_t {
    kNormal = 1,
    kUnknown = 2,
    kControl = 3,
    kUserDefined = 4,
    kUnused = 5,
    kByte = 6
  };
  std::string source;
  std::vector<std::string> pieces;  // "▁the", "<0x0A>", "<s>"; the index is the id
  std::vector<float> scores;
  std::vector<int32_t> types;
  bool add_space_prefix = true;  // a text (and a text after a special token) starts with "▁"
  SpecialTokens special;
  std::string description;
};

// llama.cpp's algorithm: characters merged pairwise by the best-scoring
// piece they form (ties: leftmost), unknown pieces split back into the
// pieces that formed them, bytes without a piece as <0xXX>. Control,
// user-defined and unknown pieces written in the text are recognised.
// Throws Exception(kCorrupt) naming spec.source if the sizes disagree.
std::unique_ptr<Tokenizer> MakeSpmVocabTokenizer(SpmVocabSpec spec);

}  // namespace splitlm::partition
