// splitlm bench-cloud: aggregate decode throughput of one worker serving N
// concurrent sessions, next to one session alone, in the same run.
#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <thread>

#include "sim/in_process_worker.h"
#include "device/agent.h"
#include "examples/splitlm/cli.h"
#include "partition/model.h"
#include "transport/error.h"

namespace splitlm::cli {
namespace {

// A splitlm-cloud process (beside this binary) pinned to one core, with one
// compute thread; stopped (SIGTERM, drained) on destruction.
class PinnedWorker {
 public:
  PinnedWorker(const std::string& model, int core) {
    char self[4096] = {};
    const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    std::string bin = std::string(self, n > 0 ? static_cast<size_t>(n) : 0);
    bin = bin.substr(0, bin.rfind('/') + 1) + "splitlm-cloud";
    int fds[2];
    if (pipe(fds) != 0) throw Exception(Exception::kUnavailable, "pipe failed");
    pid_ = fork();
    if (pid_ == 0) {
      cpu_set_t set;
      CPU_ZERO(&set);
      CPU_SET(core, &set);
      sched_setaffinity(0, sizeof set, &set);
      dup2(fds[1], 1);
      const int null = open("/dev/null", O_WRONLY);
      dup2(null, 2);
      execl(bin.c_str(), bin.c_str(), "--model", model.c_str(), "--bind", "tcp://127.0.0.1:*", "--threads", "1",
            "--log-level", "warn", static_cast<char*>(nullptr));
      _exit(127);
    }
    close(fds[1]);
    FILE* out = fdopen(fds[0], "r");
    char line[512];
    const std::string prefix = "listening on ";
    while (out && fgets(line, sizeof line, out)) {
      std::string l(line);
      if (l.rfind(prefix, 0) == 0) {
        endpoint_ = l.substr(prefix.size(), l.find_last_not_of("\r\n") + 1 - prefix.size());
        break;
      }
    }
    out_ = out;
    if (endpoint_.empty())
      throw Exception(Exception::kUnavailable, bin + " did not start (is it built beside splitlm?)");
  }
  ~PinnedWorker() {
    kill(pid_, SIGTERM);
    waitpid(pid_, nullptr, 0);
    if (out_) fclose(out_);
  }
  PinnedWorker(const PinnedWorker&) = delete;
  PinnedWorker& operator=(const PinnedWorker&) = delete;
  const std::string& endpoint() const { return endpoint_; }

 private:
  pid_t pid_ = -1;
  FILE* out_ = nullptr;
  std::string endpoint_;
};

}  // namespace

Runner AddBenchCloud(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench-cloud", "aggregate tokens/s of N concurrent sessions vs one");
  auto dir = std::make_shared<std::string>();
  auto sessions = std::make_shared<int>(8);
  auto tokens = std::make_shared<int>(32);
  auto json = std::make_shared<bool>(false);
  auto workers = std::make_shared<int>(0);
  cmd->add_option("--workers", *workers,
                  "compare 1 and N splitlm-cloud processes (replicas, one core and one thread each; devices place "
                  "sessions on the least loaded) instead of 1 and N sessions on one in-process worker")
      ->check(CLI::Range(0, 64));
  cmd->add_option("--model", *dir, "model directory or .gguf file")->required();
  cmd->add_option("--sessions", *sessions, "concurrent sessions")->check(CLI::Range(2, 256))->capture_default_str();
  cmd->add_option("--tokens", *tokens, "tokens per session")->check(CLI::Range(2, 100000))->capture_default_str();
  cmd->add_flag("--json", *json, "one JSON line");
  return [=](const Context& ctx) {
    using Clock = std::chrono::steady_clock;
    auto model = partition::Model::Open(*dir, "", ctx.isa);
    zmq::context_t zctx;
    transport::Metrics cloud_metrics;
    // Devices at cut 0 (embedding only): the cloud does all the layer work,
    // which is what is measured.
    auto run_on = [&](int n, const std::vector<std::string>& endpoints) {
      std::vector<std::unique_ptr<device::Agent>> agents;
      std::vector<transport::Metrics> metrics(n);
      for (int i = 0; i < n; ++i) {
        device::AgentOptions o;
        o.cut = 0;
        o.fallback = device::Fallback::kFail;
        o.channel.endpoint = endpoints.front();
        if (endpoints.size() > 1) o.clouds = endpoints;
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
    if (*workers > 0) {
      const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
      auto with = [&](int n) {
        std::vector<std::unique_ptr<PinnedWorker>> procs;
        std::vector<std::string> eps;
        for (int i = 0; i < n; ++i) {
          procs.push_back(std::make_unique<PinnedWorker>(*dir, i % cores));
          eps.push_back(procs.back()->endpoint());
        }
        return run_on(*sessions, eps);
      };
      ctx.log->info("bench-cloud: {} sessions of {} tokens on 1 worker, then on {} (one core each)", *sessions, *tokens, *workers);
      const double one = with(1), many = with(*workers);
      if (*json) {
        std::cout << nlohmann::json{{"one_worker_tok_s", one}, {"workers_tok_s", many}, {"workers", *workers},
                                    {"sessions", *sessions}, {"ratio", many / one}}.dump() << std::endl;
      } else {
        std::printf("1 worker           %8.2f tok/s aggregate\n%d workers          %8.2f tok/s aggregate   ratio %.2f (ideal %d)\n",
                    one, *workers, many, many / one, *workers);
      }
      return 0;
    }
    sim::InProcessWorker worker(*model, zctx, cloud_metrics, ctx.log);
    auto run = [&](int n) { return run_on(n, {worker.endpoint()}); };
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
