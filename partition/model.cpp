#include "partition/model.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "partition/gguf.h"
#include "partition/gguf_model.h"
#include "partition/hf_to_gguf.h"
#include "partition/weight_matrix.h"
#include "transport/error.h"
#include "transport/text_file.h"

namespace splitlm::partition {
namespace fs = std::filesystem;

namespace {

std::string ReadFile(const std::string& path, size_t max_bytes) {
  return transport::ReadTextFileOrThrow(path, max_bytes);
}

// The layer index of a tensor named "model.layers.N....", or -1.
int64_t LayerIndex(const std::string& name) {
  static const std::string kPrefix = "model.layers.";
  if (name.compare(0, kPrefix.size(), kPrefix) != 0) return -1;
  int64_t n = 0;
  size_t i = kPrefix.size();
  for (; i < name.size() && i < kPrefix.size() + 9 && name[i] >= '0' && name[i] <= '9'; ++i) {
    n = n * 10 + (name[i] - '0');
  }
  return i > kPrefix.size() && i < name.size() && name[i] == '.' ? n : -1;
}

// A file that stores layers past num_hidden_layers belongs to another
// configuration: loading it would silently drop layers.
void CheckLayersWithinConfig(const SafetensorsFile& file, const ModelConfig& config,
                             const std::string& config_path) {
  for (const auto& entry : file.tensors()) {
    const int64_t layer = LayerIndex(entry.first);
    if (layer >= config.num_layers) {
      throw Exception(Exception::kCorrupt,
                      file.path() + ": tensor \"" + entry.first + "\" belongs to layer " +
                          std::to_string(layer) + ", but " + config_path +
                          " has \"num_hidden_layers\" = " + std::to_string(config.num_layers));
    }
  }
}

std::string ShapeString(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace

uint64_t Fnv1a64(const void* data, size_t n, uint64_t h) {
  const auto* p = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

namespace {

uint64_t HashValue(const GgufValue& v, uint64_t h) {
  const uint32_t types[2] = {static_cast<uint32_t>(v.type), static_cast<uint32_t>(v.element_type)};
  h = Fnv1a64(types, sizeof types, h);
  h = Fnv1a64(&v.integer, sizeof v.integer, h);
  h = Fnv1a64(&v.real, sizeof v.real, h);
  h = Fnv1a64(v.text.data(), v.text.size(), h);
  if (!v.integers.empty()) h = Fnv1a64(v.integers.data(), v.integers.size() * sizeof(int64_t), h);
  if (!v.reals.empty()) h = Fnv1a64(v.reals.data(), v.reals.size() * sizeof(double), h);
  for (const auto& t : v.texts) {
    const uint64_t n = t.size();
    h = Fnv1a64(&n, sizeof n, h);
    h = Fnv1a64(t.data(), t.size(), h);
  }
  return h;
}

// See Model::identity(): what quantising a GGUF file leaves unchanged.
uint64_t GgufIdentity(const GgufHeader& header) {
  uint64_t h = Fnv1a64("gguf-identity", 13);
  for (const auto& [key, value] : header.metadata) {  // sorted by key
    if (key == "general.file_type" || key == "general.quantization_version") continue;
    h = Fnv1a64(key.data(), key.size() + 1, h);  // with the NUL: keys are delimited
    h = HashValue(value, h);
  }
  std::vector<const GgufTensor*> tensors;
  for (const auto& t : header.tensors) tensors.push_back(&t);
  std::sort(tensors.begin(), tensors.end(), [](auto* a, auto* b) { return a->name < b->name; });
  for (const GgufTensor* t : tensors) {
    h = Fnv1a64(t->name.data(), t->name.size() + 1, h);
    h = Fnv1a64(t->dims.data(), t->dims.size() * sizeof(int64_t), h);
  }
  return h;
}

std::string GgufFormats(const GgufHeader& header) {
  std::vector<std::string> names;
  for (const auto& t : header.tensors) {
    std::string name = GgmlTypeName(t.type);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return std::tolower(c); });
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  std::string out;
  for (const auto& n : names) out += (out.empty() ? "" : "+") + n;
  return out;
}

}  // namespace

std::unique_ptr<Model> Model::Open(const std::string& path, const std::string& weights,
                                   kernels::Isa isa) {
  CheckWeightFormat(weights);
  std::unique_ptr<Model> m = OpenPath(path);
  m->weights_ = weights;
  m->isa_ = isa;
  // Weights converted at load are other weights than the file's (f32 is the
  // file's values), so the fingerprint says which; the identity stays. Since
  // 2026-11-26 the embedding table is converted too (it was kept in fp32):
  // "/embedding-1" keeps a cache keyed by the earlier fingerprint from
  // being taken for this one.
  if (!weights.empty() && weights != "f32") {
    const std::string tag = "weights:" + weights + "/embedding-1";
    m->fingerprint_ = Fnv1a64(tag.data(), tag.size(), m->fingerprint_);
    m->weight_formats_ = weights + " (at load)";
  }
  // Block-format matrices multiply 8-bit activations (weight_matrix.h):
  // not what the same file gives as f32, nor what the exact kernels of
  // earlier builds gave, so the kernels are part of the fingerprint.
  auto block_format = [](const std::string& f) {
    return f == "q8_0" || f == "q4_0" || f == "q4_k" || f == "q6_k" || f == "q4_k_m";
  };
  bool int8 = block_format(weights);
  if (weights.empty()) {
    const std::string& f = m->weight_formats_;  // "q4_0+f32" for a GGUF file
    for (size_t b = 0, e; b <= f.size(); b = e + 1) {
      e = f.find('+', b);
      if (e == std::string::npos) e = f.size();
      const std::string name = f.substr(b, e - b);
      int8 = int8 || block_format(name);
    }
  }
  if (int8) {
    const std::string tag = "kernels:int8-activations-1";
    m->fingerprint_ = Fnv1a64(tag.data(), tag.size(), m->fingerprint_);
  }
  return m;
}

std::unique_ptr<Model> Model::OpenPath(const std::string& path) {
  if (fs::is_directory(path)) return OpenDirectory(path);
  if (!fs::exists(path)) {
    throw Exception(
        Exception::kNotFound,
        path + ": model not found (give a Hugging Face model directory or a .gguf file)");
  }
  const fs::path p(path);
  if (p.extension() == ".safetensors" || p.extension() == ".json") {
    throw Exception(Exception::kInvalidArgument,
                    path +
                        ": give the Hugging Face model's directory, not one of its files "
                        "(a file is read as GGUF)");
  }
  return OpenGguf(path);
}

std::unique_ptr<Model> Model::OpenGguf(const std::string& path) {
  std::unique_ptr<Model> m(new Model());
  m->dir_ = path;
  m->gguf_ = GgufFile::Open(path);
  m->config_ = GgufModelConfig(*m->gguf_);
  const uint64_t digest = m->gguf_->digest();
  m->fingerprint_ = Fnv1a64("gguf", 4);
  m->fingerprint_ = Fnv1a64(&digest, sizeof digest, m->fingerprint_);
  m->identity_ = GgufIdentity(m->gguf_->header());
  // Converted from a directory (or quantised from such a file): the
  // directory's identity, so the two recognise each other.
  if (const GgufValue* v = m->gguf_->Find(kSourceIdentityKey);
      v != nullptr && v->type == GgufType::kString) {
    const auto source = IdentityFromHex(v->text);
    if (!source)
      throw Exception(Exception::kCorrupt, path + ": metadata key \"" +
                                               std::string(kSourceIdentityKey) +
                                               "\" must be 16 hexadecimal digits");
    m->identity_ = *source;
  }
  m->weight_formats_ = GgufFormats(m->gguf_->header());
  return m;
}

std::unique_ptr<Model> Model::OpenDirectory(const std::string& dir) {
  std::unique_ptr<Model> m(new Model());
  m->dir_ = dir;
  const std::string config_path = (fs::path(dir) / "config.json").string();
  const std::string config_text = ReadFile(config_path, transport::kMaxConfigBytes);
  m->config_ = ParseModelConfig(config_text, config_path);
  m->fingerprint_ = Fnv1a64(config_text.data(), config_text.size());

  const fs::path single = fs::path(dir) / "model.safetensors";
  const fs::path index = fs::path(dir) / "model.safetensors.index.json";
  std::vector<std::string> shards;
  if (fs::exists(single)) {
    shards.push_back(single.string());
  } else if (fs::exists(index)) {
    nlohmann::json j =
        nlohmann::json::parse(ReadFile(index.string(), transport::kMaxListBytes), nullptr, false);
    if (j.is_discarded() || !j.contains("weight_map") || !j["weight_map"].is_object()) {
      throw Exception(Exception::kCorrupt, index.string() + ": missing \"weight_map\" object");
    }
    for (const auto& v : j["weight_map"]) {
      if (!v.is_string())
        throw Exception(Exception::kCorrupt,
                        index.string() + ": weight_map values must be file names");
      std::string name = v.get<std::string>();
      if (name.find('/') != std::string::npos || name.find("..") != std::string::npos) {
        throw Exception(Exception::kCorrupt,
                        index.string() + ": shard name \"" + name + "\" must be a plain file name");
      }
      std::string p = (fs::path(dir) / name).string();
      if (std::find(shards.begin(), shards.end(), p) == shards.end()) shards.push_back(p);
    }
  } else {
    throw Exception(Exception::kNotFound,
                    dir + ": neither model.safetensors nor model.safetensors.index.json found");
  }

  std::map<std::string, Entry> idx;
  for (const auto& path : shards) {
    m->files_.push_back(SafetensorsFile::Open(path));
    const SafetensorsFile* f = m->files_.back().get();
    CheckLayersWithinConfig(*f, m->config_, config_path);
    const uint64_t digest = f->data_digest();
    m->fingerprint_ = Fnv1a64(f->header_json().data(), f->header_json().size(), m->fingerprint_);
    m->fingerprint_ = Fnv1a64(&digest, sizeof digest, m->fingerprint_);
    for (const auto& [name, info] : f->tensors()) {
      if (!idx.emplace(name, Entry{f, &info}).second) {
        throw Exception(Exception::kCorrupt,
                        path + ": tensor \"" + name + "\" is also stored in another shard");
      }
    }
  }
  m->index_.assign(idx.begin(), idx.end());
  m->identity_ = m->fingerprint_;
  return m;
}

Model::~Model() = default;

void Model::ReleaseMappedPages() const {
  if (gguf_) gguf_->ReleasePages();
  for (const auto& f : files_) f->ReleasePages();
}

std::optional<std::string> Model::tokenizer_path() const {
  if (gguf_) {
    // "none" (llama.cpp's LLAMA_VOCAB_TYPE_NONE): weights without a vocabulary.
    const GgufValue* v = gguf_->Find("tokenizer.ggml.model");
    if (v == nullptr || v->text == "none" || v->text == "no_vocab") return std::nullopt;
    return dir_;
  }
  for (const char* name : {"tokenizer.model", "tokenizer.json"}) {
    fs::path p = fs::path(dir_) / name;
    if (fs::exists(p)) return p.string();
  }
  return std::nullopt;
}

const Model::Entry* Model::Find(const std::string& name) const {
  auto it = std::lower_bound(index_.begin(), index_.end(), name,
                             [](const auto& e, const std::string& n) { return e.first < n; });
  if (it == index_.end() || it->first != name) return nullptr;
  return &it->second;
}

bool Model::HasTensor(const std::string& name) const {
  if (gguf_) {
    const std::string gguf_name = GgufTensorName(name);
    return !gguf_name.empty() && gguf_->FindTensor(gguf_name) != nullptr;
  }
  return Find(name) != nullptr;
}

TensorRef Model::Tensor(const std::string& name, const std::vector<int64_t>& expected) const {
  if (gguf_) return GgufTensorRef(*gguf_, config_, name, expected);
  const Entry* e = Find(name);
  if (e == nullptr)
    throw Exception(Exception::kCorrupt, dir_ + ": tensor \"" + name + "\" is missing");
  if (e->info->shape != expected) {
    throw Exception(Exception::kCorrupt, e->file->path() + ": tensor \"" + name + "\" has shape " +
                                             ShapeString(e->info->shape) + ", expected " +
                                             ShapeString(expected));
  }
  const GgmlType type = e->info->dtype == StoredDType::kF32   ? GgmlType::kF32
                        : e->info->dtype == StoredDType::kF16 ? GgmlType::kF16
                                                              : GgmlType::kBF16;
  return TensorRef{e->file->data(*e->info), static_cast<uint32_t>(type), e->info->shape, 0};
}

}  // namespace splitlm::partition
