// One simulated scenario's settings and the files that hold them: a scenario
// file ([sim] table) or a sweep file ([sim] defaults and [[condition]]
// tables). docs/simulation.md lists the keys.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "sim/shaper.h"

namespace splitlm::sim {

struct Settings {
  std::string name = "default";
  std::string model;
  std::string device;  // hardware profile (name or file); "" = this machine as it is
  std::string cloud;
  // Weight formats the emulated sides hold (partition/weight_bytes.h);
  // "model" = the model's own (a GGUF file's types, f32 for a directory).
  std::string device_weights = "model", cloud_weights = "model";
  std::string policy = "auto";     // a cut K, auto, device or cloud
  std::string link_type = "wifi";  // radio energy preset (scheduler::RadioPresets)
  LinkConditions link{50, 100, 10, 0};
  std::string trace;  // CSV trace file (ReadTrace); overrides `link`
  std::vector<Outage> outages;
  std::string prompt_file;  // one prompt of token ids per line; else generated prompts
  int prompts = 2, prompt_tokens = 16, tokens = 32;
  // Sampling of every run and of the local reference (0 = greedy); the
  // per-position seeded draws make a split run's tokens equal the local ones.
  double temperature = 0;
  uint64_t seed = 1;
  // Speculative decoding (device::ParseSpeculate's text); "" = off (the
  // files' and flags' "off" is stored as "").
  std::string speculate;
  // Sweeps: the fixed cuts to run (and, with `speculate`, to run
  // speculatively); empty = every cut.
  std::vector<int> cuts;

  // True when the link follows a schedule (a trace or outages): such runs
  // restart the link and cover all prompts at once.
  bool scheduled() const { return !trace.empty() || !outages.empty(); }
};

// `v` when it is a weight format or "model"; throws Exception(kInvalidArgument)
// naming the accepted names otherwise.
std::string CheckWeights(const std::string& v);

// "START:END[:cut]" in seconds. Throws Exception(kInvalidArgument) naming `text`.
Outage ParseOutage(const std::string& text);

// Throws Exception(kInvalidArgument) naming the presets unless `name` is a radio preset.
std::string CheckLinkType(const std::string& name);

// The [sim] table of `file`; with `conditions`, a sweep file whose
// [[condition]] tables (each the [sim] table with its own keys on top) are
// appended there. Relative paths in the file are resolved against its
// folder. Throws Exception(kInvalidArgument) "file:line: key: why".
Settings ReadSimFile(const std::string& file, std::vector<Settings>* conditions);

// How the scenario's time is kept, in words (for reports).
std::string Timing(const Settings& s);

}  // namespace splitlm::sim
