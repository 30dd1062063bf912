#include "sim/hardware_emulator.h"

#include <utility>

namespace splitlm::sim {

HardwareEmulator::HardwareEmulator(scheduler::HardwareProfile hw,
                                   const partition::ModelConfig& config,
                                   transport::VirtualClock& clock)
    : HardwareEmulator(std::move(hw), config, scheduler::F32Weights(config), clock) {}

HardwareEmulator::HardwareEmulator(scheduler::HardwareProfile hw, partition::ModelConfig config,
                                   scheduler::WeightCost weights, transport::VirtualClock& clock)
    : hw_(std::move(hw)), config_(std::move(config)), weights_(std::move(weights)), clock_(clock) {}

void HardwareEmulator::AfterForward(const partition::StageSpec& spec, int rows, int sequences,
                                    double kv_reads, double measured_us) {
  const double emulated =
      scheduler::RooflineUs(hw_, config_, weights_, spec, rows, sequences, kv_reads);
  emulated_us_ += emulated;
  measured_us_ += measured_us;
  clock_.Account(emulated, measured_us);
}

}  // namespace splitlm::sim
