#include "partition/prompt.h"

#include <string>

#include "partition/error.h"

namespace splitlm::partition {

void ValidatePrompt(const std::vector<int32_t>& prompt, const ModelConfig& config) {
  if (prompt.empty()) throw PartitionError("the prompt holds no tokens");
  for (int32_t id : prompt) {
    if (id < 0 || id >= config.vocab_size) {
      throw PartitionError("prompt token id " + std::to_string(id) + " is outside the vocabulary of " +
                           std::to_string(config.vocab_size));
    }
  }
  if (prompt.size() >= static_cast<size_t>(config.max_context)) {
    throw PartitionError("prompt of " + std::to_string(prompt.size()) + " tokens does not fit the context of " +
                         std::to_string(config.max_context) + ": at most " + std::to_string(config.max_context - 1) +
                         ", leaving room for one generated token");
  }
}

}  // namespace splitlm::partition
