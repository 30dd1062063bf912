// Mirrors convert_hf_to_gguf.py: _set_vocab_sentencepiece /
// _create_vocab_sentencepiece, _set_vocab_gpt2 / get_vocab_base and
// gguf-py's SpecialVocab (the special ids and add_*_token flags).
#include "partition/gguf_vocab.h"

#include <filesystem>
#include <nlohmann/json.hpp>
#include <optional>

#include "partition/gguf_tokenizer.h"
#include "partition/gguf_writer.h"
#include "partition/json_file.h"
#include "partition/spm_model_proto.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

constexpr int32_t kNormal = 1, kControl = 3, kUserDefined = 4, kUnused = 5;

json ReadJsonObject(const fs::path& path) {
  json j = ReadJsonFile(path.string());
  if (!j.is_object()) throw Exception(Exception::kCorrupt, path.string() + ": not a JSON object");
  return j;
}

// tokenizer_config.json, or an empty object.
json TokenizerConfig(const std::string& dir) {
  const fs::path p = fs::path(dir) / "tokenizer_config.json";
  return fs::exists(p) ? ReadJsonObject(p) : json::object();
}

std::optional<bool> Flag(const json& cfg, const char* key) {
  if (cfg.contains(key) && cfg[key].is_boolean()) return cfg[key].get<bool>();
  return std::nullopt;
}

struct Specials {
  std::optional<int32_t> bos, eos, unk, pad;
};

// The special ids, then add_bos_token and add_eos_token, in SpecialVocab's order.
void AddSpecials(const Specials& s, const json& cfg, GgufVocab& out) {
  const std::pair<const char*, std::optional<int32_t>> ids[] = {
      {"tokenizer.ggml.bos_token_id", s.bos},
      {"tokenizer.ggml.eos_token_id", s.eos},
      {"tokenizer.ggml.unknown_token_id", s.unk},
      {"tokenizer.ggml.padding_token_id", s.pad}};
  for (const auto& [key, id] : ids) {
    if (id) out.keys.emplace_back(key, GgufU32(*id));
  }
  out.keys.emplace_back("tokenizer.ggml.add_bos_token",
                        GgufBool(Flag(cfg, "add_bos_token").value_or(s.bos.has_value())));
  out.keys.emplace_back("tokenizer.ggml.add_eos_token",
                        GgufBool(Flag(cfg, "add_eos_token").value_or(false)));
}

GgufVocab SentencePieceVocab(const std::string& dir, const fs::path& path, int vocab_size) {
  const SpmModelProto m = ReadSpmModelProto(path.string());
  GgufVocab out;
  const auto n = static_cast<int>(m.pieces.size());
  if (m.model_type != 2) {
    out.note =
        path.string() + ": a SentencePiece model of type " + std::to_string(m.model_type) +
        " (not BPE): GGUF's \"llama\" tokenizer would not reproduce it; no vocabulary written";
    return out;
  }
  if (n > vocab_size) {
    out.note = path.string() + " has " + std::to_string(n) + " pieces, more than the model's " +
               std::to_string(vocab_size) + " token rows; no vocabulary written";
    return out;
  }
  GgufValue tokens = GgufArray(GgufType::kString), scores = GgufArray(GgufType::kFloat32),
            types = GgufArray(GgufType::kInt32);
  for (int id = 0; id < vocab_size; ++id) {
    const bool pad = id >= n;
    tokens.texts.push_back(pad ? "[PAD" + std::to_string(id) + "]" : m.pieces[id]);
    scores.reals.push_back(pad ? -10000.0 : static_cast<double>(m.scores[id]));
    types.integers.push_back(pad ? kUnused : m.types[id]);
  }
  out.keys.emplace_back("tokenizer.ggml.model", GgufString("llama"));
  out.keys.emplace_back("tokenizer.ggml.pre", GgufString("default"));
  out.keys.emplace_back("tokenizer.ggml.tokens", std::move(tokens));
  out.keys.emplace_back("tokenizer.ggml.scores", std::move(scores));
  out.keys.emplace_back("tokenizer.ggml.token_type", std::move(types));
  if (!m.add_dummy_prefix)
    out.keys.emplace_back("tokenizer.ggml.add_space_prefix", GgufBool(false));
  AddSpecials({m.bos_id, m.eos_id, m.unk_id, m.pad_id}, TokenizerConfig(dir), out);
  return out;
}

// The Split regex of a tokenizer.json pre-tokenizer ("" if none), and
// whether a ByteLevel step splits with the GPT-2 regex.
void FindPreTokenizer(const json& p, std::string& regex, bool& gpt2) {
  if (!p.is_object()) return;
  const std::string type = p.value("type", "");
  if (type == "Sequence") {
    for (const auto& x : p.value("pretokenizers", json::array())) FindPreTokenizer(x, regex, gpt2);
  } else if (type == "Split" && p.contains("pattern") && p["pattern"].is_object() &&
             p["pattern"].contains("Regex") && p["pattern"]["Regex"].is_string()) {
    regex = p["pattern"]["Regex"].get<std::string>();
  } else if (type == "ByteLevel" && p.value("use_regex", true)) {
    gpt2 = true;
  }
}

// llama.cpp's name for the pre-tokenizer, or "" when it has none splitlm reads.
std::string PreName(const json& tok) {
  std::string regex;
  bool gpt2 = false;
  FindPreTokenizer(tok.value("pre_tokenizer", json()), regex, gpt2);
  if (regex == kLlama3Regex && !gpt2) return "llama-bpe";
  if (regex == kQwen2Regex && !gpt2) return "qwen2";
  if (regex.empty() && gpt2) return "gpt-2";
  return "";
}

// convert_hf_to_gguf.py's does_token_look_special.
bool LooksSpecial(const std::string& t) {
  auto starts = [&](const std::string& s) { return t.rfind(s, 0) == 0; };
  auto ends = [&](const std::string& s) {
    return t.size() >= s.size() && t.compare(t.size() - s.size(), s.size(), s) == 0;
  };
  return t == "<pad>" || t == "<mask>" || t == "<2mass>" || t == "[@BOS@]" ||
         (starts("<|") && ends("|>")) || (starts("<\xef\xbd\x9c") && ends("\xef\xbd\x9c>")) ||
         starts("<start_of_") || starts("<end_of_");
}

std::string ReplaceAll(std::string s, const std::string& from, const std::string& to) {
  for (size_t i = s.find(from); i != std::string::npos; i = s.find(from, i + to.size()))
    s.replace(i, from.size(), to);
  return s;
}

// The tokens of a tokenizer.json by id (text and token type; type 0: no
// token has the id), and whether every id fits the model's rows.
struct BpeTokens {
  std::vector<std::string> text;
  std::vector<int32_t> type;
  bool fits = true;
};

BpeTokens ReadBpeTokens(const json& tok, const json& model, const fs::path& path, int vocab_size) {
  BpeTokens out{std::vector<std::string>(static_cast<size_t>(vocab_size)),
                std::vector<int32_t>(static_cast<size_t>(vocab_size), 0)};
  auto put = [&](const std::string& t, const json& id, int32_t ty) {
    if (!id.is_number_integer() || id.get<int64_t>() < 0)
      throw Exception(Exception::kCorrupt, path.string() + ": token \"" + t + "\" has no valid id");
    if (id.get<int64_t>() >= vocab_size) return false;
    out.text[id.get<size_t>()] = t;
    out.type[id.get<size_t>()] = ty;
    return true;
  };
  for (const auto& [t, id] : model["vocab"].items()) out.fits = put(t, id, kNormal) && out.fits;
  for (const auto& a : tok.value("added_tokens", json::array())) {
    if (!a.is_object() || !a.contains("content") || !a["content"].is_string()) {
      throw Exception(Exception::kCorrupt,
                      path.string() + ": an added_tokens entry has no content");
    }
    const std::string t = a["content"].get<std::string>();
    const bool control = a.value("special", false) || LooksSpecial(t);
    out.fits = put(control ? t : ReplaceAll(t, "\xe2\x96\x81", " "), a.value("id", json()),
                   control ? kControl : kUserDefined) &&
               out.fits;
  }
  return out;
}

// The merges as "a b" strings.
GgufValue BpeMerges(const json& model, const fs::path& path) {
  GgufValue merges = GgufArray(GgufType::kString);
  for (const auto& m : model.value("merges", json::array())) {
    if (m.is_string()) {
      merges.texts.push_back(m.get<std::string>());
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      merges.texts.push_back(m[0].get<std::string>() + " " + m[1].get<std::string>());
    } else {
      throw Exception(Exception::kCorrupt,
                      path.string() + ": a merge is neither \"a b\" nor [\"a\", \"b\"]");
    }
  }
  return merges;
}

// The ids of the special tokens tokenizer_config.json names.
Specials BpeSpecials(const json& cfg, const BpeTokens& tokens, const std::string& dir,
                     const fs::path& path) {
  auto id_of = [&](const char* key) -> std::optional<int32_t> {
    const std::string t = ConfigTokenText(cfg, key);
    if (t.empty()) return std::nullopt;
    for (size_t id = 0; id < tokens.text.size(); ++id) {
      if (tokens.type[id] != 0 && tokens.text[id] == t) return static_cast<int32_t>(id);
    }
    throw Exception(Exception::kCorrupt, (fs::path(dir) / "tokenizer_config.json").string() + ": " +
                                             key + " \"" + t + "\" is not in " + path.string());
  };
  return Specials{id_of("bos_token"), id_of("eos_token"), id_of("unk_token"), id_of("pad_token")};
}

GgufVocab ByteLevelBpeVocab(const std::string& dir, const fs::path& path, int vocab_size) {
  const json tok = ReadJsonObject(path);
  GgufVocab out;
  const json& model = tok.value("model", json::object());
  if (!model.is_object() || model.value("type", "") != "BPE" || !model.contains("vocab") ||
      !model["vocab"].is_object() || model.value("byte_fallback", false)) {
    out.note = path.string() + ": not a byte-level BPE tokenizer; no vocabulary written";
    return out;
  }
  const std::string pre = PreName(tok);
  if (pre.empty()) {
    out.note = path.string() +
               ": a pre-tokenizer llama.cpp has no name for (known: llama-bpe, qwen2, gpt-2); "
               "no vocabulary written";
    return out;
  }
  const BpeTokens bpe = ReadBpeTokens(tok, model, path, vocab_size);
  if (!bpe.fits) {
    out.note = path.string() + " has ids beyond the model's " + std::to_string(vocab_size) +
               " token rows; no vocabulary written";
    return out;
  }
  GgufValue tokens = GgufArray(GgufType::kString), types = GgufArray(GgufType::kInt32);
  for (int id = 0; id < vocab_size; ++id) {
    const bool hole = bpe.type[id] == 0;
    tokens.texts.push_back(hole ? "[PAD" + std::to_string(id) + "]" : bpe.text[id]);
    types.integers.push_back(hole ? kUnused : bpe.type[id]);
  }
  GgufValue merges = BpeMerges(model, path);
  const json cfg = TokenizerConfig(dir);
  const Specials specials = BpeSpecials(cfg, bpe, dir, path);
  out.keys.emplace_back("tokenizer.ggml.model", GgufString("gpt2"));
  out.keys.emplace_back("tokenizer.ggml.pre", GgufString(pre));
  out.keys.emplace_back("tokenizer.ggml.tokens", std::move(tokens));
  out.keys.emplace_back("tokenizer.ggml.token_type", std::move(types));
  out.keys.emplace_back("tokenizer.ggml.merges", std::move(merges));
  AddSpecials(specials, cfg, out);
  return out;
}

}  // namespace

GgufVocab ReadGgufVocab(const std::string& dir, int vocab_size) {
  const fs::path spm = fs::path(dir) / "tokenizer.model", bpe = fs::path(dir) / "tokenizer.json";
  if (fs::exists(spm)) return SentencePieceVocab(dir, spm, vocab_size);
  if (fs::exists(bpe)) {
    try {
      return ByteLevelBpeVocab(dir, bpe, vocab_size);
    } catch (const nlohmann::json::exception& e) {  // a field of the wrong JSON type
      throw Exception(Exception::kCorrupt, bpe.string() + ": malformed (" + e.what() + ")");
    }
  }
  return {};
}

}  // namespace splitlm::partition
