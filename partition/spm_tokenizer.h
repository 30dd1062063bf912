// SentencePiece tokenizer.model files (Llama 2, TinyLlama, Mistral) through
// libsentencepiece.
#pragma once

#include <memory>
#include <string>

#include "partition/tokenizer.h"

namespace splitlm::partition {

// libsentencepiece embeds its own protobuf, which clashes with LibTorch's
// libprotobuf in one process and crashes at load. So it lives in a small shim
// (libsplitlm_spm.so, built next to the binaries) opened with
// dlopen(RTLD_LOCAL | RTLD_DEEPBIND), keeping its symbols to itself. Which
// shim is loaded is the caller's choice (TokenizerOptions::spm_shim; the
// binaries take it from $SPLITLM_SPM_SHIM).
// BOS and EOS are the model's; add_bos is true when it has a BOS; eos_ids also
// holds generation_config.json's eos_token_id from the same directory.
// Control and unknown pieces written in the text ("<s>", "<unk>") are
// their ids, as llama.cpp and Hugging Face do (libsentencepiece alone would
// spell them out).
// Throws Exception: kUnavailable if the shim at `shim_path` cannot be
// loaded, kNotFound or kCorrupt for `model_path`.
std::unique_ptr<Tokenizer> OpenSentencePiece(const std::string& model_path,
                                             const std::string& shim_path);

// Where the shim is without a choice: next to the running executable, else
// in <prefix>/lib/splitlm/ beside its bin/ (the packages), else where the
// build put it.
std::string DefaultSpmShimPath();

}  // namespace splitlm::partition
