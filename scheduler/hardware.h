// Hardware profiles for simulation mode and planning: published figures
// (memory bandwidth, compute throughput, power, price), each with its source,
// and a roofline model that turns the work of a stage into time on it.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "partition/model_config.h"
#include "partition/stage.h"  // StageSpec
#include "scheduler/profile.h"
#include "scheduler/weights.h"

namespace splitlm::scheduler {

struct HardwareProfile {
  std::string name;         // e.g. "rpi5"
  std::string kind;         // "device" or "cloud"
  std::string description;  // what is emulated
  std::string path;         // the file it came from
  // Figures (see examples/hardware/*.toml for their sources).
  double memory_bandwidth_gb_s = 0;  // peak DRAM bandwidth
  double compute_gflop_s = 0;        // peak fp32 throughput of what runs the layers
  double bandwidth_efficiency = 0;   // fraction of the peak bandwidth an fp32 decode reaches
  double compute_efficiency = 0;     // fraction of the peak throughput a prefill reaches
  double layer_overhead_us = 0;      // fixed cost per layer per forward (dispatch, launches)
  double compute_w = 0;              // device: power while computing
  double wait_w = 0;                 // device: power while waiting for the cloud (radio excluded)
  double memory_gb = 0;              // memory available to the model
  double usd_per_hour = 0;           // cloud: price of the machine
  std::map<std::string, std::string> sources;  // figure -> where it comes from
};

// Reads a profile file (TOML; every figure is `{ value = ..., source = "..." }`).
// Throws Exception(kInvalidArgument) "path:line: key: why" for anything missing,
// unknown, out of range or without a source.
HardwareProfile LoadHardwareProfile(const std::string& path);

// Roofline time on `hw`: each part (embedding, every layer, head) takes the
// longer of its bytes at the effective bandwidth and its flops at the
// effective throughput, plus the per-layer overhead. Bytes are those of
// `weights` (each layer's in its format, one embedding row per row, the
// head's matrix); flops are 2 per weight per row whatever the format, times
// the format's compute factor (scheduler/weights.h). Without `weights`: fp32.
double RooflineUs(const HardwareProfile& hw, const partition::ModelConfig& config,
                  const WeightCost& weights, const partition::StageSpec& spec, int rows,
                  int sequences, double kv_reads);
double RooflineUs(const HardwareProfile& hw, const partition::ModelConfig& config,
                  const partition::StageSpec& spec, int rows, int sequences, double kv_reads);

// The compute profile `hw` would measure for a model with `config` holding
// `weights` (fp32 without): what the scheduler on that hardware sees (same
// contexts as MeasureProfile), memory figures in that format.
ComputeProfile RooflineProfile(const HardwareProfile& hw, const partition::ModelConfig& config,
                               const WeightCost& weights, uint64_t model_fingerprint,
                               const ProfileOptions& options = {});
ComputeProfile RooflineProfile(const HardwareProfile& hw, const partition::ModelConfig& config,
                               uint64_t model_fingerprint, const ProfileOptions& options = {});

}  // namespace splitlm::scheduler
