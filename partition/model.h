// A model: a Hugging Face directory (config.json plus one or more safetensors
// files) or a GGUF file of llama.cpp. Opening it maps the files and reads
// their headers; tensors are read only when a stage asks for them.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "partition/kernels.h"
#include "partition/model_config.h"
#include "partition/safetensors.h"

namespace splitlm::partition {

class GgufFile;

// A borrowed view of one stored tensor; valid while the Model lives. Convert
// it with TensorToF32 (partition/tensor_f32.h).
struct TensorRef {
  const void* data = nullptr;
  uint32_t type = 0;           // a ggml type number (GgmlType): F32 0, F16 1, BF16 30, ...
  std::vector<int64_t> shape;  // outermost first, as Hugging Face writes it
  // > 0: the rows (elements of a vector) of each of this many heads are
  // stored in llama.cpp's RoPE order and are put back in Hugging Face's.
  int interleaved_heads = 0;
};

class Model {
 public:
  // Opens `path`: a directory holding config.json and either
  // model.safetensors or model.safetensors.index.json with its shards, or a
  // GGUF file (architectures llama and qwen2, see gguf_model.h). Reads every
  // file once to hash the weights (see fingerprint()). Throws Exception
  // naming the file and the field at fault: kNotFound for a missing model,
  // kCorrupt for a malformed one, also for inconsistent files,
  // e.g. a tensor of a layer past config.json's num_hidden_layers.
  //
  // `weights` is the format stages hold the matrices in (see
  // weight_matrix.h: "" keeps a GGUF file's block types, "q8_0" etc.
  // quantise at load); an unknown value throws Exception(kInvalidArgument).
  // `isa` is the instruction set the stages' kernels run with (kernels.h:
  // every one gives the same bits; main()s take it from $SPLITLM_KERNELS).
  static std::unique_ptr<Model> Open(const std::string& path, const std::string& weights = "",
                                     kernels::Isa isa = kernels::Isa::Best());
  ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  const ModelConfig& config() const { return config_; }
  // The path given to Open (a directory or a GGUF file).
  const std::string& dir() const { return dir_; }
  // The weight format given to Open ("" for as stored).
  const std::string& weights() const { return weights_; }
  // The instruction set given to Open: stages loaded from this model run
  // their kernels with it.
  kernels::Isa isa() const { return isa_; }
  bool is_gguf() const { return gguf_ != nullptr; }
  // Identifies the model: config.json, the tensor headers and the content of
  // every tensor (each file's data digest; for GGUF the digest of the whole
  // file: metadata, tensor descriptions and data), so two models of the same
  // shapes with other weights differ; with a weight format given to Open
  // (other than f32), that format too. Equal on both sides of a split: the
  // same weights, so exactly a local run's tokens.
  uint64_t fingerprint() const { return fingerprint_; }
  // Identifies the model whatever format its weights are in, so that the
  // two sides of a split can tell "the same model, quantised differently"
  // from "another model". A directory: fingerprint() (its weights are the
  // source). A GGUF file: a hash of its metadata (except general.file_type
  // and general.quantization_version) and of its tensors' names and shapes,
  // which llama-quantize and `splitlm quantize` carry over unchanged.
  uint64_t identity() const { return identity_; }
  // The formats the weights are held in, for messages: the distinct tensor
  // types of a GGUF file in lower case, joined by '+' ("q4_k+q6_k+f32"), or
  // "f32" for a directory (its tensors are converted to fp32 at load).
  const std::string& weight_formats() const { return weight_formats_; }
  // The model's own tokenizer, for Tokenizer::Open: the directory's
  // tokenizer.model, else its tokenizer.json; a GGUF file itself when it
  // carries tokenizer.ggml.model. nullopt when there is none.
  std::optional<std::string> tokenizer_path() const;

  // Names are Hugging Face's ("model.layers.0.mlp.up_proj.weight") for both
  // kinds of model.
  bool HasTensor(const std::string& name) const;
  // Throws Exception(kCorrupt) naming the tensor and file if it is missing, its
  // shape differs from `expected_shape`, or its type cannot be loaded.
  TensorRef Tensor(const std::string& name, const std::vector<int64_t>& expected_shape) const;
  // Drops this process's mapping of the model files' pages (they stay
  // valid: a later read faults them in again). StageWeights::Load calls it
  // once it has copied its tensors, so a stage's resident memory is its own
  // copies, not those plus the file's pages.
  void ReleaseMappedPages() const;

 private:
  Model() = default;
  struct Entry {
    const SafetensorsFile* file;
    const TensorInfo* info;
  };
  const Entry* Find(const std::string& name) const;
  static std::unique_ptr<Model> OpenPath(const std::string& path);
  static std::unique_ptr<Model> OpenDirectory(const std::string& dir);
  static std::unique_ptr<Model> OpenGguf(const std::string& path);

  std::string dir_;
  std::string weights_;
  kernels::Isa isa_ = kernels::Isa::Portable();
  ModelConfig config_;
  uint64_t fingerprint_ = 0;
  uint64_t identity_ = 0;
  std::string weight_formats_ = "f32";
  std::vector<std::unique_ptr<SafetensorsFile>> files_;
  std::vector<std::pair<std::string, Entry>> index_;  // sorted by name
  std::unique_ptr<GgufFile> gguf_;                    // set for a GGUF model
};

// FNV-1a, 64 bits; also used to fingerprint profiles.
uint64_t Fnv1a64(const void* data, size_t n, uint64_t seed = 0xcbf29ce484222325ull);

}  // namespace splitlm::partition
