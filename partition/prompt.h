// The one rule for a prompt, applied by every entry point (splitlm generate,
// splitlm-device generate, the HTTP API, the device agent).
#pragma once

#include <cstdint>
#include <vector>

#include "partition/model_config.h"

namespace splitlm::partition {

// A prompt holds at least one token, every id is in [0, vocab_size), and it
// is shorter than the context so that at least one token can be generated
// (max_context - 1 tokens at most). Throws Exception(kInvalidArgument) naming the first
// rule broken, the value and the limit.
void ValidatePrompt(const std::vector<int32_t>& prompt, const ModelConfig& config);

// The rule for a sequence run teacher-forced (splitlm score): as a prompt,
// but it may fill the whole context (nothing is generated after it).
void ValidateSequence(const std::vector<int32_t>& sequence, const ModelConfig& config);

}  // namespace splitlm::partition
