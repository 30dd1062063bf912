// The reference greedy continuation of ../shared's stories260K (HF and GGUF),
// and a greedy loop over a split that produces it.
#pragma once

#include <memory>
#include <vector>

#include "partition/model.h"
#include "partition/sampler.h"
#include "partition/stage.h"

namespace splitlm::testing {

// Greedy ids from prompt {1} (BOS), prompt included: llama2.c's and
// llama.cpp's output for the checkpoint.
inline const std::vector<int32_t>& Stories260KGreedyFromBos() {
  static const std::vector<int32_t> kIds = {1,   461, 461, 401, 401, 401, 461, 378, 455, 473, 456,
                                            435, 299, 362, 409, 283, 264, 283, 452, 288, 13,  431,
                                            431, 431, 431, 431, 431, 431, 431, 431, 431, 431, 431,
                                            431, 293, 430, 417, 363, 416, 315, 342};
  return kIds;
}

// Extends `ids` greedily to `total` ids, the device running [0, cut) and the
// cloud [cut, L) (everything on the device at cut == L).
inline std::vector<int32_t> GreedySplit(const partition::Model& m, int cut,
                                        std::vector<int32_t> ids, int total) {
  using namespace partition;
  const ModelConfig& c = m.config();
  Stage device(StageWeights::Load(m, StageSpec::Device(c, cut)));
  std::unique_ptr<Stage> cloud;
  if (cut < c.num_layers)
    cloud = std::make_unique<Stage>(StageWeights::Load(m, StageSpec::Cloud(c, cut)));
  std::vector<float> logits(c.vocab_size), hidden;
  size_t fed = 0;
  while (static_cast<int>(ids.size()) < total) {
    const int n = static_cast<int>(ids.size() - fed);
    if (cloud) {
      hidden.resize(device.OutputSize(n));
      device.Forward({ids.data() + fed, nullptr, n}, hidden.data());
      cloud->Forward({nullptr, hidden.data(), n}, logits.data());
    } else {
      device.Forward({ids.data() + fed, nullptr, n}, logits.data());
    }
    fed = ids.size();
    ids.push_back(SampleToken(logits.data(), c.vocab_size, {}, static_cast<int>(ids.size())));
  }
  return ids;
}

}  // namespace splitlm::testing
