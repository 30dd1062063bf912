// The rig of a simulated pair on one machine: one virtual clock, the real
// cloud worker on its own thread, the shaping relay in front of it, and
// hardware emulators for either side. Agents are built on top with
// AgentOptions() and clock(), so that they reach the worker through the
// relay and keep time on the rig's clock:
//   device::Agent agent(model, rig.AgentOptions(o), context, metrics, rig.clock());
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "cloud/worker.h"
#include "device/agent.h"
#include "partition/model.h"
#include "scheduler/hardware.h"
#include "scheduler/weights.h"
#include "sim/hardware_emulator.h"
#include "sim/in_process_worker.h"
#include "sim/shaper.h"
#include "transport/clock.h"
#include "transport/metrics.h"
#include "transport/null_logger.h"

namespace splitlm::sim {

struct RigOptions {
  // Emulated hardware of each side (none: this machine as it is) and the
  // weights it is charged for (none: fp32).
  std::optional<scheduler::HardwareProfile> device, cloud;
  std::optional<scheduler::WeightCost> device_weights, cloud_weights;
  // The worker's options; the rig sets its bind address, compute hook
  // and (emulated cloud) the layer timings it reports.
  cloud::WorkerOptions worker;
  // The relay's link, trace and outages; the rig sets its upstream.
  ShaperOptions link;
  std::shared_ptr<spdlog::logger> log = transport::NullLogger();  // for the worker and the relay
};

class Rig {
 public:
  // Starts the worker and the relay. Throws Exception as they do
  // (kInvalidArgument, kCorrupt, kUnavailable).
  Rig(const partition::Model& model, RigOptions options, zmq::context_t& context);
  ~Rig();  // stops the relay, then the worker
  Rig(const Rig&) = delete;
  Rig& operator=(const Rig&) = delete;

  // Options for an agent of this rig: `o` with the relay's endpoint and the
  // device emulator (if any) filled in. Build the agent on clock().
  device::AgentOptions AgentOptions(device::AgentOptions o = {});

  // The clock the worker, the relay and the emulators keep time on.
  transport::VirtualClock& clock() { return clock_; }
  ShapingRelay& relay() { return *relay_; }
  transport::Metrics& cloud_metrics() { return cloud_metrics_; }
  // The device side's emulator, null when the device is this machine.
  HardwareEmulator* device_emulator() { return device_emu_ ? &*device_emu_ : nullptr; }
  // The worker's own endpoint (bypassing the relay).
  std::string worker_endpoint() const { return worker_->endpoint(); }

 private:
  transport::VirtualClock clock_;
  std::optional<HardwareEmulator> device_emu_, cloud_emu_;
  transport::Metrics cloud_metrics_;
  std::unique_ptr<InProcessWorker> worker_;
  std::unique_ptr<ShapingRelay> relay_;
};

}  // namespace splitlm::sim
