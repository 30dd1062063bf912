#include "sim/tally.h"

#include <algorithm>
#include <cmath>

namespace splitlm::sim {

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1,
                    static_cast<size_t>(std::llround(p * static_cast<double>(v.size() - 1))))];
}

RunResult Summarize(const std::string& policy, const Tally& t, int idle_cut,
                    const scheduler::PlanInputs& plan) {
  RunResult r;
  r.policy = policy;
  r.cuts = t.cuts;
  r.interrupted = t.interrupted;
  r.ttft_ms = Percentile(t.ttft, 0.5);
  r.tpot_ms = Percentile(t.tpot, 0.5);
  r.tpot_p95_ms = Percentile(t.tpot, 0.95);
  double sum = 0;
  for (double ms : t.tpot) sum += ms;
  r.tpot_mean_ms = t.tpot.empty() ? 0 : sum / t.tpot.size();
  r.agreement = t.total > 0 ? static_cast<double>(t.agree) / t.total : 1.0;
  r.fallbacks = t.fallbacks;
  r.recoveries = t.recoveries;
  r.cut_changes = t.cut_changes;
  r.predicted_tpot_ms = t.predicted_tpot_ms;
  r.timeline = t.timeline;
  r.mode_cut = t.per_cut.empty()
                   ? idle_cut
                   : std::max_element(t.per_cut.begin(), t.per_cut.end(), [](auto& x, auto& y) {
                       return x.second < y.second;
                     })->first;
  const double header = plan.workload.header_bytes;
  const double joules = scheduler::DeviceEnergyJ(
      plan.power, plan.link, t.compute_s, t.bytes + header * t.steps, header * t.steps, t.wait_s);
  r.bytes_per_token = t.tokens > 0 ? t.bytes / t.tokens : 0;
  r.energy_mj_per_token = t.tokens > 0 ? joules * 1e3 / t.tokens : 0;
  r.round_trips_per_token = t.generated > 0 ? t.steps / t.generated : 0;
  r.acceptance_rate = t.drafted > 0 ? static_cast<double>(t.accepted) / t.drafted : 0;
  return r;
}

nlohmann::json RunJson(const RunResult& r) {
  return {{"policy", r.policy},
          {"cuts", r.cuts},
          {"ttft_ms_median", r.ttft_ms},
          {"ms_per_token_median", r.tpot_ms},
          {"ms_per_token_p95", r.tpot_p95_ms},
          {"ms_per_token_mean", r.tpot_mean_ms},
          {"bytes_per_token", r.bytes_per_token},
          {"energy_mj_per_token", r.energy_mj_per_token},
          {"cut_changes", r.cut_changes},
          {"fallbacks", r.fallbacks},
          {"recoveries", r.recoveries},
          {"predicted_ms_per_token", r.predicted_tpot_ms},
          {"round_trips_per_token", r.round_trips_per_token},
          {"acceptance_rate", r.acceptance_rate},
          {"token_agreement", r.agreement}};
}

}  // namespace splitlm::sim
