// A sweep: every condition of a sweep file run under every policy (each
// fixed cut, auto, and with a drafter each speculative split cut), the best
// fixed cut found afterwards (the oracle) and auto's regret against it.
#pragma once

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sim/settings.h"
#include "sim/tally.h"
#include "sim/workload.h"

namespace splitlm::sim {

// The policies of a sweep on a model of `layers` layers: the cuts 0..L (or
// those of `cuts`, in their order), then auto; with `speculative`, "K+spec"
// for every split cut K < L of them after those. Throws Exception(kInvalidArgument)
// for a cut outside 0..L.
std::vector<std::string> SweepPolicies(int layers, bool speculative,
                                       const std::vector<int>& cuts = {});

// Checks every condition's hardware profiles, trace, drafter and cuts, and
// makes its reference (ReferenceFor), before the first run, so a mistake in
// the last condition is not found an hour into a sweep. Warns on `bench.log`
// about weights given to a side that is not emulated. Throws Exception as
// FindHardware, ReadTrace, device::ParseSpeculate, SweepPolicies and
// ReferenceFor do.
void CheckConditions(Workbench& bench, const std::vector<Settings>& conditions);

// One run of a sweep: `policy` over prompts [first, last).
struct SweepRun {
  size_t round = 0;
  std::string policy;
  size_t first = 0, last = 0;
  bool restart_link = false;  // start the link's schedule again first
};

// The runs of one condition, in order. A fixed link interleaves the policies
// prompt by prompt (a round per prompt), so that a slow moment of this
// machine falls on every policy alike; a scheduled link (a trace, outages)
// runs each policy over all prompts from the start of its schedule.
std::vector<SweepRun> SweepSchedule(const std::vector<std::string>& policies, size_t prompts,
                                    bool scheduled);

// The fastest policy among `results` that `eligible` accepts (the cut it
// ran at, its median ms per token); cut -1 when none is eligible.
struct Oracle {
  std::string policy;
  int cut = -1;
  double ms_per_token = 0;
};
Oracle FastestPolicy(const std::map<std::string, RunResult>& results, int layers,
                     const std::function<bool(const std::string&)>& eligible);
// The best fixed cut without speculation: the sweep's oracle.
Oracle BestFixedCut(const std::map<std::string, RunResult>& results, int layers);

// How much slower `ms_per_token` is than the oracle's, as a fraction (0.1 =
// 10% slower, negative when faster); 0 without an oracle time.
double Regret(double ms_per_token, const Oracle& oracle);

struct ConditionResult {
  Settings settings;
  std::vector<std::string> policies;
  std::map<std::string, RunResult> results;  // by policy
  Oracle oracle;                             // best fixed cut
  Oracle speculative;                        // best "K+spec" (cut -1 without)
  double regret = 0;                         // auto's against the oracle
};

struct SweepProgress {
  size_t done = 0, total = 0;  // runs
  const Settings* condition = nullptr;
  size_t round = 0, rounds = 0;
  std::string policy;
  double ms_per_token_so_far = 0;  // the policy's median so far
};

struct SweepCallbacks {
  std::function<void(const SweepProgress&)> progress;     // after every run
  std::function<void(const ConditionResult&)> condition;  // after every finished condition
};

struct SweepReport {
  std::vector<ConditionResult> conditions;  // the finished ones
  double worst_regret = 0;
  std::string worst_condition;
  size_t runs_done = 0, runs_total = 0;
  bool interrupted = false;  // the bench's stop was requested
};

// Runs every condition (each its own Scenario). Warns through the bench's log
// when a run on a link without outages fell back (it measured the fallback,
// not the cut). Throws what Scenario throws.
SweepReport RunSweep(Workbench& bench, const std::vector<Settings>& conditions,
                     const SweepCallbacks& callbacks = {});

// The files of a sweep in one folder: sweep.csv and timeline.csv (a row per
// run as conditions finish), then sweep.json and the gnuplot charts
// (sweep.svg, timeline-NAME.svg) at the end.
class SweepWriter {
 public:
  // Creates `out`. Throws Exception(kUnavailable) naming a file it cannot write.
  SweepWriter(std::filesystem::path out, const partition::Model& model, std::string model_path);
  void Add(const ConditionResult& c);
  // Writes sweep.json and the charts; returns the sweep.json document.
  // Warns through `log` when gnuplot fails (the charts are then missing).
  nlohmann::json Finish(const SweepReport& report, const std::shared_ptr<spdlog::logger>& log);

 private:
  std::string ChartScript() const;
  // The auto policy's timeline of a traced condition, into timeline.csv.
  void WriteTimeline(const std::string& condition, const RunResult& r);

  std::filesystem::path out_;
  const partition::Model& model_;
  nlohmann::json doc_;
  std::ofstream csv_, timeline_;
  std::string fixed_data_, auto_data_, titles_;
  std::vector<std::string> trace_conditions_;
};

}  // namespace splitlm::sim
