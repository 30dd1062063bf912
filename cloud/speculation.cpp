#include "cloud/speculation.h"

#include <cstddef>

namespace splitlm::cloud {

Verdict VerifyDrafts(const float* logits, int vocab, const std::vector<int32_t>& drafts,
                     const partition::SamplingParams& sampling, int position) {
  Verdict v;
  for (std::size_t j = 0; j <= drafts.size(); ++j) {
    const int32_t choice = partition::SampleToken(logits + j * static_cast<std::size_t>(vocab),
                                                  vocab, sampling, position + static_cast<int>(j));
    v.tokens.push_back(choice);
    if (j == drafts.size() || choice != drafts[j]) break;
    ++v.accepted;
  }
  return v;
}

}  // namespace splitlm::cloud
