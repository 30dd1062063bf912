// splitlm bench-cloud: aggregate decode throughput of one worker serving N
// concurrent sessions, next to one session alone, in the same run.
#include <nlohmann/json.hpp>

#include <chrono>
#include <iostream>
#include <thread>

#include "sim/in_process_worker.h"
#include "device/agent.h"
#include "examples/splitlm/cli.h"
#include "partition/model.h"

namespace splitlm::cli {

Runner AddBenchCloud(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench-cloud", "aggregate tokens/s of N concurrent sessions vs one");
  auto dir = std::make_shared<std::string>();
  auto sessions = std::make_shared<int>(8);
  auto tokens = std::make_shared<int>(32);
  auto json = std::make_shared<bool>(false);
  cmd->add_option("--model", *dir, "model directory or .gguf file")->required();
  cmd->add_option("--sessions", *sessions, "concurrent sessions")->check(CLI::Range(2, 256))->capture_default_str();
  cmd->add_option("--tokens", *tokens, "tokens per session")->check(CLI::Range(2, 100000))->capture_default_str();
  cmd->add_flag("--json", *json, "one JSON line");
  return [=](const Context& ctx) {
    using Clock = std::chrono::steady_clock;
    auto model = partition::Model::Open(*dir);
    zmq::context_t zctx;
    transport::Metrics cloud_metrics;
    sim::InProcessWorker worker(*model, zctx, cloud_metrics, ctx.log);
    // Devices at cut 0 (embedding only): the cloud does all the layer work,
    // which is what is measured.
    auto run = [&](int n) {
      std::vector<std::unique_ptr<device::Agent>> agents;
      std::vector<transport::Metrics> metrics(n);
      for (int i = 0; i < n; ++i) {
        device::AgentOptions o;
        o.cut = 0;
        o.fallback = device::Fallback::kFail;
        o.channel.endpoint = worker.endpoint();
        o.step_deadline = std::chrono::milliseconds(600000);
        o.channel.heartbeat_interval = std::chrono::milliseconds(60000);
        agents.push_back(std::make_unique<device::Agent>(*model, o, zctx, metrics[i]));
      }
      // Warm up each session's connection (hello) before timing.
      for (auto& a : agents) a->Generate({{1}, 1, {}, false});
      std::vector<std::thread> threads;
      const auto t0 = Clock::now();
      for (int i = 0; i < n; ++i) {
        threads.emplace_back([&, i] { agents[i]->Generate({{1, 100 + i}, *tokens, {}, false}); });
      }
      for (auto& t : threads) t.join();
      return n * (*tokens) / std::chrono::duration<double>(Clock::now() - t0).count();
    };
    ctx.log->info("bench-cloud: 1 session, then {} concurrent, {} tokens each", *sessions, *tokens);
    const double single = run(1);
    const double batch0 = cloud_metrics.Get("splitlm_cloud_batches_total"), fwd0 = cloud_metrics.Get("splitlm_cloud_forwards_total");
    const double many = run(*sessions);
    const double mean_batch = (cloud_metrics.Get("splitlm_cloud_forwards_total") - fwd0) /
                              std::max(1.0, cloud_metrics.Get("splitlm_cloud_batches_total") - batch0);
    if (*json) {
      std::cout << nlohmann::json{{"single_tok_s", single}, {"aggregate_tok_s", many}, {"sessions", *sessions},
                                  {"ratio", many / single}, {"mean_batch", mean_batch}}.dump() << std::endl;
    } else {
      std::printf("one session        %8.2f tok/s\n%d sessions       %8.2f tok/s aggregate   ratio %.2f (target >= 3)   mean batch %.1f\n",
                  single, *sessions, many, many / single, mean_batch);
    }
    return 0;
  };
}

}  // namespace splitlm::cli
