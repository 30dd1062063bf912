// splitlm sim: scenarios on one machine — the real worker and the real device
// agent, the link between them emulated by the shaping relay, the device and
// the cloud emulated by hardware profiles (roofline time on a virtual clock).
// `--sweep FILE` runs a grid of conditions x policies and writes CSV, JSON
// and SVG charts. The simulation itself is the sim/ library; this file holds
// the flags and the printing.
#include <nlohmann/json.hpp>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <iostream>
#include <optional>

#include "device/drafter.h"
#include "examples/splitlm/cli.h"
#include "partition/weight_bytes.h"
#include "scheduler/flags.h"
#include "sim/scenario.h"
#include "sim/settings.h"
#include "sim/sweep.h"
#include "sim/workload.h"
#include "transport/error.h"
#include "transport/text_file.h"

#ifndef SPLITLM_HARDWARE_DIR
#define SPLITLM_HARDWARE_DIR "examples/hardware"
#endif

namespace splitlm::cli {
namespace {

// SIGINT and SIGTERM request the bench's stop (sim::StopToken). A POSIX
// handler takes no argument, so the source it triggers has to be reachable
// from it: made here once, before the handlers are installed, and read by
// nothing else (the library sees only the token it is given).
const sim::StopSource& InterruptSource() {
  static const sim::StopSource source;
  return source;
}
extern "C" void OnInterrupt(int) { InterruptSource().RequestStop(); }

struct SimArgs {
  std::string config, sweep, out = "sim-out", model, device, cloud, policy, link_type, trace,
                             prompt_file;
  std::string device_weights, cloud_weights, speculate;
  std::string weights;
  std::string hardware_dir = SPLITLM_HARDWARE_DIR;
  std::vector<std::string> outages;
  std::optional<double> up, down, rtt, jitter, temperature;
  std::optional<int> prompts, prompt_tokens, tokens;
  bool json = false;
};

void AddSimOptions(CLI::App* cmd, SimArgs* a) {
  cmd->add_option("--config", a->config, "scenario file ([sim] table; see docs/simulation.md)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--sweep", a->sweep, "sweep file: [sim] defaults and [[condition]] tables")
      ->check(CLI::ExistingFile);
  cmd->add_option("--out", a->out, "sweep: directory for sweep.csv, sweep.json and the SVG charts")
      ->capture_default_str();
  cmd->add_option("--model", a->model, "model directory or .gguf file (overrides the file)");
  cmd->add_option("--weights", a->weights, WeightsHelp())
      ->check(scheduler::flags::Schema("model.weights"));
  cmd->add_option(
      "--device", a->device,
      "device hardware profile: a name in --hardware-dir, a .toml file, or host (no emulation)");
  cmd->add_option("--cloud", a->cloud, "cloud hardware profile, as --device");
  cmd->add_option("--device-weights", a->device_weights,
                  "weight format of the emulated device: model (its own), f32, f16, bf16, q8_0, "
                  "q4_0, q4_k, q6_k, q4_k_m");
  cmd->add_option("--cloud-weights", a->cloud_weights,
                  "weight format of the emulated cloud, as --device-weights");
  cmd->add_option("--hardware-dir", a->hardware_dir, "where profile names are looked up")
      ->capture_default_str();
  cmd->add_option("--cut", a->policy,
                  "policy: a cut K, auto, device (all local) or cloud (cut 0); default auto");
  cmd->add_option("--speculate", a->speculate,
                  "speculative decoding on the device agents: off, prompt-lookup[:K], "
                  "early-exit[:K] or draft:PATH[:K] (a sweep adds a speculative "
                  "policy per split cut)");
  cmd->add_option(
         "--temperature", a->temperature,
         "sampling temperature of every run and of the local reference (default 0: greedy)")
      ->check(scheduler::flags::Number(0, 100));
  cmd->add_option("--link-type", a->link_type,
                  "radio energy preset: wifi, lte, lte-2021, 5g, 5g-mmwave, 3g");
  cmd->add_option("--up-mbit", a->up, "uplink bandwidth, Mbit/s (default 50)")
      ->check(scheduler::flags::Number(0.001, 1e6));
  cmd->add_option("--down-mbit", a->down, "downlink bandwidth, Mbit/s (default 100)")
      ->check(scheduler::flags::Number(0.001, 1e6));
  cmd->add_option("--rtt-ms", a->rtt, "round-trip time added by the relay (default 20)")
      ->check(scheduler::flags::Number(0, 60000));
  cmd->add_option("--jitter-ms", a->jitter, "uniform extra one-way delay")
      ->check(scheduler::flags::Number(0, 60000));
  cmd->add_option("--trace", a->trace,
                  "CSV trace time_s,up_mbit_s,down_mbit_s,rtt_ms (overrides the fixed link)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--outage", a->outages,
                  "START:END[:cut] in seconds of emulated time; stall unless :cut");
  cmd->add_option("--prompts", a->prompts, "requests per run (default 2)")
      ->check(CLI::Range(1, 10000));
  cmd->add_option("--prompt-file", a->prompt_file,
                  "prompts: one line of token ids each (default: generated prompts)")
      ->check(CLI::ExistingFile);
  cmd->add_option("--prompt-tokens", a->prompt_tokens, "prompt length (default 16)")
      ->check(CLI::Range(1, 100000));
  cmd->add_option("--tokens", a->tokens, "tokens per request (default 32)")
      ->check(CLI::Range(2, 100000));
  cmd->add_flag("--json", a->json,
                "print JSON (one line per scenario; the whole sweep document with --sweep)");
  cmd->get_option("--config")->excludes(cmd->get_option("--sweep"));
}

// Flags override the file (for a sweep: every condition).
void ApplyFlags(const SimArgs& a, sim::Settings& s) {
  if (!a.model.empty()) s.model = a.model;
  if (!a.device.empty()) s.device = a.device;
  if (!a.cloud.empty()) s.cloud = a.cloud;
  if (!a.device_weights.empty()) s.device_weights = sim::CheckWeights(a.device_weights);
  if (!a.cloud_weights.empty()) s.cloud_weights = sim::CheckWeights(a.cloud_weights);
  if (!a.policy.empty()) s.policy = a.policy;
  if (!a.speculate.empty()) s.speculate = a.speculate == "off" ? "" : a.speculate;
  if (!a.link_type.empty()) s.link_type = sim::CheckLinkType(a.link_type);
  if (a.up) s.link.up_mbit_s = *a.up;
  if (a.down) s.link.down_mbit_s = *a.down;
  if (a.rtt) s.link.delay_ms = *a.rtt / 2;
  if (a.jitter) s.link.jitter_ms = *a.jitter;
  if (!a.trace.empty()) s.trace = a.trace;
  if (!a.outages.empty()) {
    s.outages.clear();
    for (const auto& w : a.outages) s.outages.push_back(sim::ParseOutage(w));
  }
  if (!a.prompt_file.empty()) s.prompt_file = a.prompt_file;
  if (a.prompts) s.prompts = *a.prompts;
  if (a.prompt_tokens) s.prompt_tokens = *a.prompt_tokens;
  if (a.tokens) s.tokens = *a.tokens;
  if (a.temperature) s.temperature = *a.temperature;
}

int RunScenario(sim::Workbench& bench, const sim::Settings& s, bool json) {
  const auto& model = *bench.model;
  const int L = model.config().num_layers;
  const std::string policy = s.speculate.empty() ? s.policy : s.policy + sim::kSpeculativeSuffix;
  sim::Scenario scenario(bench, s);
  sim::Tally tally;
  scenario.Run(policy, 0, scenario.prompts(), tally, false);
  const sim::RunResult r = scenario.Result(policy, tally);
  nlohmann::json j = sim::RunJson(r);
  j["timing"] = sim::Timing(s);
  j["speculate"] = s.speculate.empty() ? "off" : s.speculate;
  j["device_weights"] = s.device_weights;
  j["cloud_weights"] = s.cloud_weights;
  j["device_weight_bytes"] = partition::ModelWeightBytes(model, s.device_weights).LayersBytes(0, L);
  j["cloud_weight_bytes"] = partition::ModelWeightBytes(model, s.cloud_weights).LayersBytes(0, L);
  j["interrupted"] = r.interrupted;
  if (json) {
    std::cout << j.dump() << std::endl;
    return r.interrupted ? 130 : 0;
  }
  std::printf("policy %s, cuts used:", policy.c_str());
  for (int k : r.cuts) std::printf(" %d", k);
  std::printf(
      "\n  time to first token (median)  %8.2f ms\n  time per token median / p95   %8.2f / %.2f "
      "ms\n"
      "  bytes per token               %8.0f\n  device energy per token       %8.3f mJ (model)\n"
      "  round trips per token         %8.3f\n"
      "  cut changes %d, fallbacks %d, recoveries %d\n  token agreement with local    %8.4f\n",
      r.ttft_ms, r.tpot_ms, r.tpot_p95_ms, r.bytes_per_token, r.energy_mj_per_token,
      r.round_trips_per_token, r.cut_changes, r.fallbacks, r.recoveries, r.agreement);
  if (!s.speculate.empty())
    std::printf("  draft acceptance rate         %8.3f (%s)\n", r.acceptance_rate,
                s.speculate.c_str());
  std::printf("  weights: device %s, cloud %s\n",
              partition::ModelWeightBytes(model, s.device_weights).Summary().c_str(),
              partition::ModelWeightBytes(model, s.cloud_weights).Summary().c_str());
  std::printf("  (%s)\n", sim::Timing(s).c_str());
  return r.interrupted ? 130 : 0;
}

void PrintProgress(const sim::SweepProgress& p) {
  const std::string what = p.policy == "auto" ? "auto" : "cut " + p.policy;
  std::printf("[%zu/%zu] %s round %zu/%zu %s: %.2f ms/token so far\n", p.done, p.total,
              p.condition->name.c_str(), p.round + 1, p.rounds, what.c_str(),
              p.ms_per_token_so_far);
  std::fflush(stdout);
}

void PrintCondition(const sim::ConditionResult& c) {
  const sim::RunResult& a = c.results.at("auto");
  std::printf(
      "%s: auto cut %d at %.2f ms/token, oracle (best fixed) cut %d at %.2f ms/token, regret "
      "%+.1f%%\n",
      c.settings.name.c_str(), a.mode_cut, a.tpot_ms, c.oracle.cut, c.oracle.ms_per_token,
      100 * c.regret);
  if (c.speculative.cut >= 0) {
    const sim::RunResult& s = c.results.at(c.speculative.policy);
    std::printf(
        "%s: best speculative cut %d at %.2f ms/token, %.3f round trips per token, acceptance "
        "%.3f\n",
        c.settings.name.c_str(), c.speculative.cut, s.tpot_ms, s.round_trips_per_token,
        s.acceptance_rate);
  }
  std::fflush(stdout);
}

int RunSweep(sim::Workbench& bench, const std::vector<sim::Settings>& conditions,
             const sim::Settings& base, const SimArgs& a, const Context& ctx) {
  sim::SweepWriter writer(a.out, *bench.model, base.model);
  sim::SweepCallbacks callbacks;
  callbacks.condition = [&](const sim::ConditionResult& c) {
    writer.Add(c);
    if (!a.json) PrintCondition(c);
  };
  if (!a.json) callbacks.progress = PrintProgress;
  const sim::SweepReport report = sim::RunSweep(bench, conditions, callbacks);
  const nlohmann::json doc = writer.Finish(report, ctx.log);
  if (a.json) {
    std::cout << doc.dump() << std::endl;
    return report.interrupted ? 130 : 0;
  }
  std::printf("%-24s %10s %10s %10s %10s %8s\n", "condition", "auto cut", "auto ms", "oracle",
              "oracle ms", "regret");
  for (const auto& c : report.conditions) {
    const sim::RunResult& r = c.results.at("auto");
    std::printf("%-24s %10d %10.2f %10d %10.2f %+7.1f%%\n", c.settings.name.c_str(), r.mode_cut,
                r.tpot_ms, c.oracle.cut, c.oracle.ms_per_token, 100 * c.regret);
  }
  std::printf("worst regret of auto against the best fixed cut: %+.1f%% (%s); outputs in %s\n",
              100 * report.worst_regret, report.worst_condition.c_str(), a.out.c_str());
  if (report.interrupted) {
    std::printf("interrupted: %zu of %zu runs done; the files hold the finished conditions\n",
                report.runs_done, report.runs_total);
    return 130;
  }
  return 0;
}

}  // namespace

Runner AddSim(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "sim", "simulate: worker + device through an emulated link on emulated hardware");
  auto a = std::make_shared<SimArgs>();
  AddSimOptions(cmd, a.get());
  return [a](const Context& ctx) {
    if (!a->config.empty() && !a->sweep.empty())
      throw Exception(Exception::kInvalidArgument, "give --config or --sweep, not both");
    std::vector<sim::Settings> conditions;
    sim::Settings base;
    if (!a->sweep.empty()) base = sim::ReadSimFile(a->sweep, &conditions);
    if (!a->config.empty()) base = sim::ReadSimFile(a->config, nullptr);
    ApplyFlags(*a, base);
    for (auto& c : conditions) ApplyFlags(*a, c);
    if (base.model.empty())
      throw Exception(Exception::kInvalidArgument,
                      "no model: give --model DIR or model = \"DIR\" in [sim]");
    auto model = partition::Model::Open(base.model, a->weights, ctx.isa);
    sim::Workbench bench{model.get(), a->hardware_dir, ctx.log, InterruptSource().GetToken(), {}};
    sim::CheckConditions(bench, conditions.empty() ? std::vector<sim::Settings>{base} : conditions);
    std::signal(SIGINT, OnInterrupt);
    std::signal(SIGTERM, OnInterrupt);
    if (conditions.empty()) return RunScenario(bench, base, a->json);
    return RunSweep(bench, conditions, base, *a, ctx);
  };
}

}  // namespace splitlm::cli
