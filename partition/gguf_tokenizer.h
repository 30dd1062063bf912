// The tokenizer a GGUF file carries in its tokenizer.ggml.* keys.
#pragma once

#include <memory>
#include <string>

#include "partition/gguf.h"
#include "partition/tokenizer.h"

namespace splitlm::partition {

// llama.cpp's pre-tokenizer regexes for tokenizer.ggml.pre "llama-bpe" and
// "qwen2" (src/llama-vocab.cpp), the same text as in the models'
// tokenizer.json.
extern const char kLlama3Regex[];
extern const char kQwen2Regex[];

// tokenizer.ggml.model "llama" (SentencePiece-style pieces and scores) or
// "gpt2" (byte-level BPE) with tokenizer.ggml.pre "llama-bpe", "llama3",
// "qwen2", "gpt-2" or "default" (the pre-tokenizer regexes llama.cpp uses for
// those names; as llama.cpp, no Unicode normalisation). Any other model or
// pre name, or missing keys, is a Exception(kCorrupt) naming the file and key.
std::unique_ptr<Tokenizer> OpenGgufTokenizer(const GgufFile& gguf);

}  // namespace splitlm::partition
