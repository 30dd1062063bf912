// A greedy run through a chain of stages, for the stage tests: device
// [0, cut) and cloud [cut, L) with the hidden state passed as fp32, or one
// stage at cut == L.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <vector>

#include "partition/model.h"
#include "partition/stage.h"

namespace splitlm::testing {

// A fixed prompt of `n` ids inside the vocabulary.
inline std::vector<int32_t> Prompt(int n, int vocab) {
  std::vector<int32_t> ids(n);
  for (int i = 0; i < n; ++i) ids[i] = (i * 37 + 1) % vocab;
  return ids;
}

inline int Argmax(const std::vector<float>& v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

// The logits of the prefill of `prompt` and of `steps` greedy decodes.
inline std::vector<std::vector<float>> RunChain(const partition::Model& model, int cut,
                                                const std::vector<int32_t>& prompt, int steps) {
  using partition::Stage;
  using partition::StageSpec;
  using partition::StageWeights;
  const partition::ModelConfig& c = model.config();
  Stage device(StageWeights::Load(model, StageSpec::Device(c, cut)));
  std::unique_ptr<Stage> cloud;
  if (cut < c.num_layers)
    cloud = std::make_unique<Stage>(StageWeights::Load(model, StageSpec::Cloud(c, cut)));
  std::vector<std::vector<float>> all;
  std::vector<float> logits(c.vocab_size), hidden;
  auto step = [&](const int32_t* ids, int n) {
    if (!cloud) {
      device.Forward({ids, nullptr, n}, logits.data());
    } else {
      hidden.resize(device.OutputSize(n));
      device.Forward({ids, nullptr, n}, hidden.data());
      cloud->Forward({nullptr, hidden.data(), n}, logits.data());
    }
    all.push_back(logits);
  };
  step(prompt.data(), static_cast<int>(prompt.size()));
  for (int i = 0; i < steps; ++i) {
    const int32_t next = Argmax(logits);
    step(&next, 1);
  }
  return all;
}

}  // namespace splitlm::testing
