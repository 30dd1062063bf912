// A model directory's tokenizer as the tokenizer.ggml.* keys of a GGUF file,
// as llama.cpp's convert_hf_to_gguf.py writes them, so that a converted or
// quantised file tokenizes text as the directory does.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "partition/gguf.h"

namespace splitlm::partition {

struct GgufVocab {
  // The keys in llama.cpp's order; empty when the directory has no tokenizer
  // the GGUF reader could reproduce (then `note` says why).
  std::vector<std::pair<std::string, GgufValue>> keys;
  std::string note;
};

// The vocabulary of `dir` for a model of `vocab_size` token rows (ids the
// tokenizer lacks become "[PADi]", unused; a tokenizer with more ids than
// rows is not written). As Tokenizer::Open, tokenizer.model wins over
// tokenizer.json:
// - tokenizer.model (SentencePiece BPE): model "llama", pre "default",
//   tokens, scores and token_type from the pieces (user-defined pieces keep
//   their type, so they stay whole), the unknown/BOS/EOS/padding ids of its
//   trainer spec, add_space_prefix false only when the model adds no dummy
//   prefix.
// - tokenizer.json (byte-level BPE): model "gpt2", pre "llama-bpe", "qwen2"
//   or "gpt-2" recognised from its pre-tokenizer regex, tokens, token_type
//   (added tokens: control when special or shaped like "<|...|>", else
//   user-defined), merges; BOS/EOS/unknown/padding ids from the texts in
//   tokenizer_config.json.
// Both: add_bos_token and add_eos_token from tokenizer_config.json when it
// says, else BOS is added when there is one and EOS is not.
// No tokenizer file: no keys and an empty note. Throws Exception naming
// the file for a malformed tokenizer file (kCorrupt) or an unreadable one
// (kNotFound).
GgufVocab ReadGgufVocab(const std::string& dir, int vocab_size);

}  // namespace splitlm::partition
