// The cloud worker: serves layers [min_cut, L) and the head to many devices,
// each session with its own cut and KV cache, batching decode steps.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "cloud/sessions.h"
#include "transport/channel.h"
#include "transport/clock.h"
#include "transport/metrics.h"

namespace splitlm::partition {
class Model;
class ComputeHook;
}  // namespace splitlm::partition

namespace splitlm::cloud {

// What a test installs to see the worker's loop from inside, e.g. to stop
// the process at a chosen step and kill it (tests/cloud/fault_worker.cpp).
// The shipped splitlm-cloud installs none. Called on the thread running
// Worker::Run.
class WorkerHook {
 public:
  virtual ~WorkerHook() = default;
  // Before a batch of `batch` Forward steps is run (none of them answered
  // yet), `forwards` steps having been run before it.
  virtual void BeforeBatch(uint64_t forwards, size_t batch) = 0;
};

struct WorkerOptions {
  // Bind address, CURVE keys, allow-list, limits. The worker lowers the
  // payload and row limits to what its model can use (max_context rows of
  // hidden_size values), which sets the largest frame libzmq accepts.
  transport::ServerOptions server;
  SessionLimits sessions;  // caps and timeouts of sessions
  int min_cut = 0;         // lowest cut served: weights [min_cut, L) are loaded
  // Pipeline of workers (0 = off): this worker holds [min_cut, layer_end)
  // only and forwards each step's hidden states at layer_end to the worker
  // at `next` (which serves cut layer_end), relaying its answers. Devices see
  // one cloud. A next hop that does not answer a step within
  // next_step_deadline is reported to the device (internal error), which
  // fails over or falls back; its sessions here are dropped.
  int layer_end = 0;
  transport::ClientOptions next;
  std::chrono::milliseconds next_step_deadline{5000};
  // Refuse devices holding the same model in other weight formats (their
  // tokens may differ from a local run's); by default they are served with
  // a warning.
  bool require_exact = false;
  // KV caches of all sessions together; past it the least recently used idle
  // session is evicted and its device told (session_evicted) on its next step.
  size_t kv_budget_bytes = size_t{2} << 30;
  int max_batch = 32;  // requests run through the layers together
  // After the first request of a batch, wait up to this long for as many as
  // the previous batch held (the sessions stepping in lock-step), so they
  // share one pass over the weights. A lone session never waits.
  std::chrono::milliseconds batch_window{2};
  std::chrono::milliseconds poll{100};  // how often the loop checks for shutdown
  // Draining (Run's `drain`, SIGTERM): how long the open sessions get to
  // finish before the worker stops anyway (their devices then fail over).
  std::chrono::milliseconds drain_timeout{30000};
  std::shared_ptr<spdlog::logger> log;
  // Emulation (splitlm sim): set on every session's stage; and the per-layer
  // decode times (and head time) to report in Hello instead of measuring.
  partition::ComputeHook* compute_hook = nullptr;
  std::vector<float> report_layer_decode_us;  // one per layer [min_cut, L)
  float report_head_decode_us = 0;
  // Tests only (null: none). Not owned; must outlive the worker.
  WorkerHook* hook = nullptr;
};

class Worker {
 public:
  // Loads the weights and binds. Throws Exception: kInvalidArgument for a bad
  // cut or layer range (or a refused bind), kCorrupt for a bad model,
  // kUnavailable when the endpoint cannot be bound.
  // Sessions' idle and peer timeouts, queue and compute times, the batch
  // window and the pipeline's deadline are read on `clock` (the simulation
  // passes its virtual clock); `model`, `context`, `metrics` and `clock`
  // must outlive the worker.
  Worker(const partition::Model& model, WorkerOptions options, zmq::context_t& context,
         transport::Metrics& metrics, const transport::Clock& clock = transport::SteadyClock());
  ~Worker();
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  std::string endpoint() const;
  // Serves until `stop` is set; returns within one poll interval after.
  // Once `drain` (if given) is set, the worker drains: its Hello says so
  // (devices place sessions elsewhere), new sessions are refused (busy), and
  // Run returns when the open ones are closed, or drain_timeout after.
  // A request's failure is answered to its device as an Error message, not
  // thrown; Run throws only what a broken invariant would (kInternal).
  void Run(const std::atomic<bool>& stop, const std::atomic<bool>* drain = nullptr);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace splitlm::cloud
