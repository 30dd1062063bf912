// The prompt of `generate` and `score`: --prompt-ids, or --prompt text
// through a tokenizer (--tokenizer, else the model directory's), BOS first.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "partition/model.h"
#include "partition/tokenizer.h"
#include "transport/error.h"

namespace splitlm::cli {

// The tokenizer `path` names, else the model's own, else null.
inline std::unique_ptr<partition::Tokenizer> OpenTokenizer(
    const partition::Model& model, const std::string& path,
    const partition::TokenizerOptions& options) {
  std::string p = path;
  if (p.empty() && model.tokenizer_path()) p = *model.tokenizer_path();
  return p.empty() ? nullptr : partition::Tokenizer::Open(p, options);
}

// Token ids of the prompt, from --prompt-ids or --prompt (BOS prepended when
// the tokenizer adds one);
// not yet checked against the model (partition/prompt.h does that). Throws
// Exception(kInvalidArgument) saying what to pass.
inline std::vector<int32_t> PromptIds(const partition::Model& model,
                                      const partition::Tokenizer* tok, const std::string& prompt,
                                      const std::string& prompt_ids) {
  const partition::ModelConfig& c = model.config();
  std::vector<int32_t> ids;
  if (!prompt_ids.empty()) {
    ids = partition::ParseTokenIds(prompt_ids);
  } else if (!prompt.empty()) {
    if (tok == nullptr) {
      throw Exception(Exception::kNotFound,
                      model.dir() +
                          " has no tokenizer (tokenizer.model, tokenizer.json or a GGUF "
                          "vocabulary): pass --tokenizer FILE or use --prompt-ids");
    }
    ids = tok->Encode(prompt);
    if (tok->add_bos()) ids.insert(ids.begin(), c.bos_token_id);  // Qwen adds none
  } else {
    throw Exception(Exception::kInvalidArgument,
                    "give a prompt: --prompt TEXT or --prompt-ids \"1 2 3\"");
  }
  return ids;
}

}  // namespace splitlm::cli
