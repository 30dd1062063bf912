#include "partition/tokenizer.h"

#include <dlfcn.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <cstdlib>
#include <filesystem>

#include "partition/error.h"

namespace splitlm::partition {

struct Tokenizer::Shim {
  void* lib = nullptr;
  void* (*open)(const char*, char*, int) = nullptr;
  void (*close)(void*) = nullptr;
  int (*vocab_size)(void*) = nullptr;
  int (*encode)(void*, const char*, int, int*, int) = nullptr;
  int (*decode)(void*, const int*, int, char*, int) = nullptr;
  ~Shim() {
    if (lib != nullptr) dlclose(lib);
  }
};

namespace {

std::string ShimPath() {
  if (const char* env = std::getenv("SPLITLM_SPM_SHIM")) return env;
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

template <typename F>
void Bind(void* lib, const char* name, F* fn, const std::string& path) {
  *fn = reinterpret_cast<F>(dlsym(lib, name));
  if (*fn == nullptr) throw PartitionError(path + ": missing symbol " + name);
}

}  // namespace

std::unique_ptr<Tokenizer> Tokenizer::Open(const std::string& model_path) {
  std::error_code ec;
  const auto status = std::filesystem::status(model_path, ec);
  if (!std::filesystem::exists(status)) throw PartitionError(model_path + ": tokenizer file not found");
  if (std::filesystem::is_directory(status)) {
    throw PartitionError(model_path + ": is a directory, not a tokenizer file (give the tokenizer.model file in it)");
  }
  if (!std::filesystem::is_regular_file(status)) throw PartitionError(model_path + ": not a regular file (a tokenizer.model)");
  if (access(model_path.c_str(), R_OK) != 0) {
    throw PartitionError(model_path + ": cannot read the tokenizer file: " + std::strerror(errno));
  }
  auto shim = std::make_unique<Shim>();
  const std::string path = ShimPath();
  shim->lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
  if (shim->lib == nullptr) {
    throw PartitionError("cannot load the SentencePiece shim " + path + ": " + dlerror());
  }
  Bind(shim->lib, "splitlm_spm_open", &shim->open, path);
  Bind(shim->lib, "splitlm_spm_close", &shim->close, path);
  Bind(shim->lib, "splitlm_spm_vocab_size", &shim->vocab_size, path);
  Bind(shim->lib, "splitlm_spm_encode", &shim->encode, path);
  Bind(shim->lib, "splitlm_spm_decode", &shim->decode, path);
  char err[512] = {0};
  void* handle = shim->open(model_path.c_str(), err, sizeof err);
  if (handle == nullptr) {
    throw PartitionError(model_path + ": not a SentencePiece model (" + err + ")");
  }
  std::unique_ptr<Tokenizer> t(new Tokenizer());
  t->shim_ = std::move(shim);
  t->handle_ = handle;
  return t;
}

Tokenizer::~Tokenizer() {
  if (handle_ != nullptr) shim_->close(handle_);
}

std::vector<int32_t> Tokenizer::Encode(const std::string& text) const {
  std::vector<int> ids(text.size() + 16);
  int n = shim_->encode(handle_, text.data(), static_cast<int>(text.size()), ids.data(),
                        static_cast<int>(ids.size()));
  if (n < 0) throw PartitionError("tokenizer failed to encode the prompt");
  if (n > static_cast<int>(ids.size())) {
    ids.resize(n);
    n = shim_->encode(handle_, text.data(), static_cast<int>(text.size()), ids.data(), n);
  }
  return std::vector<int32_t>(ids.begin(), ids.begin() + n);
}

std::string Tokenizer::Decode(const std::vector<int32_t>& ids) const {
  const int vocab = vocab_size();
  for (int32_t id : ids) {
    if (id < 0 || id >= vocab) {
      throw PartitionError("token id " + std::to_string(id) + " is outside the tokenizer's " +
                           std::to_string(vocab) + " pieces");
    }
  }
  std::vector<int> in(ids.begin(), ids.end());
  std::string buf(64 + ids.size() * 16, '\0');
  int n = shim_->decode(handle_, in.data(), static_cast<int>(in.size()), buf.data(),
                        static_cast<int>(buf.size()));
  if (n < 0) throw PartitionError("tokenizer failed to decode ids (out of range?)");
  if (n > static_cast<int>(buf.size())) {
    buf.resize(n);
    n = shim_->decode(handle_, in.data(), static_cast<int>(in.size()), buf.data(), n);
  }
  buf.resize(n);
  return buf;
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
      throw PartitionError("bad token id \"" + item + "\" (expected non-negative integers)");
    }
    ids.push_back(static_cast<int32_t>(v));
    item.clear();
  }
  return ids;
}

int Tokenizer::vocab_size() const { return shim_->vocab_size(handle_); }

}  // namespace splitlm::partition
