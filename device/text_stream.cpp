#include "device/text_stream.h"

#include <algorithm>

namespace splitlm::device {
namespace {

// The byte length a lead byte announces, or 0 for a byte that cannot start a
// character (a continuation byte, 0xC0/0xC1, 0xF5..0xFF).
size_t LeadLength(unsigned char c) {
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return 2;
  if (c >= 0xE0 && c <= 0xEF) return 3;
  if (c >= 0xF0 && c <= 0xF4) return 4;
  return 0;
}

bool IsContinuation(unsigned char c) { return (c & 0xC0) == 0x80; }

// Whether `b`, the second byte of a sequence led by `lead`, is allowed
// (no overlong forms, no surrogates, nothing above U+10FFFF).
bool SecondByteOk(unsigned char lead, unsigned char b) {
  if (lead == 0xE0) return b >= 0xA0 && b <= 0xBF;
  if (lead == 0xED) return b >= 0x80 && b <= 0x9F;
  if (lead == 0xF0) return b >= 0x90 && b <= 0xBF;
  if (lead == 0xF4) return b >= 0x80 && b <= 0x8F;
  return IsContinuation(b);
}

// The length of the well-formed character at s[i], or 0.
size_t CharAt(std::string_view s, size_t i) {
  const auto lead = static_cast<unsigned char>(s[i]);
  const size_t n = LeadLength(lead);
  if (n <= 1 || i + n > s.size()) return n == 1 ? 1 : 0;
  if (!SecondByteOk(lead, static_cast<unsigned char>(s[i + 1]))) return 0;
  for (size_t k = 2; k < n; ++k) {
    if (!IsContinuation(static_cast<unsigned char>(s[i + k]))) return 0;
  }
  return n;
}

}  // namespace

size_t Utf8CompleteLength(std::string_view s) {
  // An unfinished character starts at most 3 bytes from the end.
  for (size_t back = 1; back <= std::min<size_t>(3, s.size()); ++back) {
    const size_t i = s.size() - back;
    const auto c = static_cast<unsigned char>(s[i]);
    if (IsContinuation(c)) continue;
    const size_t n = LeadLength(c);
    if (n <= back) return s.size();  // complete (or a stray byte that waiting will not fix)
    if (back >= 2 && !SecondByteOk(c, static_cast<unsigned char>(s[i + 1]))) return s.size();
    return i;
  }
  return s.size();
}

std::string Utf8Lossy(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const size_t n = CharAt(s, i);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
    } else {
      out.append(s.substr(i, n));
      i += n;
    }
  }
  return out;
}

TextStream::TextStream(Decoder decode, std::vector<std::string> stops)
    : decode_(std::move(decode)), stops_(std::move(stops)) {}

std::string TextStream::Emit(size_t end) {
  if (end <= sent_) return "";
  std::string out = Utf8Lossy(std::string_view(full_).substr(sent_, end - sent_));
  sent_ = end;
  text_ += out;
  return out;
}

std::string TextStream::Push(int32_t id) {
  if (stopped_) return "";
  ids_.push_back(id);
  full_ = decode_(ids_);
  // A decoder that rewrites text already sent (none should) cannot take it
  // back: the stream goes on from the bytes sent.
  if (full_.size() < sent_) return "";
  const size_t complete = Utf8CompleteLength(full_);
  if (complete <= sent_) return "";
  const std::string_view done(full_.data(), complete);
  // A stop string can only start where nothing was sent yet (a possible
  // start was held back).
  size_t stop_at = std::string_view::npos;
  size_t held = complete;
  for (const auto& stop : stops_) {
    const size_t from = sent_;
    const size_t p = done.find(stop, from);
    stop_at = std::min(stop_at, p);
    // The earliest suffix of `done` (after what was sent) that begins `stop`.
    for (size_t k = std::max(from, complete > stop.size() ? complete - stop.size() + 1 : 0);
         k < complete; ++k) {
      if (stop.compare(0, complete - k, done.substr(k)) == 0) {
        held = std::min(held, k);
        break;
      }
    }
  }
  if (stop_at != std::string_view::npos) {
    stopped_ = true;
    return Emit(stop_at);
  }
  return Emit(held);
}

std::string TextStream::Finish() {
  if (stopped_) return "";
  return Emit(full_.size());
}

}  // namespace splitlm::device
