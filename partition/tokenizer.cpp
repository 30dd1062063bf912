#include "partition/tokenizer.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "partition/gguf.h"
#include "partition/gguf_tokenizer.h"
#include "partition/spm_tokenizer.h"
#include "partition/tokenizer_json.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

namespace fs = std::filesystem;

bool EndsWith(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The first 4 bytes of the file.
std::string Magic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char m[4] = {0, 0, 0, 0};
  in.read(m, 4);
  return std::string(m, static_cast<size_t>(in.gcount()));
}

std::unique_ptr<Tokenizer> OpenFile(const std::string& path, const TokenizerOptions& options) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (!fs::is_regular_file(status))
    throw Exception(Exception::kInvalidArgument, path + ": not a regular file (a tokenizer file)");
  if (access(path.c_str(), R_OK) != 0) {
    throw Exception(Exception::kNotFound,
                    path + ": cannot read the tokenizer file: " + std::strerror(errno));
  }
  const std::string magic = Magic(path);
  if (magic == "GGUF") {
    auto gguf = GgufFile::Open(path);
    return OpenGgufTokenizer(*gguf);
  }
  if (EndsWith(path, ".json") || (!magic.empty() && magic[0] == '{'))
    return OpenTokenizerJson(path);
  return OpenSentencePiece(path,
                           options.spm_shim.empty() ? DefaultSpmShimPath() : options.spm_shim);
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::Open(const std::string& path,
                                           const TokenizerOptions& options) {
  std::error_code ec;
  const auto status = fs::status(path, ec);
  if (!fs::exists(status))
    throw Exception(Exception::kNotFound, path + ": tokenizer file not found");
  if (!fs::is_directory(status)) return OpenFile(path, options);
  for (const char* name : {"tokenizer.model", "tokenizer.json"}) {
    const fs::path p = fs::path(path) / name;
    if (fs::exists(p)) return OpenFile(p.string(), options);
  }
  throw Exception(Exception::kInvalidArgument,
                  path +
                      ": is a directory without tokenizer.model or tokenizer.json (give the "
                      "tokenizer file itself)");
}

bool Tokenizer::IsEos(int32_t id) const {
  return std::find(special_.eos_ids.begin(), special_.eos_ids.end(), id) != special_.eos_ids.end();
}

std::vector<int32_t> GenerationConfigEosIds(const std::string& dir) {
  const fs::path p = fs::path(dir.empty() ? "." : dir) / "generation_config.json";
  if (!fs::exists(p)) return {};
  std::ifstream in(p);
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    throw Exception(Exception::kCorrupt, p.string() + ": not valid JSON (" + e.what() + ")");
  }
  std::vector<int32_t> ids;
  if (!j.is_object() || !j.contains("eos_token_id") || j["eos_token_id"].is_null()) return ids;
  const nlohmann::json& e = j["eos_token_id"];
  auto add = [&](const nlohmann::json& v) {
    if (!v.is_number_integer() || v.get<int64_t>() < 0 || v.get<int64_t>() > INT32_MAX) {
      throw Exception(Exception::kCorrupt,
                      p.string() + ": eos_token_id holds " + v.dump() + ", not a token id");
    }
    const auto id = v.get<int32_t>();
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
  };
  if (e.is_array()) {
    for (const auto& v : e) add(v);
  } else {
    add(e);
  }
  return ids;
}

std::vector<int32_t> ParseTokenIds(const std::string& text) {
  std::vector<int32_t> ids;
  std::string item;
  for (size_t i = 0; i <= text.size(); ++i) {
    const char ch = i < text.size() ? text[i] : ' ';
    if (ch != ' ' && ch != ',' && ch != '\t' && ch != '\n') {
      item.push_back(ch);
      continue;
    }
    if (item.empty()) continue;
    size_t used = 0;
    long v = -1;
    try {
      v = std::stol(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != item.size() || v < 0 || v > INT32_MAX) {
      throw Exception(Exception::kInvalidArgument,
                      "bad token id \"" + item + "\" (expected non-negative integers)");
    }
    ids.push_back(static_cast<int32_t>(v));
    item.clear();
  }
  return ids;
}

}  // namespace splitlm::partition
