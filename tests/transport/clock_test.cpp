// The clocks the agent, the worker and the relay keep time on: the steady
// clock sleeps until the time asked, the virtual one skips time that
// emulated hardware would not have spent and sleeps what it would have.
#include <gtest/gtest.h>

#include <chrono>

#include "transport/clock.h"

namespace splitlm {
namespace {

using std::chrono::milliseconds;
using Steady = std::chrono::steady_clock;

TEST(SteadyClockTest, ReadsTheSteadyClockAndSleepsUntilTheTimeAsked) {
  const transport::Clock& clock = transport::SteadyClock();
  const auto before = Steady::now();
  const auto t = clock.Now();
  EXPECT_LE(before, t);
  EXPECT_LE(t, Steady::now());
  clock.SleepUntil(t + milliseconds(3));
  EXPECT_GE(clock.Now(), t + milliseconds(3));
  clock.SleepUntil(t);  // in the past: returns at once
  const auto u = clock.Now();
  clock.SleepFor(milliseconds(2));
  EXPECT_GE(clock.Now() - u, milliseconds(2));
}

TEST(VirtualClockTest, FasterHardwareSkipsTimeSlowerHardwareSleepsIt) {
  transport::VirtualClock clock;
  const auto wall0 = Steady::now();
  const auto v0 = clock.Now();
  // Work that took 1 s here but 0.1 s emulated: the clock falls 0.9 s behind.
  clock.Account(1e5, 1e6);
  EXPECT_NEAR(0.9, clock.skipped_s(), 1e-9);
  EXPECT_LT(clock.Now() - v0, Steady::now() - wall0 - milliseconds(800));
  // Work that took nothing here but 3 ms emulated: at least 3 ms pass.
  const auto t = Steady::now();
  clock.Account(3000, 0);
  EXPECT_GE(Steady::now() - t, milliseconds(3));
  EXPECT_GE(clock.skipped_s(), 0.9);  // oversleeping is skipped, never added
}

TEST(VirtualClockTest, SleepsUntilATimeOnItselfAndAdvancesWithoutSleeping) {
  transport::VirtualClock clock;
  clock.Advance(std::chrono::hours(1));
  const auto wall = Steady::now();
  const auto t = clock.Now();
  EXPECT_GE(t - wall, std::chrono::minutes(59));
  clock.SleepUntil(t + milliseconds(3));
  EXPECT_GE(clock.Now(), t + milliseconds(3));
  EXPECT_LT(Steady::now() - wall, std::chrono::minutes(1))
      << "slept on the steady clock's time, not the virtual one's";
}

}  // namespace
}  // namespace splitlm
