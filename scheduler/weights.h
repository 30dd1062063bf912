// Weight formats in the scheduler: what each side of a split holds (bytes
// per layer in its format, partition/weight_bytes.h) and what that does to
// its time. The model behind every figure:
//   - decode (one token) of a layer is memory-bound: its weight-read time
//     scales with the layer's bytes in the format; the time that grows with
//     the context (KV reads) is unchanged;
//   - compute-bound work (prefill, the roofline's flop term) does the same
//     flops in any format, times `quant_compute_factor` for the share of
//     values held in a block format (1 by default: an assumption that
//     dequantisation is hidden in the dot products, as with llama.cpp's
//     integer kernels; set it from a measurement: prefill time of the
//     quantised model / fp32 model on your hardware);
//   - the embedding reads one row per token, the head its whole matrix, in
//     their formats; the activations on the wire do not depend on the format.
#pragma once

#include <string>

#include "partition/weight_bytes.h"
#include "scheduler/profile.h"

namespace splitlm::scheduler {

struct WeightCost {
  partition::WeightBytes bytes;
  // Flop-term multiplier of values held in block formats (see above).
  double quant_compute_factor = 1.0;

  // 1 + (quant_compute_factor - 1) x the block-format share of layer l's values.
  double LayerComputeFactor(int layer) const;
  double HeadComputeFactor() const;
};

// The fp32 weights of `config` (what splitlm has held so far).
WeightCost F32Weights(const partition::ModelConfig& config);

// `measured` re-expressed for layers holding `to` instead of `from` (the
// weights it was measured with), by the model above. For each layer, the
// weight-read part of decode is the measured time extrapolated to context 0
// (clamped to [0, time at the first context]); it is scaled by to/from bytes
// and the rest kept. Prefill is scaled by the ratio of compute factors; the
// embedding by the ratio of row bytes, the head by that of its matrix. The
// memory fields (layer_weight_bytes, embed_bytes, head_bytes) and `weights`
// become `to`'s. Throws Exception(kInvalidArgument) if the layer counts differ.
ComputeProfile RetargetProfile(const ComputeProfile& measured, const WeightCost& from,
                               const WeightCost& to);

// Sets the memory fields and `weights` of `profile` from `w` (no time changes).
void SetWeightMemory(const partition::WeightBytes& w, ComputeProfile& profile);

}  // namespace splitlm::scheduler
