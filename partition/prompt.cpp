#include "partition/prompt.h"

#include <string>

#include "transport/error.h"

namespace splitlm::partition {

namespace {

void ValidateIds(const std::vector<int32_t>& ids, const ModelConfig& config, const char* what) {
  if (ids.empty())
    throw Exception(Exception::kInvalidArgument, std::string("the ") + what + " holds no tokens");
  for (int32_t id : ids) {
    if (id < 0 || id >= config.vocab_size) {
      throw Exception(Exception::kInvalidArgument,
                      std::string(what) + " token id " + std::to_string(id) +
                          " is outside the vocabulary of " + std::to_string(config.vocab_size));
    }
  }
}

}  // namespace

void ValidateSequence(const std::vector<int32_t>& sequence, const ModelConfig& config) {
  ValidateIds(sequence, config, "sequence");
  if (sequence.size() > static_cast<size_t>(config.max_context)) {
    throw Exception(Exception::kInvalidArgument, "sequence of " + std::to_string(sequence.size()) +
                                                     " tokens is longer than the context of " +
                                                     std::to_string(config.max_context));
  }
}

void ValidatePrompt(const std::vector<int32_t>& prompt, const ModelConfig& config) {
  ValidateIds(prompt, config, "prompt");
  if (prompt.size() >= static_cast<size_t>(config.max_context)) {
    throw Exception(
        Exception::kInvalidArgument,
        "prompt of " + std::to_string(prompt.size()) + " tokens does not fit the context of " +
            std::to_string(config.max_context) + ": at most " +
            std::to_string(config.max_context - 1) + ", leaving room for one generated token");
  }
}

}  // namespace splitlm::partition
