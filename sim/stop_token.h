// A stop request passed in, as C++20's std::stop_source / std::stop_token
// (this tree is C++17): `splitlm sim` turns SIGINT and SIGTERM into a
// request on its source; the scenario and sweep loops look at their token
// and end early, keeping what they finished.
#pragma once

#include <atomic>
#include <memory>

namespace splitlm::sim {

class StopToken {
 public:
  StopToken() = default;  // a token no one can stop
  bool StopRequested() const { return state_ && state_->load(std::memory_order_relaxed); }

 private:
  friend class StopSource;
  explicit StopToken(std::shared_ptr<const std::atomic<bool>> state) : state_(std::move(state)) {}
  std::shared_ptr<const std::atomic<bool>> state_;
};

// Copies share one request. RequestStop is one lock-free store, so a signal
// handler may call it.
class StopSource {
 public:
  StopSource() : state_(std::make_shared<std::atomic<bool>>(false)) {}
  void RequestStop() const { state_->store(true, std::memory_order_relaxed); }
  StopToken GetToken() const { return StopToken(state_); }

 private:
  static_assert(std::atomic<bool>::is_always_lock_free, "RequestStop must be async-signal-safe");
  std::shared_ptr<std::atomic<bool>> state_;
};

}  // namespace splitlm::sim
