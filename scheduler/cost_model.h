// The cost model: for every cut K (0 = only the embedding on the device,
// L = everything on the device) predict time to first token, time per output
// token, device energy per token, cloud cost per token and device memory from
// measured profiles and the link estimate; then choose the cut that best
// meets the objective under the constraints.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "scheduler/profile.h"
#include "scheduler/speculation.h"

namespace splitlm::scheduler {

struct Link {
  double rtt_ms = 10;        // round trip, excluding transfer time
  double up_mbit_s = 50;     // device -> cloud
  double down_mbit_s = 100;  // cloud -> device
  // Radio energy (per link type: RadioPresets() and docs/scheduler.md give
  // the sources). Defaults: the "wifi" preset.
  double tx_nj_per_byte = 2265.4;
  double rx_nj_per_byte = 1096.1;
  double radio_w = 0.13286;  // radio power while a request is out (network + cloud time)
};

// Radio energy of a link type, from a published power model.
struct RadioPreset {
  std::string name;  // wifi, lte, lte-2021, 5g, 5g-mmwave, 3g
  double tx_nj_per_byte, rx_nj_per_byte, radio_w;
  std::string source;
};
const std::vector<RadioPreset>& RadioPresets();
// Sets the radio figures of `link` from the preset `name`. Throws
// Exception(kInvalidArgument) naming the presets for an unknown one.
void ApplyRadioPreset(const std::string& name, Link& link);

struct DevicePower {
  double compute_w = 3.0;  // while running layers
  double wait_w = 0.5;     // while the radio waits for the cloud
};

// Device energy, joules: compute power over the compute time, the radio's
// energy per byte sent and received, and waiting + radio power over the time
// requests are out (network and cloud). The cost model predicts with it and
// the simulation measures with it.
double DeviceEnergyJ(const DevicePower& power, const Link& link, double compute_s,
                     double sent_bytes, double received_bytes, double waiting_s);

enum class Objective { kLatency, kEnergy, kCost, kWeighted };
const char* ObjectiveName(Objective o);

struct Weights {  // kWeighted: score = a*ms + b*mJ + c*micro-dollars, per token
  double per_ms = 1;
  double per_mj = 0;
  double per_micro_usd = 0;
};

struct Constraints {
  std::optional<double> memory_budget_mb;  // device memory: weights held + KV at max context
  int privacy_floor = 0;                   // at least this many layers on the device
  std::optional<double> max_tpot_ms;       // time per output token
  std::optional<double> max_ttft_ms;       // time to first token
  std::optional<double> max_energy_mj;     // device energy per token
};

struct Workload {
  int prompt_tokens = 64;     // expected prompt length (TTFT)
  int context = 64;           // current context length (TPOT)
  int max_context = 1024;     // for the KV memory
  int activation_bytes = 0;   // bytes of one hidden vector at the cut (codec)
  int header_bytes = 128;     // Forward header; the reply is about as small
  int draft_reply_bytes = 8;  // speculative: the reply's extra bytes per draft (token, logprob)
};

struct PlanInputs {
  ComputeProfile device;
  ComputeProfile cloud;  // same model; cloud's own measurements
  double cloud_queue_ms = 0;
  double cloud_usd_per_s = 0.0001;  // price per cloud compute-second (0.36 USD/hour)
  Link link;
  DevicePower power;
  Workload workload;
  Constraints constraints;
  Objective objective = Objective::kLatency;
  Weights weights;
  // Speculative decoding (off by default: plain split). When on, each split
  // cut is predicted with the number of drafts that scores best.
  Speculation speculation;
};

struct Prediction {
  int cut = 0;
  double ttft_ms = 0;
  double tpot_ms = 0;
  double device_ms = 0;        // per token
  double network_ms = 0;       // per token
  double cloud_ms = 0;         // per token (incl. queue)
  double energy_mj = 0;        // device, per token
  double cloud_micro_usd = 0;  // per token
  double memory_mb = 0;        // device
  double up_bytes = 0;         // per token, device -> cloud
  double down_bytes = 0;       // per token, cloud -> device
  // Speculative (PlanInputs::speculation on): the drafts per round chosen
  // for this cut (0 = plain steps are best here), the expected tokens per
  // round trip with them, and the plain split's time per token at this cut
  // for comparison (equal to tpot_ms when drafts = 0).
  int drafts = 0;
  double tokens_per_round_trip = 1;
  double plain_tpot_ms = 0;
  std::vector<std::string> violations;
  double score = 0;  // lower is better, under the objective
};

struct Plan {
  std::vector<Prediction> cuts;  // index = cut
  std::optional<int> chosen;     // none when nothing is feasible
  std::string reason;            // why this cut, or which constraint cannot be met
  // Speculation as planned: drafter and the acceptance rate used (and
  // whether it is the drafter's prior); empty when off.
  std::string speculation;
};

// Predicts one cut with `drafts` drafts per round (0 = a plain step; more
// only with speculation on and below the last cut). PredictAll picks the
// drafts per cut.
Prediction PredictCut(const PlanInputs& inputs, int cut, int drafts);

// Predicts every cut. Throws Exception(kInvalidArgument) if the profiles do not
// describe the same number of layers.
std::vector<Prediction> PredictAll(const PlanInputs& inputs);
// Every cut's prediction and the cut the objective and constraints choose
// (Plan::chosen is empty when none is feasible: a value, not an exception).
// Throws Exception(kInvalidArgument) as PredictAll does.
Plan ChooseCut(const PlanInputs& inputs);

class Config;
// Fills objective, weights, constraints, link, power and workload (prompt
// tokens, context) of `inputs` from the [scheduler], [link] and [power]
// sections of `config`; absent keys keep their values. Throws
// Exception(kInvalidArgument) for an unknown `link.type`.
void ApplyPlanConfig(const Config& config, PlanInputs& inputs);

// Human-readable table of a plan.
std::string FormatPlan(const Plan& plan, Objective objective);
std::string PlanJson(const Plan& plan, Objective objective);

}  // namespace splitlm::scheduler
