#include "transport/log_escape.h"

namespace splitlm::transport {

std::string EscapeForLog(std::string_view text, size_t max_bytes) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  const std::string_view kept = text.substr(0, max_bytes);
  out.reserve(kept.size() + 16);
  for (unsigned char c : kept) {
    switch (c) {
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\\': out += "\\\\"; break;
      default:
        if (c >= 0x20 && c < 0x7f) {
          out.push_back(static_cast<char>(c));
        } else {
          out += "\\x";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 15]);
        }
    }
  }
  if (text.size() > max_bytes) out += "...(" + std::to_string(text.size()) + " bytes)";
  return out;
}

std::string PeerName(std::string_view routing_id) {
  static const char* kHex = "0123456789abcdef";
  std::string s;
  s.reserve(routing_id.size() * 2);
  for (unsigned char c : routing_id) {
    s.push_back(kHex[c >> 4]);
    s.push_back(kHex[c & 15]);
  }
  return s;
}

}  // namespace splitlm::transport
