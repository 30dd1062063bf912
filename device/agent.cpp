#include "device/agent.h"

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <thread>
#include <tuple>

#include "device/replicas.h"

#include "device/draft_policy.h"
#include "partition/model.h"
#include "partition/prompt.h"
#include "partition/stage.h"
#include "scheduler/profile.h"
#include "scheduler/replanner.h"
#include "transport/clock.h"
#include "transport/error.h"
#include "transport/log_escape.h"

namespace splitlm::device {
namespace {

using Clock = transport::Clock;
using transport::ErrorCode;

double Seconds(Clock::Duration d) { return std::chrono::duration<double>(d).count(); }

// The state of one generation.
struct Generation {
  std::vector<int32_t> ids;       // prompt and generated tokens
  std::vector<float> cut_hidden;  // hidden states at the cut, every position so far
  int positions = 0;              // rows in cut_hidden
  uint64_t session_id = 0;
  bool session_open = false;
  int cloud_positions = 0;  // rows the cloud session holds
  // Speculative: the draft tokens whose rows end cut_hidden (and the device
  // stages' caches) while a step is out, and how many the cloud accepted.
  std::vector<int32_t> drafts;
  int accepted = 0;

  // The loop's state, beside the sequence's.
  const GenerateRequest* request = nullptr;
  GenerateResult* result = nullptr;
  // The device side is a chain of stages over consecutive layer ranges: one
  // normally, two after the cut moved towards the device mid-way.
  std::vector<std::unique_ptr<partition::Stage>> chain;
  std::unique_ptr<partition::Stage> local;  // [cut, L) + head, for fallback
  std::vector<float> out, tmp;              // the chain's output (and scratch)
  int fed = 0;                              // tokens run through the chain
  bool all_local = false;                   // cut == L
  bool split = false;                       // the cloud serves the steps
  bool probing = false;                     // a hello is out while on the device
  Clock::TimePoint retry_at{}, probe_deadline{}, first_token_at{};
  std::optional<DraftLength> draft_len;
  std::unique_ptr<DraftRun> drafting;  // the drafter's state for this generation
  std::vector<float> draft_rows;       // scratch: the rows a drafter ran
  int step_rows = 0;                   // this step's new tokens (drafts not counted)
  double device_s = 0;                 // this step's device time, drafting included
};

// Every series the agent updates, made once (no name built or looked up per
// update). `drafter` labels the acceptance gauge (empty without a drafter).
struct StepMetrics {
  StepMetrics(transport::Metrics& m, const std::string& drafter)
      : tokens(m.CounterOf("splitlm_device_tokens_total")),
        cloud_steps(m.CounterOf("splitlm_device_cloud_steps_total")),
        local_steps(m.CounterOf("splitlm_device_local_steps_total")),
        bytes_sent(m.CounterOf("splitlm_device_bytes_sent_total")),
        drafts(m.CounterOf("splitlm_device_drafts_total")),
        drafts_accepted(m.CounterOf("splitlm_device_drafts_accepted_total")),
        codec_s(m.CounterOf("splitlm_device_latency_seconds_total{part=\"codec\"}")),
        cloud_compute_s(
            m.CounterOf("splitlm_device_latency_seconds_total{part=\"cloud_compute\"}")),
        cloud_queue_s(m.CounterOf("splitlm_device_latency_seconds_total{part=\"cloud_queue\"}")),
        network_s(m.CounterOf("splitlm_device_latency_seconds_total{part=\"network\"}")),
        local_compute_s(
            m.CounterOf("splitlm_device_latency_seconds_total{part=\"local_compute\"}")),
        device_compute_s(
            m.CounterOf("splitlm_device_latency_seconds_total{part=\"device_compute\"}")),
        failovers(m.CounterOf("splitlm_device_failovers_total")),
        evictions(m.CounterOf("splitlm_device_evictions_total")),
        cloud_restarts(m.CounterOf("splitlm_device_cloud_restarts_total")),
        recoveries(m.CounterOf("splitlm_device_recoveries_total")),
        fallbacks(m.CounterOf("splitlm_device_fallbacks_total")),
        device_drift(m.GaugeOf("splitlm_device_compute_drift{side=\"device\"}")),
        cloud_drift(m.GaugeOf("splitlm_device_compute_drift{side=\"cloud\"}")),
        cut(m.GaugeOf("splitlm_device_cut")),
        split_mode(m.GaugeOf("splitlm_device_split_mode")),
        predicted_tpot_ms(m.GaugeOf("splitlm_device_predicted_tpot_ms")),
        measured_tpot_ms(m.GaugeOf("splitlm_device_measured_tpot_ms")),
        active_sessions(m.GaugeOf("splitlm_device_active_sessions")),
        draft_acceptance(
            m.GaugeOf("splitlm_device_draft_acceptance_ewma{drafter=\"" + drafter + "\"}")) {}
  transport::Metrics::Counter tokens, cloud_steps, local_steps, bytes_sent, drafts, drafts_accepted;
  transport::Metrics::Counter codec_s, cloud_compute_s, cloud_queue_s, network_s, local_compute_s,
      device_compute_s;
  transport::Metrics::Counter failovers, evictions, cloud_restarts, recoveries, fallbacks;
  transport::Metrics::Gauge device_drift, cloud_drift, cut, split_mode, predicted_tpot_ms,
      measured_tpot_ms;
  transport::Metrics::Gauge active_sessions, draft_acceptance;
};

// Every device series, described once (the HELP lines of /metrics): a table.
void DescribeDeviceMetrics(transport::Metrics& metrics) {
  using K = transport::Metrics::Kind;
  metrics.Describe("splitlm_device_tokens_total", K::kCounter, "tokens generated");
  metrics.Describe("splitlm_device_latency_seconds_total", K::kCounter,
                   "per-token time by part: device_compute, codec, network, cloud_queue, "
                   "cloud_compute, local_compute");
  metrics.Describe("splitlm_device_bytes_sent_total", K::kCounter,
                   "hidden-state bytes sent to the cloud");
  metrics.Describe("splitlm_device_cloud_steps_total", K::kCounter, "steps answered by the cloud");
  metrics.Describe("splitlm_device_drafts_total", K::kCounter,
                   "speculative draft tokens sent to the cloud");
  metrics.Describe("splitlm_device_drafts_accepted_total", K::kCounter,
                   "speculative draft tokens the cloud accepted");
  metrics.Describe("splitlm_device_draft_acceptance_ewma", K::kGauge,
                   "speculative: accepted / proposed drafts per step, exponentially weighted (1/4 "
                   "for the newest), by drafter");
  metrics.Describe("splitlm_device_local_steps_total", K::kCounter, "steps finished on the device");
  metrics.Describe("splitlm_device_fallbacks_total", K::kCounter,
                   "moves from the cloud to the device");
  metrics.Describe("splitlm_device_recoveries_total", K::kCounter, "moves back to the cloud");
  metrics.Describe("splitlm_device_evictions_total", K::kCounter,
                   "cloud sessions rebuilt after an eviction");
  metrics.Describe("splitlm_device_failovers_total", K::kCounter,
                   "sessions rebuilt on another worker (replicas)");
  metrics.Describe(
      "splitlm_device_cloud_restarts_total", K::kCounter,
      "restarted workers noticed by their new instance id (session rebuilt there at once)");
  metrics.Describe("splitlm_device_cut", K::kGauge, "cut in use: layers [0, cut) on the device");
  metrics.Describe("splitlm_device_predicted_tpot_ms", K::kGauge,
                   "auto cut: predicted time per token of the chosen cut");
  metrics.Describe("splitlm_device_measured_tpot_ms", K::kGauge,
                   "time per token of the last generation (after the first)");
  metrics.Describe("splitlm_device_compute_drift", K::kGauge,
                   "measured / profiled decode step compute time, by side (device, cloud)");
  metrics.Describe("splitlm_device_split_mode", K::kGauge,
                   "1 while the cloud serves, 0 while on the device");
  metrics.Describe("splitlm_device_active_sessions", K::kGauge, "generations in progress");
}

}  // namespace

const char* FallbackName(Fallback f) {
  switch (f) {
    case Fallback::kLocal: return "local";
    case Fallback::kWait: return "wait";
    case Fallback::kFail: return "fail";
  }
  return "?";
}

struct Agent::Impl {
  const partition::Model& model;
  AgentOptions options;
  transport::Metrics& metrics;
  zmq::context_t& context;
  const transport::Clock& clock;  // every time is read, every wait slept, on it
  int layers, hidden, vocab;
  std::shared_ptr<const partition::StageWeights> all_w, device_w, local_w;
  // The current worker's channel (null: no cloud), one of `pool`: one
  // channel per worker endpoint met, kept across placements.
  transport::ClientChannel* channel = nullptr;
  std::map<std::string, std::unique_ptr<transport::ClientChannel>> pool;
  std::optional<Replicas> replicas;
  // Workers that failed: skipped by placement until then.
  std::map<std::string, Clock::TimePoint> down_until;
  bool hello_ok = false;
  transport::Hello cloud_hello;  // the worker's last helloReply
  // --cut auto
  scheduler::ComputeProfile device_profile;
  scheduler::NetworkEstimator estimator;
  // The cloud's per-layer times as of its Hello (our profile rescaled), and
  // how far each side's real decode steps have drifted from its profile.
  scheduler::ComputeProfile cloud_profile;
  scheduler::ComputeDrift device_drift, cloud_drift;
  std::unique_ptr<scheduler::Replanner> replanner;
  // Speculative: the measured per-position acceptance rate the cost model
  // plans with (the drafter's prior until a draft was verified).
  scheduler::AcceptanceEstimate acceptance;
  // Both profiles as the real steps show them now (unless follow_drift is
  // off); the drift gauges are exported here, at plan time, not per token.
  void ApplyDrift(scheduler::PlanInputs& in) {
    const double dev = options.auto_cut.follow_drift ? device_drift.factor() : 1.0;
    const double cloud = options.auto_cut.follow_drift ? cloud_drift.factor() : 1.0;
    in.device = device_profile.Scaled(dev);
    in.cloud = cloud_profile.Scaled(cloud);
    step_metrics.device_drift.Set(device_drift.factor());
    step_metrics.cloud_drift.Set(cloud_drift.factor());
  }
  std::optional<scheduler::Link> link_override;
  uint64_t seq = 0;
  Clock::TimePoint Now() const { return clock.Now(); }
  std::unique_ptr<partition::Stage> NewStage(
      std::shared_ptr<const partition::StageWeights> w) const {
    auto st = std::make_unique<partition::Stage>(std::move(w));
    st->SetComputeHook(options.compute_hook);
    return st;
  }
  std::mt19937_64 rng{std::random_device{}()};
  transport::Hello hello;
  // Speculative: the drafter's acceptance and costs across generations, and
  // the last step's round trip (TakeResult).
  DraftMeter draft_meter;
  double last_round_trip_ms = 0;
  StepMetrics step_metrics{metrics, options.drafter ? options.drafter->name() : std::string()};

  Impl(const partition::Model& m, AgentOptions opts, zmq::context_t& ctx, transport::Metrics& met,
       const transport::Clock& clk)
      : model(m), options(std::move(opts)), metrics(met), context(ctx), clock(clk) {
    options.log = transport::OrNullLogger(std::move(options.log));
    const auto& c = model.config();
    layers = c.num_layers;
    hidden = c.hidden_size;
    vocab = c.vocab_size;
    LoadWeights();
    if (options.auto_cut.enabled) ProfileDevice();
    if (options.cut < layers || options.auto_cut.enabled) ConnectCloud();
    if (options.drafter) {  // plan with speculation (scheduler/speculation.h)
      options.auto_cut.plan.speculation.drafter =
          scheduler::DrafterKindFromName(options.drafter->name())
              .value_or(scheduler::DrafterKind::kNone);
      options.auto_cut.plan.speculation.max_drafts =
          std::clamp(options.max_drafts, 1, kMaxDraftsPerStep);
    }
    FillHello();
    DescribeDeviceMetrics(metrics);
    step_metrics.cut.Set(options.cut);
    step_metrics.split_mode.Set(options.cut < layers ? 1 : 0);
  }

  // The device's weights: all layers when the cut may move or the device may
  // take over ([0, cut) and [cut, L) are slices then), else [0, cut) only.
  void LoadWeights() {
    const auto& c = model.config();
    partition::StageSpec::Device(c, options.cut);  // validates the cut
    if (options.auto_cut.enabled ||
        (options.cut < layers && options.fallback == Fallback::kLocal)) {
      all_w = partition::StageWeights::Load(model, partition::StageSpec::Device(c, layers));
      SetCut(options.cut);
    } else {
      device_w = partition::StageWeights::Load(model, partition::StageSpec::Device(c, options.cut));
    }
  }

  // --cut auto: this device's per-layer times (given, cached or measured).
  void ProfileDevice() {
    scheduler::ProfileOptions po;
    po.threads =
        options.auto_cut.plan.device.threads > 0 ? options.auto_cut.plan.device.threads : 1;
    po.progress = [this](const std::string& s) {
      options.log->info("profiling this device: {}", s);
    };
    device_profile =
        options.auto_cut.device_profile ? *options.auto_cut.device_profile
        : options.auto_cut.profile_path.empty()
            ? scheduler::MeasureProfile(model, po)
            : scheduler::LoadOrMeasureProfile(model, options.auto_cut.profile_path, po);
  }

  // The channel to the cloud (the first replica's, with several).
  void ConnectCloud() {
    options.channel.log = options.log;
    if (!options.clouds.empty()) {
      replicas.emplace(options.clouds, options.resolve_interval);
      const auto& eps = replicas->Endpoints(Now());
      if (!eps.empty()) options.channel.endpoint = eps.front();
    }
    channel = ChannelFor(options.channel.endpoint);
  }

  // Our Hello: the model, the layers held here and the codec.
  void FillHello() {
    hello.model_fingerprint = model.fingerprint();
    hello.model_identity = model.identity();
    hello.weight_formats = model.weight_formats();
    hello.layer_begin = 0;
    hello.layer_end = options.cut;
    hello.codecs = {options.codec};
    hello.hidden_size = hidden;
    hello.num_layers = layers;
    hello.max_context = model.config().max_context;
    hello.agent = "splitlm-device 0.1";
  }

  // The channel to the worker at `endpoint` (made on first use).
  transport::ClientChannel* ChannelFor(const std::string& endpoint) {
    auto& ch = pool[endpoint];
    if (!ch) {
      transport::ClientOptions co = options.channel;
      co.endpoint = endpoint;
      ch = std::make_unique<transport::ClientChannel>(context, co);
    }
    return ch.get();
  }

  // True when sessions are placed among several workers.
  bool Several() const { return replicas && replicas->several(); }

  // Rendezvous hashing of this agent and `endpoint`: equal loads are told
  // apart differently by each device, so devices starting together (all
  // seeing idle workers) spread instead of all taking the first.
  uint64_t TieBreak(const std::string& endpoint) const {
    uint64_t h = 1469598103934665603ull ^ placement_salt;
    for (unsigned char ch : endpoint) h = (h ^ ch) * 1099511628211ull;
    return h;
  }
  const uint64_t placement_salt = std::random_device{}() * 0x9e3779b97f4a7c15ull + 1;

  // A worker asked for its load at a placement, and its answer.
  struct LoadAsk {
    transport::ClientChannel* ch;
    std::optional<transport::Hello> reply;  // compatible answers only
    bool done = false;
  };

  // Sends a Hello to every worker but `exclude` and those marked down, and
  // collects the answers until every one is in or the step deadline; once
  // one has come, the others get a grace of max(250 ms, 4 x its time), so
  // that a dead worker delays placement little. A refused connection or a
  // refused Hello counts as answered (without a reply).
  std::vector<LoadAsk> AskLoads(const std::set<std::string>& exclude) {
    const auto start = Now();
    std::vector<LoadAsk> asks;
    for (const auto& ep : replicas->Endpoints(start)) {
      if (exclude.count(ep)) continue;
      if (auto it = down_until.find(ep); it != down_until.end() && start < it->second) continue;
      LoadAsk a{ChannelFor(ep), std::nullopt};
      a.done = !a.ch->Send(hello);
      asks.push_back(a);
    }
    auto deadline = start + options.step_deadline;
    bool answered = false;
    size_t pending = static_cast<size_t>(
        std::count_if(asks.begin(), asks.end(), [](const LoadAsk& a) { return !a.done; }));
    while (pending > 0 && Now() < deadline) {
      for (LoadAsk& a : asks) {
        if (a.done || !(a.done = LookForLoad(a))) continue;
        --pending;
        if (a.reply && !answered) {
          answered = true;
          deadline =
              std::min(deadline, Now() + std::max<Clock::Duration>(std::chrono::milliseconds(250),
                                                                   4 * (Now() - start)));
        }
      }
    }
    return asks;
  }

  // One short look at `a`'s channel; true when it has answered for good.
  bool LookForLoad(LoadAsk& a) {
    auto in = a.ch->Receive(std::chrono::milliseconds(1));
    if (!in) {
      const auto state = a.ch->link_state();
      return state == transport::LinkState::kRefused ||
             state == transport::LinkState::kHandshakeFailed;
    }
    if (auto* h = std::get_if<transport::Hello>(&in->message)) {
      const auto v = transport::ValidateHello(hello, *h, options.require_exact);
      if (v.ok() && options.cut >= static_cast<int>(h->layer_begin)) a.reply = *h;
      if (!v.ok()) options.log->warn("cloud {} is incompatible: {}", a.ch->endpoint(), v.reason);
      return true;
    }
    if (std::holds_alternative<transport::Heartbeat>(in->message))
      a.ch->Send(hello);  // a restarted worker never saw it
    auto* e = std::get_if<transport::Error>(&in->message);
    return e && e->session_id == 0;  // our Hello refused
  }

  // Replicas: asks the workers their load (AskLoads) and makes the best
  // compatible one that is not draining the current worker: fewest open
  // sessions, then the shortest queue, then the most free KV budget, then a
  // tie-break that differs per device (TieBreak). Those that did not answer
  // are marked down for retry_interval. False when none can take the
  // session (the current worker is left as it was).
  bool Place(const std::set<std::string>& exclude) {
    const std::vector<LoadAsk> asks = AskLoads(exclude);
    auto key = [this](const LoadAsk& a) {
      const transport::Hello& h = *a.reply;
      return std::make_tuple(h.active_sessions, h.queue_us, ~h.kv_free_bytes,
                             TieBreak(a.ch->endpoint()));
    };
    const LoadAsk* best = nullptr;
    for (const LoadAsk& a : asks) {
      if (!a.reply) {
        down_until[a.ch->endpoint()] = Now() + options.retry_interval;
        a.ch->Reconnect();  // nothing stale from it later
        continue;
      }
      down_until.erase(a.ch->endpoint());
      if (a.reply->draining) continue;
      if (!best || key(a) < key(*best)) best = &a;
    }
    if (!best) return false;
    channel = best->ch;
    hello_ok = true;
    cloud_hello = *best->reply;
    options.log->info("placed on {} ({} sessions, queue {} us, {} MiB KV free; {} workers asked)",
                      channel->endpoint(), cloud_hello.active_sessions, cloud_hello.queue_us,
                      cloud_hello.kv_free_bytes >> 20, asks.size());

    return true;
  }

  // Replicas: the current worker failed a step (already dropped); rebuilds
  // the session on another from the buffered hidden states, every row sent
  // again (as after an eviction). The token, or nullopt when no other worker
  // answers: the fallback policy applies then. `sent`: when the lost step went out.
  std::optional<int32_t> FailOver(Generation& gen, Clock::TimePoint sent) {
    std::set<std::string> failed;
    while (true) {
      const std::string from = channel->endpoint(), why = fault_text;
      const CloudFault why_fault = fault;
      failed.insert(from);
      down_until[from] = Now() + options.retry_interval;
      if (!Place(failed)) {
        fault = why_fault;
        fault_text = why;
        return std::nullopt;
      }
      gen.session_open = false;
      options.log->warn("cloud {}: {}: rebuilding the session on {} from {} positions", from, why,
                        channel->endpoint(), gen.positions);

      if (auto t =
              CloudStep(gen, gen.request->sampling, Now() + options.step_deadline, *gen.result)) {
        ++gen.result->failovers;
        gen.result->failover_ms.push_back(
            std::chrono::duration<double, std::milli>(Now() - sent).count());
        step_metrics.failovers.Add(1);
        return t;
      }
      Drop();
      gen.session_open = false;
    }
  }

  // Uses cut `k` from now on (weights are slices of the full load).
  void SetCut(int k) {
    const auto& c = model.config();
    options.cut = k;
    device_w = all_w->Slice(partition::StageSpec::Device(c, k));
    local_w = k < layers ? all_w->Slice(partition::StageSpec::Cloud(c, k)) : nullptr;
    step_metrics.cut.Set(k);
  }

  // Round trip of a Ping carrying `bytes` each way; nullopt on timeout.
  std::optional<double> Probe(uint32_t bytes, Clock::TimePoint deadline) {
    const uint64_t id = ++seq;
    const auto t0 = Now();
    if (!channel->Send(transport::Ping{id, bytes}, zmq::message_t(bytes))) return std::nullopt;
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Now());
      if (left.count() <= 0) return std::nullopt;
      auto in = channel->Receive(left);
      if (!in) return std::nullopt;
      if (auto* p = std::get_if<transport::Pong>(&in->message); p && p->seq == id) {
        return std::chrono::duration<double, std::milli>(Now() - t0).count();
      }
    }
  }

  // --cut auto: the cut for the next request.
  void PlanRequest() {
    const auto plan = Predict();
    if (!plan) {
      options.log->info("auto cut: cloud {} unreachable, running all {} layers here",
                        channel->endpoint(), layers);
      SetCut(layers);
      return;
    }
    const auto cut = replanner->PlanRequest();
    const int k = cut.value_or(layers);
    options.log->info("auto cut {} (rtt {:.2f} ms, {:.1f} Mbit/s): {}", k, estimator.rtt_ms(),
                      estimator.up_mbit_s(), replanner->last_plan().reason);

    if (k != options.cut) {
      SetCut(k);
      hello.layer_end = k;
    }
    step_metrics.predicted_tpot_ms.Set(replanner->last_plan().cuts[k].tpot_ms);
  }

  // Brings the replanner's inputs up to date (hello, probes, profiles) and
  // returns the predictions; nullopt if the cloud cannot be reached.
  std::optional<scheduler::Plan> Predict() {
    const auto& c = model.config();
    const auto deadline = Now() + options.step_deadline;
    bool reachable = false;
    try {
      reachable = EnsureHello(deadline);
    } catch (const DeviceError& e) {
      options.log->warn("auto cut: {}", e.what());
    }
    if (reachable && !estimator.calibrated()) {
      // Two probe sizes: the intercept is the RTT, the slope the bandwidth.
      double small = 1e30, large = 1e30;
      for (int i = 0; i < 3; ++i) {
        if (auto t = Probe(64, deadline)) small = std::min(small, *t);
        if (auto t = Probe(64 << 10, deadline)) large = std::min(large, *t);
      }
      if (small < 1e30 && large < 1e30) estimator.Calibrate(64, small, 64 << 10, large);
    }
    if (!reachable || !estimator.calibrated()) return std::nullopt;
    scheduler::PlanInputs in = options.auto_cut.plan;
    in.device = device_profile;
    in.cloud = device_profile;  // the cloud's own decode times replace ours where it serves
    const int first = static_cast<int>(cloud_hello.layer_begin);
    for (int l = 0; l < layers; ++l) {
      const size_t i = static_cast<size_t>(l - first);
      if (l < first || i >= cloud_hello.layer_decode_us.size()) continue;
      const double ratio =
          cloud_hello.layer_decode_us[i] / std::max(1e-3, device_profile.DecodeUs(l, 16));
      for (double& v : in.cloud.layer_decode_us[l]) v *= ratio;
      for (double& v : in.cloud.layer_prefill_us[l]) v *= ratio;
    }
    if (cloud_hello.head_decode_us > 0) in.cloud.head_decode_us = cloud_hello.head_decode_us;
    cloud_profile = in.cloud;
    ApplyDrift(in);
    in.cloud_queue_ms = cloud_hello.queue_us / 1e3;
    in.constraints.privacy_floor = std::max(in.constraints.privacy_floor, first);
    in.link = link_override ? *link_override : estimator.ToLink(in.link);
    in.workload.max_context = c.max_context;
    in.workload.activation_bytes =
        static_cast<int>(transport::EncodedSize(options.codec, 1, hidden));
    if (cloud_hello.protocol_minor < 4)
      in.speculation.drafter = scheduler::DrafterKind::kNone;  // no verifier there
    in.speculation.acceptance = acceptance.rate();
    if (!replanner) {
      replanner = std::make_unique<scheduler::Replanner>(
          in, scheduler::Replanner::Options{options.auto_cut.margin, 0});
    } else {
      replanner->SetInputs(in);
    }
    return scheduler::ChooseCut(in);
  }

  void Drop() {
    // A new socket, so a restarted worker sees a fresh peer and nothing stale
    // arrives later.
    channel->Reconnect();
    hello_ok = false;
  }

  // Sends our Hello and waits for the reply. False on timeout; throws on an
  // incompatible worker (a configuration error, not a network one).
  bool EnsureHello(Clock::TimePoint deadline) {
    if (hello_ok) return true;
    channel->Send(hello);
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Now());
      auto in = left.count() > 0 ? channel->Receive(left) : std::nullopt;
      if (!in) {
        LinkFault(0);
        return false;
      }
      if (auto* h = std::get_if<transport::Hello>(&in->message)) {
        transport::Validation v = transport::ValidateHello(hello, *h, options.require_exact);
        if (!v.ok())
          throw DeviceError(Exception::kInvalidArgument,
                            "cloud " + channel->endpoint() + " is incompatible: " + v.reason,
                            CloudFault::kIncompatible);
        if (!v.reason.empty()) options.log->warn("cloud {}: {}", channel->endpoint(), v.reason);
        if (options.cut < static_cast<int>(h->layer_begin)) {
          throw DeviceError(Exception::kInvalidArgument,
                            "cloud " + channel->endpoint() + " serves cuts from " +
                                std::to_string(h->layer_begin) + " only; this device runs cut " +
                                std::to_string(options.cut),
                            CloudFault::kIncompatible);
        }
        hello_ok = true;
        cloud_hello = *h;
        return true;
      }
      if (auto* e = std::get_if<transport::Error>(&in->message)) {
        if (e->code == ErrorCode::kVersionMismatch || e->code == ErrorCode::kModelMismatch) {
          throw DeviceError(Exception::kInvalidArgument,
                            "cloud " + channel->endpoint() +
                                " refused us: " + transport::EscapeForLog(e->message),
                            CloudFault::kIncompatible);
        }
      }
      // A restarted worker never saw our Hello: send it again.
      if (std::holds_alternative<transport::Heartbeat>(in->message)) channel->Send(hello);
      // Anything else is stale: keep waiting.
    }
  }

  // Runs rows [cloud_positions, positions) through the cloud; the token, or
  // nullopt if the cloud did not answer by `deadline` (`fault` says why).
  std::optional<int32_t> CloudStep(Generation& gen, const partition::SamplingParams& sp,
                                   Clock::TimePoint deadline, GenerateResult& result) {
    // A session evicted under a tight KV budget, or lost with a restarted
    // worker, is rebuilt; a few times in a row is contention, more is a
    // worker that cannot hold us: fail over.
    for (int attempt = 0; attempt < 8; ++attempt) {
      if (!EnsureHello(deadline)) return std::nullopt;
      if (!gen.session_open) {
        gen.session_id = rng();
        gen.cloud_positions = 0;
        channel->Send(transport::OpenSession{gen.session_id, static_cast<uint32_t>(options.cut),
                                             options.codec, false});
        gen.session_open = true;
      }
      const transport::Forward f = NextForward(gen, sp);
      const std::optional<Clock::TimePoint> sent = SendForward(gen, f);
      if (!sent) return LinkFault(f.seq);
      const StepReply reply = AwaitReply(gen, f, *sent, deadline, result);
      if (!reply.rebuild) return reply.token;
    }
    return Failed(CloudFault::kStepRefused, "the session was lost 8 times in a row");
  }

  // The next step's Forward: rows [cloud_positions, positions), the drafts.
  transport::Forward NextForward(const Generation& gen, const partition::SamplingParams& sp) {
    const int rows = gen.positions - gen.cloud_positions;
    transport::Forward f;
    f.session_id = gen.session_id;
    f.seq = ++seq;
    f.first_position = gen.cloud_positions;
    f.count = rows;
    f.tensor = {options.codec, static_cast<uint32_t>(rows), static_cast<uint32_t>(hidden),
                transport::EncodedSize(options.codec, rows, hidden)};
    f.sampling = {sp.temperature, static_cast<uint32_t>(sp.top_k), sp.top_p, sp.seed};
    f.draft_tokens = gen.drafts;
    return f;
  }

  // Encodes `f`'s rows and sends them: when it went out (encoded), or
  // nullopt when the channel did not take it.
  std::optional<Clock::TimePoint> SendForward(const Generation& gen, const transport::Forward& f) {
    const auto t0 = Now();
    zmq::message_t payload(f.tensor.bytes);
    transport::Encode(options.codec,
                      &gen.cut_hidden[static_cast<size_t>(gen.cloud_positions) * hidden],
                      static_cast<int>(f.count), hidden, static_cast<uint8_t*>(payload.data()));
    const auto t1 = Now();
    step_metrics.codec_s.Add(Seconds(t1 - t0));
    if (!channel->Send(f, std::move(payload))) return std::nullopt;
    step_metrics.bytes_sent.Add(static_cast<double>(f.tensor.bytes));
    return t1;
  }

  // How a step ended: its token, a failure (no token, `fault` set), or a
  // session to rebuild (the step is sent again).
  struct StepReply {
    std::optional<int32_t> token;
    bool rebuild = false;
  };

  // Waits for the answer to `f` (sent at `sent`) until `deadline`, skipping
  // stale messages.
  StepReply AwaitReply(Generation& gen, const transport::Forward& f, Clock::TimePoint sent,
                       Clock::TimePoint deadline, GenerateResult& result) {
    while (true) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Now());
      auto in = left.count() > 0 ? channel->Receive(left) : std::nullopt;
      if (!in) return {LinkFault(f.seq)};
      if (auto* r = std::get_if<transport::ForwardResult>(&in->message)) {
        if (r->session_id != f.session_id || r->seq != f.seq) continue;  // stale
        if (!GoodAnswer(*r, gen.drafts)) {
          return {Failed(CloudFault::kStepRefused,
                         "step " + std::to_string(f.seq) + " answered with a bad token list")};
        }
        return {TakeResult(*r, f, gen, sent, result)};
      }
      if (std::holds_alternative<transport::Heartbeat>(in->message)) {
        RestartedWorker(gen, result);
        return {std::nullopt, true};
      }
      if (auto* e = std::get_if<transport::Error>(&in->message);
          e && e->session_id == f.session_id) {
        return StepRefused(*e, f, gen);
      }
    }
  }

  // The worker refused step `f` with `e`: an evicted or unknown session is
  // rebuilt, anything else fails the step.
  StepReply StepRefused(const transport::Error& e, const transport::Forward& f, Generation& gen) {
    if (e.code == ErrorCode::kSessionEvicted || e.code == ErrorCode::kUnknownSession) {
      // The worker dropped our KV: open a new session and resend the
      // whole history of hidden states (transparent rebuild).
      options.log->info("cloud session {} {}: rebuilding from {} positions", f.session_id,
                        transport::ErrorCodeName(e.code), gen.positions);
      step_metrics.evictions.Add(1);
      gen.session_open = false;
      // An unknown session may be a restarted worker: greet it anew.
      if (e.code == ErrorCode::kUnknownSession) hello_ok = false;
      return {std::nullopt, true};
    }
    return {Failed(CloudFault::kStepRefused, "step " + std::to_string(f.seq) +
                                                 " refused: " + transport::EscapeForLog(e.message) +
                                                 " (" + transport::ErrorCodeName(e.code) + ")")};
  }

  // A result answers `drafts` (maybe none) when it holds the accepted drafts,
  // as sent, then one token, all in the vocabulary.
  bool GoodAnswer(const transport::ForwardResult& r, const std::vector<int32_t>& drafts) const {
    if (r.accepted > drafts.size() || r.tokens.size() != r.accepted + 1) return false;
    for (size_t i = 0; i < r.tokens.size(); ++i) {
      if (r.tokens[i] < 0 || r.tokens[i] >= vocab || (i < r.accepted && r.tokens[i] != drafts[i]))
        return false;
    }
    return true;
  }

  // Forgets the rows of the drafts past the first `keep` (rejected by the
  // cloud, or the step failed) in the buffered cut states.
  void DropDrafts(Generation& gen, int keep) {
    gen.positions -= static_cast<int>(gen.drafts.size()) - keep;
    gen.cut_hidden.resize(static_cast<size_t>(gen.positions) * hidden);
    gen.drafts.clear();
  }

  // Accounts for the answer `r` to `f` (sent at `sent`): times, link and
  // drift estimates, the rows the session now holds. Returns its token.
  int32_t TakeResult(const transport::ForwardResult& r, const transport::Forward& f,
                     Generation& gen, Clock::TimePoint sent, GenerateResult& result) {
    const double rtt = Seconds(Now() - sent);
    last_round_trip_ms = rtt * 1e3;
    const double cloud = (r.compute_us + r.queue_us) / 1e6;
    step_metrics.cloud_compute_s.Add(r.compute_us / 1e6);
    step_metrics.cloud_queue_s.Add(r.queue_us / 1e6);
    step_metrics.network_s.Add(std::max(0.0, rtt - cloud));
    if (estimator.calibrated()) {
      estimator.Observe(static_cast<double>(f.tensor.bytes), 64.0,
                        std::max(0.0, rtt - cloud) * 1e3);
    }
    if (f.count == 1 && cloud_profile.num_layers == layers) {
      cloud_drift.Observe(
          cloud_profile.StepUs(options.cut, layers, gen.cloud_positions, false, true),
          r.compute_us);
    }
    gen.accepted = static_cast<int>(r.accepted);
    if (!gen.drafts.empty()) {
      result.drafted += static_cast<int>(gen.drafts.size());
      result.accepted += gen.accepted;
      if (gen.accepted < static_cast<int>(gen.drafts.size())) ++result.draft_rejections;
      acceptance.Observe(static_cast<int>(gen.drafts.size()), gen.accepted);
      step_metrics.drafts.Add(static_cast<double>(gen.drafts.size()));
      step_metrics.drafts_accepted.Add(gen.accepted);
      DropDrafts(gen, gen.accepted);  // the worker forgot the rejected rows too
    }
    gen.cloud_positions = gen.positions;
    result.worker = channel->endpoint();
    ++result.cloud_steps;
    step_metrics.cloud_steps.Add(1);
    return r.tokens.back();
  }

  // The worker restarted (a new instance id, ClientChannel::Receive): the
  // step is lost with the old process, and the new one holds no session, but
  // it answers at once: greet it and rebuild the session there.
  void RestartedWorker(Generation& gen, GenerateResult& result) {
    options.log->warn("cloud {} restarted: rebuilding the session there from {} positions",
                      channel->endpoint(), gen.positions);
    step_metrics.cloud_restarts.Add(1);
    ++result.cloud_restarts;
    hello_ok = false;
    gen.session_open = false;
  }

  // Why the last cloud step or Hello failed; what the fault messages say.
  CloudFault fault = CloudFault::kNone;
  std::string fault_text;
  std::nullopt_t Failed(CloudFault kind, std::string text) {
    fault = kind;
    fault_text = std::move(text);
    return std::nullopt;
  }
  // A wait for the cloud (for step `step`, 0 for a Hello) ended without an
  // answer: the link's state says why.
  std::nullopt_t LinkFault(uint64_t step) {
    const std::string dead_after = std::to_string(channel->dead_after().count());
    switch (channel->link_state()) {
      case transport::LinkState::kRefused:
        return Failed(CloudFault::kRefused,
                      "connection refused (nothing accepts connections there)");
      case transport::LinkState::kHandshakeFailed:
        return Failed(CloudFault::kHandshakeRefused,
                      "handshake refused: the worker did not accept our CURVE keys, or only one "
                      "side uses CURVE");
      case transport::LinkState::kConnecting:
        return Failed(CloudFault::kUnreachable, "no connection established (host unreachable?)");
      case transport::LinkState::kHandshaking:
        return Failed(CloudFault::kUnreachable,
                      "connected, but the handshake did not complete (worker not responding)");
      case transport::LinkState::kLost:
        return Failed(CloudFault::kConnectionLost, "connection lost");
      case transport::LinkState::kUp: break;
    }
    if (!channel->peer_alive())
      return Failed(CloudFault::kNoHeartbeat, "no heartbeat for " + dead_after + " ms");
    if (step == 0)
      return Failed(CloudFault::kStepTimeout, "no answer to our Hello by the deadline");
    return Failed(CloudFault::kStepTimeout,
                  "step " + std::to_string(step) + " not answered within " +
                      std::to_string(options.step_deadline.count()) + " ms");
  }

  // --cut auto while everything runs here: no steps tell the estimator how
  // the link is doing, so a small Ping goes out at each re-plan. Its Pong is
  // looked for without waiting after every token; it arrived between that
  // look and the one before, so the midpoint stands for its arrival (off by
  // at most half a token's time). The planner can then move the cut back to
  // the cloud when the link recovers.
  struct PingOut {
    uint64_t seq;
    Clock::TimePoint sent, last_look;
  };
  std::optional<PingOut> ping_out;
  void SendRttPing() {
    if (!channel || !hello_ok || !estimator.calibrated() || ping_out) return;
    const uint64_t id = ++seq;
    const auto now = Now();
    if (channel->Send(transport::Ping{id, 64}, zmq::message_t(64)))
      ping_out = PingOut{id, now, now};
  }
  void LookForPong() {
    if (!ping_out) return;
    const auto now = Now();
    while (auto in = channel->Receive(std::chrono::milliseconds(0))) {
      if (auto* p = std::get_if<transport::Pong>(&in->message);
          p && ping_out && p->seq == ping_out->seq) {
        const auto arrived = ping_out->last_look + (now - ping_out->last_look) / 2;
        estimator.Observe(
            64, 64, std::chrono::duration<double, std::milli>(arrived - ping_out->sent).count());
        ping_out.reset();
        return;
      }
    }
    ping_out->last_look = now;
    // An answer that has not come in a step deadline is not coming.
    if (now - ping_out->sent > options.step_deadline) ping_out.reset();
  }

  int32_t LocalStep(Generation& gen, partition::Stage& local, const partition::SamplingParams& sp) {
    const auto t0 = Now();
    const int from = local.position();
    std::vector<float> logits(vocab);
    local.Forward(
        {nullptr, &gen.cut_hidden[static_cast<size_t>(from) * hidden], gen.positions - from},
        logits.data());
    step_metrics.local_compute_s.Add(Seconds(Now() - t0));
    step_metrics.local_steps.Add(1);
    return partition::SampleToken(logits.data(), vocab, sp, static_cast<int>(gen.ids.size()));
  }

  // A generation: validation and set-up, then one step per token (re-plan,
  // device layers, cloud or local rest, emit) until it ends.
  GenerateResult Generate(const GenerateRequest& req,
                          const std::function<bool(int32_t)>& on_token) {
    partition::ValidateSamplingParams(req.sampling);
    partition::ValidatePrompt(req.prompt, model.config());
    GenerateResult result;
    Generation gen;
    StartGeneration(req, result, gen);
    step_metrics.active_sessions.Set(1);
    struct Done {
      transport::Metrics::Gauge& active_sessions;
      ~Done() { active_sessions.Set(0); }
    } done{step_metrics.active_sessions};
    while (static_cast<int>(result.tokens.size()) < req.max_tokens) {
      MaybeReplan(gen);
      const std::vector<int32_t> drafts = RunDeviceLayers(gen);
      const int32_t token = NextToken(gen, drafts);
      if (gen.all_local && ping_out) LookForPong();
      if (Emit(gen, drafts, token, on_token)) break;
    }
    FinishGeneration(gen);
    return result;
  }

  // The cut for this request (auto), the device stages and the loop's state.
  void StartGeneration(const GenerateRequest& req, GenerateResult& result, Generation& gen) {
    if (Several() && (options.cut < layers || options.auto_cut.enabled)) Place({});
    if (options.auto_cut.enabled) PlanRequest();
    result.cut = options.cut;
    if (options.auto_cut.enabled && replanner &&
        static_cast<size_t>(options.cut) < replanner->last_plan().cuts.size()) {
      result.predicted_tpot_ms = replanner->last_plan().cuts[options.cut].tpot_ms;
    }
    gen.request = &req;
    gen.result = &result;
    gen.chain.push_back(NewStage(device_w));
    if (local_w) gen.local = NewStage(local_w);
    gen.ids = req.prompt;
    gen.all_local = options.cut == layers;
    gen.split = !gen.all_local;
    gen.draft_len.emplace(std::clamp(options.max_drafts, 1, kMaxDraftsPerStep));
    if (options.drafter) gen.drafting = options.drafter->Begin();
  }

  // The finish reason, the time per token, and the cloud session closed.
  void FinishGeneration(Generation& gen) {
    GenerateResult& result = *gen.result;
    if (result.finish_reason.empty()) result.finish_reason = "length";
    result.final_cut = options.cut;
    result.acceptance_ewma = draft_meter.acceptance();
    if (result.tokens.size() > 1) {
      result.measured_tpot_ms =
          std::chrono::duration<double, std::milli>(Now() - gen.first_token_at).count() /
          static_cast<double>(result.tokens.size() - 1);
      step_metrics.measured_tpot_ms.Set(result.measured_tpot_ms);
    }
    if (gen.session_open && gen.split) channel->Send(transport::CloseSession{gen.session_id});
  }

  // Runs `n` token ids through the device's chain of stages into gen.out.
  void DeviceForward(Generation& gen, const int32_t* ids, int n) {
    gen.out.resize(gen.chain[0]->OutputSize(n));
    gen.chain[0]->Forward({ids, nullptr, n}, gen.out.data());
    for (size_t i = 1; i < gen.chain.size(); ++i) {
      gen.tmp.resize(gen.chain[i]->OutputSize(n));
      gen.chain[i]->Forward({nullptr, gen.out.data(), n}, gen.tmp.data());
      gen.out.swap(gen.tmp);
    }
  }

  // --cut auto: every replan_every tokens, the cost model may move the cut.
  void MaybeReplan(Generation& gen) {
    const int done_tokens = static_cast<int>(gen.result->tokens.size());
    if (!options.auto_cut.enabled || !replanner || !(gen.split || gen.all_local) ||
        done_tokens == 0 || done_tokens % std::max(1, options.auto_cut.replan_every) != 0) {
      return;
    }
    if (gen.all_local) SendRttPing();
    if (cloud_profile.num_layers == layers) {
      scheduler::PlanInputs in = replanner->inputs();
      ApplyDrift(in);
      replanner->SetInputs(std::move(in));
    }
    replanner->UpdateLink(link_override ? *link_override
                                        : estimator.ToLink(replanner->inputs().link));
    replanner->UpdateAcceptance(acceptance.rate());
    const int k = replanner->Replan(gen.fed, gen.request->max_tokens - done_tokens);
    if (k != options.cut) Recut(gen, k);
  }

  // Moves the cut between two steps (all positions so far processed on
  // both sides). Exact: every rebuilt cache equals the one it replaces.
  void Recut(Generation& gen, int to) {
    const auto& cfg = model.config();
    const int from = options.cut;
    if (to > from) {  // the device takes over [from, to): run them over the buffered states
      partition::StageSpec spec = to == layers ? partition::StageSpec::Cloud(cfg, from)
                                               : partition::StageSpec::Range(cfg, from, to);
      spec.embedding = false;
      spec.head = to == layers;
      auto st = NewStage(all_w->Slice(spec));
      std::vector<float> next(st->OutputSize(gen.positions));
      st->Forward({nullptr, gen.cut_hidden.data(), gen.positions}, next.data());
      if (to < layers) gen.cut_hidden.swap(next);
      gen.chain.push_back(std::move(st));
    } else {  // the cloud takes over [to, from): recompute the states at `to` from the tokens
      gen.chain.clear();
      gen.chain.push_back(NewStage(all_w->Slice(partition::StageSpec::Device(cfg, to))));
      DeviceForward(gen, gen.ids.data(), gen.fed);
      gen.cut_hidden.assign(gen.out.begin(), gen.out.end());
      gen.positions = gen.fed;
    }
    if (gen.session_open) channel->Send(transport::CloseSession{gen.session_id});
    gen.session_open = false;
    SetCut(to);
    gen.local = local_w ? NewStage(local_w) : nullptr;
    gen.all_local = to == layers;
    gen.split = !gen.all_local;
    step_metrics.split_mode.Set(gen.split ? 1 : 0);
    ++gen.result->recuts;
    options.log->info("re-cut {} -> {} at position {}", from, to, gen.fed);
  }

  // Speculative: how many drafts to propose this step (0: none; only once
  // the worker has said it verifies drafts: protocol 1.4): the smaller of
  // the acceptance rule and the link's (device/draft_policy.h).
  int DraftCount(const Generation& gen) const {
    if (!gen.split || !gen.drafting || !hello_ok || cloud_hello.protocol_minor < 4) return 0;
    const GenerateRequest& req = *gen.request;
    const int done_tokens = static_cast<int>(gen.result->tokens.size());
    return std::max(0,
                    std::min({gen.draft_len->k(),
                              draft_meter.Cap(std::clamp(options.max_drafts, 1, kMaxDraftsPerStep)),
                              req.max_tokens - done_tokens - 1,
                              model.config().max_context - static_cast<int>(gen.ids.size())}));
  }

  // The new token(s) and the drafts through [0, cut), then the rest of the
  // step here (all local) or where the split mode says: the next token.
  int32_t NextToken(Generation& gen, const std::vector<int32_t>& drafts) {
    const int n = gen.step_rows;
    if (gen.all_local) {
      ++gen.result->local_steps;
      return partition::SampleToken(gen.out.data(), vocab, gen.request->sampling,
                                    static_cast<int>(gen.ids.size()));
    }
    gen.cut_hidden.insert(gen.cut_hidden.end(), gen.out.begin(), gen.out.end());
    gen.positions += n + static_cast<int>(drafts.size());
    gen.drafts = drafts;
    gen.accepted = 0;
    std::optional<int32_t> t;
    if (gen.split) {
      const auto sent = Now();
      t = SpeculativeCloudStep(gen, drafts);
      if (!t && Several()) t = FailOver(gen, sent);
    } else if (gen.local && channel) {
      t = ProbeCloud(gen);
    }
    if (!t && gen.split) t = ApplyFallbackPolicy(gen);
    if (t) return *t;
    ++gen.result->local_steps;
    return LocalStep(gen, *gen.local, gen.request->sampling);
  }

  // Runs the new token(s) through the device's layers into gen.out, with the
  // drafts when speculating (the drafter runs the layers itself: early exit
  // drafts from their rows), and returns the drafts.
  std::vector<int32_t> RunDeviceLayers(Generation& gen) {
    const int n = static_cast<int>(gen.ids.size()) - gen.fed;
    const int k = DraftCount(gen);
    std::vector<int32_t> drafts;
    const auto t0 = Now();
    if (k > 0) {
      drafts = gen.drafting->Step(
          gen.ids, gen.fed, k, gen.request->sampling, hidden,
          [&](const int32_t* ids, int count) {
            DeviceForward(gen, ids, count);
            return gen.out.data();
          },
          &gen.draft_rows);
      gen.out.swap(gen.draft_rows);
    } else {
      DeviceForward(gen, &gen.ids[gen.fed], n);
    }
    const double device_s = Seconds(Now() - t0);
    if (n == 1 && drafts.empty() && options.cut > 0 && (gen.split || gen.all_local) &&
        device_profile.num_layers == layers) {
      device_drift.Observe(device_profile.StepUs(0, options.cut, gen.fed, true, gen.all_local),
                           device_s * 1e6);
    }
    gen.fed = static_cast<int>(gen.ids.size());
    gen.step_rows = n;
    gen.device_s = device_s;
    step_metrics.device_compute_s.Add(device_s);
    return drafts;
  }

  // A step in split mode (with the drafts, if any): the cloud's token, or
  // nullopt with the session dropped and the device's state as if never
  // drafted; the device stages keep the rows of the accepted drafts only.
  std::optional<int32_t> SpeculativeCloudStep(Generation& gen, const std::vector<int32_t>& drafts) {
    std::optional<int32_t> t =
        CloudStep(gen, gen.request->sampling, Now() + options.step_deadline, *gen.result);
    if (!t) {
      Drop();
      gen.session_open = false;
      DropDrafts(gen, 0);  // go on as if never drafted: exactly a plain step's state
    }
    if (!drafts.empty()) {
      for (auto& st : gen.chain) st->Truncate(gen.fed + gen.accepted);
      if (t) {
        gen.draft_len->Observe(static_cast<int>(drafts.size()), gen.accepted);
        draft_meter.Observe(static_cast<int>(drafts.size()), gen.accepted, gen.device_s * 1e3,
                            gen.step_rows + static_cast<int>(drafts.size()), last_round_trip_ms);
        step_metrics.draft_acceptance.Set(draft_meter.acceptance());
      }
    }
    return t;
  }

  // On the device: looks for the cloud without blocking. A hello goes out
  // every retry interval on a fresh connection; its answer is picked up at a
  // later step, and only then is the step sent there. The cloud's token if
  // it took this step (split mode again).
  std::optional<int32_t> ProbeCloud(Generation& gen) {
    const auto now = Now();
    if (!gen.probing && now >= gen.retry_at) {
      if (Several()) NextWorker();  // probe each in turn
      Drop();
      channel->Send(hello);
      gen.probing = true;
      gen.probe_deadline = now + options.step_deadline;
      return std::nullopt;
    }
    if (!gen.probing) return std::nullopt;
    while (auto in = channel->Receive(std::chrono::milliseconds(0))) {
      if (auto* h = std::get_if<transport::Hello>(&in->message);
          h && transport::ValidateHello(hello, *h, options.require_exact).ok()) {
        hello_ok = true;
        cloud_hello = *h;
      }
    }
    if (!hello_ok) {
      if (now >= gen.probe_deadline) {
        gen.probing = false;
        gen.retry_at = now + options.retry_interval;
      }
      return std::nullopt;
    }
    gen.probing = false;
    gen.session_open = false;
    std::optional<int32_t> t =
        CloudStep(gen, gen.request->sampling, now + options.step_deadline, *gen.result);
    if (!t) {
      Drop();
      gen.retry_at = now + options.retry_interval;
      return std::nullopt;
    }
    ++gen.result->recoveries;
    step_metrics.recoveries.Add(1);
    options.log->info("cloud {} is back: split mode again at position {}", channel->endpoint(),
                      gen.positions);
    gen.split = true;
    step_metrics.split_mode.Set(1);
    return t;
  }

  // Replicas: the worker after the current one in the list becomes current.
  void NextWorker() {
    const auto& eps = replicas->Endpoints(Now());
    if (eps.empty()) return;
    auto it = std::find(eps.begin(), eps.end(), channel->endpoint());
    channel = ChannelFor(it == eps.end() || it + 1 == eps.end() ? eps.front() : *(it + 1));
    hello_ok = false;
  }

  // The cloud failed a step in split mode: --fallback decides. kFail throws,
  // kWait retries with back-off until a token or its deadline (then throws),
  // kLocal moves to the device (nullopt: the caller runs the step here).
  std::optional<int32_t> ApplyFallbackPolicy(Generation& gen) {
    if (options.fallback == Fallback::kFail) {
      throw DeviceError(Exception::kUnavailable,
                        "cloud " + channel->endpoint() + ": " + fault_text + " (fallback: fail)",
                        fault);
    }
    if (options.fallback == Fallback::kWait) return WaitForCloud(gen);
    ++gen.result->fallbacks;
    step_metrics.fallbacks.Add(1);
    step_metrics.split_mode.Set(0);
    options.log->warn("cloud {}: {}: continuing on the device at position {}", channel->endpoint(),
                      fault_text, gen.positions);

    gen.split = false;
    gen.retry_at = Now() + options.retry_interval;
    return std::nullopt;
  }

  // --fallback wait: reconnects with back-off and retries the step until it
  // is answered; throws DeviceError(kUnavailable) after wait_deadline.
  int32_t WaitForCloud(Generation& gen) {
    const auto give_up = Now() + options.wait_deadline;
    while (true) {
      if (Now() >= give_up) {
        throw DeviceError(Exception::kUnavailable,
                          "cloud " + channel->endpoint() + " unreachable for " +
                              std::to_string(options.wait_deadline.count()) +
                              " ms (fallback: wait); last: " + fault_text,
                          fault);
      }
      if (Several()) NextWorker();
      const auto backoff = channel->Reconnect();
      hello_ok = false;
      gen.session_open = false;
      clock.SleepFor(std::min<Clock::Duration>(backoff, give_up - Now()));
      if (auto t = CloudStep(gen, gen.request->sampling,
                             std::min(give_up, Now() + options.step_deadline), *gen.result))
        return *t;
    }
  }

  // Emits the accepted drafts (already in the device's caches), then
  // `token`; true when the generation ends (EOS, on_token, the context).
  bool Emit(Generation& gen, const std::vector<int32_t>& drafts, int32_t token,
            const std::function<bool(int32_t)>& on_token) {
    GenerateResult& result = *gen.result;
    const auto& c = model.config();
    std::vector<int32_t> emit(drafts.begin(), drafts.begin() + gen.accepted);
    emit.push_back(token);
    gen.fed += gen.accepted;
    gen.accepted = 0;
    for (int32_t tok : emit) {
      gen.ids.push_back(tok);
      result.tokens.push_back(tok);
      if (result.tokens.size() == 1) gen.first_token_at = Now();
      step_metrics.tokens.Add(1);
      if (on_token && !on_token(tok)) {
        result.finish_reason = "stop";
      } else if (gen.request->stop_at_eos &&
                 (c.IsEos(tok) || std::find(options.eos_ids.begin(), options.eos_ids.end(), tok) !=
                                      options.eos_ids.end())) {
        result.finish_reason = "stop";
      } else if (static_cast<int>(gen.ids.size()) >= c.max_context) {
        result.finish_reason = "context";
      }
      if (!result.finish_reason.empty()) return true;
    }
    return false;
  }
};

Agent::Agent(const partition::Model& model, AgentOptions options, zmq::context_t& context,
             transport::Metrics& metrics, const transport::Clock& clock)
    : impl_(std::make_unique<Impl>(model, std::move(options), context, metrics, clock)) {}

Agent::~Agent() = default;

GenerateResult Agent::Generate(const GenerateRequest& request,
                               const std::function<bool(int32_t)>& on_token) {
  return impl_->Generate(request, on_token);
}

const partition::Model& Agent::model() const { return impl_->model; }

std::optional<scheduler::Plan> Agent::PlanAllCuts() {
  if (impl_->device_profile.num_layers == 0)
    throw Exception(Exception::kInvalidArgument,
                    "PlanAllCuts needs the automatic cut (auto_cut with a device profile)");
  if (!impl_->channel) return std::nullopt;
  return impl_->Predict();
}

int Agent::cut() const { return impl_->options.cut; }

void Agent::OverrideLink(std::optional<scheduler::Link> link) { impl_->link_override = link; }

void Agent::UseCut(int cut) {
  if (!impl_->all_w)
    throw Exception(Exception::kInvalidArgument,
                    "a fixed cut can only change when all layers are loaded");
  partition::StageSpec::Device(impl_->model.config(), cut);  // validates
  impl_->options.auto_cut.enabled = false;
  impl_->SetCut(cut);
}

}  // namespace splitlm::device
