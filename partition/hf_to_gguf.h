// Hugging Face model directory -> GGUF file, as llama.cpp's
// convert_hf_to_gguf.py lays out `llama` and `qwen2` models: the metadata
// keys its loader reads, GGUF tensor names, dimensions innermost first, and
// the Q and K rows of `llama` models reordered for its RoPE (pairs (j,
// j + half) of each head side by side), so llama.cpp and splitlm load the
// file alike. With QuantizeGguf (gguf_quantize.h) this is
// `splitlm quantize --model DIR`.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace splitlm::partition {

class Model;

// The metadata key holding the identity (Model::identity()) of the model a
// GGUF file was converted from, as 16 hexadecimal digits: a file converted
// from a directory, and any file quantised from it, keeps the directory's
// identity, so the two sides of a split recognise the same model in another
// format.
inline constexpr char kSourceIdentityKey[] = "splitlm.source_identity";

// Formats the identity for kSourceIdentityKey, and parses it back (nullopt
// unless exactly 16 hexadecimal digits).
std::string IdentityToHex(uint64_t identity);
std::optional<uint64_t> IdentityFromHex(const std::string& text);

struct ConvertOptions {
  // Called after each tensor with the tensors written and their total.
  std::function<void(int done, int total)> progress;
};

// Writes the weights of `model` (a directory; F32, F16 and BF16 tensors) as
// an F32 GGUF v3 file at `out` (replaced only when complete), with the
// directory's tokenizer as llama.cpp's tokenizer.ggml.* keys (gguf_vocab.h:
// ReadGgufVocab); a directory without a tokenizer gets "tokenizer.ggml.model"
// = "none" and the config's BOS and EOS ids (pass a tokenizer with
// --tokenizer). Returns notes for the user (why a tokenizer was not written).
// Throws Exception naming the directory and the problem (kInvalidArgument
// for a GGUF model, kCorrupt for a malformed tokenizer file, kUnavailable
// when `out` cannot be written). Llama
// 3 rope scaling becomes llama.cpp's `rope_freqs.weight` (a divisor per
// rotary frequency, computed in float32 as convert_hf_to_gguf.py does), which
// splitlm and llama.cpp apply by dividing each frequency: close to, not
// bitwise, the directory's llama3 frequencies.
std::vector<std::string> ConvertToGguf(const Model& model, const std::string& out,
                                       const ConvertOptions& options = {});

}  // namespace splitlm::partition
