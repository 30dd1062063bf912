// Turning logits into the next token: greedy, temperature, top-k, top-p.
#pragma once

#include <cstdint>

namespace splitlm::partition {

struct SamplingParams {
  float temperature = 0.0f;  // <= 0: greedy (argmax, lowest id on ties)
  int top_k = 0;             // 0: no limit
  float top_p = 1.0f;        // nucleus mass in (0, 1]
  uint64_t seed = 0;
};

// Throws Exception(kInvalidArgument) naming the bad field (negative top_k, top_p outside
// (0, 1], temperature NaN).
void ValidateSamplingParams(const SamplingParams& params);

// Picks a token from `logits[0, n)` for the token at sequence `position`.
// Stateless: the random draw is a hash of (seed, position), so the device,
// the cloud, or a run resumed after a fallback all pick the same token from
// the same logits. Never reads NaN as a maximum.
int SampleToken(const float* logits, int n, const SamplingParams& params, int position);

}  // namespace splitlm::partition
