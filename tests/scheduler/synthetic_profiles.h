// Synthetic compute profiles for scheduler tests: every layer takes the same
// time at any context, prefill is linear in the prompt length.
#pragma once

#include <vector>

#include "scheduler/profile.h"

namespace splitlm::scheduler::testing {

inline ComputeProfile Flat(int layers, double layer_us, double head_us = 100, double embed_us = 1) {
  ComputeProfile p;
  p.num_layers = layers;
  p.decode_contexts = {1, 1000};
  p.prefill_lengths = {1, 1000};
  for (int l = 0; l < layers; ++l) {
    p.layer_decode_us.push_back({layer_us, layer_us});
    p.layer_prefill_us.push_back({layer_us, layer_us * 1000});
  }
  p.embed_us = embed_us;
  p.head_decode_us = head_us;
  p.layer_bytes = 10 << 20;
  p.embed_bytes = 4 << 20;
  p.head_bytes = 4 << 20;
  p.kv_bytes_per_position_per_layer = 1024;
  return p;
}

// A memory-bound device: layer l decodes in us_per_byte x its weight bytes
// `layer_bytes[l]`, plus `kv_us_per_position` x the context; prefill of n
// tokens takes n x the context-0 decode time; the embedding 1 us, the head
// `head_us`. Its memory fields say those weights are held.
inline ComputeProfile MemoryBound(const std::vector<double>& layer_bytes, double us_per_byte,
                                  double kv_us_per_position = 0, double head_us = 100) {
  const int layers = static_cast<int>(layer_bytes.size());
  ComputeProfile p = Flat(layers, 0, head_us);
  p.layer_weight_bytes = layer_bytes;
  for (int l = 0; l < layers; ++l) {
    const double w = layer_bytes[l] * us_per_byte;
    p.layer_decode_us[l] = {w + kv_us_per_position * p.decode_contexts[0],
                            w + kv_us_per_position * p.decode_contexts[1]};
    p.layer_prefill_us[l] = {w, w * 1000};
  }
  return p;
}

}  // namespace splitlm::scheduler::testing
