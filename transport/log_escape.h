// Making text a peer sent safe to write into a log line.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace splitlm::transport {

// `text` with every byte outside printable ASCII (0x20..0x7e) and every
// backslash escaped (\n, \r, \t, \\, else \xNN), so that a peer cannot end a
// log line, forge the next one or send terminal escape sequences; cut to
// `max_bytes` of input with "...(N bytes)" appended. Use it on every string
// a peer chose before it reaches a log line (or an exception message that
// will be logged).
std::string EscapeForLog(std::string_view text, size_t max_bytes = 256);

// A printable name for a binary ROUTER routing id (lower-case hex; ids are
// usually 5 bytes), as logs name peers.
std::string PeerName(std::string_view routing_id);

}  // namespace splitlm::transport
