// `splitlm tokenize` and `splitlm detokenize`: text to ids and back with any
// tokenizer splitlm reads (model directory, tokenizer.json, tokenizer.model,
// .gguf).
#include <chrono>
#include <climits>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "examples/splitlm/cli.h"
#include "partition/tokenizer.h"
#include "transport/error.h"

namespace splitlm::cli {
namespace {

struct TokenizeArgs {
  std::string tokenizer, text, text_file, jsonl;
  bool bos = false;
};

void AppendIds(const std::vector<int32_t>& ids, char sep, std::string& out) {
  for (size_t i = 0; i < ids.size(); ++i) {
    if (i > 0) out.push_back(sep);
    out += std::to_string(ids[i]);
  }
}

std::vector<int32_t> EncodeWithBos(const partition::Tokenizer& tok, const std::string& text,
                                   bool bos) {
  std::vector<int32_t> ids = tok.Encode(text);
  if (bos && tok.add_bos() && tok.bos_id()) ids.insert(ids.begin(), *tok.bos_id());
  return ids;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Exception(Exception::kNotFound, path + ": cannot read the file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// One JSON string per line in, one JSON array of ids per line out.
size_t TokenizeJsonl(const partition::Tokenizer& tok, const TokenizeArgs& a, std::string& out) {
  std::ifstream in(a.jsonl, std::ios::binary);
  if (!in) throw Exception(Exception::kNotFound, a.jsonl + ": cannot read the file");
  std::string line;
  size_t bytes = 0;
  for (size_t n = 1; std::getline(in, line); ++n) {
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::exception&) {
      j = nullptr;
    }
    if (!j.is_string())
      throw Exception(Exception::kInvalidArgument,
                      a.jsonl + ":" + std::to_string(n) + ": not a JSON string");
    const std::string& text = j.get_ref<const std::string&>();
    std::vector<int32_t> ids;
    try {
      ids = EncodeWithBos(tok, text, a.bos);
    } catch (const Exception& e) {
      throw Exception(e.code(), a.jsonl + ":" + std::to_string(n) + ": " + e.what());
    }
    bytes += text.size();
    out.push_back('[');
    AppendIds(ids, ',', out);
    out += "]\n";
  }
  return bytes;
}

}  // namespace

Runner AddTokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("tokenize", "print the token ids of a text (no BOS unless --bos)");
  auto a = std::make_shared<TokenizeArgs>();
  cmd->add_option("--tokenizer", a->tokenizer,
                  "model directory, tokenizer.json, tokenizer.model or .gguf")
      ->required();
  auto* text =
      cmd->add_option("--text", a->text, "the text; prints its ids space-separated on one line");
  auto* file = cmd->add_option("--text-file", a->text_file,
                               "a file whose whole content is the text (as --text)");
  auto* jsonl = cmd->add_option("--jsonl", a->jsonl,
                                "one JSON string per line; prints one JSON array of ids per line");
  text->excludes(file)->excludes(jsonl);
  file->excludes(jsonl);
  cmd->add_flag("--bos", a->bos, "start with BOS where the tokenizer adds one");
  return [a, text, file, jsonl](const Context& ctx) {
    if (text->count() + file->count() + jsonl->count() == 0) {
      throw Exception(Exception::kInvalidArgument,
                      "tokenize: give --text TEXT, --text-file FILE or --jsonl FILE");
    }
    auto tok = partition::Tokenizer::Open(a->tokenizer, ctx.tokenizer);
    ctx.log->debug("tokenizer {}", tok->description());
    const auto start = std::chrono::steady_clock::now();
    std::string out;
    size_t bytes = 0;
    if (jsonl->count() > 0) {
      bytes = TokenizeJsonl(*tok, *a, out);
    } else {
      const std::string t = file->count() > 0 ? ReadFile(a->text_file) : a->text;
      AppendIds(EncodeWithBos(*tok, t, a->bos), ' ', out);
      out.push_back('\n');
      bytes = t.size();
    }
    const double s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    ctx.log->debug("encoded {} bytes in {:.3f} s: {:.2f} MB/s", bytes, s,
                   bytes / 1e6 / std::max(s, 1e-9));
    std::fwrite(out.data(), 1, out.size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
  };
}

Runner AddDetokenize(CLI::App& app) {
  auto* cmd = app.add_subcommand("detokenize", "print the text of token ids");
  auto path = std::make_shared<std::string>();
  auto ids = std::make_shared<std::string>();
  auto jsonl = std::make_shared<std::string>();
  cmd->add_option("--tokenizer", *path, "model directory, tokenizer.json, tokenizer.model or .gguf")
      ->required();
  auto* ids_opt = cmd->add_option(
      "--ids", *ids, "token ids, \"1 2 3\" or \"1,2,3\"; prints the text and a newline");
  auto* jsonl_opt = cmd->add_option(
      "--jsonl", *jsonl, "one JSON array of ids per line; prints one JSON string per line");
  ids_opt->excludes(jsonl_opt);
  return [path, ids, jsonl, ids_opt, jsonl_opt](const Context& ctx) {
    if (ids_opt->count() + jsonl_opt->count() == 0)
      throw Exception(Exception::kInvalidArgument,
                      "detokenize: give --ids \"1 2 3\" or --jsonl FILE");
    auto tok = partition::Tokenizer::Open(*path, ctx.tokenizer);
    std::string out;
    if (ids_opt->count() > 0) {
      out = tok->Decode(partition::ParseTokenIds(*ids)) + "\n";
    } else {
      std::ifstream in(*jsonl, std::ios::binary);
      if (!in) throw Exception(Exception::kNotFound, *jsonl + ": cannot read the file");
      std::string line;
      for (size_t n = 1; std::getline(in, line); ++n) {
        const std::string where = *jsonl + ":" + std::to_string(n) + ": ";
        nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
        std::vector<int32_t> v;
        if (!j.is_array())
          throw Exception(Exception::kInvalidArgument, where + "not a JSON array of token ids");
        for (const auto& x : j) {
          if (!x.is_number_integer() || x.get<int64_t>() < 0 || x.get<int64_t>() > INT32_MAX) {
            throw Exception(Exception::kInvalidArgument, where + "not a JSON array of token ids");
          }
          v.push_back(x.get<int32_t>());
        }
        try {
          out += nlohmann::json(tok->Decode(v)).dump() + "\n";
        } catch (const Exception& e) {
          throw Exception(e.code(), where + e.what());
        }
      }
    }
    std::fwrite(out.data(), 1, out.size(), stdout);
    return std::fflush(stdout) == 0 ? 0 : 1;
  };
}

}  // namespace splitlm::cli
