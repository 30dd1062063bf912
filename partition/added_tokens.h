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

// Hugging Face AddedToken flags (tokenizer.json "added_tokens"): lstrip eats
// the whitespace before the token, rstrip the whitespace after it (both
// Unicode White_Space, as Rust's `\s`); a single_word token matches only
// where neither neighbouring character is a word character (`\w`).
struct AddedTokenOptions {
  bool lstrip = false;
  bool rstrip = false;
  bool single_word = false;
};

class AddedTokenMatcher {
 public:
  // A piece of text: either a token found verbatim (id >= 0) or text between
  // tokens (id == -1).
  struct Piece {
    std::string_view text;
    int32_t id = -1;
  };

  AddedTokenMatcher() = default;
  // `tokens` holds (content, id); empty contents are ignored. `options` is
  // parallel to `tokens`, or empty for none.
  explicit AddedTokenMatcher(const std::vector<std::pair<std::string, int32_t>>& tokens,
                             const std::vector<AddedTokenOptions>& options = {});

  bool empty() const { return tokens_.empty(); }
  // Splits `text` leftmost-first; at one position the longest token wins
  // (Hugging Face's leftmost-longest matching). A single_word match next to a
  // word character stays text; whitespace a token strips is in no piece.
  // The pieces view `text`.
  std::vector<Piece> Split(std::string_view text) const;

 private:
  struct Entry {
    std::string content;
    int32_t id;
    AddedTokenOptions options;
  };
  std::vector<Entry> tokens_;  // by first byte, longest first
  uint32_t first_[257] = {};   // tokens_ starting with byte b are [first_[b], first_[b+1])
};

}  // namespace splitlm::partition
