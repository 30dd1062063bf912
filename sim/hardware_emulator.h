// Emulated hardware: a ComputeHook that makes every forward of the stages it
// is set on take the roofline time of a hardware profile on a virtual clock.
#pragma once

#include "partition/model_config.h"
#include "partition/stage.h"
#include "scheduler/hardware.h"
#include "scheduler/weights.h"
#include "transport/clock.h"

namespace splitlm::sim {

// Sleeps on `clock` when the profile's hardware is slower than this machine,
// skips ahead when it is faster (transport::VirtualClock::Account). One
// stage runs at a time (the simulation runs device and cloud in turn).
class HardwareEmulator : public partition::ComputeHook {
 public:
  // Charges the roofline of `weights` (fp32 without). `clock` must outlive this.
  HardwareEmulator(scheduler::HardwareProfile hw, const partition::ModelConfig& config,
                   transport::VirtualClock& clock);
  HardwareEmulator(scheduler::HardwareProfile hw, partition::ModelConfig config,
                   scheduler::WeightCost weights, transport::VirtualClock& clock);
  void AfterForward(const partition::StageSpec& spec, int rows, int sequences, double kv_reads,
                    double measured_us) override;
  const scheduler::HardwareProfile& hardware() const { return hw_; }
  const scheduler::WeightCost& weights() const { return weights_; }
  // Totals: emulated and measured compute time, microseconds (read them
  // while no stage is running).
  double emulated_us() const { return emulated_us_; }
  double measured_us() const { return measured_us_; }

 private:
  scheduler::HardwareProfile hw_;
  partition::ModelConfig config_;
  scheduler::WeightCost weights_;
  transport::VirtualClock& clock_;
  double emulated_us_ = 0, measured_us_ = 0;
};

}  // namespace splitlm::sim
