#include "scheduler/cost_model.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <stdexcept>

#include "scheduler/config.h"
#include "scheduler/hardware.h"
#include "transport/error.h"

namespace splitlm::scheduler {
namespace {

// Milliseconds to move `bytes` at `mbit_s`.
double TransferMs(double bytes, double mbit_s) {
  return mbit_s > 0 ? bytes * 8.0 / (mbit_s * 1e3) : 1e12;
}

std::string Fmt(const char* f, double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, f, v);
  return buf;
}

}  // namespace

void ApplyPlanConfig(const Config& cfg, PlanInputs& in) {
  std::string objective = ObjectiveName(in.objective);
  FillFromConfig(cfg, "scheduler.objective", false, objective);
  in.objective = objective == "energy"     ? Objective::kEnergy
                 : objective == "cost"     ? Objective::kCost
                 : objective == "weighted" ? Objective::kWeighted
                                           : Objective::kLatency;
  FillFromConfig(cfg, "scheduler.weight_ms", false, in.weights.per_ms);
  FillFromConfig(cfg, "scheduler.weight_mj", false, in.weights.per_mj);
  FillFromConfig(cfg, "scheduler.weight_micro_usd", false, in.weights.per_micro_usd);
  if (auto v = cfg.Float("scheduler.memory_budget_mb")) in.constraints.memory_budget_mb = *v;
  if (auto v = cfg.Float("scheduler.max_tpot_ms")) in.constraints.max_tpot_ms = *v;
  if (auto v = cfg.Float("scheduler.max_ttft_ms")) in.constraints.max_ttft_ms = *v;
  if (auto v = cfg.Float("scheduler.max_energy_mj")) in.constraints.max_energy_mj = *v;
  FillFromConfig(cfg, "scheduler.privacy_floor", false, in.constraints.privacy_floor);
  FillFromConfig(cfg, "scheduler.cloud_queue_ms", false, in.cloud_queue_ms);
  double usd_per_hour = in.cloud_usd_per_s * 3600.0;
  FillFromConfig(cfg, "scheduler.cloud_usd_per_hour", false, usd_per_hour);
  in.cloud_usd_per_s = usd_per_hour / 3600.0;
  FillFromConfig(cfg, "link.rtt_ms", false, in.link.rtt_ms);
  FillFromConfig(cfg, "link.up_mbit_s", false, in.link.up_mbit_s);
  FillFromConfig(cfg, "link.down_mbit_s", false, in.link.down_mbit_s);
  if (auto t = cfg.String("link.type")) ApplyRadioPreset(*t, in.link);
  FillFromConfig(cfg, "link.tx_nj_per_byte", false, in.link.tx_nj_per_byte);
  FillFromConfig(cfg, "link.radio_w", false, in.link.radio_w);
  FillFromConfig(cfg, "link.rx_nj_per_byte", false, in.link.rx_nj_per_byte);
  if (auto hw = cfg.String("power.hardware")) {
    // Relative to the configuration file.
    std::filesystem::path file(*hw);
    if (file.is_relative()) file = std::filesystem::path(cfg.origin()).parent_path() / file;
    const HardwareProfile p = LoadHardwareProfile(file.string());
    if (p.kind != "device")
      throw Exception(
          Exception::kInvalidArgument,
          cfg.origin() + ": power.hardware: " + file.string() + " is a " + p.kind + " profile");
    in.power.compute_w = p.compute_w;
    in.power.wait_w = p.wait_w;
  }
  FillFromConfig(cfg, "power.compute_w", false, in.power.compute_w);
  FillFromConfig(cfg, "power.wait_w", false, in.power.wait_w);
  FillFromConfig(cfg, "scheduler.prompt_tokens", false, in.workload.prompt_tokens);
  FillFromConfig(cfg, "scheduler.context", false, in.workload.context);
  if (auto v = cfg.Float("scheduler.acceptance")) in.speculation.acceptance = *v;
  double draft_ms = in.speculation.draft_model_us / 1e3;
  FillFromConfig(cfg, "scheduler.draft_step_ms", false, draft_ms);
  in.speculation.draft_model_us = draft_ms * 1e3;
}

const std::vector<RadioPreset>& RadioPresets() {
  // Huang et al., "A Close Examination of Performance and Power
  // Characteristics of 4G LTE Networks", MobiSys 2012, power model table:
  // P = alpha_u * t_u + alpha_d * t_d + beta (mW, throughput in Mbit/s), so
  // alpha in mW per Mbit/s = nJ per bit; per byte x 8. beta is the radio's
  // power while active.
  //
  // Narayanan et al., "A Variegated Look at 5G in the Wild", SIGCOMM 2021,
  // artifact file Data-Transfer-Power/MN-Transfer/data-processed/
  // MN-Transfer_combined.csv (the paper's Figure 11; whole-phone power of a
  // Galaxy S20 Ultra, screen on): an ordinary least-squares line
  // power = P0 + slope x throughput per radio and direction, all rows. The
  // slope (mW per Mbit/s = nJ per bit) is the per-bit cost. P0 includes the
  // screen and the idle SoC, which wait_w already charges, so it cannot be
  // radio_w; the radio's fixed power is taken as Huang's LTE beta plus the
  // difference of the downlink P0s to LTE's on the same phone (an
  // assumption: that the difference is the radio's). Recomputed from the CSV
  // by RadioPresetTest.Sigcomm2021PresetsMatchTheirFitsOfTheCsv
  // (tests/scheduler/radio_preset_test.cpp).
  constexpr double kHuangLteBetaW = 1.28804;
  constexpr double kP0LteDownW = 2.8387;  // SIGCOMM 2021 fit, LTE downlink
  static const std::vector<RadioPreset> presets = {
      {"wifi", 283.17 * 8, 137.01 * 8, 0.13286,
       "Huang et al. MobiSys 2012 power model, WiFi: alpha_u 283.17, alpha_d 137.01 mW/Mbps, beta "
       "132.86 mW"},
      {"lte", 438.39 * 8, 51.97 * 8, kHuangLteBetaW,
       "Huang et al. MobiSys 2012 power model, LTE: alpha_u 438.39, alpha_d 51.97 mW/Mbps, beta "
       "1288.04 mW "
       "(the default LTE; lte-2021 has the SIGCOMM 2021 per-bit figures)"},
      {"lte-2021", 76.68 * 8, 11.54 * 8, kHuangLteBetaW,
       "tx, rx: Narayanan et al. SIGCOMM 2021, artifact MN-Transfer_combined.csv (Fig. 11), OLS of "
       "whole-phone "
       "power on throughput, LTE uplink slope 76.68, downlink slope 11.54 mW/Mbps; radio_w: Huang "
       "et al. "
       "MobiSys 2012 LTE beta 1288.04 mW (the 2021 fit's P0 includes screen and SoC)"},
      {"5g", 32.17 * 8, 11.54 * 8, kHuangLteBetaW + (3.0591 - kP0LteDownW),
       "5G NSA low-band. tx, rx: Narayanan et al. SIGCOMM 2021, artifact MN-Transfer_combined.csv "
       "(Fig. 11), "
       "OLS of whole-phone power on throughput, NSALow uplink slope 32.17, downlink slope 11.54 "
       "mW/Mbps; "
       "radio_w: Huang et al. MobiSys 2012 LTE beta 1288.04 mW + (NSALow - LTE) downlink-fit P0, "
       "3059.1 - 2838.7 mW (assumption: the P0 difference is the radio's)"},
      {"5g-mmwave", 8.883 * 8, 1.726 * 8, kHuangLteBetaW + (5.2373 - kP0LteDownW),
       "5G NSA mmWave. tx, rx: Narayanan et al. SIGCOMM 2021, artifact MN-Transfer_combined.csv "
       "(Fig. 11), "
       "OLS of whole-phone power on throughput, mmwave uplink slope 8.883, downlink slope 1.726 "
       "mW/Mbps; "
       "radio_w: Huang et al. MobiSys 2012 LTE beta 1288.04 mW + (mmwave - LTE) downlink-fit P0, "
       "5237.3 - 2838.7 mW (assumption: the P0 difference is the radio's)"},
      {"3g", 868.98 * 8, 122.12 * 8, 0.81788,
       "Huang et al. MobiSys 2012 power model, 3G: alpha_u 868.98, alpha_d 122.12 mW/Mbps, beta "
       "817.88 mW"},
  };
  return presets;
}

void ApplyRadioPreset(const std::string& name, Link& link) {
  std::string all;
  for (const auto& p : RadioPresets()) {
    if (p.name == name) {
      link.tx_nj_per_byte = p.tx_nj_per_byte;
      link.rx_nj_per_byte = p.rx_nj_per_byte;
      link.radio_w = p.radio_w;
      return;
    }
    all += (all.empty() ? "" : ", ") + p.name;
  }
  throw Exception(Exception::kInvalidArgument,
                  "unknown link type \"" + name + "\" (choose " + all + ")");
}

const char* ObjectiveName(Objective o) {
  switch (o) {
    case Objective::kLatency: return "latency";
    case Objective::kEnergy: return "energy";
    case Objective::kCost: return "cost";
    case Objective::kWeighted: return "weighted";
  }
  return "?";
}

double DeviceEnergyJ(const DevicePower& power, const Link& link, double compute_s,
                     double sent_bytes, double received_bytes, double waiting_s) {
  return power.compute_w * compute_s +
         (sent_bytes * link.tx_nj_per_byte + received_bytes * link.rx_nj_per_byte) * 1e-9 +
         (power.wait_w + link.radio_w) * waiting_s;
}

namespace {

// Device time of one speculative round at cut `k` (split) with `drafts`
// drafts: drafting, then the new token and the drafts through [0, k).
double DeviceRoundUs(const PlanInputs& in, int k, int drafts) {
  const int context = in.workload.context;
  const ComputeProfile& d = in.device;
  switch (in.speculation.drafter) {
    case DrafterKind::kEarlyExit:
      // Each draft is the head on the previous position's cut state, so the
      // positions go through [0, k) one by one (their states are then the
      // ones sent: no batched step), plus one head per draft.
      return (drafts + 1) * d.StepUs(0, k, context, /*embed=*/true, /*head=*/false) +
             drafts * d.head_decode_us;
    case DrafterKind::kDraftModel:
      return drafts * in.speculation.draft_model_us +
             d.BatchStepUs(0, k, context, drafts + 1, true, false);
    case DrafterKind::kPromptLookup:  // an n-gram search: microseconds, not counted
    case DrafterKind::kNone: break;
  }
  return d.BatchStepUs(0, k, context, drafts + 1, /*embed=*/true, /*head=*/false);
}

double Score(const PlanInputs& in, const Prediction& p) {
  switch (in.objective) {
    case Objective::kLatency: return p.tpot_ms;
    case Objective::kEnergy: return p.energy_mj;
    case Objective::kCost: return p.cloud_micro_usd + 1e-9 * p.tpot_ms;  // ties: faster
    case Objective::kWeighted:
      return in.weights.per_ms * p.tpot_ms + in.weights.per_mj * p.energy_mj +
             in.weights.per_micro_usd * p.cloud_micro_usd;
  }
  return p.tpot_ms;
}

void CheckConstraints(const Constraints& c, Prediction& p) {
  p.violations.clear();
  if (p.cut < c.privacy_floor)
    p.violations.push_back("privacy_floor " + std::to_string(c.privacy_floor));
  if (c.memory_budget_mb && p.memory_mb > *c.memory_budget_mb)
    p.violations.push_back("memory_budget_mb " + Fmt("%g", *c.memory_budget_mb));
  if (c.max_tpot_ms && p.tpot_ms > *c.max_tpot_ms)
    p.violations.push_back("max_tpot_ms " + Fmt("%g", *c.max_tpot_ms));
  if (c.max_ttft_ms && p.ttft_ms > *c.max_ttft_ms)
    p.violations.push_back("max_ttft_ms " + Fmt("%g", *c.max_ttft_ms));
  if (c.max_energy_mj && p.energy_mj > *c.max_energy_mj)
    p.violations.push_back("max_energy_mj " + Fmt("%g", *c.max_energy_mj));
}

}  // namespace

namespace {

// One decode round at `prediction.cut` with `prediction.drafts` drafts (0 for
// a plain step): the per-token device, cloud and network time, bytes each
// way, time per token and cloud cost.
void PredictDecodeRound(const PlanInputs& inputs, Prediction& prediction) {
  const int cut = prediction.cut;
  const int drafts = prediction.drafts;
  const Workload& workload = inputs.workload;
  const bool split = cut < inputs.device.num_layers;
  // One round: the new token and `drafts` drafts; it yields `per_round`
  // tokens on average (1 for a plain step).
  const int positions = drafts + 1;
  const double per_round =
      drafts > 0 ? ExpectedTokensPerRound(inputs.speculation.rate(), drafts) : 1.0;
  const double device_us =
      split ? DeviceRoundUs(inputs, cut, drafts)
            : inputs.device.StepUs(0, cut, workload.context, /*embed=*/true, /*head=*/true);
  const double cloud_us =
      split ? inputs.cloud.BatchStepUs(cut, inputs.device.num_layers, workload.context, positions,
                                       /*embed=*/false, /*head=*/true)
            : 0;
  const double up_bytes =
      split ? static_cast<double>(workload.activation_bytes) * positions + workload.header_bytes
            : 0;
  const double down_bytes =
      split ? workload.header_bytes + static_cast<double>(workload.draft_reply_bytes) * drafts : 0;
  prediction.tokens_per_round_trip = per_round;
  prediction.device_ms = device_us / 1e3 / per_round;
  prediction.cloud_ms = split ? (cloud_us / 1e3 + inputs.cloud_queue_ms) / per_round : 0;
  prediction.network_ms = split
                              ? (inputs.link.rtt_ms + TransferMs(up_bytes, inputs.link.up_mbit_s) +
                                 TransferMs(down_bytes, inputs.link.down_mbit_s)) /
                                    per_round
                              : 0;
  prediction.up_bytes = up_bytes / per_round;
  prediction.down_bytes = down_bytes / per_round;
  prediction.tpot_ms = prediction.device_ms + prediction.network_ms + prediction.cloud_ms;
  prediction.plain_tpot_ms = prediction.tpot_ms;
  prediction.cloud_micro_usd =
      inputs.cloud_usd_per_s * (split ? cloud_us / 1e6 / per_round : 0) * 1e6;
}

// First token at `cut`: the prompt through both sides plus one round trip.
double TimeToFirstTokenMs(const PlanInputs& inputs, int cut) {
  const int num_layers = inputs.device.num_layers;
  const Workload& workload = inputs.workload;
  const bool split = cut < num_layers;
  double device_prefill_us = inputs.device.embed_us * workload.prompt_tokens;
  for (int layer = 0; layer < cut; ++layer)
    device_prefill_us += inputs.device.PrefillUs(layer, workload.prompt_tokens);
  double cloud_prefill_us = 0;
  if (split) {
    for (int layer = cut; layer < num_layers; ++layer)
      cloud_prefill_us += inputs.cloud.PrefillUs(layer, workload.prompt_tokens);
    cloud_prefill_us += inputs.cloud.head_decode_us;
  } else {
    device_prefill_us += inputs.device.head_decode_us;
  }
  const double first_down = split ? workload.header_bytes : 0;
  return device_prefill_us / 1e3 +
         (split ? inputs.link.rtt_ms +
                      TransferMs(
                          static_cast<double>(workload.activation_bytes) * workload.prompt_tokens +
                              workload.header_bytes,
                          inputs.link.up_mbit_s) +
                      TransferMs(first_down, inputs.link.down_mbit_s) + cloud_prefill_us / 1e3 +
                      inputs.cloud_queue_ms
                : 0);
}

// The device's memory at `cut`: embedding, the layers it holds (and the head
// when it runs everything), and their KV cache at the maximum context.
double DeviceMemoryMb(const PlanInputs& inputs, int cut) {
  const ComputeProfile& device = inputs.device;
  const bool split = cut < device.num_layers;
  return (device.embed_bytes + device.HeldLayerBytes(0, cut) + (split ? 0 : device.head_bytes) +
          cut * device.kv_bytes_per_position_per_layer * inputs.workload.max_context) /
         (1 << 20);
}

}  // namespace

Prediction PredictCut(const PlanInputs& inputs, int cut, int drafts) {
  Prediction prediction;
  prediction.cut = cut;
  const bool split = cut < inputs.device.num_layers;
  if (!split || !inputs.speculation.enabled()) drafts = 0;
  prediction.drafts = std::max(0, drafts);
  PredictDecodeRound(inputs, prediction);
  prediction.ttft_ms = TimeToFirstTokenMs(inputs, cut);
  // Device energy: compute, radio bytes, and waiting for the answer.
  prediction.energy_mj = 1e3 * DeviceEnergyJ(inputs.power, inputs.link, prediction.device_ms / 1e3,
                                             prediction.up_bytes, prediction.down_bytes,
                                             (prediction.network_ms + prediction.cloud_ms) / 1e3);
  prediction.memory_mb = DeviceMemoryMb(inputs, cut);
  CheckConstraints(inputs.constraints, prediction);
  prediction.score = Score(inputs, prediction);
  return prediction;
}

std::vector<Prediction> PredictAll(const PlanInputs& in) {
  const int L = in.device.num_layers;
  if (in.cloud.num_layers != L)
    throw Exception(Exception::kInvalidArgument,
                    "device and cloud profiles describe different models");
  std::vector<Prediction> out;
  for (int k = 0; k <= L; ++k) {
    Prediction best = PredictCut(in, k, 0);
    const double plain_ms = best.tpot_ms;
    if (k < L && in.speculation.enabled()) {
      // The drafts that score best; 0 (plain) unless some number beats it.
      for (int d = 1; d <= in.speculation.max_drafts; ++d) {
        Prediction p = PredictCut(in, k, d);
        if (p.score < best.score) best = std::move(p);
      }
    }
    best.plain_tpot_ms = plain_ms;
    out.push_back(std::move(best));
  }
  return out;
}

namespace {

// The drafter, the acceptance rate planned with and where it came from.
std::string SpeculationSummary(const Speculation& speculation) {
  return std::string(DrafterName(speculation.drafter)) + ", acceptance " +
         Fmt("%.2f", speculation.rate()) +
         (speculation.acceptance ? " (measured or configured)" : " (the drafter's prior)") +
         ", up to " + std::to_string(speculation.max_drafts) + " drafts per round trip";
}

// Why `chosen` was chosen: its score and figures.
std::string ChosenReason(const Prediction& chosen, Objective objective) {
  std::string reason = "cut " + std::to_string(chosen.cut) + " has the lowest " +
                       ObjectiveName(objective) + " score (" + Fmt("%.4g", chosen.score) +
                       ") of the cuts meeting every constraint: " + Fmt("%.2f", chosen.tpot_ms) +
                       " ms/token, " + Fmt("%.1f", chosen.ttft_ms) + " ms to first token, " +
                       Fmt("%.2f", chosen.energy_mj) + " mJ/token, " +
                       Fmt("%.1f", chosen.memory_mb) + " MB on the device";
  if (chosen.drafts > 0) {
    reason += "; speculative with " + std::to_string(chosen.drafts) + " drafts, " +
              Fmt("%.2f", chosen.tokens_per_round_trip) + " tokens per round trip (plain split " +
              Fmt("%.2f", chosen.plain_tpot_ms) + " ms/token)";
  }
  return reason;
}

bool ViolatesConstraint(const Prediction& prediction, const std::string& constraint) {
  bool violates = false;
  for (const auto& violation : prediction.violations)
    violates |= violation.rfind(constraint + " ", 0) == 0;
  return violates;
}

// The constraints (by name) that every cut violates.
std::vector<std::string> ConstraintsNoCutMeets(const std::vector<Prediction>& cuts) {
  const std::vector<std::string> names = {"privacy_floor", "memory_budget_mb", "max_tpot_ms",
                                          "max_ttft_ms", "max_energy_mj"};
  std::vector<std::string> never;
  for (const std::string& name : names) {
    const bool every_cut_violates =
        !cuts.empty() && std::all_of(cuts.begin(), cuts.end(), [&](const Prediction& cut) {
          return ViolatesConstraint(cut, name);
        });
    if (every_cut_violates) never.push_back(name);
  }
  return never;
}

// The best any cut achieves of the figure constraint `name` limits (0 for
// privacy_floor, which limits no figure).
double BestAchieved(const std::vector<Prediction>& cuts, const std::string& name) {
  double best = 1e300;
  for (const Prediction& cut : cuts) {
    best = std::min(best, name == "max_tpot_ms"        ? cut.tpot_ms
                          : name == "max_ttft_ms"      ? cut.ttft_ms
                          : name == "max_energy_mj"    ? cut.energy_mj
                          : name == "memory_budget_mb" ? cut.memory_mb
                                                       : 0);
  }
  return best;
}

// Nothing feasible: name each constraint no cut can meet, and otherwise the
// combination that rules out every cut.
std::string InfeasibleReason(const std::vector<Prediction>& cuts) {
  const std::vector<std::string> never = ConstraintsNoCutMeets(cuts);
  if (never.empty())
    return "no cut is feasible: the constraints together rule out every cut (each alone can be "
           "met)";
  std::string unmet;
  for (const std::string& name : never) {
    unmet += (unmet.empty() ? "" : "; ") + name +
             (name == "privacy_floor"
                  ? " exceeds the layer count"
                  : " (best any cut achieves: " + Fmt("%.3g", BestAchieved(cuts, name)) + ")");
  }
  return "no cut is feasible: no cut meets " + unmet;
}

}  // namespace

Plan ChooseCut(const PlanInputs& inputs) {
  Plan plan;
  plan.cuts = PredictAll(inputs);
  if (inputs.speculation.enabled()) plan.speculation = SpeculationSummary(inputs.speculation);
  for (const Prediction& prediction : plan.cuts) {
    if (!prediction.violations.empty()) continue;
    if (!plan.chosen || prediction.score < plan.cuts[*plan.chosen].score)
      plan.chosen = prediction.cut;
  }
  plan.reason = plan.chosen ? ChosenReason(plan.cuts[*plan.chosen], inputs.objective)
                            : InfeasibleReason(plan.cuts);
  return plan;
}

std::string FormatPlan(const Plan& plan, Objective objective) {
  const bool spec = !plan.speculation.empty();
  std::string s =
      "  cut  ttft_ms  tpot_ms  device  network  cloud  energy_mJ  cloud_uUSD  memory_MB";
  s += spec ? "  drafts  tok/trip  plain_ms  violates\n" : "  violates\n";
  for (const Prediction& p : plan.cuts) {
    char line[256];
    std::snprintf(line, sizeof line, "%s%3d %8.2f %8.3f %7.3f %8.3f %6.3f %10.3f %11.4f %10.1f  ",
                  plan.chosen && *plan.chosen == p.cut ? "* " : "  ", p.cut, p.ttft_ms, p.tpot_ms,
                  p.device_ms, p.network_ms, p.cloud_ms, p.energy_mj, p.cloud_micro_usd,
                  p.memory_mb);
    s += line;
    if (spec) {
      std::snprintf(line, sizeof line, "%6d %9.2f %9.3f  ", p.drafts, p.tokens_per_round_trip,
                    p.plain_tpot_ms);
      s += line;
    }
    for (size_t i = 0; i < p.violations.size(); ++i) s += (i ? ", " : "") + p.violations[i];
    s += "\n";
  }
  if (spec) s += "speculation: " + plan.speculation + "\n";
  s += std::string("objective ") + ObjectiveName(objective) + ": " + plan.reason + "\n";
  return s;
}

std::string PlanJson(const Plan& plan, Objective objective) {
  nlohmann::json cuts = nlohmann::json::array();
  for (const Prediction& p : plan.cuts) {
    cuts.push_back({{"cut", p.cut},
                    {"ttft_ms", p.ttft_ms},
                    {"tpot_ms", p.tpot_ms},
                    {"device_ms", p.device_ms},
                    {"network_ms", p.network_ms},
                    {"cloud_ms", p.cloud_ms},
                    {"energy_mj", p.energy_mj},
                    {"cloud_micro_usd", p.cloud_micro_usd},
                    {"memory_mb", p.memory_mb},
                    {"violations", p.violations},
                    {"score", p.score},
                    {"up_bytes", p.up_bytes},
                    {"down_bytes", p.down_bytes},
                    {"drafts", p.drafts},
                    {"tokens_per_round_trip", p.tokens_per_round_trip},
                    {"plain_tpot_ms", p.plain_tpot_ms}});
  }
  nlohmann::json j = {
      {"objective", ObjectiveName(objective)},
      {"cuts", cuts},
      {"chosen", plan.chosen ? nlohmann::json(*plan.chosen) : nlohmann::json(nullptr)},
      {"reason", plan.reason}};
  if (!plan.speculation.empty()) j["speculation"] = plan.speculation;
  return j.dump();
}

}  // namespace splitlm::scheduler
