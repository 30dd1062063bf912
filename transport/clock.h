// The time a component measures itself by, passed in as leveldb passes its
// Env and KJ its MonotonicClock: the device agent, the cloud worker and the
// shaping relay read every time and sleep every wait through a Clock, never
// through std::chrono::steady_clock or std::this_thread directly.
//
// SteadyClock() is the real one, the default everywhere. In simulation a
// VirtualClock, so that compute on emulated hardware takes the emulated
// time: where the emulated hardware is slower than this machine the
// difference is slept, where it is faster the clock skips the difference.
// Network time is never rescaled: it passes on the steady clock (the
// channels' heartbeats and receive timeouts are ZeroMQ polls).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace splitlm::transport {

// Thread-safe: one clock is shared by the components of a process (the
// simulation's worker, relay and agents read the same one).
class Clock {
 public:
  using Steady = std::chrono::steady_clock;
  using TimePoint = Steady::time_point;
  using Duration = Steady::duration;

  virtual ~Clock() = default;
  // Monotonic: never goes back between two calls on one thread.
  virtual TimePoint Now() const = 0;
  // Blocks the calling thread until Now() >= `t` (returns at once if it is).
  virtual void SleepUntil(TimePoint t) const = 0;
  void SleepFor(Duration d) const { SleepUntil(Now() + d); }
};

// This machine's steady clock. Stateless; lives as long as the process.
const Clock& SteadyClock();

// The steady clock moved by an offset that the simulation adjusts.
class VirtualClock final : public Clock {
 public:
  TimePoint Now() const override {
    return Steady::now() + std::chrono::nanoseconds(offset_ns_.load());
  }
  // Sleeps on the steady clock for what is left until `t` on this one.
  void SleepUntil(TimePoint t) const override;

  // Work that took `measured_us` here takes `emulated_us` on the emulated
  // hardware: sleeps the difference if that is longer, else moves this clock
  // back by it (so it seems to have taken `emulated_us`). One activity at a
  // time: the simulation runs one request, device and cloud in turn.
  void Account(double emulated_us, double measured_us);

  // Moves this clock forward by `d` at once, without sleeping: tests use it
  // to reach a timeout (an idle session's expiry) without waiting for it.
  void Advance(std::chrono::nanoseconds d) { offset_ns_ += d.count(); }

  // Total time skipped so far (how much faster the emulation ran than this machine), seconds.
  double skipped_s() const { return -static_cast<double>(offset_ns_.load()) * 1e-9; }

 private:
  std::atomic<int64_t> offset_ns_{0};
};

}  // namespace splitlm::transport
