// Hardware profiles: profile files (every figure sourced, every error
// named) and the roofline (tests/transport/clock_test.cpp covers the virtual
// clock it is charged on, tests/sim/hardware_emulator_test.cpp the emulator).
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "partition/random_model.h"
#include "scheduler/cost_model.h"
#include "scheduler/hardware.h"
#include "tests/common/test_util.h"

namespace splitlm::scheduler {
namespace {

namespace fs = std::filesystem;

const std::string kDir = std::string(SPLITLM_SOURCE_DIR) + "/examples/hardware";

std::string Write(const testing::TempDir& dir, const std::string& text) {
  const std::string path = dir.Sub("hw.toml");
  std::ofstream(path) << text;
  return path;
}

const char* kValid = R"(name = "t"
kind = "device"
memory_bandwidth_gb_s = { value = 10, source = "a" }
compute_gflop_s = { value = 100, source = "b" }
bandwidth_efficiency = { value = 0.5, source = "c" }
compute_efficiency = { value = 0.5, source = "d" }
layer_overhead_us = { value = 3, source = "e" }
memory_gb = { value = 4, source = "f" }
compute_w = { value = 2, source = "g" }
wait_w = { value = 0.5, source = "h" }
)";

void ExpectError(const std::string& text, const std::string& message) {
  testing::TempDir dir;
  const std::string path = Write(dir, text);
  try {
    LoadHardwareProfile(path);
    ADD_FAILURE() << "no error for:\n" << text;
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string::npos, std::string(e.what()).find(message)) << e.what();
    EXPECT_NE(std::string::npos, std::string(e.what()).find(path)) << e.what();
  }
}

TEST(HardwareTest, BundledProfilesLoadAndSourceEveryFigure) {
  int devices = 0, clouds = 0;
  for (const auto& e : fs::directory_iterator(kDir)) {
    if (e.path().extension() != ".toml") continue;
    const HardwareProfile hw = LoadHardwareProfile(e.path().string());
    EXPECT_EQ(e.path().stem().string(), hw.name);
    EXPECT_FALSE(hw.description.empty()) << hw.name;
    (hw.kind == "device" ? devices : clouds)++;
    for (const char* key : {"memory_bandwidth_gb_s", "compute_gflop_s", "bandwidth_efficiency",
                            "compute_efficiency", "layer_overhead_us", "memory_gb"}) {
      ASSERT_TRUE(hw.sources.count(key)) << hw.name << " " << key;
      EXPECT_GT(hw.sources.at(key).size(), 10u) << hw.name << " " << key;
    }
  }
  EXPECT_GE(devices, 5);  // phones, Jetson (two firmwares), Raspberry Pi
  EXPECT_GE(clouds, 2);   // CPU and GPU server
}

TEST(HardwareTest, ProfilesCarryTheirSourcedFigures) {
  // Jetson Orin Nano: the original firmware and the Super firmware (JetPack 6.2), both shipped.
  const HardwareProfile orin = LoadHardwareProfile(kDir + "/jetson-orin-nano.toml");
  const HardwareProfile super = LoadHardwareProfile(kDir + "/jetson-orin-nano-super.toml");
  EXPECT_DOUBLE_EQ(68, orin.memory_bandwidth_gb_s);
  EXPECT_DOUBLE_EQ(102, super.memory_bandwidth_gb_s);
  EXPECT_DOUBLE_EQ(6 * 1.7 * 16, super.compute_gflop_s);
  EXPECT_DOUBLE_EQ(25, super.compute_w);
  EXPECT_NE(std::string::npos, super.sources.at("memory_bandwidth_gb_s").find("102 GB/s"));
  // Phones: measured CPU decode on a Snapdragon 8 Gen 3 reaches 0.30-0.34 of peak (microsoft/T-MAC
  // issue 32).
  for (const char* phone : {"flagship-phone", "midrange-phone"}) {
    const HardwareProfile hw = LoadHardwareProfile(kDir + "/" + phone + ".toml");
    EXPECT_GE(hw.bandwidth_efficiency, 0.30) << phone;
    EXPECT_LE(hw.bandwidth_efficiency, 0.34) << phone;
    EXPECT_NE(std::string::npos, hw.sources.at("bandwidth_efficiency").find("T-MAC issue 32"))
        << phone;
  }
  // Raspberry Pi 5: llama.cpp decode moves 9.76-10.55 GB/s (llama.cpp issue 26484).
  const HardwareProfile pi = LoadHardwareProfile(kDir + "/rpi5.toml");
  EXPECT_GE(pi.memory_bandwidth_gb_s * pi.bandwidth_efficiency, 9.76);
  EXPECT_LE(pi.memory_bandwidth_gb_s * pi.bandwidth_efficiency, 10.55);
  EXPECT_NE(std::string::npos, pi.sources.at("bandwidth_efficiency").find("llama.cpp issue 26484"));
}

TEST(HardwareTest, BadProfilesNameTheFileAndKey) {
  testing::TempDir dir;
  EXPECT_NO_THROW(LoadHardwareProfile(Write(dir, kValid)));
  std::string no_source = kValid;
  no_source.replace(no_source.find("source = \"a\""), 12, "source = \"\"");
  ExpectError(no_source, "memory_bandwidth_gb_s: every figure needs a non-empty source");
  ExpectError(std::string(kValid) + "turbo = { value = 1, source = \"x\" }\n",
              "turbo: unknown key");
  ExpectError(std::string(kValid) + "usd_per_hour = 3\n",
              "usd_per_hour: expected { value = NUMBER");
  std::string range = kValid;
  range.replace(range.find("value = 0.5, source = \"c\""), 10, "value = 1.5");
  ExpectError(range, "bandwidth_efficiency: 1.5");
  std::string no_power = kValid;
  no_power.erase(no_power.find("compute_w"));
  ExpectError(no_power, "compute_w: missing (a device profile needs it)");
  std::string kind = kValid;
  kind.replace(kind.find("\"device\""), 8, "\"phone\"");
  ExpectError(kind, "kind: \"phone\" is not one of device, cloud");
  ExpectError("name = \"x\"\nkind = [", "hw.toml:2");
}

class RooflineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    partition::RandomModelOptions o;
    o.preset = "small";
    config_ = partition::PresetConfig(o.preset, partition::Arch::kLlama);
    hw_ = LoadHardwareProfile(kDir + "/rpi5.toml");
  }
  partition::ModelConfig config_;
  HardwareProfile hw_;
};

TEST_F(RooflineTest, DecodeIsBandwidthBoundAndPrefillAmortisesTheWeights) {
  partition::StageSpec layer = partition::StageSpec::Range(config_, 0, 1);
  layer.embedding = layer.head = false;
  const double one = RooflineUs(hw_, config_, layer, 1, 1, 17);
  // One decode row: the layer's weights at the effective bandwidth plus the overhead.
  const double h = config_.hidden_size, kvd = double(config_.num_kv_heads) * config_.head_dim;
  const double bytes = 4 * (h * (h + 2 * kvd) + h * h + 3 * h * config_.intermediate_size + 2 * h) +
                       17 * 2 * kvd * 4;
  EXPECT_NEAR(
      bytes / (hw_.memory_bandwidth_gb_s * hw_.bandwidth_efficiency * 1e3) + hw_.layer_overhead_us,
      one, 1e-9);
  // 128 rows cost far less than 128 single rows.
  const double batch = RooflineUs(hw_, config_, layer, 128, 1, 128 * 129 / 2.0);
  EXPECT_LT(batch, 128 * one / 4);
  EXPECT_GT(batch, one);
}

TEST(RadioPresetTest, LinkTypesSetTheRadioFromTheirSources) {
  Link link;
  ApplyRadioPreset("lte", link);
  EXPECT_DOUBLE_EQ(438.39 * 8, link.tx_nj_per_byte);
  EXPECT_DOUBLE_EQ(51.97 * 8, link.rx_nj_per_byte);
  EXPECT_DOUBLE_EQ(1.28804, link.radio_w);
  for (const auto& p : RadioPresets()) EXPECT_FALSE(p.source.empty()) << p.name;
  // The other presets and an unknown name: tests/scheduler/radio_preset_test.cpp.
}

}  // namespace
}  // namespace splitlm::scheduler
