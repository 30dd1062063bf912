// Reading small files whole (configs, keys, allow-lists, traces, prompt
// sets), safely against paths that are not what they claim to be.
#pragma once

#include <cstddef>
#include <optional>
#include <string>

namespace splitlm::transport {

// Size limits for the kinds of text file splitlm reads. A file larger than
// its limit is refused rather than read: a wrong path (`/dev/zero`, a log,
// a weights file) must not grow memory without bound.
inline constexpr size_t kMaxConfigBytes = size_t{4} << 20;   // TOML, config.json
inline constexpr size_t kMaxListBytes = size_t{64} << 20;    // index json, traces, prompts
inline constexpr size_t kMaxKeyFileBytes = size_t{1} << 20;  // CURVE keys, allow-lists

// Reads `path` whole. Returns nullopt and sets `*error` (a phrase without the
// path, e.g. "not a regular file (a FIFO)") if the file is missing or
// unreadable, is not a regular file (a FIFO, a device, a socket or a
// directory: these could block or never end), or holds more than `max_bytes`.
// Opening never blocks, even on a FIFO with no writer. Never throws except
// std::bad_alloc.
std::optional<std::string> ReadTextFile(const std::string& path, size_t max_bytes,
                                        std::string* error);

// ReadTextFile that throws Exception "PATH: problem" instead: kNotFound when
// the file cannot be opened (missing, no permission), kInvalidArgument when
// it is not a regular file or is too large, kUnavailable when reading fails.
std::string ReadTextFileOrThrow(const std::string& path, size_t max_bytes);

// What is wrong with `path` as a regular file to read, in the phrases of
// ReadTextFile, or nullopt if nothing is; reads nothing. For files handed to
// other libraries (a SentencePiece model) or mapped (weights).
std::optional<std::string> ProblemWithFile(const std::string& path);

}  // namespace splitlm::transport
