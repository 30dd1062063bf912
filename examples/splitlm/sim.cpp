// splitlm sim: one scenario on one machine — the real worker and the real
// device agent, the link between them emulated by the shaping relay.
// Timings are wall-clock on this machine (no device emulation yet).
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <iostream>
#include <thread>

#include "examples/splitlm/in_process_worker.h"
#include "device/agent.h"
#include "examples/splitlm/cli.h"
#include "partition/model.h"
#include "transport/shaper.h"

namespace splitlm::cli {
namespace {

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

}  // namespace

Runner AddSim(CLI::App& app) {
  auto* cmd = app.add_subcommand("sim", "run one scenario: worker + device through an emulated link");
  struct Args {
    std::string model, cut = "auto", trace;
    std::vector<std::string> outages;
    transport::LinkConditions link{50, 100, 20, 0};
    int prompts = 3, prompt_tokens = 16, tokens = 32;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--model", a->model, "model directory")->required();
  cmd->add_option("--cut", a->cut, "policy: a cut K, auto, device (all local) or cloud (cut 0)")->capture_default_str();
  cmd->add_option("--up-mbit", a->link.up_mbit_s, "uplink bandwidth")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--down-mbit", a->link.down_mbit_s, "downlink bandwidth")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--delay-ms", a->link.delay_ms, "one-way delay")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--jitter-ms", a->link.jitter_ms, "uniform extra delay")->check(CLI::NonNegativeNumber)->capture_default_str();
  cmd->add_option("--trace", a->trace, "CSV trace time_s,up_mbit_s,down_mbit_s,rtt_ms (overrides the fixed link)")->check(CLI::ExistingFile);
  cmd->add_option("--outage", a->outages, "START:END[:cut] in seconds; stall unless :cut");
  cmd->add_option("--prompts", a->prompts, "requests")->check(CLI::Range(1, 10000))->capture_default_str();
  cmd->add_option("--prompt-tokens", a->prompt_tokens, "prompt length")->check(CLI::Range(1, 100000))->capture_default_str();
  cmd->add_option("--tokens", a->tokens, "tokens per request")->check(CLI::Range(1, 100000))->capture_default_str();
  cmd->add_flag("--json", a->json, "one JSON line");
  return [a](const Context& ctx) {
    auto model = partition::Model::Open(a->model);
    const auto& c = model->config();
    transport::ShaperOptions so;
    so.link = a->link;
    so.log = ctx.log;
    if (!a->trace.empty()) so.trace = transport::ReadTrace(a->trace);
    for (const std::string& w : a->outages) {
      transport::Outage out;
      char kind[8] = {0};
      if (std::sscanf(w.c_str(), "%lf:%lf:%7s", &out.start_s, &out.end_s, kind) < 2 || out.end_s <= out.start_s) {
        throw std::runtime_error("--outage \"" + w + "\": expected START:END[:cut] with END > START");
      }
      out.cut = std::string(kind) == "cut";
      so.outages.push_back(out);
    }
    device::AgentOptions o;
    o.fallback = device::Fallback::kLocal;
    o.step_deadline = std::chrono::milliseconds(2000);
    o.retry_interval = std::chrono::milliseconds(250);
    o.channel.heartbeat_interval = std::chrono::milliseconds(100);
    if (a->cut == "auto") {
      o.auto_cut.enabled = true;
      o.auto_cut.plan.device.threads = at::get_num_threads();
      o.auto_cut.plan.workload.prompt_tokens = a->prompt_tokens;
      o.auto_cut.plan.workload.context = a->prompt_tokens + a->tokens / 2;
      o.cut = c.num_layers;
    } else if (a->cut == "device") {
      o.cut = c.num_layers;
    } else if (a->cut == "cloud") {
      o.cut = 0;
    } else {
      o.cut = std::stoi(a->cut);
    }

    // Reference tokens from an all-local run, before any clock starts.
    std::vector<std::vector<int32_t>> prompts, reference;
    {
      device::AgentOptions lo;
      lo.cut = c.num_layers;
      zmq::context_t z;
      transport::Metrics m;
      device::Agent local(*model, lo, z, m);
      for (int p = 0; p < a->prompts; ++p) {
        std::vector<int32_t> ids(a->prompt_tokens);
        for (int i = 0; i < a->prompt_tokens; ++i) ids[i] = static_cast<int32_t>((1 + 97 * p + 31 * i) % c.vocab_size);
        prompts.push_back(ids);
        reference.push_back(local.Generate({ids, a->tokens, {}, false}).tokens);
      }
    }

    zmq::context_t zctx;
    transport::Metrics cloud_metrics, device_metrics;
    InProcessWorker worker(*model, zctx, cloud_metrics, ctx.log);
    so.upstream = worker.endpoint().substr(6);
    transport::ShapingRelay relay(so);
    o.channel.endpoint = relay.endpoint();
    o.log = ctx.log;
    device::Agent agent(*model, o, zctx, device_metrics);

    std::vector<double> ttft, tpot;
    int fallbacks = 0, recuts = 0, agree = 0, total = 0;
    std::vector<int> cuts;
    for (int p = 0; p < a->prompts; ++p) {
      ctx.log->info("sim: request {}/{}", p + 1, a->prompts);
      const auto t0 = std::chrono::steady_clock::now();
      auto last = t0;
      bool first = true;
      auto r = agent.Generate({prompts[p], a->tokens, {}, false}, [&](int32_t) {
        const auto now = std::chrono::steady_clock::now();
        (first ? ttft : tpot).push_back(std::chrono::duration<double, std::milli>(now - last).count());
        first = false;
        last = now;
        return true;
      });
      fallbacks += r.fallbacks;
      recuts += r.recuts;
      cuts.push_back(r.cut);
      for (size_t i = 0; i < r.tokens.size() && i < reference[p].size(); ++i) agree += r.tokens[i] == reference[p][i];
      total += static_cast<int>(reference[p].size());
    }
    const double bytes = device_metrics.Get("splitlm_device_bytes_sent_total");
    const double tokens = device_metrics.Get("splitlm_device_tokens_total");
    nlohmann::json j = {{"policy", a->cut},
                        {"cuts", cuts},
                        {"ttft_ms_median", Percentile(ttft, 0.5)},
                        {"ms_per_token_median", Percentile(tpot, 0.5)},
                        {"ms_per_token_p95", Percentile(tpot, 0.95)},
                        {"bytes_per_token", tokens > 0 ? bytes / tokens : 0},
                        {"cut_changes", recuts},
                        {"fallbacks", fallbacks},
                        {"token_agreement", total > 0 ? static_cast<double>(agree) / total : 1.0},
                        {"timing", "wall clock on this machine; link emulated by the shaping relay"}};
    if (a->json) {
      std::cout << j.dump() << std::endl;
    } else {
      std::printf("policy %s, cuts used:", a->cut.c_str());
      for (int k : cuts) std::printf(" %d", k);
      std::printf("\n  time to first token (median)  %8.2f ms\n  time per token median / p95   %8.2f / %.2f ms\n"
                  "  bytes per token               %8.0f\n  cut changes %d, fallbacks %d\n  token agreement with local    %8.4f\n",
                  j["ttft_ms_median"].get<double>(), j["ms_per_token_median"].get<double>(), j["ms_per_token_p95"].get<double>(),
                  j["bytes_per_token"].get<double>(), recuts, fallbacks, j["token_agreement"].get<double>());
      std::printf("  (%s)\n", j["timing"].get<std::string>().c_str());
    }
    return 0;
  };
}

}  // namespace splitlm::cli
