#include "partition/gguf_tokenizer.h"

#include <algorithm>

#include "partition/bpe_tokenizer.h"
#include "partition/spm_vocab_tokenizer.h"
#include "transport/error.h"

namespace splitlm::partition {

const char kLlama3Regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char kQwen2Regex[] =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| "
    "?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|"
    "\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";

namespace {

const GgufValue& Require(const GgufFile& g, const std::string& key) {
  const GgufValue* v = g.Find(key);
  if (v == nullptr)
    throw Exception(Exception::kNotFound,
                    g.path() + ": no " + key + " (the file carries no tokenizer)");
  return *v;
}

const std::vector<std::string>& Texts(const GgufFile& g, const std::string& key) {
  const GgufValue& v = Require(g, key);
  if (v.type != GgufType::kArray || v.element_type != GgufType::kString) {
    throw Exception(Exception::kCorrupt, g.path() + ": " + key + " is not an array of strings");
  }
  return v.texts;
}

std::optional<int64_t> Int(const GgufFile& g, const std::string& key) {
  const GgufValue* v = g.Find(key);
  if (v == nullptr || !v->is_integer()) return std::nullopt;
  return v->integer;
}

std::optional<bool> Bool(const GgufFile& g, const std::string& key) {
  const GgufValue* v = g.Find(key);
  if (v == nullptr || v->type != GgufType::kBool) return std::nullopt;
  return v->integer != 0;
}

std::vector<int32_t> TokenTypes(const GgufFile& g, size_t n) {
  std::vector<int32_t> types(n, SpmVocabSpec::kNormal);
  const GgufValue* v = g.Find("tokenizer.ggml.token_type");
  if (v == nullptr) return types;
  if (v->type != GgufType::kArray || v->integers.size() != n) {
    throw Exception(
        Exception::kCorrupt,
        g.path() + ": tokenizer.ggml.token_type is not an integer array of one type per token");
  }
  for (size_t i = 0; i < n; ++i) types[i] = static_cast<int32_t>(v->integers[i]);
  return types;
}

// BOS/EOS from the keys; the end-of-generation set as llama.cpp builds it:
// the eos, eot and eom ids, and control tokens with the usual end texts.
SpecialTokens Specials(const GgufFile& g, const std::vector<std::string>& tokens,
                       const std::vector<int32_t>& types, bool default_add_bos) {
  SpecialTokens s;
  const auto n = static_cast<int64_t>(tokens.size());
  auto checked = [&](const std::string& key) -> std::optional<int32_t> {
    auto id = Int(g, key);
    if (!id) return std::nullopt;
    if (*id < 0 || *id >= n) {
      throw Exception(Exception::kCorrupt, g.path() + ": " + key + " = " + std::to_string(*id) +
                                               " is outside the " + std::to_string(n) + " tokens");
    }
    return static_cast<int32_t>(*id);
  };
  s.bos_id = checked("tokenizer.ggml.bos_token_id");
  s.add_bos =
      Bool(g, "tokenizer.ggml.add_bos_token").value_or(default_add_bos) && s.bos_id.has_value();
  if (s.bos_id) s.bos_token = tokens[*s.bos_id];
  auto add = [&](int32_t id) {
    if (std::find(s.eos_ids.begin(), s.eos_ids.end(), id) == s.eos_ids.end())
      s.eos_ids.push_back(id);
  };
  if (auto e = checked("tokenizer.ggml.eos_token_id")) {
    add(*e);
    s.eos_token = tokens[*e];
  }
  for (const char* key : {"tokenizer.ggml.eot_token_id", "tokenizer.ggml.eom_token_id"}) {
    if (auto e = checked(key)) add(*e);
  }
  static const char* const kEndTexts[] = {"<|eot_id|>",    "<|im_end|>",     "<|end|>",
                                          "<end_of_turn>", "<|endoftext|>",  "<|eom_id|>",
                                          "<EOT>",         "<|end_of_text|>"};
  for (int64_t id = 0; id < n; ++id) {
    if (types[id] != SpmVocabSpec::kControl) continue;
    for (const char* t : kEndTexts) {
      if (tokens[id] == t) add(static_cast<int32_t>(id));
    }
  }
  return s;
}

std::unique_ptr<Tokenizer> OpenSpm(const GgufFile& g) {
  SpmVocabSpec spec;
  spec.source = g.path();
  spec.pieces = Texts(g, "tokenizer.ggml.tokens");
  const GgufValue& scores = Require(g, "tokenizer.ggml.scores");
  if (scores.type != GgufType::kArray || scores.reals.size() != spec.pieces.size()) {
    throw Exception(
        Exception::kCorrupt,
        g.path() + ": tokenizer.ggml.scores is not a float array of one score per token");
  }
  spec.scores.assign(scores.reals.begin(), scores.reals.end());
  spec.types = TokenTypes(g, spec.pieces.size());
  spec.add_space_prefix = Bool(g, "tokenizer.ggml.add_space_prefix").value_or(true);
  spec.special = Specials(g, spec.pieces, spec.types, true);
  spec.description = g.path() + " (GGUF SentencePiece-style vocabulary, " +
                     std::to_string(spec.pieces.size()) + " tokens)";
  return MakeSpmVocabTokenizer(std::move(spec));
}

std::unique_ptr<Tokenizer> OpenBpe(const GgufFile& g) {
  BpeSpec spec;
  spec.source = g.path();
  const GgufValue* pre_v = g.Find("tokenizer.ggml.pre");
  const std::string pre =
      pre_v != nullptr && pre_v->type == GgufType::kString ? pre_v->text : "default";
  BpeSpec::PreStep step;
  bool add_bos = true;
  if (pre == "llama-bpe" || pre == "llama3") {
    step.regex = kLlama3Regex;
    spec.ignore_merges = true;
  } else if (pre == "qwen2") {
    step.regex = kQwen2Regex;
    add_bos = false;
  } else if (pre == "default" || pre == "gpt-2") {
    step.regex = kGpt2Regex;
  } else {
    throw Exception(Exception::kCorrupt,
                    g.path() + ": unsupported tokenizer.ggml.pre \"" + pre +
                        "\" (supported: llama-bpe, llama3, qwen2, gpt-2, default)");
  }
  spec.pre_tokenizer.push_back(step);
  const std::vector<std::string>& tokens = Texts(g, "tokenizer.ggml.tokens");
  const std::vector<int32_t> types = TokenTypes(g, tokens.size());
  spec.vocab.resize(tokens.size());
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (types[id] == SpmVocabSpec::kControl || types[id] == SpmVocabSpec::kUserDefined) {
      spec.added.emplace_back(tokens[id], static_cast<int32_t>(id));
    } else {
      spec.vocab[id] = tokens[id];
    }
  }
  for (const std::string& m : Texts(g, "tokenizer.ggml.merges")) {
    const size_t sp = m.find(' ', 1);
    if (sp == std::string::npos)
      throw Exception(Exception::kCorrupt,
                      g.path() + ": tokenizer.ggml.merges has \"" + m + "\", not \"a b\"");
    spec.merges.emplace_back(m.substr(0, sp), m.substr(sp + 1));
  }
  spec.special = Specials(g, tokens, types, add_bos);
  spec.description = g.path() + " (GGUF byte-level BPE, pre " + pre + ", " +
                     std::to_string(tokens.size()) + " tokens)";
  return MakeBpeTokenizer(std::move(spec));
}

}  // namespace

std::unique_ptr<Tokenizer> OpenGgufTokenizer(const GgufFile& gguf) {
  const GgufValue& model = Require(gguf, "tokenizer.ggml.model");
  if (model.type != GgufType::kString)
    throw Exception(Exception::kCorrupt, gguf.path() + ": tokenizer.ggml.model is not a string");
  if (model.text == "llama") return OpenSpm(gguf);
  if (model.text == "gpt2") return OpenBpe(gguf);
  throw Exception(Exception::kCorrupt, gguf.path() + ": unsupported tokenizer.ggml.model \"" +
                                           model.text + "\" (supported: llama, gpt2)");
}

}  // namespace splitlm::partition
