// One scenario (a condition of a sweep): the rig (sim/rig.h) built from its
// settings, and the agents its policies run on, shared by every run of the
// scenario so that a policy's state (a learned link, a profile) carries over.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "device/agent.h"
#include "scheduler/cost_model.h"
#include "sim/rig.h"
#include "sim/settings.h"
#include "sim/tally.h"
#include "sim/workload.h"

namespace splitlm::sim {

// A policy: "auto", "device" (all local), "cloud" (cut 0) or a cut K; a
// "+spec" suffix runs it with the scenario's drafter (Settings::speculate).
struct Policy {
  bool automatic = false;
  int cut = 0;  // fixed cuts
  bool speculative = false;
};
inline constexpr const char* kSpeculativeSuffix = "+spec";

// Throws Exception(kInvalidArgument) naming the accepted forms.
Policy ParsePolicy(const std::string& text, int layers);

class Scenario {
 public:
  // Checks the settings (profiles, trace, drafter), makes the workload's
  // reference (ReferenceFor) and starts the rig. `bench` and `settings`
  // must outlive the scenario. Throws Exception(kInvalidArgument).
  Scenario(Workbench& bench, const Settings& settings);
  ~Scenario();
  Scenario(const Scenario&) = delete;
  Scenario& operator=(const Scenario&) = delete;

  int layers() const;
  size_t prompts() const { return ref_.prompts.size(); }

  // Runs prompts [first, last) with `policy` and adds them to `t`;
  // `restart_link` starts the link's trace and outages again first. Stops
  // early (t.interrupted) when the bench's stop is requested.
  void Run(const std::string& policy, size_t first, size_t last, Tally& t, bool restart_link);

  // The summary of `t`, the tally of `policy`.
  RunResult Result(const std::string& policy, const Tally& t) const;

  // What the agents plan with: the radio preset, the emulated device's
  // power, the workload.
  scheduler::PlanInputs Plan() const;

 private:
  device::AgentOptions Options(const Policy& policy);
  device::Agent& AgentFor(const Policy& policy);

  Workbench& bench_;
  const Settings& s_;
  const Reference& ref_;
  std::optional<scheduler::HardwareProfile> device_hw_, cloud_hw_;
  zmq::context_t zctx_;
  std::unique_ptr<Rig> rig_;
  // By (automatic, speculative); the agents go before their metrics.
  transport::Metrics metrics_[2][2];
  std::unique_ptr<device::Agent> agents_[2][2];
};

}  // namespace splitlm::sim
