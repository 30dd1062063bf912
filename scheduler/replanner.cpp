#include "scheduler/replanner.h"

#include <algorithm>
#include <cmath>

namespace splitlm::scheduler {

ComputeDrift::ComputeDrift(int window) : window_(static_cast<size_t>(std::max(1, window))) {
  steps_.reserve(window_);
}

void ComputeDrift::Observe(double predicted_us, double measured_us) {
  if (!(predicted_us > 0) || !(measured_us > 0) || !std::isfinite(predicted_us) ||
      !std::isfinite(measured_us))
    return;
  const Step step{measured_us / predicted_us, predicted_us};
  if (steps_.size() < window_) {
    steps_.push_back(step);
  } else {
    steps_[next_] = step;
    next_ = (next_ + 1) % window_;
  }
  ++samples_;
}

double ComputeDrift::factor() const {
  if (steps_.empty()) return 1.0;
  std::vector<Step> sorted = steps_;
  std::sort(sorted.begin(), sorted.end(),
            [](const Step& a, const Step& b) { return a.ratio < b.ratio; });
  double total = 0;
  for (const Step& s : sorted) total += s.weight;
  // The weighted median: the first ratio at which half the weight is
  // reached; the mean of two neighbours when that half falls exactly
  // between them (two equal steps).
  double below = 0;
  for (size_t i = 0; i < sorted.size(); ++i) {
    below += sorted[i].weight;
    if (below * 2 < total) continue;
    const bool between = below * 2 == total && i + 1 < sorted.size();
    const double median = between ? (sorted[i].ratio + sorted[i + 1].ratio) / 2 : sorted[i].ratio;
    return std::clamp(median, 0.05, 20.0);
  }
  return std::clamp(sorted.back().ratio, 0.05, 20.0);
}

void NetworkEstimator::Calibrate(double small_bytes, double small_ms, double large_bytes,
                                 double large_ms) {
  // Both probes carry the bytes each way: time = rtt + bytes * (1/up + 1/down).
  const double slope =
      std::max(1e-12, (large_ms - small_ms) / std::max(1.0, large_bytes - small_bytes));
  rtt_ms_ = std::max(0.0, small_ms - slope * small_bytes);
  rtt_var_ = 0;
  // Without a separate downlink probe, split the slope evenly between the
  // two directions (a symmetric link).
  const double mbit_s = 2.0 * 8.0 / (slope * 1e3);
  up_mbit_s_ = down_mbit_s_ = mbit_s;
  calibrated_ = true;
}

void NetworkEstimator::Observe(double up_bytes, double down_bytes, double network_ms) {
  const double transfer = up_bytes * 8.0 / (std::max(1e-9, up_mbit_s_) * 1e3) +
                          down_bytes * 8.0 / (std::max(1e-9, down_mbit_s_) * 1e3);
  const double rtt = std::max(0.0, network_ms - (calibrated_ ? transfer : 0.0));
  if (!calibrated_) {
    rtt_ms_ = rtt;
    calibrated_ = true;
    return;
  }
  const double d = rtt - rtt_ms_;
  rtt_ms_ += alpha_ * d;
  rtt_var_ = (1 - alpha_) * (rtt_var_ + alpha_ * d * d);
}

void NetworkEstimator::SetBandwidth(double up_mbit_s, double down_mbit_s) {
  up_mbit_s_ = up_mbit_s;
  down_mbit_s_ = down_mbit_s;
}

double NetworkEstimator::rtt_stddev_ms() const { return std::sqrt(rtt_var_); }

Link NetworkEstimator::ToLink(const Link& base) const {
  Link l = base;
  l.rtt_ms = rtt_ms_;
  l.up_mbit_s = up_mbit_s_;
  l.down_mbit_s = down_mbit_s_;
  return l;
}

Replanner::Replanner(PlanInputs inputs, Options options)
    : inputs_(std::move(inputs)), options_(options) {}

std::optional<int> Replanner::PlanRequest() {
  last_ = ChooseCut(inputs_);
  if (!last_.chosen) return std::nullopt;
  if (current_ && last_.cuts[*current_].violations.empty()) {
    const double now = last_.cuts[*current_].score, best = last_.cuts[*last_.chosen].score;
    if (best >= now * (1 - options_.margin)) return current_;  // not worth the change
  }
  current_ = last_.chosen;
  return current_;
}

int Replanner::Replan(int context, int remaining) {
  PlanInputs in = inputs_;
  in.workload.context = context;
  last_ = ChooseCut(in);
  if (!current_) current_ = last_.chosen.value_or(in.device.num_layers);
  if (!last_.chosen || *last_.chosen == *current_) return *current_;
  const Prediction& now = last_.cuts[*current_];
  const Prediction& next = last_.cuts[*last_.chosen];
  if (!now.violations.empty()) {  // the current cut broke a constraint: move
    current_ = last_.chosen;
    return *current_;
  }
  // Gain over the rest of the generation against the one-off cost of moving
  // the layers between the two cuts: their KV is rebuilt for `context`
  // positions by a prefill on the side that takes them over (towards the
  // cloud, after uploading the hidden states at the new cut).
  const int lo = std::min(*current_, *last_.chosen), hi = std::max(*current_, *last_.chosen);
  const bool to_device = *last_.chosen > *current_;
  double move_ms = 0;
  for (int l = lo; l < hi; ++l) {
    move_ms += (to_device ? in.device.PrefillUs(l, context) : in.cloud.PrefillUs(l, context)) / 1e3;
  }
  if (!to_device) {
    move_ms += in.link.rtt_ms + static_cast<double>(in.workload.activation_bytes) * context * 8.0 /
                                    (std::max(1e-9, in.link.up_mbit_s) * 1e3);
  }
  move_ms += options_.move_ms_per_layer_position * (hi - lo) * context;
  const double gain = (now.score - next.score) * remaining;
  if (gain > move_ms + options_.margin * now.score * remaining) current_ = last_.chosen;
  return *current_;
}

}  // namespace splitlm::scheduler
