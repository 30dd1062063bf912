#include "partition/tokenizer_json.h"

#include <algorithm>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "partition/bpe_tokenizer.h"
#include "partition/json_file.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

std::string TypeOf(const json& j, const std::string& path, const std::string& where) {
  if (!j.is_object() || !j.contains("type") || !j["type"].is_string()) {
    throw Exception(Exception::kCorrupt, path + ": " + where + " has no \"type\"");
  }
  return j["type"].get<std::string>();
}

[[noreturn]] void Unsupported(const std::string& path, const std::string& what) {
  throw Exception(Exception::kCorrupt, path + ": unsupported " + what);
}

void AddNormalizer(const json& n, const std::string& path, BpeSpec& spec) {
  if (n.is_null()) return;
  const std::string type = TypeOf(n, path, "normalizer");
  if (type == "Sequence") {
    for (const auto& x : n.value("normalizers", json::array())) AddNormalizer(x, path, spec);
  } else if (type == "NFC") {
    spec.normalizers.push_back(BpeSpec::Normalizer::kNfc);
  } else if (type == "NFD") {
    spec.normalizers.push_back(BpeSpec::Normalizer::kNfd);
  } else if (type == "NFKC") {
    spec.normalizers.push_back(BpeSpec::Normalizer::kNfkc);
  } else if (type == "NFKD") {
    spec.normalizers.push_back(BpeSpec::Normalizer::kNfkd);
  } else {
    Unsupported(path, "normalizer \"" + type + "\" (supported: NFC, NFD, NFKC, NFKD, Sequence)");
  }
}

// A literal string as a PCRE2 pattern.
std::string Quote(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (std::string("\\^$.|?*+()[]{}").find(c) != std::string::npos) out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

void AddPreTokenizer(const json& p, const std::string& path, BpeSpec& spec) {
  if (p.is_null()) return;
  const std::string type = TypeOf(p, path, "pre_tokenizer");
  BpeSpec::PreStep step;
  if (type == "Sequence") {
    for (const auto& x : p.value("pretokenizers", json::array())) AddPreTokenizer(x, path, spec);
    return;
  } else if (type == "ByteLevel") {
    step.kind = BpeSpec::PreStep::Kind::kByteLevel;
    step.add_prefix_space = p.value("add_prefix_space", false);
    step.use_regex = p.value("use_regex", true);
  } else if (type == "Split") {
    const json& pat = p.value("pattern", json::object());
    if (pat.contains("Regex") && pat["Regex"].is_string()) {
      step.regex = pat["Regex"].get<std::string>();
    } else if (pat.contains("String") && pat["String"].is_string()) {
      step.regex = Quote(pat["String"].get<std::string>());
    } else {
      throw Exception(Exception::kCorrupt,
                      path + ": Split pre-tokenizer has no pattern Regex or String");
    }
    const std::string behavior = p.value("behavior", "");
    if (behavior == "Isolated") {
      step.keep_matches = true;
    } else if (behavior == "Removed") {
      step.keep_matches = false;
    } else {
      Unsupported(path, "Split behavior \"" + behavior + "\" (supported: Isolated, Removed)");
    }
    step.invert = p.value("invert", false);
  } else {
    Unsupported(path, "pre_tokenizer \"" + type + "\" (supported: ByteLevel, Split, Sequence)");
  }
  spec.pre_tokenizer.push_back(step);
}

void CheckDecoder(const json& d, const std::string& path) {
  if (d.is_null()) Unsupported(path, "tokenizer: no decoder (splitlm needs a ByteLevel decoder)");
  const std::string type = TypeOf(d, path, "decoder");
  if (type == "ByteLevel") return;
  if (type == "Sequence") {
    for (const auto& x : d.value("decoders", json::array())) CheckDecoder(x, path);
    return;
  }
  Unsupported(path, "decoder \"" + type +
                        "\" (splitlm reads byte-level BPE only; for a SentencePiece-style "
                        "tokenizer.json (Metaspace) use the model's tokenizer.model)");
}

void ReadModel(const json& m, const std::string& path, BpeSpec& spec) {
  const std::string type = TypeOf(m, path, "model");
  if (type != "BPE") Unsupported(path, "model type \"" + type + "\" (supported: BPE, byte-level)");
  if (m.value("byte_fallback", false)) {
    Unsupported(path,
                "BPE with byte_fallback (SentencePiece-style, as Llama 2 / Mistral ship it): use "
                "the model's tokenizer.model");
  }
  if (m.contains("dropout") && !m["dropout"].is_null() && m["dropout"] != 0)
    Unsupported(path, "BPE dropout");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    if (m.contains(k) && m[k].is_string() && !m[k].get<std::string>().empty())
      Unsupported(path, std::string("BPE ") + k);
  }
  spec.ignore_merges = m.value("ignore_merges", false);
  const json& vocab = m.value("vocab", json::object());
  if (!vocab.is_object() || vocab.empty())
    throw Exception(Exception::kCorrupt, path + ": model.vocab is missing or empty");
  for (const auto& [token, id] : vocab.items()) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() > (1 << 24)) {
      throw Exception(Exception::kCorrupt,
                      path + ": model.vocab[\"" + token + "\"] is not a valid id");
    }
    const auto i = id.get<size_t>();
    if (i >= spec.vocab.size()) spec.vocab.resize(i + 1);
    spec.vocab[i] = token;
  }
  const json& merges = m.value("merges", json::array());
  spec.merges.reserve(merges.size());
  for (size_t r = 0; r < merges.size(); ++r) {
    const json& x = merges[r];
    if (x.is_string()) {
      const std::string s = x.get<std::string>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos)
        throw Exception(Exception::kCorrupt,
                        path + ": merge " + std::to_string(r) + " is not \"a b\"");
      spec.merges.emplace_back(s.substr(0, sp), s.substr(sp + 1));
    } else if (x.is_array() && x.size() == 2 && x[0].is_string() && x[1].is_string()) {
      spec.merges.emplace_back(x[0].get<std::string>(), x[1].get<std::string>());
    } else {
      throw Exception(Exception::kCorrupt, path + ": merge " + std::to_string(r) +
                                               " is neither \"a b\" nor [\"a\", \"b\"]");
    }
  }
}

// A token in tokenizer_config.json: a string, {"content": ...} or null.
std::optional<int32_t> IdOf(const BpeSpec& spec, const std::string& text) {
  if (text.empty()) return std::nullopt;
  for (const auto& a : spec.added) {
    if (a.first == text) return a.second;
  }
  for (size_t i = 0; i < spec.vocab.size(); ++i) {
    if (spec.vocab[i] == text) return static_cast<int32_t>(i);
  }
  return std::nullopt;
}

void ReadSpecials(const std::string& dir, BpeSpec& spec) {
  json cfg = json::object();
  const fs::path cfg_path = fs::path(dir) / "tokenizer_config.json";
  if (fs::exists(cfg_path)) cfg = ReadJsonFile(cfg_path.string());
  if (!cfg.is_object())
    throw Exception(Exception::kCorrupt, cfg_path.string() + ": not a JSON object");
  SpecialTokens& s = spec.special;
  s.bos_token = ConfigTokenText(cfg, "bos_token");
  s.eos_token = ConfigTokenText(cfg, "eos_token");
  s.bos_id = IdOf(spec, s.bos_token);
  if (!s.bos_token.empty() && !s.bos_id) {
    throw Exception(Exception::kCorrupt, cfg_path.string() + ": bos_token \"" + s.bos_token +
                                             "\" is not in " + spec.source);
  }
  // Hugging Face adds BOS through the post-processor; a config that names a
  // BOS token without add_bos_token (Llama 3) starts prompts with it.
  if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) {
    s.add_bos = cfg["add_bos_token"].get<bool>() && s.bos_id.has_value();
  } else {
    s.add_bos = s.bos_id.has_value();
  }
  for (int32_t id : GenerationConfigEosIds(dir)) {
    if (std::find(s.eos_ids.begin(), s.eos_ids.end(), id) == s.eos_ids.end())
      s.eos_ids.push_back(id);
  }
  if (auto e = IdOf(spec, s.eos_token)) {
    if (std::find(s.eos_ids.begin(), s.eos_ids.end(), *e) == s.eos_ids.end())
      s.eos_ids.push_back(*e);
  } else if (!s.eos_token.empty()) {
    throw Exception(Exception::kCorrupt, cfg_path.string() + ": eos_token \"" + s.eos_token +
                                             "\" is not in " + spec.source);
  }
}

}  // namespace

std::unique_ptr<Tokenizer> OpenTokenizerJson(const std::string& path) {
  const json j = ReadJsonFile(path);
  if (!j.is_object() || !j.contains("model"))
    throw Exception(Exception::kCorrupt, path + ": not a tokenizer.json (no \"model\")");
  BpeSpec spec;
  spec.source = path;
  ReadModel(j["model"], path, spec);
  AddNormalizer(j.value("normalizer", json()), path, spec);
  AddPreTokenizer(j.value("pre_tokenizer", json()), path, spec);
  CheckDecoder(j.value("decoder", json()), path);
  for (const auto& a : j.value("added_tokens", json::array())) {
    if (!a.is_object() || !a.contains("id") || !a["id"].is_number_integer() ||
        !a.contains("content") || !a["content"].is_string() || a["id"].get<int64_t>() < 0 ||
        a["id"].get<int64_t>() > (1 << 24)) {
      throw Exception(Exception::kCorrupt,
                      path + ": an added_tokens entry lacks a valid id or content");
    }
    const std::string content = a["content"].get<std::string>();
    AddedTokenOptions options;
    options.lstrip = a.value("lstrip", false);
    options.rstrip = a.value("rstrip", false);
    options.single_word = a.value("single_word", false);
    spec.added.emplace_back(content, a["id"].get<int32_t>());
    spec.added_options.push_back(options);
  }
  ReadSpecials(fs::path(path).parent_path().string(), spec);
  spec.description = path + " (byte-level BPE, " + std::to_string(spec.vocab.size()) + " tokens, " +
                     std::to_string(spec.added.size()) + " added)";
  return MakeBpeTokenizer(std::move(spec));
}

}  // namespace splitlm::partition
