// The time the pair measures itself by. Normally the steady clock; in
// simulation a VirtualClock, so that compute on emulated hardware takes the
// emulated time: where the emulated hardware is slower than this machine the
// difference is slept, where it is faster the clock skips the difference.
// Network time is never rescaled: it passes on the steady clock.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <thread>

namespace splitlm::transport {

class VirtualClock {
 public:
  using Steady = std::chrono::steady_clock;

  Steady::time_point Now() const { return Steady::now() + std::chrono::nanoseconds(offset_ns_.load()); }

  // Work that took `measured_us` here takes `emulated_us` on the emulated
  // hardware: sleeps the difference if that is longer, else moves this clock
  // back by it (so it seems to have taken `emulated_us`). One activity at a
  // time: the simulation runs one request, device and cloud in turn.
  void Account(double emulated_us, double measured_us) {
    const double extra = emulated_us - measured_us;
    if (extra > 0) {
      const auto want = std::chrono::nanoseconds(static_cast<int64_t>(extra * 1e3));
      const auto t0 = Steady::now();
      std::this_thread::sleep_for(want);
      // Oversleeping is this machine's, not the emulated hardware's: skip it.
      offset_ns_ -= std::chrono::duration_cast<std::chrono::nanoseconds>(Steady::now() - t0 - want).count();
      return;
    }
    offset_ns_ += static_cast<int64_t>(extra * 1e3);
  }

  // Moves this clock forward by `d` at once, without sleeping: tests use it
  // to reach a timeout (an idle session's expiry) without waiting for it.
  void Advance(std::chrono::nanoseconds d) { offset_ns_ += d.count(); }

  // Total time skipped so far (how much faster the emulation ran than this machine), seconds.
  double skipped_s() const { return -static_cast<double>(offset_ns_.load()) * 1e-9; }

 private:
  std::atomic<int64_t> offset_ns_{0};
};

// Now() of `clock`, or of the steady clock without one.
inline std::chrono::steady_clock::time_point NowOn(const VirtualClock* clock) {
  return clock ? clock->Now() : std::chrono::steady_clock::now();
}

}  // namespace splitlm::transport
