#include "device/drafter.h"

#include <algorithm>

namespace splitlm::device {

std::vector<int32_t> PromptLookupDrafter::Propose(const std::vector<int32_t>& ids, int k) const {
  const int n = static_cast<int>(ids.size());
  for (int len = std::min(max_ngram_, n - 1); len >= min_ngram_; --len) {
    const int32_t* suffix = ids.data() + (n - len);
    // The latest earlier occurrence (ending before the suffix itself).
    for (int start = n - len - 1; start >= 0; --start) {
      if (!std::equal(suffix, suffix + len, ids.data() + start)) continue;
      // What followed it, continued as the repetition the match implies:
      // past the end of `ids` the drafts copy themselves, so a loop of
      // period p (the match p tokens back) yields k drafts, not p.
      const int from = start + len;
      std::vector<int32_t> drafts;
      for (int j = 0; j < k; ++j) {
        const int src = from + j;
        drafts.push_back(src < n ? ids[static_cast<size_t>(src)] : drafts[static_cast<size_t>(src - n)]);
      }
      return drafts;
    }
  }
  return {};
}

void DraftLength::Observe(int proposed, int accepted) {
  if (proposed <= 0) return;
  k_ = accepted >= proposed ? std::min(max_, k_ + 1) : std::clamp(accepted + 1, 1, max_);
}

std::optional<SpeculateSpec> ParseSpeculate(const std::string& text, std::string* why) {
  SpeculateSpec spec;
  if (text.empty() || text == "off") return spec;
  const auto colon = text.find(':');
  spec.drafter = text.substr(0, colon);
  if (spec.drafter != "prompt-lookup") {
    *why = "unknown drafter \"" + spec.drafter + "\" (known: prompt-lookup, or off)";
    return std::nullopt;
  }
  if (colon != std::string::npos) {
    const std::string k = text.substr(colon + 1);
    if (k.empty() || k.size() > 2 || !std::all_of(k.begin(), k.end(), [](char c) { return c >= '0' && c <= '9'; }) ||
        std::stoi(k) < 1 || std::stoi(k) > kMaxDraftsPerStep) {
      *why = "the number of drafts after ':' must be 1.." + std::to_string(kMaxDraftsPerStep) + ", not \"" + k + "\"";
      return std::nullopt;
    }
    spec.max_drafts = std::stoi(k);
  }
  return spec;
}

std::shared_ptr<const Drafter> MakeDrafter(const SpeculateSpec& spec) {
  if (spec.drafter == "prompt-lookup") return std::make_shared<PromptLookupDrafter>();
  return nullptr;
}

}  // namespace splitlm::device
