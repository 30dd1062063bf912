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

// NOLINTNEXTLINE(readability-function-size): over 60 lines, to split (issue 14)
Prediction PredictCut(const PlanInputs& in, int k, int drafts) {
  const int L = in.device.num_layers;
  const Workload& w = in.workload;
  Prediction p;
  p.cut = k;
  const bool split = k < L;
  if (!split || !in.speculation.enabled()) drafts = 0;
  drafts = std::max(0, drafts);
  // One round: the new token and `drafts` drafts; it yields `per_round`
  // tokens on average (1 for a plain step).
  const int positions = drafts + 1;
  const double per_round = drafts > 0 ? ExpectedTokensPerRound(in.speculation.rate(), drafts) : 1.0;
  const double dev_us = split ? DeviceRoundUs(in, k, drafts)
                              : in.device.StepUs(0, k, w.context, /*embed=*/true, /*head=*/true);
  const double cloud_us =
      split ? in.cloud.BatchStepUs(k, L, w.context, positions, /*embed=*/false, /*head=*/true) : 0;
  const double up_bytes =
      split ? static_cast<double>(w.activation_bytes) * positions + w.header_bytes : 0;
  const double down_bytes =
      split ? w.header_bytes + static_cast<double>(w.draft_reply_bytes) * drafts : 0;
  p.drafts = drafts;
  p.tokens_per_round_trip = per_round;
  p.device_ms = dev_us / 1e3 / per_round;
  p.cloud_ms = split ? (cloud_us / 1e3 + in.cloud_queue_ms) / per_round : 0;
  p.network_ms = split ? (in.link.rtt_ms + TransferMs(up_bytes, in.link.up_mbit_s) +
                          TransferMs(down_bytes, in.link.down_mbit_s)) /
                             per_round
                       : 0;
  p.up_bytes = up_bytes / per_round;
  p.down_bytes = down_bytes / per_round;
  p.tpot_ms = p.device_ms + p.network_ms + p.cloud_ms;
  p.plain_tpot_ms = p.tpot_ms;
  // First token: the prompt through both sides plus one round trip.
  double dev_prefill_us = in.device.embed_us * w.prompt_tokens;
  for (int l = 0; l < k; ++l) dev_prefill_us += in.device.PrefillUs(l, w.prompt_tokens);
  double cloud_prefill_us = 0;
  if (split) {
    for (int l = k; l < L; ++l) cloud_prefill_us += in.cloud.PrefillUs(l, w.prompt_tokens);
    cloud_prefill_us += in.cloud.head_decode_us;
  } else {
    dev_prefill_us += in.device.head_decode_us;
  }
  const double first_down = split ? w.header_bytes : 0;
  p.ttft_ms = dev_prefill_us / 1e3 +
              (split ? in.link.rtt_ms +
                           TransferMs(static_cast<double>(w.activation_bytes) * w.prompt_tokens +
                                          w.header_bytes,
                                      in.link.up_mbit_s) +
                           TransferMs(first_down, in.link.down_mbit_s) + cloud_prefill_us / 1e3 +
                           in.cloud_queue_ms
                     : 0);
  // Device energy: compute, radio bytes, and waiting for the answer.
  p.energy_mj = 1e3 * DeviceEnergyJ(in.power, in.link, p.device_ms / 1e3, p.up_bytes, p.down_bytes,
                                    (p.network_ms + p.cloud_ms) / 1e3);
  p.cloud_micro_usd = in.cloud_usd_per_s * (split ? cloud_us / 1e6 / per_round : 0) * 1e6;
  p.memory_mb =
      (in.device.embed_bytes + in.device.HeldLayerBytes(0, k) + (split ? 0 : in.device.head_bytes) +
       k * in.device.kv_bytes_per_position_per_layer * w.max_context) /
      (1 << 20);
  CheckConstraints(in.constraints, p);
  p.score = Score(in, p);
  return p;
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

// NOLINTNEXTLINE(readability-function-size): over 60 lines, to split (issue 14)
Plan ChooseCut(const PlanInputs& in) {
  Plan plan;
  plan.cuts = PredictAll(in);
  if (in.speculation.enabled()) {
    plan.speculation =
        std::string(DrafterName(in.speculation.drafter)) + ", acceptance " +
        Fmt("%.2f", in.speculation.rate()) +
        (in.speculation.acceptance ? " (measured or configured)" : " (the drafter's prior)") +
        ", up to " + std::to_string(in.speculation.max_drafts) + " drafts per round trip";
  }
  for (const Prediction& p : plan.cuts) {
    if (!p.violations.empty()) continue;
    if (!plan.chosen || p.score < plan.cuts[*plan.chosen].score) plan.chosen = p.cut;
  }
  if (plan.chosen) {
    const Prediction& p = plan.cuts[*plan.chosen];
    plan.reason = "cut " + std::to_string(p.cut) + " has the lowest " +
                  ObjectiveName(in.objective) + " score (" + Fmt("%.4g", p.score) +
                  ") of the cuts meeting every constraint: " + Fmt("%.2f", p.tpot_ms) +
                  " ms/token, " + Fmt("%.1f", p.ttft_ms) + " ms to first token, " +
                  Fmt("%.2f", p.energy_mj) + " mJ/token, " + Fmt("%.1f", p.memory_mb) +
                  " MB on the device";
    if (p.drafts > 0) {
      plan.reason += "; speculative with " + std::to_string(p.drafts) + " drafts, " +
                     Fmt("%.2f", p.tokens_per_round_trip) + " tokens per round trip (plain split " +
                     Fmt("%.2f", p.plain_tpot_ms) + " ms/token)";
    }
    return plan;
  }
  // Nothing feasible: name each constraint no cut can meet, and otherwise the
  // combination that rules out every cut.
  std::vector<std::string> never;
  const std::vector<std::string> names = {"privacy_floor", "memory_budget_mb", "max_tpot_ms",
                                          "max_ttft_ms", "max_energy_mj"};
  for (const std::string& n : names) {
    bool someone_meets = true, mentioned = false;
    for (const Prediction& p : plan.cuts) {
      for (const auto& v : p.violations) mentioned |= v.rfind(n + " ", 0) == 0;
    }
    if (!mentioned) continue;
    someone_meets = false;
    for (const Prediction& p : plan.cuts) {
      bool violates = false;
      for (const auto& v : p.violations) violates |= v.rfind(n + " ", 0) == 0;
      if (!violates) someone_meets = true;
    }
    if (!someone_meets) never.push_back(n);
  }
  if (!never.empty()) {
    std::string best;
    for (const std::string& n : never) {
      double b = 1e300;
      for (const Prediction& p : plan.cuts) {
        b = std::min(b, n == "max_tpot_ms"        ? p.tpot_ms
                        : n == "max_ttft_ms"      ? p.ttft_ms
                        : n == "max_energy_mj"    ? p.energy_mj
                        : n == "memory_budget_mb" ? p.memory_mb
                                                  : 0);
      }
      best += (best.empty() ? "" : "; ") + n +
              (n == "privacy_floor" ? " exceeds the layer count"
                                    : " (best any cut achieves: " + Fmt("%.3g", b) + ")");
    }
    plan.reason = "no cut is feasible: no cut meets " + best;
  } else {
    plan.reason =
        "no cut is feasible: the constraints together rule out every cut (each alone can be met)";
  }
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
