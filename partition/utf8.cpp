#include "partition/utf8.h"

#include <cstdint>

namespace splitlm::partition {
namespace {

// How many bytes of a (possibly incomplete) sequence at s[i] are a valid
// prefix, and the length the full sequence needs (0 if s[i] cannot start one).
struct Prefix {
  size_t valid = 0;
  size_t needed = 0;
};

Prefix ValidPrefix(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<uint8_t>(s[i + k]); };
  const uint8_t c = b(0);
  if (c < 0x80) return {1, 1};
  size_t need = 0;
  uint8_t lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return {0, 0};
  }
  size_t k = 1;
  for (; k < need && i + k < s.size(); ++k) {
    const uint8_t x = b(k);
    if (k == 1 ? (x < lo || x > hi) : (x < 0x80 || x > 0xBF)) break;
  }
  return {k, need};
}

}  // namespace

size_t Utf8SequenceLength(std::string_view s, size_t i) {
  if (i >= s.size()) return 0;
  const Prefix p = ValidPrefix(s, i);
  return p.needed != 0 && p.valid == p.needed ? p.needed : 0;
}

size_t FindInvalidUtf8(std::string_view s) {
  for (size_t i = 0; i < s.size();) {
    if (static_cast<uint8_t>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t n = Utf8SequenceLength(s, i);
    if (n == 0) return i;
    i += n;
  }
  return std::string_view::npos;
}

std::string ToValidUtf8(std::string_view s) {
  if (FindInvalidUtf8(s) == std::string_view::npos) return std::string(s);
  std::string out;
  out.reserve(s.size() + 8);
  for (size_t i = 0; i < s.size();) {
    const Prefix p = ValidPrefix(s, i);
    if (p.needed != 0 && p.valid == p.needed) {
      out.append(s.substr(i, p.needed));
      i += p.needed;
    } else {
      out += "\xEF\xBF\xBD";
      i += p.valid == 0 ? 1 : p.valid;
    }
  }
  return out;
}

}  // namespace splitlm::partition
