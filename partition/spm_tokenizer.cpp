#include "partition/spm_tokenizer.h"

#include <dlfcn.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>

#include "partition/added_tokens.h"
#include "partition/utf8.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

struct Shim {
  void* lib = nullptr;
  void* (*open)(const char*, char*, int) = nullptr;
  void (*close)(void*) = nullptr;
  int (*vocab_size)(void*) = nullptr;
  int (*encode)(void*, const char*, int, int*, int) = nullptr;
  int (*decode)(void*, const int*, int, char*, int) = nullptr;
  int (*piece)(void*, int, char*, int, int*) = nullptr;
  int (*bos_id)(void*) = nullptr;
  int (*eos_id)(void*) = nullptr;
  ~Shim() {
    if (lib != nullptr) dlclose(lib);
  }
};

template <typename F>
void Bind(void* lib, const char* name, F* fn, const std::string& path) {
  *fn = reinterpret_cast<F>(dlsym(lib, name));
  if (*fn == nullptr) throw Exception(Exception::kUnavailable, path + ": missing symbol " + name);
}

class SpmTokenizer final : public Tokenizer {
 public:
  SpmTokenizer(std::unique_ptr<Shim> shim, void* handle, const std::string& path);
  ~SpmTokenizer() override { shim_->close(handle_); }
  std::vector<int32_t> Encode(const std::string& text) const override;
  std::string Decode(const std::vector<int32_t>& ids) const override;
  std::string TokenBytes(int32_t id) const override;
  int vocab_size() const override { return vocab_; }

 private:
  std::string Piece(int32_t id, int* kind) const;
  std::vector<int32_t> EncodeText(const std::string& text) const;
  void CheckId(int32_t id) const;
  std::unique_ptr<Shim> shim_;
  void* handle_;
  int vocab_;
  AddedTokenMatcher specials_;  // control and unknown pieces
};

SpmTokenizer::SpmTokenizer(std::unique_ptr<Shim> shim, void* handle, const std::string& path)
    : shim_(std::move(shim)), handle_(handle), vocab_(shim_->vocab_size(handle)) {
  int kind = 0;
  std::vector<std::pair<std::string, int32_t>> specials;
  for (int32_t id = 0; id < vocab_; ++id) {
    std::string p = Piece(id, &kind);
    if (kind == 1 || kind == 2) specials.emplace_back(std::move(p), id);
  }
  specials_ = AddedTokenMatcher(specials);
  const int bos = shim_->bos_id(handle_), eos = shim_->eos_id(handle_);
  if (bos >= 0 && bos < vocab_) {
    special_.bos_id = bos;
    special_.add_bos = true;
    special_.bos_token = Piece(bos, &kind);
  }
  if (eos >= 0 && eos < vocab_) {
    special_.eos_ids.push_back(eos);
    special_.eos_token = Piece(eos, &kind);
  }
  for (int32_t id : GenerationConfigEosIds(std::filesystem::path(path).parent_path().string())) {
    if (std::find(special_.eos_ids.begin(), special_.eos_ids.end(), id) == special_.eos_ids.end()) {
      special_.eos_ids.push_back(id);
    }
  }
  description_ = path + " (SentencePiece, " + std::to_string(vocab_) + " pieces)";
}

void SpmTokenizer::CheckId(int32_t id) const {
  if (id < 0 || id >= vocab_) {
    throw Exception(Exception::kInvalidArgument, "token id " + std::to_string(id) +
                                                     " is outside the tokenizer's " +
                                                     std::to_string(vocab_) + " pieces");
  }
}

std::string SpmTokenizer::Piece(int32_t id, int* kind) const {
  std::string buf(64, '\0');
  int n = shim_->piece(handle_, id, buf.data(), static_cast<int>(buf.size()), kind);
  if (n < 0)
    throw Exception(Exception::kInvalidArgument,
                    "token id " + std::to_string(id) + " has no SentencePiece piece");
  if (n > static_cast<int>(buf.size())) {
    buf.resize(n);
    n = shim_->piece(handle_, id, buf.data(), n, kind);
  }
  buf.resize(n);
  return buf;
}

// Special pieces written in the text are their ids; the text between them is
// encoded piece by piece, each with SentencePiece's leading space (as
// llama.cpp and Hugging Face's Llama tokenizer do).
std::vector<int32_t> SpmTokenizer::Encode(const std::string& text) const {
  std::vector<int32_t> out;
  for (const auto& piece : specials_.Split(text)) {
    if (piece.id >= 0) {
      out.push_back(piece.id);
    } else {
      std::vector<int32_t> ids = EncodeText(std::string(piece.text));
      out.insert(out.end(), ids.begin(), ids.end());
    }
  }
  return out;
}

std::vector<int32_t> SpmTokenizer::EncodeText(const std::string& text) const {
  std::vector<int> ids(text.size() + 16);
  int n = shim_->encode(handle_, text.data(), static_cast<int>(text.size()), ids.data(),
                        static_cast<int>(ids.size()));
  if (n < 0) throw Exception(Exception::kInvalidArgument, "tokenizer failed to encode the prompt");
  if (n > static_cast<int>(ids.size())) {
    ids.resize(n);
    n = shim_->encode(handle_, text.data(), static_cast<int>(text.size()), ids.data(), n);
  }
  return std::vector<int32_t>(ids.begin(), ids.begin() + n);
}

std::string SpmTokenizer::Decode(const std::vector<int32_t>& ids) const {
  for (int32_t id : ids) CheckId(id);
  std::vector<int> in(ids.begin(), ids.end());
  std::string buf(64 + ids.size() * 16, '\0');
  int n = shim_->decode(handle_, in.data(), static_cast<int>(in.size()), buf.data(),
                        static_cast<int>(buf.size()));
  if (n < 0)
    throw Exception(Exception::kInvalidArgument, "tokenizer failed to decode ids (out of range?)");
  if (n > static_cast<int>(buf.size())) {
    buf.resize(n);
    n = shim_->decode(handle_, in.data(), static_cast<int>(in.size()), buf.data(), n);
  }
  buf.resize(n);
  return buf;
}

std::string SpmTokenizer::TokenBytes(int32_t id) const {
  CheckId(id);
  int kind = 0;
  const std::string p = Piece(id, &kind);
  if (kind == 1 || kind == 4) return "";   // control and unused pieces decode to nothing
  if (kind == 2) return " \xE2\x81\x87 ";  // " ⁇ "
  if (kind == 3)
    return std::string(1, static_cast<char>(std::strtoul(p.substr(3, 2).c_str(), nullptr, 16)));
  std::string out;
  for (size_t i = 0; i < p.size();) {
    if (p.compare(i, 3, "\xE2\x96\x81") == 0) {
      out.push_back(' ');
      i += 3;
    } else {
      out.push_back(p[i++]);
    }
  }
  return out;
}

}  // namespace

std::string DefaultSpmShimPath() {
  std::error_code ec;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (!ec) {
    auto p = exe.parent_path() / "libsplitlm_spm.so";
    if (std::filesystem::exists(p)) return p.string();
    // Installed: <prefix>/bin/NAME and <prefix>/lib/splitlm/ (the packages).
    p = exe.parent_path().parent_path() / "lib" / "splitlm" / "libsplitlm_spm.so";
    if (std::filesystem::exists(p)) return p.string();
  }
  return SPLITLM_SPM_SHIM_PATH;  // where the build put it
}

std::unique_ptr<Tokenizer> OpenSentencePiece(const std::string& model_path,
                                             const std::string& shim_path) {
  auto shim = std::make_unique<Shim>();
  const std::string& path = shim_path;
  shim->lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (shim->lib == nullptr)
    throw Exception(Exception::kUnavailable,
                    "cannot load the SentencePiece shim " + path + ": " + dlerror());
  Bind(shim->lib, "splitlm_spm_open", &shim->open, path);
  Bind(shim->lib, "splitlm_spm_close", &shim->close, path);
  Bind(shim->lib, "splitlm_spm_vocab_size", &shim->vocab_size, path);
  Bind(shim->lib, "splitlm_spm_encode", &shim->encode, path);
  Bind(shim->lib, "splitlm_spm_decode", &shim->decode, path);
  Bind(shim->lib, "splitlm_spm_piece", &shim->piece, path);
  Bind(shim->lib, "splitlm_spm_bos_id", &shim->bos_id, path);
  Bind(shim->lib, "splitlm_spm_eos_id", &shim->eos_id, path);
  char err[512] = {0};
  void* handle = shim->open(model_path.c_str(), err, sizeof err);
  if (handle == nullptr)
    throw Exception(Exception::kCorrupt, model_path + ": not a SentencePiece model (" + err + ")");
  return std::make_unique<SpmTokenizer>(std::move(shim), handle, model_path);
}

}  // namespace splitlm::partition
