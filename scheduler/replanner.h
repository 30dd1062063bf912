// Keeping the cut right while conditions change: a network estimator fed by
// probes and by every real step, and a re-planner with hysteresis.
#pragma once

#include <algorithm>

#include <optional>
#include <vector>

#include "scheduler/cost_model.h"

namespace splitlm::scheduler {

// Round-trip time and bandwidth of the link. Probes of two sizes give both
// (the slope is the inverse bandwidth, the intercept the RTT); afterwards
// every real step (bytes each way, measured network time) updates an
// exponentially weighted estimate of the RTT and its variance.
class NetworkEstimator {
 public:
  explicit NetworkEstimator(double alpha = 0.2) : alpha_(alpha) {}

  // Two probes: round trips of `small` and `large` bytes up (and as many
  // down), in milliseconds.
  void Calibrate(double small_bytes, double small_ms, double large_bytes, double large_ms);
  // One real step: `up`/`down` bytes and the network share of its time
  // (round trip minus the cloud's reported compute and queue time).
  void Observe(double up_bytes, double down_bytes, double network_ms);
  // Sets the bandwidth directly (e.g. from a trace or configuration).
  void SetBandwidth(double up_mbit_s, double down_mbit_s);

  bool calibrated() const { return calibrated_; }
  double rtt_ms() const { return rtt_ms_; }
  double rtt_stddev_ms() const;
  double up_mbit_s() const { return up_mbit_s_; }
  double down_mbit_s() const { return down_mbit_s_; }
  // The link for the cost model (radio energy parameters from `base`).
  Link ToLink(const Link& base) const;

 private:
  double alpha_;
  bool calibrated_ = false;
  double rtt_ms_ = 0, rtt_var_ = 0;
  double up_mbit_s_ = 0, down_mbit_s_ = 0;
};

// How much slower (> 1) or faster (< 1) a machine computes now than its
// profile says, from real decode steps: the median of measured / predicted
// over the last `window` steps, each step weighted by its predicted time (a
// step with little work, timed less precisely for its size, counts less),
// clamped to [0.05, 20]. A profile is a snapshot of a fraction of a second;
// this follows a phone's thermal throttling or a busier server once it has
// lasted half the window (as NetworkEstimator follows the link), while a
// slow moment shorter than that (another process, one page fault) leaves
// it where it was.
class ComputeDrift {
 public:
  explicit ComputeDrift(int window = 128);
  // Ignored unless both are positive and finite.
  void Observe(double predicted_us, double measured_us);
  // 1 before any step.
  double factor() const;
  // Steps observed (including those that have left the window).
  int samples() const { return samples_; }

 private:
  struct Step {
    double ratio, weight;
  };
  size_t window_;
  std::vector<Step> steps_;  // a ring of the last `window_` steps
  size_t next_ = 0;          // where the next step goes once the ring is full
  int samples_ = 0;
};

// Chooses the cut and re-plans. A new cut is taken only when it is predicted
// to beat the current one by more than `margin` (relative) over the tokens
// still expected, after paying the cost of moving (rebuilding the KV of the
// layers that change sides), so measurements oscillating around a threshold
// do not make it flap.
class Replanner {
 public:
  struct Options {
    double margin = 0.10;                     // relative gain needed to move
    double move_ms_per_layer_position = 0.0;  // extra cost of moving, per layer x position
  };
  Replanner(PlanInputs inputs, Options options);

  // Between requests: plans from scratch (still with hysteresis against the
  // current cut, if any). Returns the cut to use; nullopt if infeasible.
  std::optional<int> PlanRequest();
  // During a generation at `context` positions with `remaining` tokens to go:
  // the cut to move to, or the current one.
  int Replan(int context, int remaining);

  void UpdateLink(const Link& link) { inputs_.link = link; }
  // Speculative: the measured per-position acceptance rate (nullopt: the
  // drafter's prior), e.g. AcceptanceEstimate::rate().
  void UpdateAcceptance(std::optional<double> acceptance) {
    inputs_.speculation.acceptance = acceptance;
  }
  // New profiles or workload, keeping the current cut (for hysteresis).
  void SetInputs(PlanInputs inputs) { inputs_ = std::move(inputs); }
  const PlanInputs& inputs() const { return inputs_; }
  std::optional<int> current() const { return current_; }
  const Plan& last_plan() const { return last_; }

 private:
  PlanInputs inputs_;
  Options options_;
  std::optional<int> current_;
  Plan last_;
};

}  // namespace splitlm::scheduler
