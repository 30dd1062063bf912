// Finds added/special tokens written in a text, before the rest of the text
// is normalised and split (Hugging Face's AddedVocabulary, llama.cpp's
// tokenizer_st_partition).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace splitlm::partition {

class AddedTokenMatcher {
 public:
  // A piece of text: either a token found verbatim (id >= 0) or text between
  // tokens (id == -1).
  struct Piece {
    std::string_view text;
    int32_t id = -1;
  };

  AddedTokenMatcher() = default;
  // `tokens` holds (content, id); empty contents are ignored.
  explicit AddedTokenMatcher(const std::vector<std::pair<std::string, int32_t>>& tokens);

  bool empty() const { return tokens_.empty(); }
  // Splits `text` leftmost-first; at one position the longest token wins.
  // The pieces view `text`.
  std::vector<Piece> Split(std::string_view text) const;

 private:
  std::vector<std::pair<std::string, int32_t>> tokens_;  // by first byte, longest first
  uint32_t first_[257] = {};  // tokens_ starting with byte b are [first_[b], first_[b+1])
};

}  // namespace splitlm::partition
