#include "transport/clock.h"

#include <thread>

namespace splitlm::transport {
namespace {

class RealSteadyClock final : public Clock {
 public:
  TimePoint Now() const override { return Steady::now(); }
  void SleepUntil(TimePoint t) const override { std::this_thread::sleep_until(t); }
};

}  // namespace

const Clock& SteadyClock() {
  static const RealSteadyClock clock;  // stateless: nothing to share but the vtable
  return clock;
}

void VirtualClock::SleepUntil(TimePoint t) const {
  const auto left = t - Now();
  if (left > Duration::zero()) std::this_thread::sleep_for(left);
}

void VirtualClock::Account(double emulated_us, double measured_us) {
  const double extra = emulated_us - measured_us;
  if (extra > 0) {
    const auto want = std::chrono::nanoseconds(static_cast<int64_t>(extra * 1e3));
    const auto t0 = Steady::now();
    std::this_thread::sleep_for(want);
    // Oversleeping is this machine's, not the emulated hardware's: skip it.
    offset_ns_ -=
        std::chrono::duration_cast<std::chrono::nanoseconds>(Steady::now() - t0 - want).count();
    return;
  }
  offset_ns_ += static_cast<int64_t>(extra * 1e3);
}

}  // namespace splitlm::transport
