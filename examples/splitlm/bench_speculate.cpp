// splitlm bench-speculate: plain split against speculative split (prompt
// lookup) through the shaping relay at a given round trip, on a prompt set
// where the text repeats and on one where it does not: round trips per
// token, ms per token, acceptance, and the cost model's predictions beside
// the measurements.
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>

#include "device/agent.h"
#include "device/drafter.h"
#include "examples/splitlm/cli.h"
#include "partition/model.h"
#include "scheduler/cost_model.h"
#include "scheduler/profile.h"
#include "sim/in_process_worker.h"
#include "sim/shaper.h"
#include "transport/error.h"

namespace splitlm::cli {
namespace {

struct BenchArgs {
  std::string model;
  double rtt_ms = 50;
  int cut = -1;  // -1: the middle layer
  int tokens = 48;
  int prompts = 4;
  int max_drafts = 8;
  double novel_temperature = 1.0;
  bool json = false;
};

// A prompt set: the prompts and how to decode them.
struct PromptSet {
  std::string name, what;
  std::vector<std::vector<int32_t>> prompts;
  partition::SamplingParams sampling;
};

// What one mode (plain or speculative) did on one prompt set.
struct Tally {
  int tokens = 0, round_trips = 0, drafted = 0, accepted = 0, rejections = 0;
  double ms = 0;  // decode time after each generation's first token
  int timed = 0;  // tokens that time covers
  std::vector<std::vector<int32_t>> outputs;
  double ms_per_token() const { return timed > 0 ? ms / timed : 0; }
  double trips_per_token() const {
    return tokens > 0 ? static_cast<double>(round_trips) / tokens : 0;
  }
  // Per-position acceptance (scheduler::AcceptanceEstimate, undecayed).
  double acceptance() const {
    return accepted + rejections > 0 ? static_cast<double>(accepted) / (accepted + rejections) : 0;
  }
};

Tally Run(device::Agent& agent, const PromptSet& set, int tokens, spdlog::logger& log) {
  Tally t;
  for (const auto& prompt : set.prompts) {
    const auto g = agent.Generate({prompt, tokens, set.sampling, false});
    std::string ids;
    for (int32_t id : g.tokens) ids += (ids.empty() ? "" : " ") + std::to_string(id);
    log.info("{}: {} prompt tokens, {} generated in {} round trips, {} of {} drafts accepted: {}",
             set.name, prompt.size(), g.tokens.size(), g.cloud_steps, g.accepted, g.drafted, ids);
    t.tokens += static_cast<int>(g.tokens.size());
    t.round_trips += g.cloud_steps;
    t.drafted += g.drafted;
    t.accepted += g.accepted;
    t.rejections += g.draft_rejections;
    if (g.tokens.size() > 1) {
      t.ms += g.measured_tpot_ms * static_cast<double>(g.tokens.size() - 1);
      t.timed += static_cast<int>(g.tokens.size() - 1);
    }
    t.outputs.push_back(g.tokens);
  }
  return t;
}

// The longest stretch of `text` in which every token equals the one `period`
// (1..4) places before it.
struct Loop {
  size_t start = 0, length = 0;
  int period = 1;
};
Loop LongestLoop(const std::vector<int32_t>& text) {
  Loop best;
  for (int period = 1; period <= 4; ++period) {
    size_t run = 0;
    for (size_t i = static_cast<size_t>(period); i < text.size(); ++i) {
      run = text[i] == text[i - period] ? run + 1 : 0;
      if (run > best.length)
        best = {i + 1 - run - static_cast<size_t>(period), run + period, period};
    }
  }
  return best;
}

// Prompt sets from the model itself. stories260K has no tokenizer and is too
// small to copy a passage from its prompt; what it does repeat is its own
// text, which falls into loops. Of 8 x `count` short openings, the `count`
// whose greedy text loops longest give the prompts: the opening and that
// text up to three periods into the loop. "repeat" decodes them greedily, so
// the continuation repeats what the prompt ends with (as long as the loop
// lasts), which prompt lookup finds. "novel" samples the same prompts at
// `temperature` with a fixed seed: text that does not repeat itself.
std::vector<PromptSet> MakePromptSets(const partition::Model& model, int count, double temperature,
                                      spdlog::logger& log) {
  const auto& c = model.config();
  zmq::context_t z;
  transport::Metrics m;
  device::AgentOptions lo;
  lo.cut = c.num_layers;
  device::Agent local(model, lo, z, m);
  std::vector<std::pair<size_t, std::vector<int32_t>>> candidates;  // loop length, prompt
  for (int i = 0; i < 8 * count; ++i) {
    std::vector<int32_t> p = {c.bos_token_id,
                              static_cast<int32_t>(3 + (i * 97 + 31) % (c.vocab_size - 3)),
                              static_cast<int32_t>(3 + (i * 193 + 7) % (c.vocab_size - 3))};
    const auto text = local.Generate({p, std::min(192, c.max_context / 2), {}, false}).tokens;
    const Loop loop = LongestLoop(text);
    const size_t end = std::min(text.size(), loop.start + 3 * static_cast<size_t>(loop.period));
    p.insert(p.end(), text.begin(), text.begin() + static_cast<std::ptrdiff_t>(end));
    candidates.push_back({loop.length, p});
  }
  std::stable_sort(candidates.begin(), candidates.end(),
                   [](const auto& x, const auto& y) { return x.first > y.first; });
  PromptSet repeat{"repeat", "ends in the model's own longest loop, greedy", {}, {}};
  PromptSet novel{"novel", "the same prompts, sampled", {}, {}};
  novel.sampling.temperature = static_cast<float>(temperature);
  novel.sampling.seed = 16;
  for (int i = 0; i < count; ++i) {
    log.info("prompt {}: {} tokens, then a loop of {} tokens in the model's greedy text", i,
             candidates[i].second.size(), candidates[i].first);
    repeat.prompts.push_back(candidates[i].second);
    novel.prompts.push_back(candidates[i].second);
  }
  return {repeat, novel};
}

void AddBenchSpeculateFlags(CLI::App* cmd, BenchArgs* args) {
  cmd->add_option("--model", args->model, "model directory or .gguf file")->required();
  cmd->add_option("--rtt-ms", args->rtt_ms, "round trip imposed by the relay (half each way)")
      ->check(CLI::Range(0.0, 10000.0))
      ->capture_default_str();
  cmd->add_option("--cut", args->cut, "layers [0, cut) on the device (default: half the layers)")
      ->check(CLI::Range(0, 4096));
  cmd->add_option("--tokens", args->tokens, "tokens generated per prompt")
      ->check(CLI::Range(2, 4096))
      ->capture_default_str();
  cmd->add_option("--prompts", args->prompts, "prompts per set")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  cmd->add_option("--max-drafts", args->max_drafts, "most drafts per step")
      ->check(CLI::Range(1, device::kMaxDraftsPerStep))
      ->capture_default_str();
  cmd->add_option("--novel-temperature", args->novel_temperature,
                  "sampling temperature of the novel set")
      ->check(CLI::Range(0.0, 10.0))
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "one JSON line");
}

// What the agents of every mode and set share.
struct AgentSetup {
  const partition::Model& model;
  const BenchArgs& args;
  int cut;
  std::string endpoint;  // the shaping relay's
  scheduler::ComputeProfile profile;
  zmq::context_t& zctx;
  std::shared_ptr<spdlog::logger> log;
};

// One agent per mode and set, so each set's acceptance is its own; all with
// the cost model's inputs (profile, probes) so they can predict.
std::unique_ptr<device::Agent> MakeAgent(const AgentSetup& setup, bool speculative,
                                         transport::Metrics& metrics) {
  device::AgentOptions options;
  options.cut = setup.cut;
  options.fallback = device::Fallback::kFail;
  options.channel.endpoint = setup.endpoint;
  options.log = setup.log;
  options.auto_cut.enabled = true;
  options.auto_cut.device_profile = setup.profile;
  options.auto_cut.plan.device.threads = at::get_num_threads();
  options.auto_cut.plan.workload.context = 64;
  if (speculative) {
    options.drafter = std::make_shared<device::PromptLookupDrafter>();
    options.max_drafts = setup.args.max_drafts;
  }
  auto agent = std::make_unique<device::Agent>(setup.model, options, setup.zctx, metrics);
  agent->UseCut(setup.cut);  // fixed: the comparison is at this cut
  return agent;
}

nlohmann::json SetRow(const PromptSet& set, const Tally& p, const Tally& s,
                      const scheduler::Prediction& pp, const scheduler::Prediction& sp,
                      double trips_ratio, double ms_ratio) {
  return {
      {"set", set.name},
      {"what", set.what},
      {"plain",
       {{"round_trips_per_token", p.trips_per_token()},
        {"ms_per_token", p.ms_per_token()},
        {"predicted_ms_per_token", pp.tpot_ms}}},
      {"speculative",
       {{"round_trips_per_token", s.trips_per_token()},
        {"ms_per_token", s.ms_per_token()},
        {"tokens_per_round_trip",
         s.round_trips > 0 ? static_cast<double>(s.tokens) / s.round_trips : 0},
        {"acceptance_rate", s.acceptance()},
        {"drafts_accepted_share", s.drafted > 0 ? static_cast<double>(s.accepted) / s.drafted : 0},
        {"predicted_ms_per_token", sp.tpot_ms},
        {"predicted_tokens_per_round_trip", sp.tokens_per_round_trip},
        {"model_drafts", sp.drafts}}},
      {"round_trip_reduction", trips_ratio},
      {"ms_per_token_ratio", ms_ratio},
      {"tokens_identical", p.outputs == s.outputs}};
}

void PrintSetRows(const PromptSet& set, const Tally& p, const Tally& s,
                  const scheduler::Prediction& pp, const scheduler::Prediction& sp,
                  double trips_ratio, double ms_ratio) {
  std::printf("%-7s %-12s %11.3f %12.2f %10.2f %10s %12.2f %13s %10s\n", set.name.c_str(), "plain",
              p.trips_per_token(), p.trips_per_token() > 0 ? 1 / p.trips_per_token() : 0.0,
              p.ms_per_token(), "-", pp.tpot_ms, "-", "");
  std::printf("%-7s %-12s %11.3f %12.2f %10.2f %10.2f %12.2f %13d %10s\n", set.name.c_str(),
              "speculative", s.trips_per_token(),
              s.round_trips > 0 ? static_cast<double>(s.tokens) / s.round_trips : 0.0,
              s.ms_per_token(), s.acceptance(), sp.tpot_ms, sp.drafts,
              p.outputs == s.outputs ? "yes" : "NO");
  std::printf("%-7s %.2fx fewer round trips per token; speculative ms/token = %.2f x plain\n",
              set.name.c_str(), trips_ratio, ms_ratio);
}

// Plain and speculative split on one prompt set: its JSON row (and its table
// rows unless --json).
nlohmann::json CompareOnSet(const AgentSetup& setup, const PromptSet& set) {
  transport::Metrics plain_metrics, spec_metrics;
  auto plain = MakeAgent(setup, false, plain_metrics);
  auto spec = MakeAgent(setup, true, spec_metrics);
  const Tally p = Run(*plain, set, setup.args.tokens, *setup.log);
  const Tally s = Run(*spec, set, setup.args.tokens, *setup.log);
  // The cost model as the agents see it now: probed link, drift, and (speculative) the measured
  // acceptance.
  const auto plain_plan = plain->PlanAllCuts();
  const auto spec_plan = spec->PlanAllCuts();
  if (!plain_plan || !spec_plan)
    throw Exception(Exception::kUnavailable, "the worker did not answer the planning probes");
  const auto& pp = plain_plan->cuts[setup.cut];
  const auto& sp = spec_plan->cuts[setup.cut];
  const double trips_ratio =
      s.trips_per_token() > 0 ? p.trips_per_token() / s.trips_per_token() : 0;
  const double ms_ratio = p.ms_per_token() > 0 ? s.ms_per_token() / p.ms_per_token() : 0;
  nlohmann::json row = SetRow(set, p, s, pp, sp, trips_ratio, ms_ratio);
  if (!setup.args.json) PrintSetRows(set, p, s, pp, sp, trips_ratio, ms_ratio);
  if (p.outputs != s.outputs)
    setup.log->error("{}: speculative tokens differ from plain split's", set.name);
  return row;
}

int RunBenchSpeculate(const BenchArgs& args, const Context& ctx) {
  auto model = partition::Model::Open(args.model, "", ctx.isa);
  const auto& config = model->config();
  const int cut = args.cut < 0 ? config.num_layers / 2 : args.cut;
  if (cut >= config.num_layers) {
    throw Exception(Exception::kInvalidArgument, "--cut " + std::to_string(cut) +
                                                     ": a split needs a cut below the " +
                                                     std::to_string(config.num_layers) + " layers");
  }
  const auto sets = MakePromptSets(*model, args.prompts, args.novel_temperature, *ctx.log);
  zmq::context_t zctx;
  transport::Metrics cloud_metrics;
  sim::InProcessWorker worker(*model, zctx, cloud_metrics, ctx.log);
  sim::ShaperOptions shaper;
  shaper.upstream = worker.endpoint().substr(6);  // tcp://
  shaper.link.delay_ms = args.rtt_ms / 2;
  shaper.log = ctx.log;
  sim::ShapingRelay relay(shaper);
  scheduler::ProfileOptions profiling;
  profiling.threads = at::get_num_threads();
  profiling.progress = [&](const std::string& s) {
    ctx.log->info("profiling this machine: {}", s);
  };
  const AgentSetup setup{
      *model, args,   cut, relay.endpoint(), scheduler::MeasureProfile(*model, profiling),
      zctx,   ctx.log};

  nlohmann::json rows = nlohmann::json::array();
  if (!args.json) {
    std::printf(
        "rtt %.0f ms through the shaping relay, cut %d of %d, %d prompts x %d tokens per set, "
        "prompt lookup up to %d drafts\n",
        args.rtt_ms, cut, config.num_layers, args.prompts, args.tokens, args.max_drafts);
    std::printf("%-7s %-12s %11s %12s %10s %10s %12s %13s %10s\n", "set", "mode", "trips/tok",
                "tokens/trip", "ms/token", "acceptance", "predicted_ms", "model_drafts",
                "identical");
  }
  for (const auto& set : sets) rows.push_back(CompareOnSet(setup, set));
  if (args.json) {
    std::cout << nlohmann::json{{"rtt_ms", args.rtt_ms},
                                {"cut", cut},
                                {"layers", config.num_layers},
                                {"sets", rows}}
                     .dump()
              << std::endl;
  }
  for (const auto& r : rows) {
    if (!r["tokens_identical"].get<bool>()) return 1;
  }
  return 0;
}

}  // namespace

Runner AddBenchSpeculate(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench-speculate",
                                 "plain vs speculative split (prompt lookup) through the shaping "
                                 "relay: round trips and ms per token");
  auto args = std::make_shared<BenchArgs>();
  AddBenchSpeculateFlags(cmd, args.get());
  return [args](const Context& ctx) { return RunBenchSpeculate(*args, ctx); };
}

}  // namespace splitlm::cli
