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

#include "device/agent.h"
#include "examples/splitlm/cli.h"
#include "partition/model.h"
#include "sim/in_process_worker.h"
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
      execl(bin.c_str(), bin.c_str(), "--model", model.c_str(), "--bind", "tcp://127.0.0.1:*",
            "--threads", "1", "--log-level", "warn", static_cast<char*>(nullptr));
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
      throw Exception(Exception::kUnavailable,
                      bin + " did not start (is it built beside splitlm?)");
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

struct BenchCloudArgs {
  std::string model;
  int sessions = 8;
  int tokens = 32;
  bool json = false;
  int workers = 0;  // > 0: 1 against N splitlm-cloud processes
};

void AddBenchCloudFlags(CLI::App* cmd, BenchCloudArgs* args) {
  cmd->add_option(
         "--workers", args->workers,
         "compare 1 and N splitlm-cloud processes (replicas, one core and one thread each; devices "
         "place "
         "sessions on the least loaded) instead of 1 and N sessions on one in-process worker")
      ->check(CLI::Range(0, 64));
  cmd->add_option("--model", args->model, "model directory or .gguf file")->required();
  cmd->add_option("--sessions", args->sessions, "concurrent sessions")
      ->check(CLI::Range(2, 256))
      ->capture_default_str();
  cmd->add_option("--tokens", args->tokens, "tokens per session")
      ->check(CLI::Range(2, 100000))
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "one JSON line");
}

// Aggregate tokens/s of `sessions` concurrent sessions of `tokens` tokens on
// the workers at `endpoints`. Devices at cut 0 (embedding only): the cloud
// does all the layer work, which is what is measured.
double AggregateTokensPerSecond(const partition::Model& model, zmq::context_t& zctx, int sessions,
                                int tokens, const std::vector<std::string>& endpoints) {
  using Clock = std::chrono::steady_clock;
  std::vector<std::unique_ptr<device::Agent>> agents;
  std::vector<transport::Metrics> metrics(sessions);
  for (int i = 0; i < sessions; ++i) {
    device::AgentOptions options;
    options.cut = 0;
    options.fallback = device::Fallback::kFail;
    options.channel.endpoint = endpoints.front();
    if (endpoints.size() > 1) options.clouds = endpoints;
    options.step_deadline = std::chrono::milliseconds(600000);
    options.channel.heartbeat_interval = std::chrono::milliseconds(60000);
    agents.push_back(std::make_unique<device::Agent>(model, options, zctx, metrics[i]));
  }
  // Warm up each session's connection (hello) before timing.
  for (auto& agent : agents) agent->Generate({{1}, 1, {}, false});
  std::vector<std::thread> threads;
  threads.reserve(sessions);
  const auto t0 = Clock::now();
  for (int i = 0; i < sessions; ++i) {
    threads.emplace_back([&, i] { agents[i]->Generate({{1, 100 + i}, tokens, {}, false}); });
  }
  for (auto& t : threads) t.join();
  return sessions * tokens / std::chrono::duration<double>(Clock::now() - t0).count();
}

// --workers N: the sessions on 1 splitlm-cloud process, then on N, one core each.
int CompareWorkers(const BenchCloudArgs& args, const partition::Model& model, zmq::context_t& zctx,
                   const Context& ctx) {
  const int cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  auto with = [&](int n) {
    std::vector<std::unique_ptr<PinnedWorker>> procs;
    std::vector<std::string> endpoints;
    for (int i = 0; i < n; ++i) {
      procs.push_back(std::make_unique<PinnedWorker>(args.model, i % cores));
      endpoints.push_back(procs.back()->endpoint());
    }
    return AggregateTokensPerSecond(model, zctx, args.sessions, args.tokens, endpoints);
  };
  ctx.log->info("bench-cloud: {} sessions of {} tokens on 1 worker, then on {} (one core each)",
                args.sessions, args.tokens, args.workers);
  const double one = with(1), many = with(args.workers);
  if (args.json) {
    std::cout << nlohmann::json{{"one_worker_tok_s", one},
                                {"workers_tok_s", many},
                                {"workers", args.workers},
                                {"sessions", args.sessions},
                                {"ratio", many / one}}
                     .dump()
              << std::endl;
  } else {
    std::printf(
        "1 worker           %8.2f tok/s aggregate\n%d workers          %8.2f tok/s aggregate   "
        "ratio %.2f (ideal %d)\n",
        one, args.workers, many, many / one, args.workers);
  }
  return 0;
}

// One session, then N concurrent ones, on one in-process worker (batching).
int CompareSessions(const BenchCloudArgs& args, const partition::Model& model, zmq::context_t& zctx,
                    const Context& ctx) {
  transport::Metrics cloud_metrics;
  sim::InProcessWorker worker(model, zctx, cloud_metrics, ctx.log);
  auto run = [&](int n) {
    return AggregateTokensPerSecond(model, zctx, n, args.tokens, {worker.endpoint()});
  };
  ctx.log->info("bench-cloud: 1 session, then {} concurrent, {} tokens each", args.sessions,
                args.tokens);
  const double single = run(1);
  const double batch0 = cloud_metrics.Get("splitlm_cloud_batches_total"),
               fwd0 = cloud_metrics.Get("splitlm_cloud_forwards_total");
  const double many = run(args.sessions);
  const double mean_batch =
      (cloud_metrics.Get("splitlm_cloud_forwards_total") - fwd0) /
      std::max(1.0, cloud_metrics.Get("splitlm_cloud_batches_total") - batch0);
  if (args.json) {
    std::cout << nlohmann::json{{"single_tok_s", single},
                                {"aggregate_tok_s", many},
                                {"sessions", args.sessions},
                                {"ratio", many / single},
                                {"mean_batch", mean_batch}}
                     .dump()
              << std::endl;
  } else {
    std::printf(
        "one session        %8.2f tok/s\n%d sessions       %8.2f tok/s aggregate   ratio %.2f "
        "(target >= 3)   mean batch %.1f\n",
        single, args.sessions, many, many / single, mean_batch);
  }
  return 0;
}

int RunBenchCloud(const BenchCloudArgs& args, const Context& ctx) {
  auto model = partition::Model::Open(args.model, "", ctx.isa);
  zmq::context_t zctx;
  if (args.workers > 0) return CompareWorkers(args, *model, zctx, ctx);
  return CompareSessions(args, *model, zctx, ctx);
}

}  // namespace

Runner AddBenchCloud(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("bench-cloud", "aggregate tokens/s of N concurrent sessions vs one");
  auto args = std::make_shared<BenchCloudArgs>();
  AddBenchCloudFlags(cmd, args.get());
  return [args](const Context& ctx) { return RunBenchCloud(*args, ctx); };
}

}  // namespace splitlm::cli
