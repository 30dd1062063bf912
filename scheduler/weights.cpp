#include "scheduler/weights.h"

#include "transport/error.h"

#include <algorithm>
#include <numeric>
#include <stdexcept>

namespace splitlm::scheduler {
namespace {

double Ratio(double to, double from) { return from > 0 ? to / from : 1.0; }

// The decode time of one layer with no context: the weight-read part.
double WeightPartUs(const ComputeProfile& p, int layer) {
  const auto& xs = p.decode_contexts;
  const auto& ys = p.layer_decode_us.at(layer);
  if (xs.size() < 2 || xs.back() == xs.front()) return ys.front();
  const double slope = std::max(0.0, (ys.back() - ys.front()) / (xs.back() - xs.front()));
  return std::clamp(ys.front() - slope * xs.front(), 0.0, ys.front());
}

}  // namespace

double WeightCost::LayerComputeFactor(int layer) const {
  return 1 + (quant_compute_factor - 1) * bytes.BlockFraction(layer);
}

double WeightCost::HeadComputeFactor() const {
  return 1 + (quant_compute_factor - 1) * bytes.head_block_fraction;
}

WeightCost F32Weights(const partition::ModelConfig& config) {
  return {partition::WeightBytesOf(config, "f32"), 1.0};
}

void SetWeightMemory(const partition::WeightBytes& w, ComputeProfile& p) {
  p.weights = w.format;
  p.layer_weight_bytes = w.layers;
  p.layer_bytes = w.layers.empty()
                      ? 0
                      : std::accumulate(w.layers.begin(), w.layers.end(), 0.0) / w.layers.size();
  p.embed_bytes = w.embed;
  p.head_bytes = w.head;
}

ComputeProfile RetargetProfile(const ComputeProfile& measured, const WeightCost& from,
                               const WeightCost& to) {
  const size_t n = static_cast<size_t>(measured.num_layers);
  if (from.bytes.layers.size() != n || to.bytes.layers.size() != n) {
    throw Exception(Exception::kInvalidArgument,
                    "weights of " + std::to_string(to.bytes.layers.size()) +
                        " layers for a profile of " + std::to_string(n));
  }
  ComputeProfile p = measured;
  for (int l = 0; l < measured.num_layers; ++l) {
    const double saved =
        WeightPartUs(measured, l) * (1 - Ratio(to.bytes.layers[l], from.bytes.layers[l]));
    for (double& v : p.layer_decode_us[l]) v = std::max(0.0, v - saved);
    const double f = to.LayerComputeFactor(l) / from.LayerComputeFactor(l);
    for (double& v : p.layer_prefill_us[l]) v *= f;
  }
  p.embed_us *= Ratio(to.bytes.embed_row, from.bytes.embed_row);
  p.head_decode_us *= Ratio(to.bytes.head_read, from.bytes.head_read);
  SetWeightMemory(to.bytes, p);
  return p;
}

}  // namespace splitlm::scheduler
