// What the runs of one policy measured (Tally, added to run by run) and its
// summary (RunResult): time per token, bytes and device energy per token,
// round trips, agreement with the local run's tokens.
#pragma once

#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "scheduler/cost_model.h"
#include "sim/shaper.h"

namespace splitlm::sim {

struct TimelinePoint {
  double t_s;       // since the run started, emulated
  int cut;          // the cut the token was made at
  double token_ms;  // since the previous token
  LinkConditions link;
};

// One policy's tokens over one or more runs.
struct Tally {
  std::vector<double> ttft, tpot;  // ms, per request / per later token
  std::map<int, int> per_cut;      // tokens made at each cut
  std::vector<int> cuts;           // per request, at its start
  std::vector<TimelinePoint> timeline;
  int agree = 0, total = 0, fallbacks = 0, recoveries = 0, cut_changes = 0;
  int generated = 0;              // tokens the requests returned
  int drafted = 0, accepted = 0;  // speculative decoding
  double predicted_tpot_ms = 0;
  // Device metrics over the runs (deltas): tokens, cloud steps (round trips),
  // bytes sent, compute seconds, seconds waiting for the cloud.
  double tokens = 0, steps = 0, bytes = 0, compute_s = 0, wait_s = 0;
  bool interrupted = false;
};

struct RunResult {
  std::string policy;
  std::vector<int> cuts;  // per request, at its start
  int mode_cut = 0;       // the cut most tokens were made at
  double ttft_ms = 0, tpot_ms = 0, tpot_p95_ms = 0, bytes_per_token = 0, energy_mj_per_token = 0;
  // The mean time per token after the first: with speculation tokens come in
  // bursts (several per round trip), which the median hides.
  double tpot_mean_ms = 0;
  double agreement = 1;
  double round_trips_per_token = 0;  // requests to the cloud / generated tokens
  double acceptance_rate = 0;        // accepted / drafted (0 without drafts)
  double predicted_tpot_ms = 0;      // auto: the cost model's figure for its cut (last request)
  int cut_changes = 0, fallbacks = 0, recoveries = 0;
  bool interrupted = false;
  std::vector<TimelinePoint> timeline;
};

// The `p` quantile (0..1) of `v`, nearest rank; 0 for none.
double Percentile(std::vector<double> v, double p);

// Sums up `t`. `idle_cut`: the cut reported when no token was made.
// Device energy comes from scheduler::DeviceEnergyJ with `plan`'s power and
// radio figures, each cloud step counting one message header each way
// (plan.workload.header_bytes) beside the bytes sent.
RunResult Summarize(const std::string& policy, const Tally& t, int idle_cut,
                    const scheduler::PlanInputs& plan);

// The one-scenario JSON fields of `r`.
nlohmann::json RunJson(const RunResult& r);

}  // namespace splitlm::sim
