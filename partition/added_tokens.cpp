#include "partition/added_tokens.h"

#include <utf8proc.h>

#include <algorithm>
#include <cstring>

#include "partition/utf8.h"

namespace splitlm::partition {
namespace {

// The code point starting at s[i] and its length; {-1, 1} for a byte that
// starts no well-formed sequence.
std::pair<int32_t, size_t> DecodeAt(std::string_view s, size_t i) {
  const size_t n = Utf8SequenceLength(s, i);
  if (n == 0) return {-1, 1};
  utf8proc_int32_t cp = -1;
  utf8proc_iterate(reinterpret_cast<const utf8proc_uint8_t*>(s.data() + i),
                   static_cast<utf8proc_ssize_t>(n), &cp);
  return {cp, n};
}

// The code point that ends just before s[end] and its length; {-1, 1} when
// the bytes there end no well-formed sequence.
std::pair<int32_t, size_t> DecodeBefore(std::string_view s, size_t end) {
  for (size_t back = 1; back <= 4 && back <= end; ++back) {
    const size_t i = end - back;
    if ((static_cast<uint8_t>(s[i]) & 0xC0) == 0x80) continue;  // a continuation byte
    const auto [cp, n] = DecodeAt(s, i);
    return n == back ? std::pair<int32_t, size_t>{cp, n} : std::pair<int32_t, size_t>{-1, 1};
  }
  return {-1, 1};
}

// Unicode White_Space, the set Rust's char::is_whitespace and regex `\s` use.
bool IsWhiteSpace(int32_t c) {
  return (c >= 0x09 && c <= 0x0D) || c == 0x20 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
         (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F ||
         c == 0x3000;
}

// Rust regex `\w`: letters, marks, decimal digits, connector punctuation and
// the joiners.
bool IsWordChar(int32_t c) {
  if (c < 0) return false;
  if (c == 0x200C || c == 0x200D) return true;
  switch (utf8proc_category(c)) {
    case UTF8PROC_CATEGORY_LU:
    case UTF8PROC_CATEGORY_LL:
    case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_LO:
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_MC:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_ND:
    case UTF8PROC_CATEGORY_PC: return true;
    default: return false;
  }
}

// Start of the run of whitespace that ends at `end`, not before `floor`.
size_t WhitespaceRunStart(std::string_view s, size_t end, size_t floor) {
  while (end > floor) {
    const auto [c, n] = DecodeBefore(s, end);
    if (!IsWhiteSpace(c) || end - n < floor) break;
    end -= n;
  }
  return end;
}

// End of the run of whitespace that starts at `begin`.
size_t WhitespaceRunEnd(std::string_view s, size_t begin) {
  while (begin < s.size()) {
    const auto [c, n] = DecodeAt(s, begin);
    if (!IsWhiteSpace(c)) break;
    begin += n;
  }
  return begin;
}

}  // namespace

AddedTokenMatcher::AddedTokenMatcher(const std::vector<std::pair<std::string, int32_t>>& tokens,
                                     const std::vector<AddedTokenOptions>& options) {
  for (size_t i = 0; i < tokens.size(); ++i) {
    if (tokens[i].first.empty()) continue;
    tokens_.push_back(
        {tokens[i].first, tokens[i].second, i < options.size() ? options[i] : AddedTokenOptions{}});
  }
  std::sort(tokens_.begin(), tokens_.end(), [](const Entry& a, const Entry& b) {
    const auto fa = static_cast<uint8_t>(a.content[0]), fb = static_cast<uint8_t>(b.content[0]);
    if (fa != fb) return fa < fb;
    if (a.content.size() != b.content.size()) return a.content.size() > b.content.size();
    return a.id < b.id;
  });
  size_t k = 0;
  for (int b = 0; b <= 256; ++b) {
    while (k < tokens_.size() && static_cast<uint8_t>(tokens_[k].content[0]) < b) ++k;
    first_[b] = static_cast<uint32_t>(k);
  }
}

std::vector<AddedTokenMatcher::Piece> AddedTokenMatcher::Split(std::string_view text) const {
  std::vector<Piece> out;
  size_t start = 0;  // where the text not yet in a piece begins
  size_t i = 0;
  while (i < text.size()) {
    const Entry* match = nullptr;
    const auto b = static_cast<uint8_t>(text[i]);
    for (uint32_t k = first_[b]; k < first_[b + 1]; ++k) {
      const std::string& t = tokens_[k].content;
      if (t.size() <= text.size() - i && std::memcmp(t.data(), text.data() + i, t.size()) == 0) {
        match = &tokens_[k];
        break;
      }
    }
    if (match == nullptr) {
      ++i;
      continue;
    }
    size_t end = i + match->content.size();
    if (match->options.single_word &&
        ((i > 0 && IsWordChar(DecodeBefore(text, i).first)) ||
         (end < text.size() && IsWordChar(DecodeAt(text, end).first)))) {
      i = end;  // matched, but not as a token: its bytes stay text
      continue;
    }
    const size_t text_end = match->options.lstrip ? WhitespaceRunStart(text, i, start) : i;
    if (text_end > start) out.push_back({text.substr(start, text_end - start), -1});
    out.push_back({text.substr(i, match->content.size()), match->id});
    if (match->options.rstrip) end = WhitespaceRunEnd(text, end);
    start = i = end;
  }
  if (start < text.size()) out.push_back({text.substr(start), -1});
  return out;
}

}  // namespace splitlm::partition
