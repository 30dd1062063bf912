// The device agent: runs the embedding and layers [0, K) on the device, ships
// hidden states to the cloud worker, and falls back to running the rest
// locally when the cloud does not answer, with exactly the tokens an
// uninterrupted run produces.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "device/drafter.h"
#include "partition/sampler.h"
#include "scheduler/cost_model.h"
#include "transport/channel.h"
#include "transport/clock.h"
#include "transport/error.h"
#include "transport/metrics.h"
#include "transport/null_logger.h"

namespace splitlm::partition {
class Model;
class ComputeHook;
}  // namespace splitlm::partition

namespace splitlm::device {

enum class Fallback {
  kLocal,  // continue on the device (loads all layers), return to the cloud when it is back
  kWait,   // retry the cloud with back-off up to wait_deadline, then fail
  kFail,   // report an error at once
};
const char* FallbackName(Fallback f);

// --cut auto: the agent measures this device (or loads a cached profile),
// asks the worker for its per-layer times (Hello), probes the link with two
// Ping sizes, and picks the cut for each request with the cost model,
// keeping the current cut unless another is better by `margin`.
struct AutoCut {
  bool enabled = false;
  scheduler::PlanInputs plan;  // objective, constraints, power, workload
  std::string profile_path;    // device profile cache ("" = measure at start-up)
  // Use this profile instead of measuring (emulated hardware, tests).
  std::optional<scheduler::ComputeProfile> device_profile;
  double margin = 0.10;
  int replan_every = 8;  // re-plan during a generation every N tokens
  // Rescale the device and cloud profiles by how real decode steps compare
  // with them (scheduler::ComputeDrift). Off: the profiles are taken as they
  // are (a test faking a device's speed through its profile).
  bool follow_drift = true;
};

struct AgentOptions {
  int cut = 0;       // layers [0, cut) on the device; == L runs everything locally
  AutoCut auto_cut;  // when enabled, `cut` is only the starting point
  Fallback fallback = Fallback::kLocal;
  transport::Codec codec = transport::Codec::kF32;
  // Refuse a cloud holding the same model in other weight formats (the
  // split's tokens may differ from a local run's); by default it is used
  // with a warning.
  bool require_exact = false;
  transport::ClientOptions channel;  // endpoint, CURVE keys, heartbeats
  // Replicas (device/replicas.h): the workers this device may use, as
  // ParseCloudList gives them; empty means channel.endpoint alone. With more
  // than one, or a dns:// name, every generation asks each worker its load
  // (Hello) and places its session on the least loaded; when that worker
  // fails a step, the session is rebuilt on another (failover) before the
  // fallback policy is considered. All share channel's keys and heartbeats.
  std::vector<std::string> clouds;
  // dns:// names are resolved again after this long (at a placement).
  std::chrono::milliseconds resolve_interval{30000};
  // A step whose answer has not arrived by then counts as a failure.
  std::chrono::milliseconds step_deadline{5000};
  // kWait: give up after this long without the cloud.
  std::chrono::milliseconds wait_deadline{30000};
  // kLocal: try the cloud again after this long on the device.
  std::chrono::milliseconds retry_interval{1000};
  // Speculative decoding in split mode (null: off): each cloud step also
  // carries up to max_drafts of the drafter's guesses, run through [0, cut)
  // in the same batched step, and the cloud keeps those it agrees with. The
  // tokens are those of a run without it; the round trips fewer. The number
  // of drafts per step is min(DraftLength, DraftMeter::Cap) (draft_policy.h).
  std::shared_ptr<const Drafter> drafter;
  int max_drafts = kMaxDraftsPerStep;
  std::shared_ptr<spdlog::logger> log =
      transport::NullLogger();  // never null (null: replaced by NullLogger())
  // More end-of-sequence ids, beside config.json's: the tokenizer's
  // (Llama 3 ends a chat turn with <|eot_id|>, which config.json may omit).
  std::vector<int32_t> eos_ids;
  // Emulation (splitlm sim): set on every device stage. Not owned.
  partition::ComputeHook* compute_hook = nullptr;
};

struct GenerateRequest {
  std::vector<int32_t> prompt;
  int max_tokens = 16;
  partition::SamplingParams sampling;
  bool stop_at_eos = true;
};

struct GenerateResult {
  std::vector<int32_t> tokens;  // generated ids (without the prompt)
  int fallbacks = 0;            // times the generation moved to the device
  int recoveries = 0;           // times it moved back to the cloud
  int cloud_steps = 0;          // steps answered by the cloud (round trips)
  int drafted = 0;              // speculative: draft tokens sent to the cloud
  int accepted = 0;             // speculative: of those, accepted
  // Speculative: the drafter's acceptance rate measured online, an EWMA of
  // accepted / proposed per step (weight 1/4 for the newest) over this
  // agent's generations so far (0 before any verified step). Also the
  // gauge splitlm_device_draft_acceptance_ewma{drafter="..."}.
  double acceptance_ewma = 0;
  int draft_rejections =
      0;  // speculative: steps where the cloud rejected a draft (scheduler::AcceptanceEstimate)
  int local_steps = 0;     // steps finished on the device
  int cloud_restarts = 0;  // restarted workers noticed (session rebuilt there at once)
  int failovers = 0;       // replicas: sessions rebuilt on another worker
  // replicas: each failover's time, from sending the step the failed worker
  // lost to the answer of the worker that took over (ms)
  std::vector<double> failover_ms;
  std::string worker;            // the endpoint that answered the last cloud step ("" = none)
  std::string finish_reason;     // "length", "stop" (EOS) or "context"
  int cut = 0;                   // the cut at the start (auto: chosen for this request)
  int final_cut = 0;             // the cut at the end
  int recuts = 0;                // cut changes during the generation
  double predicted_tpot_ms = 0;  // auto cut: the cost model's figure
  double measured_tpot_ms = 0;   // after the first token
};

// Not thread-safe: one generation at a time (the HTTP server serialises).
class Agent {
 public:
  // Loads what the options need from `model` (embedding and [0, cut); all
  // layers with Fallback::kLocal) and connects. Throws on bad options.
  // Every time (deadlines, retry and probe times, latencies) is read and
  // every back-off slept on `clock` (the simulation passes its virtual
  // clock); `model`, `context`, `metrics` and `clock` must outlive the agent.
  Agent(const partition::Model& model, AgentOptions options, zmq::context_t& context,
        transport::Metrics& metrics, const transport::Clock& clock = transport::SteadyClock());
  ~Agent();
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  // Generates; `on_token` sees each token as it is chosen and may return
  // false to stop early. Throws Exception(kInvalidArgument) for a prompt
  // that partition::ValidatePrompt refuses; DeviceError(kUnavailable) when
  // the cloud is needed (kWait past its deadline, kFail) and cannot be had,
  // DeviceError(kInvalidArgument) when the worker refuses us at Hello.
  GenerateResult Generate(const GenerateRequest& request,
                          const std::function<bool(int32_t)>& on_token = nullptr);

  const partition::Model& model() const;

  // With --cut auto: the cost model's predictions for every cut under the
  // current conditions (probing the cloud as a request would). nullopt when
  // the cloud cannot be reached.
  std::optional<scheduler::Plan> PlanAllCuts();
  // Fixes the cut from now on (turns automatic choice off). Needs all layers
  // loaded (auto cut or local fallback); throws Exception(kInvalidArgument)
  // otherwise.
  void UseCut(int cut);
  // Replaces the measured link with `link` for planning (emulated networks,
  // what-if runs); nullopt returns to the estimator.
  void OverrideLink(std::optional<scheduler::Link> link);
  // The cut in use now (it changes mid-generation with --cut auto).
  int cut() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Why the cloud could not be had, carried by DeviceError so that a front end
// can add its own advice (splitlm-device names the flags to check).
enum class CloudFault {
  kNone,
  kRefused,           // nothing accepts connections at the endpoint
  kHandshakeRefused,  // the connection's handshake failed (CURVE keys, or CURVE on one side only)
  kUnreachable,       // no connection, or a handshake that never completes
  kConnectionLost,    // connected, then disconnected
  kNoHeartbeat,       // connected, but silent for liveness x heartbeat interval
  kStepTimeout,       // heartbeats answered, but the step not by its deadline
  kStepRefused,       // the worker answered the step with an error or a bad result
  kIncompatible,      // refused at Hello: version, model or cut
};

// The splitlm Exception, plus why the cloud could not be had: kUnavailable
// when the cloud failed a step under --fallback fail or wait, kInvalidArgument
// when it refused us at Hello (kIncompatible).
class DeviceError : public Exception {
 public:
  DeviceError(Code code, const std::string& what, CloudFault fault)
      : Exception(code, what), fault_(fault) {}
  CloudFault fault() const { return fault_; }

 private:
  CloudFault fault_;
};

}  // namespace splitlm::device
