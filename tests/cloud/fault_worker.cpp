// splitlm-fault-worker (tests only, never installed): a cloud worker that
// stops itself at a chosen step so that a test can kill it there. The shipped
// splitlm-cloud has no fault injection; the tests that need a worker to die
// mid-run (tests/device/pair_test.cpp, replicas_test.cpp, arm64_pair_test.cpp)
// start this instead and send the SIGKILL themselves (testing::KillWhenFrozen).
//
// On its Nth Forward step (--freeze-at N), before running or answering it,
// the worker prints "frozen at forward N" and stops itself with SIGSTOP:
// nothing of that step or after reaches a device, and the test's SIGKILL
// finds the process exactly there, however busy the machine is.
#include <ATen/Parallel.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <iostream>

#include "cloud/worker.h"
#include "partition/model.h"

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

class FreezeAt final : public splitlm::cloud::WorkerHook {
 public:
  explicit FreezeAt(uint64_t n) : n_(n) {}
  void BeforeBatch(uint64_t forwards, size_t batch) override {
    if (n_ == 0 || forwards + batch < n_) return;
    std::cout << "frozen at forward " << n_ << std::endl;
    std::raise(SIGSTOP);  // the test kills the process from here
  }

 private:
  uint64_t n_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "splitlm-fault-worker: a test worker that freezes at a chosen Forward for the test to kill"};
  std::string model_dir;
  int threads = 1;
  uint64_t freeze_at = 0;
  splitlm::cloud::WorkerOptions o;
  app.add_option("--model", model_dir, "model directory or .gguf file")->required();
  app.add_option("--bind", o.server.bind, "ZeroMQ endpoint")->capture_default_str();
  app.add_option("--min-cut", o.min_cut, "lowest cut served")->capture_default_str();
  app.add_option("--threads", threads, "compute threads")->capture_default_str();
  app.add_option("--freeze-at", freeze_at,
                 "stop (SIGSTOP) on this Forward, before answering it (0 = never)")
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto log = spdlog::stderr_color_mt("fault-worker");
  at::set_num_threads(threads);
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  FreezeAt hook(freeze_at);
  o.hook = &hook;
  o.log = log;
  o.server.log = log;
  try {
    auto model = splitlm::partition::Model::Open(model_dir);
    zmq::context_t context;
    splitlm::transport::Metrics metrics;
    splitlm::cloud::Worker worker(*model, o, context, metrics);
    std::cout << "listening on " << worker.endpoint() << std::endl;
    worker.Run(g_stop);
  } catch (const std::exception& e) {
    log->error("{}", e.what());
    return 1;
  }
  return 0;
}
