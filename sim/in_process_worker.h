// A cloud worker on its own thread in this process, on a free loopback port,
// for the benchmarks, `splitlm sim` and the tests. Stops and joins on
// destruction, so an exception between start and end cannot leave a joinable
// thread behind.
#pragma once

#include <atomic>
#include <string>
#include <thread>

#include "cloud/worker.h"

namespace splitlm::sim {

class InProcessWorker {
 public:
  static constexpr const char* kFreeLoopbackPort = "tcp://127.0.0.1:*";

  // `options` as given, bound to `bind` (a free loopback port unless given:
  // a test restarting a worker binds the endpoint() of the one before), on
  // `clock` (which must outlive this).
  InProcessWorker(const partition::Model& model, zmq::context_t& context,
                  transport::Metrics& metrics, std::shared_ptr<spdlog::logger> log,
                  cloud::WorkerOptions options = {},
                  const transport::Clock& clock = transport::SteadyClock(),
                  std::string bind = kFreeLoopbackPort)
      : worker_(model, Options(std::move(log), std::move(options), std::move(bind)), context,
                metrics, clock),
        thread_([this] { worker_.Run(stop_); }) {}
  ~InProcessWorker() {
    stop_ = true;
    thread_.join();
  }
  InProcessWorker(const InProcessWorker&) = delete;
  InProcessWorker& operator=(const InProcessWorker&) = delete;

  std::string endpoint() const { return worker_.endpoint(); }
  // "HOST:PORT" of endpoint(), as the shaping relay's upstream.
  std::string address() const { return worker_.endpoint().substr(6); }

 private:
  static cloud::WorkerOptions Options(std::shared_ptr<spdlog::logger> log, cloud::WorkerOptions o,
                                      std::string bind) {
    o.server.bind = std::move(bind);
    o.log = std::move(log);
    return o;
  }
  cloud::Worker worker_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

}  // namespace splitlm::sim
