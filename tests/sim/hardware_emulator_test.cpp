// The hardware emulator charges for a forward exactly what the roofline
// profile tells the scheduler.
#include <gtest/gtest.h>

#include "partition/random_model.h"
#include "scheduler/hardware.h"
#include "sim/hardware_emulator.h"
#include "transport/clock.h"

namespace splitlm::sim {
namespace {

TEST(HardwareEmulatorTest, ChargesWhatTheProfileTellsTheScheduler) {
  const partition::ModelConfig config = partition::PresetConfig("small", partition::Arch::kLlama);
  const scheduler::HardwareProfile hw = scheduler::LoadHardwareProfile(
      std::string(SPLITLM_SOURCE_DIR) + "/examples/hardware/rpi5.toml");
  const scheduler::ComputeProfile p = scheduler::RooflineProfile(hw, config, 42);
  EXPECT_EQ(config.num_layers, p.num_layers);
  EXPECT_EQ(42u, p.model_fingerprint);
  transport::VirtualClock clock;
  HardwareEmulator emu(hw, config, clock);
  for (int cut = 1; cut <= config.num_layers; ++cut) {
    // A decode step at context 256 (the profile's second point) on the device side of `cut`.
    const partition::StageSpec spec = partition::StageSpec::Device(config, cut);
    const double before = emu.emulated_us();
    emu.AfterForward(spec, 1, 1, 257, 0);
    double predicted = p.embed_us + (cut == config.num_layers ? p.head_decode_us : 0);
    for (int l = 0; l < cut; ++l) predicted += p.DecodeUs(l, 256);
    EXPECT_NEAR(predicted, emu.emulated_us() - before, 1e-6 * predicted) << "cut " << cut;
  }
}

}  // namespace
}  // namespace splitlm::sim
