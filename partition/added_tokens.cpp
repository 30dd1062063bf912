#include "partition/added_tokens.h"

#include <algorithm>
#include <cstring>

namespace splitlm::partition {

AddedTokenMatcher::AddedTokenMatcher(const std::vector<std::pair<std::string, int32_t>>& tokens) {
  for (const auto& t : tokens) {
    if (!t.first.empty()) tokens_.push_back(t);
  }
  std::sort(tokens_.begin(), tokens_.end(), [](const auto& a, const auto& b) {
    const auto fa = static_cast<uint8_t>(a.first[0]), fb = static_cast<uint8_t>(b.first[0]);
    if (fa != fb) return fa < fb;
    if (a.first.size() != b.first.size()) return a.first.size() > b.first.size();
    return a.second < b.second;
  });
  size_t k = 0;
  for (int b = 0; b <= 256; ++b) {
    while (k < tokens_.size() && static_cast<uint8_t>(tokens_[k].first[0]) < b) ++k;
    first_[b] = static_cast<uint32_t>(k);
  }
}

std::vector<AddedTokenMatcher::Piece> AddedTokenMatcher::Split(std::string_view text) const {
  std::vector<Piece> out;
  size_t start = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    const auto b = static_cast<uint8_t>(text[i]);
    for (uint32_t k = first_[b]; k < first_[b + 1]; ++k) {
      const std::string& t = tokens_[k].first;
      if (t.size() > text.size() - i || std::memcmp(t.data(), text.data() + i, t.size()) != 0) continue;
      if (i > start) out.push_back({text.substr(start, i - start), -1});
      out.push_back({text.substr(i, t.size()), tokens_[k].second});
      start = i + t.size();
      i = start - 1;
      break;
    }
  }
  if (start < text.size()) out.push_back({text.substr(start), -1});
  return out;
}

}  // namespace splitlm::partition
