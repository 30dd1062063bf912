// Deterministic random-weight models in Hugging Face layout, so that tests
// and benchmarks never need a download (`splitlm make-model`).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "partition/model_config.h"
#include "partition/safetensors.h"

namespace splitlm::partition {

struct RandomModelOptions {
  std::string preset = "tiny";  // tiny, small, 110m
  uint64_t seed = 0;
  Arch arch = Arch::kLlama;  // kQwen2 adds q/k/v biases
  StoredDType dtype = StoredDType::kF32;
  int shards = 1;  // > 1 writes model.safetensors.index.json
  // A tokenizer.json or tokenizer.model copied into the directory when set
  // (with tokenizer_config.json and generation_config.json beside a
  // tokenizer.json); the vocabulary size, BOS and EOS ids are taken from it.
  std::string tokenizer;
  int vocab = 0;  // > 0 overrides the preset's (or tokenizer's) vocabulary size
  // Called after each tensor with bytes written so far and in all.
  std::function<void(uint64_t done, uint64_t total)> progress;
};

// Names of the presets, for help texts.
std::vector<std::string> RandomModelPresets();

// The config of a preset; throws Exception(kInvalidArgument) for an unknown name.
ModelConfig PresetConfig(const std::string& preset, Arch arch);

// Writes config.json and the weights into `dir` (created if needed). The same
// options always give byte-identical files. Throws Exception:
// kInvalidArgument for bad options, kUnavailable when `dir` cannot be
// written.
void WriteRandomModel(const RandomModelOptions& options, const std::string& dir);

}  // namespace splitlm::partition
