// Verifying a device's draft tokens (speculative decoding, protocol 1.4):
// the worker's own choice after each row, and the longest agreeing prefix.
#pragma once

#include <cstdint>
#include <vector>

#include "partition/sampler.h"

namespace splitlm::cloud {

struct Verdict {
  uint32_t accepted = 0;        // drafts kept
  std::vector<int32_t> tokens;  // the kept drafts, then the worker's next token
};

// `logits` holds drafts.size() + 1 rows of `vocab` floats: the row of the
// last real token, then one per draft. Row j chooses the token at sequence
// position `position + j` with exactly the draw a one-token step there
// makes, so the tokens equal those of a run without drafts.
Verdict VerifyDrafts(const float* logits, int vocab, const std::vector<int32_t>& drafts,
                     const partition::SamplingParams& sampling, int position);

}  // namespace splitlm::cloud
