#include "sim/scenario.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <stdexcept>

#include "device/drafter.h"
#include "partition/weight_bytes.h"
#include "transport/error.h"

namespace splitlm::sim {
namespace {

scheduler::WeightCost Weights(const partition::Model& model, const std::string& format) {
  return {partition::ModelWeightBytes(model, format), 1.0};
}

bool Stopped(const Workbench& b) { return b.stop.StopRequested(); }

// Heartbeats must outlast the slowest legitimate step (a prompt's hidden
// states queued on the uplink delay our heartbeats behind them), or a slow
// link would be taken for a dead one.
std::chrono::milliseconds HeartbeatFor(const Settings& s, const Reference& ref, int hidden_size) {
  size_t longest = 1;
  for (const auto& p : ref.prompts) longest = std::max(longest, p.size());
  const double prompt_bytes = 4.0 * hidden_size * static_cast<double>(longest) + 256;
  double slowest_ms = 0;
  auto consider = [&](double up_mbit_s, double rtt_ms) {
    slowest_ms =
        std::max(slowest_ms, rtt_ms + (up_mbit_s > 0 ? prompt_bytes * 8 / (up_mbit_s * 1e3) : 0));
  };
  consider(s.link.up_mbit_s, 2 * s.link.delay_ms + 2 * s.link.jitter_ms);
  if (!s.trace.empty()) {
    for (const auto& t : ReadTrace(s.trace)) {
      if (t.state == TracePoint::State::kUp) consider(t.up_mbit_s, t.rtt_ms);
    }
  }
  return std::chrono::milliseconds(static_cast<int64_t>(std::max(100.0, slowest_ms)));
}

}  // namespace

Policy ParsePolicy(const std::string& text, int layers) {
  Policy p;
  std::string base = text;
  const std::string suffix = kSpeculativeSuffix;
  if (base.size() > suffix.size() &&
      base.compare(base.size() - suffix.size(), suffix.size(), suffix) == 0) {
    p.speculative = true;
    base.resize(base.size() - suffix.size());
  }
  if (base == "auto") {
    p.automatic = true;
    p.cut = layers;
    return p;
  }
  if (base == "device") p.cut = layers;
  if (base == "cloud") p.cut = 0;
  if (base == "device" || base == "cloud") return p;
  size_t used = 0;
  int k = -1;
  try {
    k = std::stoi(base, &used);
  } catch (const std::exception&) {
  }
  if (used != base.size() || k < 0 || k > layers) {
    throw Exception(Exception::kInvalidArgument,
                    "policy \"" + text + "\": expected auto, device, cloud or a cut 0.." +
                        std::to_string(layers) + ", optionally followed by " + suffix);
  }
  p.cut = k;
  return p;
}

Scenario::Scenario(Workbench& bench, const Settings& s)
    : bench_(bench),
      s_(s),
      ref_(ReferenceFor(bench, s)),
      device_hw_(FindHardware(s.device, bench.hardware_dir, "device")),
      cloud_hw_(FindHardware(s.cloud, bench.hardware_dir, "cloud")) {
  if (!s.speculate.empty()) device::ParseSpeculate(s.speculate);
  RigOptions o;
  o.device = device_hw_;
  o.cloud = cloud_hw_;
  o.device_weights = Weights(*bench.model, s.device_weights);
  o.cloud_weights = Weights(*bench.model, s.cloud_weights);
  o.log = bench.log;
  o.link.link = s.link;
  o.link.outages = s.outages;
  if (!s.trace.empty()) o.link.trace = ReadTrace(s.trace);
  rig_ = std::make_unique<Rig>(*bench.model, std::move(o), zctx_);
}

Scenario::~Scenario() {
  for (auto& row : agents_) {
    for (auto& agent : row) agent.reset();
  }
  rig_.reset();
}

int Scenario::layers() const { return bench_.model->config().num_layers; }

void Scenario::Run(const std::string& policy_text, size_t first, size_t last, Tally& t,
                   bool restart_link) {
  const Policy policy = ParsePolicy(policy_text, layers());
  device::Agent& agent = AgentFor(policy);
  transport::Metrics& m = metrics_[policy.automatic][policy.speculative];
  if (!policy.automatic) agent.UseCut(policy.cut);
  auto part = [&](const char* name) {
    return m.Get(std::string("splitlm_device_latency_seconds_total{part=\"") + name + "\"}");
  };
  auto snapshot = [&] {
    return std::array<double, 5>{m.Get("splitlm_device_tokens_total"),
                                 m.Get("splitlm_device_cloud_steps_total"),
                                 m.Get("splitlm_device_bytes_sent_total"),
                                 part("device_compute") + part("local_compute") + part("codec"),
                                 part("network") + part("cloud_compute") + part("cloud_queue")};
  };
  const auto before = snapshot();
  if (restart_link) rig_->relay().Restart();
  transport::VirtualClock& clock = rig_->clock();
  const auto t_start = clock.Now();
  for (size_t p = first; p < last && !Stopped(bench_); ++p) {
    auto last_at = clock.Now();
    bool first_token = true;
    auto g = agent.Generate({ref_.prompts[p], s_.tokens, SamplingOf(s_), false}, [&](int32_t) {
      const auto now = clock.Now();
      const double ms = std::chrono::duration<double, std::milli>(now - last_at).count();
      (first_token ? t.ttft : t.tpot).push_back(ms);
      t.timeline.push_back({std::chrono::duration<double>(now - t_start).count(), agent.cut(), ms,
                            rig_->relay().Current()});
      ++t.per_cut[agent.cut()];
      first_token = false;
      last_at = now;
      return !Stopped(bench_);
    });
    t.fallbacks += g.fallbacks;
    t.recoveries += g.recoveries;
    t.predicted_tpot_ms = g.predicted_tpot_ms;
    t.cut_changes += g.recuts;
    t.cuts.push_back(g.cut);
    t.generated += static_cast<int>(g.tokens.size());
    t.drafted += g.drafted;
    t.accepted += g.accepted;
    for (size_t i = 0; i < g.tokens.size() && i < ref_.tokens[p].size(); ++i)
      t.agree += g.tokens[i] == ref_.tokens[p][i];
    t.total += static_cast<int>(ref_.tokens[p].size());
  }
  const auto after = snapshot();
  t.tokens += after[0] - before[0];
  t.steps += after[1] - before[1];
  t.bytes += after[2] - before[2];
  t.compute_s += after[3] - before[3];
  t.wait_s += after[4] - before[4];
  t.interrupted = t.interrupted || Stopped(bench_);
}

RunResult Scenario::Result(const std::string& policy, const Tally& t) const {
  const Policy p = ParsePolicy(policy, layers());
  return Summarize(policy, t, p.cut, Plan());
}

scheduler::PlanInputs Scenario::Plan() const {
  scheduler::PlanInputs plan;
  scheduler::ApplyRadioPreset(s_.link_type, plan.link);
  if (device_hw_) {
    plan.power.compute_w = device_hw_->compute_w;
    plan.power.wait_w = device_hw_->wait_w;
  }
  if (cloud_hw_) plan.cloud_usd_per_s = cloud_hw_->usd_per_hour / 3600;
  plan.device.threads = at::get_num_threads();
  plan.workload.prompt_tokens = s_.prompt_tokens;
  plan.workload.context = s_.prompt_tokens + s_.tokens / 2;
  return plan;
}

device::AgentOptions Scenario::Options(const Policy& policy) {
  const auto& c = bench_.model->config();
  device::AgentOptions o;
  o.fallback = device::Fallback::kLocal;
  const auto heartbeat = HeartbeatFor(s_, ref_, c.hidden_size);
  o.channel.heartbeat_interval = heartbeat;
  o.step_deadline = std::max(std::chrono::milliseconds(5000), 4 * heartbeat);
  o.retry_interval = std::chrono::milliseconds(250);
  o.log = bench_.log;
  o.auto_cut.plan = Plan();
  if (policy.speculative) {
    if (s_.speculate.empty()) {
      throw Exception(Exception::kInvalidArgument,
                      s_.name + ": a speculative policy needs a drafter (speculate)");
    }
    const auto spec = device::ParseSpeculate(s_.speculate);
    o.drafter = device::MakeDrafter(spec, *bench_.model);
    o.max_drafts = spec.max_drafts;
  }
  if (policy.automatic) {
    o.auto_cut.enabled = true;
    if (device_hw_) {
      o.auto_cut.device_profile = scheduler::RooflineProfile(
          *device_hw_, c, Weights(*bench_.model, s_.device_weights), bench_.model->fingerprint());
    }
    o.cut = c.num_layers;
  } else {
    o.cut = 0;  // below L with local fallback: all layers loaded, so UseCut can pick any cut
  }
  return rig_->AgentOptions(o);
}

device::Agent& Scenario::AgentFor(const Policy& policy) {
  auto& agent = agents_[policy.automatic][policy.speculative];
  if (!agent) {
    agent = std::make_unique<device::Agent>(*bench_.model, Options(policy), zctx_,
                                            metrics_[policy.automatic][policy.speculative],
                                            rig_->clock());
  }
  return *agent;
}

}  // namespace splitlm::sim
