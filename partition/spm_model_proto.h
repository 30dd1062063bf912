// The vocabulary of a SentencePiece tokenizer.model, read from its protobuf
// (sentencepiece_model.proto: ModelProto) without libsentencepiece, for
// writing it into a GGUF file as llama.cpp's converter does.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace splitlm::partition {

// What the converter reads of a tokenizer.model. Piece types are
// SentencePiece's (and GGUF's token_type) numbers: 1 normal, 2 unknown,
// 3 control, 4 user-defined, 5 unused, 6 byte.
struct SpmModelProto {
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<int32_t> types;
  int model_type = 1;  // TrainerSpec.model_type: 1 unigram, 2 BPE, 3 word, 4 char
  std::optional<int32_t> unk_id, bos_id, eos_id, pad_id;  // absent when negative
  bool add_dummy_prefix = true;                           // NormalizerSpec.add_dummy_prefix
};

// Parses `path`. Throws Exception naming the file and the problem
// (kNotFound: unreadable; kCorrupt: truncated or malformed protobuf, no pieces, a type out of
// range). For any input it either returns or throws.
SpmModelProto ReadSpmModelProto(const std::string& path);

// The same from the bytes of such a file (`path` names them in errors).
SpmModelProto ParseSpmModelProto(const std::string& bytes, const std::string& path);

}  // namespace splitlm::partition
