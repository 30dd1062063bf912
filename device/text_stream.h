// Generated token ids to text deltas for streaming: a delta never ends inside
// a UTF-8 character (a character split across byte tokens is held until it is
// complete), and text that could be the start of a stop string is held until
// it is decided.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace splitlm::device {

// The length of the longest prefix of `s` that does not end inside a UTF-8
// character still being completed (a lead byte followed by fewer
// continuation bytes than it announces, all at the end of `s`).
size_t Utf8CompleteLength(std::string_view s);

// `s` with every byte that is not part of a well-formed UTF-8 character
// replaced by U+FFFD (JSON strings must be valid UTF-8).
std::string Utf8Lossy(std::string_view s);

// Decodes the whole id sequence on every step (robust for tokenizers whose
// pieces depend on their neighbours, such as SentencePiece's leading space),
// and sends only the new bytes. Not thread-safe.
class TextStream {
 public:
  using Decoder = std::function<std::string(const std::vector<int32_t>&)>;
  // `stops`: non-empty strings; the text ends before the first occurrence of
  // any of them.
  TextStream(Decoder decode, std::vector<std::string> stops);

  // Adds one generated id (not an end-of-sequence id) and returns the text
  // that may be sent now (valid UTF-8, maybe empty). Once a stop string has
  // appeared, stopped() is true and nothing more is returned.
  std::string Push(int32_t id);
  // The end of the generation: returns what was held back (a prefix of a
  // stop string that never completed; an unfinished character as U+FFFD).
  std::string Finish();

  bool stopped() const { return stopped_; }
  // Everything returned so far.
  const std::string& text() const { return text_; }

 private:
  std::string Emit(size_t end);

  Decoder decode_;
  std::vector<std::string> stops_;
  std::vector<int32_t> ids_;
  std::string full_;  // the decoded text of ids_
  size_t sent_ = 0;   // bytes of full_ already returned
  std::string text_;
  bool stopped_ = false;
};

}  // namespace splitlm::device
