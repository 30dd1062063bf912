// splitlm bench-plan: the cost model's predicted time per token against the
// measured one, for every cut, through a real worker on loopback.
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <iostream>
#include <thread>

#include "examples/splitlm/in_process_worker.h"
#include "device/agent.h"
#include "examples/splitlm/cli.h"
#include "partition/model.h"

namespace splitlm::cli {

Runner AddBenchPlan(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench-plan", "predicted vs measured time per token at every cut (loopback)");
  auto dir = std::make_shared<std::string>();
  auto tokens = std::make_shared<int>(48);
  auto json = std::make_shared<bool>(false);
  cmd->add_option("--model", *dir, "model directory")->required();
  cmd->add_option("--tokens", *tokens, "tokens generated per cut")->check(CLI::Range(4, 10000))->capture_default_str();
  cmd->add_flag("--json", *json, "one JSON line");
  return [=](const Context& ctx) {
    auto model = partition::Model::Open(*dir);
    const int layers = model->config().num_layers;
    zmq::context_t zctx;
    transport::Metrics cloud_metrics, device_metrics;
    InProcessWorker worker(*model, zctx, cloud_metrics, ctx.log);
    const int prompt_len = 16;
    device::AgentOptions o;
    o.cut = layers;
    o.auto_cut.enabled = true;
    o.auto_cut.plan.device.threads = at::get_num_threads();
    o.auto_cut.plan.workload.prompt_tokens = prompt_len;
    o.auto_cut.plan.workload.context = prompt_len + *tokens / 2;  // mean context while decoding
    o.channel.endpoint = worker.endpoint();
    o.log = ctx.log;
    device::Agent agent(*model, o, zctx, device_metrics);
    const auto plan = agent.PlanAllCuts();
    if (!plan) throw std::runtime_error("the in-process worker did not answer");
    std::vector<int32_t> prompt(prompt_len);
    for (int i = 0; i < prompt_len; ++i) prompt[i] = (i * 37 + 1) % model->config().vocab_size;
    nlohmann::json rows = nlohmann::json::array();
    double worst = 0;
    if (!*json) std::printf("  cut  predicted_ms  measured_ms   error\n");
    for (int k = 0; k <= layers; ++k) {
      agent.UseCut(k);
      agent.Generate({prompt, 4, {}, false});  // warm up this cut's session path
      double best = 1e30;
      for (int r = 0; r < 3; ++r) best = std::min(best, agent.Generate({prompt, *tokens, {}, false}).measured_tpot_ms);
      const double predicted = plan->cuts[k].tpot_ms;
      const double error = (predicted - best) / best;
      worst = std::max(worst, std::fabs(error));
      rows.push_back({{"cut", k}, {"predicted_ms", predicted}, {"measured_ms", best}, {"error", error}});
      if (!*json) std::printf("  %3d  %12.3f  %11.3f  %+6.1f%%\n", k, predicted, best, 100 * error);
    }
    if (*json) {
      std::cout << nlohmann::json{{"cuts", rows}, {"worst_abs_error", worst}}.dump() << std::endl;
    } else {
      std::printf("worst |error| %.1f%% (target 15%%)\n", 100 * worst);
    }
    return 0;
  };
}

}  // namespace splitlm::cli
