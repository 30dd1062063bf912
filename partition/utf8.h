// Small UTF-8 helpers shared by the tokenizers.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace splitlm::partition {

// Length of the well-formed UTF-8 sequence starting at s[i] (1..4), or 0 if
// the bytes there are not one (overlong, surrogate, truncated, > U+10FFFF).
size_t Utf8SequenceLength(std::string_view s, size_t i);

// Offset of the first byte that does not start a well-formed sequence, or
// npos if `s` is entirely valid UTF-8.
size_t FindInvalidUtf8(std::string_view s);

// `s` with every maximal ill-formed subsequence replaced by U+FFFD (the
// WHATWG/Unicode "maximal subpart" rule that Rust's from_utf8_lossy and
// JavaScript's TextDecoder follow).
std::string ToValidUtf8(std::string_view s);

}  // namespace splitlm::partition
