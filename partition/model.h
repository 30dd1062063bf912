// A Hugging Face model directory: config.json plus one or more safetensors
// files. Opening it maps the files and reads only their headers.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "partition/model_config.h"
#include "partition/safetensors.h"

namespace splitlm::partition {

// A borrowed view of one stored tensor; valid while the Model lives.
struct TensorRef {
  const void* data = nullptr;
  StoredDType dtype = StoredDType::kF32;
  std::vector<int64_t> shape;
};

class Model {
 public:
  // Opens `dir`, which holds config.json and either model.safetensors or
  // model.safetensors.index.json with its shards. Reads every file once to
  // hash the weights (see fingerprint()). Throws PartitionError naming the
  // file and the field at fault: also for inconsistent files, e.g. a tensor
  // of a layer past config.json's num_hidden_layers.
  static std::unique_ptr<Model> Open(const std::string& dir);
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  const std::string& dir() const { return dir_; }
  // Identifies the model: config.json, the tensor headers and the content of
  // every tensor (each file's data digest), so two models of the same shapes
  // with other weights differ. Both sides of a split must agree on it.
  uint64_t fingerprint() const { return fingerprint_; }
  // Path of tokenizer.model in the directory, if there is one.
  std::optional<std::string> tokenizer_path() const;

  bool HasTensor(const std::string& name) const;
  // Throws PartitionError naming the tensor and file if it is missing or its
  // shape differs from `expected_shape`.
  TensorRef Tensor(const std::string& name, const std::vector<int64_t>& expected_shape) const;

 private:
  Model() = default;
  struct Entry {
    const SafetensorsFile* file;
    const TensorInfo* info;
  };
  const Entry* Find(const std::string& name) const;

  std::string dir_;
  ModelConfig config_;
  uint64_t fingerprint_ = 0;
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<std::pair<std::string, Entry>> index_;  // sorted by name
};

// FNV-1a, 64 bits; also used to fingerprint profiles.
uint64_t Fnv1a64(const void* data, size_t n, uint64_t seed = 0xcbf29ce484222325ull);

}  // namespace splitlm::partition
