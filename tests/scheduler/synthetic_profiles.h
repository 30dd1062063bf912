// Synthetic compute profiles for scheduler tests: every layer takes the same
// time at any context, prefill is linear in the prompt length.
#pragma once

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

}  // namespace splitlm::scheduler::testing
