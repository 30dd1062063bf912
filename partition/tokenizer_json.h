// Loading a Hugging Face tokenizer.json (with tokenizer_config.json and
// generation_config.json from the same directory, when present).
#pragma once

#include <memory>
#include <string>

#include "partition/tokenizer.h"

namespace splitlm::partition {

// Supported: model BPE with a ByteLevel decoder (Llama 3, Qwen2/2.5/3,
// SmolLM, GPT-2); normalizer none, NFC, NFD, NFKC, NFKD or a Sequence of them;
// pre-tokenizer Split (Regex or String; Isolated or Removed; invert),
// ByteLevel, or a Sequence of them; added tokens without lstrip, rstrip or
// single_word. Anything else (e.g. the SentencePiece-style Metaspace /
// byte_fallback BPE of Llama 2 and Mistral: use their tokenizer.model) is a
// Exception(kCorrupt) naming `path` and the feature.
std::unique_ptr<Tokenizer> OpenTokenizerJson(const std::string& path);

}  // namespace splitlm::partition
