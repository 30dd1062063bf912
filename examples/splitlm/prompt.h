// The prompt of `generate` and `score`: --prompt-ids, or --prompt text
// through a tokenizer (--tokenizer, else the model directory's), BOS first.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "partition/error.h"
#include "partition/model.h"
#include "partition/tokenizer.h"

namespace splitlm::cli {

// The tokenizer `path` names, else the model's own, else null.
inline std::unique_ptr<partition::Tokenizer> OpenTokenizer(const partition::Model& model,
                                                           const std::string& path) {
  std::string p = path;
  if (p.empty() && model.tokenizer_path()) p = *model.tokenizer_path();
  return p.empty() ? nullptr : partition::Tokenizer::Open(p);
}

// Token ids of the prompt, checked against the model's vocabulary and
// context. Throws PartitionError saying what to pass.
inline std::vector<int32_t> PromptIds(const partition::Model& model, const partition::Tokenizer* tok,
                                      const std::string& prompt, const std::string& prompt_ids) {
  const partition::ModelConfig& c = model.config();
  std::vector<int32_t> ids;
  if (!prompt_ids.empty()) {
    ids = partition::ParseTokenIds(prompt_ids);
  } else if (!prompt.empty()) {
    if (tok == nullptr) {
      throw partition::PartitionError(model.dir() + " has no tokenizer.model: pass --tokenizer FILE or use --prompt-ids");
    }
    ids = tok->Encode(prompt);
    ids.insert(ids.begin(), c.bos_token_id);
  } else {
    throw partition::PartitionError("give a prompt: --prompt TEXT or --prompt-ids \"1 2 3\"");
  }
  if (ids.empty()) throw partition::PartitionError("the prompt holds no tokens");
  if (static_cast<int>(ids.size()) > c.max_context) {
    throw partition::PartitionError("prompt of " + std::to_string(ids.size()) +
                                    " tokens is longer than the context of " + std::to_string(c.max_context));
  }
  for (int32_t id : ids) {
    if (id >= c.vocab_size) {
      throw partition::PartitionError("prompt token id " + std::to_string(id) +
                                      " is outside the vocabulary of " + std::to_string(c.vocab_size));
    }
  }
  return ids;
}

}  // namespace splitlm::cli
