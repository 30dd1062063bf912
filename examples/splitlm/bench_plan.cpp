// splitlm bench-plan: the cost model's predicted time per token against the
// measured one, for every cut, through a real worker on loopback.
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <iostream>
#include <thread>

#include "sim/in_process_worker.h"
#include "device/agent.h"
#include "examples/splitlm/cli.h"
#include "partition/model.h"
#include "scheduler/profile.h"
#include "transport/error.h"

namespace splitlm::cli {

Runner AddBenchPlan(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench-plan", "predicted vs measured time per token at every cut (loopback)");
  auto dir = std::make_shared<std::string>();
  auto tokens = std::make_shared<int>(48);
  auto rounds = std::make_shared<int>(5);
  auto json = std::make_shared<bool>(false);
  cmd->add_option("--model", *dir, "model directory or .gguf file")->required();
  cmd->add_option("--tokens", *tokens, "tokens generated per cut")->check(CLI::Range(4, 10000))->capture_default_str();
  cmd->add_option("--rounds", *rounds, "rounds over all cuts; the median round counts")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  cmd->add_flag("--json", *json, "one JSON line");
  return [=](const Context& ctx) {
    auto model = partition::Model::Open(*dir, "", ctx.isa);
    const int layers = model->config().num_layers;
    zmq::context_t zctx;
    transport::Metrics cloud_metrics, device_metrics;
    sim::InProcessWorker worker(*model, zctx, cloud_metrics, ctx.log);
    const int prompt_len = 16;
    device::AgentOptions o;
    o.cut = layers;
    o.auto_cut.enabled = true;
    o.auto_cut.plan.device.threads = at::get_num_threads();
    scheduler::ProfileOptions po;  // more repeats than at an agent's start-up: this is the reference
    po.threads = at::get_num_threads();
    po.repeats = 7;
    po.progress = [&](const std::string& s) { ctx.log->info("profiling this device: {}", s); };
    o.auto_cut.device_profile = scheduler::MeasureProfile(*model, po);
    o.auto_cut.plan.workload.prompt_tokens = prompt_len;
    o.auto_cut.plan.workload.context = prompt_len + *tokens / 2;  // mean context while decoding
    o.channel.endpoint = worker.endpoint();
    o.log = ctx.log;
    device::Agent agent(*model, o, zctx, device_metrics);
    // Two predictions: `cold` from the start-up profiles and probes alone,
    // and the one the agent holds after a warm-up generation at every cut,
    // once its link estimate and compute drift have seen real steps.
    const auto cold = agent.PlanAllCuts();
    if (!cold) throw Exception(Exception::kUnavailable, "the in-process worker did not answer");
    std::vector<int32_t> prompt(prompt_len);
    for (int i = 0; i < prompt_len; ++i) prompt[i] = (i * 37 + 1) % model->config().vocab_size;
    for (int k = 0; k <= layers; ++k) {
      agent.UseCut(k);
      agent.Generate({prompt, 16, {}, false});
    }
    const auto plan = agent.PlanAllCuts();
    if (!plan) throw Exception(Exception::kUnavailable, "the in-process worker did not answer");
    nlohmann::json rows = nlohmann::json::array();
    double worst = 0, worst_cold = 0, worst_spread = 0;
    // Rounds over all cuts, each cut's median round reported: a slow moment
    // of this shared machine falls on one round of every cut, not on one cut.
    std::vector<std::vector<double>> measured(layers + 1);
    for (int round = 0; round < *rounds; ++round) {
      for (int k = 0; k <= layers; ++k) {
        agent.UseCut(k);
        measured[k].push_back(agent.Generate({prompt, *tokens, {}, false}).measured_tpot_ms);
      }
      ctx.log->info("bench-plan: round {}/{} done", round + 1, *rounds);
    }
    if (!*json) std::printf("  cut  cold_ms   error  predicted_ms  (device  network  cloud)  measured_ms   error  spread\n");
    for (int k = 0; k <= layers; ++k) {
      auto& m = measured[k];
      std::sort(m.begin(), m.end());
      const double median = m[m.size() / 2];
      const double spread = (m.back() - m.front()) / median;  // this machine's own noise
      worst_spread = std::max(worst_spread, spread);
      const auto& p = plan->cuts[k];
      const double error = (p.tpot_ms - median) / median;
      const double cold_error = (cold->cuts[k].tpot_ms - median) / median;
      worst = std::max(worst, std::fabs(error));
      worst_cold = std::max(worst_cold, std::fabs(cold_error));
      rows.push_back({{"cut", k}, {"cold_predicted_ms", cold->cuts[k].tpot_ms}, {"cold_error", cold_error},
                      {"predicted_ms", p.tpot_ms}, {"predicted_device_ms", p.device_ms},
                      {"predicted_network_ms", p.network_ms}, {"predicted_cloud_ms", p.cloud_ms},
                      {"measured_ms", median}, {"measured_spread", spread}, {"error", error}});
      if (!*json) {
        std::printf("  %3d  %7.3f  %+6.1f%%  %12.3f  (%6.3f  %7.3f  %5.3f)  %11.3f  %+6.1f%%  %5.1f%%\n", k,
                    cold->cuts[k].tpot_ms, 100 * cold_error, p.tpot_ms, p.device_ms, p.network_ms, p.cloud_ms, median,
                    100 * error, 100 * spread);
      }
    }
    if (*json) {
      std::cout << nlohmann::json{{"cuts", rows}, {"worst_abs_error", worst}, {"worst_abs_cold_error", worst_cold},
                                    {"worst_measured_spread", worst_spread}}.dump()
                << std::endl;
    } else {
      std::printf(
          "worst |error| %.1f%% (target 15%%); from the start-up profiles alone %.1f%%; the measured time itself "
          "varied by up to %.1f%% between rounds\n",
          100 * worst, 100 * worst_cold, 100 * worst_spread);
    }
    return 0;
  };
}

}  // namespace splitlm::cli
