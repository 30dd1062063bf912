// Re-planning: the estimator follows the link, a bandwidth drop moves the cut
// towards the device and a recovery moves it back, and measurements
// oscillating around the threshold do not make it flap.
#include <gtest/gtest.h>

#include <limits>

#include "scheduler/replanner.h"
#include "tests/scheduler/synthetic_profiles.h"

namespace splitlm::scheduler {
namespace {

using testing::Flat;

PlanInputs Inputs() {
  PlanInputs in;
  in.device = Flat(8, 1000);
  in.cloud = Flat(8, 100);
  in.link.rtt_ms = 2;
  in.link.up_mbit_s = in.link.down_mbit_s = 100;
  in.workload.activation_bytes = 3072;
  in.constraints.privacy_floor = 2;
  return in;
}

TEST(NetworkEstimatorTest, TwoProbesGiveRttAndBandwidth) {
  NetworkEstimator e;
  // 10 ms RTT, 8 Mbit/s each way = 1 byte/us: 1000 B up + 1000 B down = 2 ms.
  e.Calibrate(1000, 12, 101000, 212);
  EXPECT_NEAR(10, e.rtt_ms(), 1e-9);
  EXPECT_NEAR(8, e.up_mbit_s(), 1e-9);
  // Real steps at 30 ms network time pull the RTT estimate up gradually.
  for (int i = 0; i < 50; ++i) e.Observe(0, 0, 30);
  EXPECT_NEAR(30, e.rtt_ms(), 0.1);
  EXPECT_LT(e.rtt_stddev_ms(), 1.0);
}

TEST(ComputeDriftTest, FollowsMeasuredOverPredictedAndIgnoresNonsense) {
  ComputeDrift d(8);
  EXPECT_EQ(1.0, d.factor());
  d.Observe(100, 300);  // the first step is taken whole
  EXPECT_DOUBLE_EQ(3.0, d.factor());
  d.Observe(100, 100);  // two equal weights: the mean of the two ratios
  EXPECT_DOUBLE_EQ(2.0, d.factor());
  d.Observe(0, 100);
  d.Observe(100, -1);
  d.Observe(100, std::numeric_limits<double>::infinity());
  d.Observe(std::numeric_limits<double>::quiet_NaN(), 100);
  EXPECT_DOUBLE_EQ(2.0, d.factor());
  EXPECT_EQ(2, d.samples());
  for (int i = 0; i < 20; ++i) d.Observe(1, 1000);
  EXPECT_DOUBLE_EQ(20.0, d.factor()) << "clamped";
  EXPECT_EQ(22, d.samples());
}

TEST(ComputeDriftTest, SmallStepsCountLessThanBigOnes) {
  ComputeDrift d(8);
  d.Observe(100, 100);  // a whole model's step at its profile's speed
  d.Observe(10, 30);    // two small steps, three times slower
  d.Observe(10, 30);
  EXPECT_DOUBLE_EQ(1.0, d.factor()) << "100 of the 120 us of weight say 1";
  d.Observe(100, 300);
  EXPECT_DOUBLE_EQ(3.0, d.factor()) << "now 120 of 220 say 3";
}

TEST(ComputeDriftTest, ASlowMomentDoesNotMoveItButALastingChangeDoes) {
  ComputeDrift d(16);
  for (int i = 0; i < 40; ++i) d.Observe(100, 100);
  for (int i = 0; i < 7; ++i) d.Observe(100, 250);  // a slow moment: under half the window
  EXPECT_DOUBLE_EQ(1.0, d.factor());
  d.Observe(100, 250);  // half the window now says 2.5
  d.Observe(100, 250);
  EXPECT_DOUBLE_EQ(2.5, d.factor());
  for (int i = 0; i < 16; ++i) d.Observe(100, 50);  // a whole window of faster steps
  EXPECT_DOUBLE_EQ(0.5, d.factor()) << "the old steps have left the window";
}

TEST(ComputeProfileTest, ScaledMultipliesEveryTime) {
  const ComputeProfile p = Flat(4, 100, 10, 5);
  const ComputeProfile q = p.Scaled(2);
  EXPECT_DOUBLE_EQ(2 * p.StepUs(0, 4, 64, true, true), q.StepUs(0, 4, 64, true, true));
  EXPECT_DOUBLE_EQ(2 * p.PrefillUs(1, 16), q.PrefillUs(1, 16));
  EXPECT_DOUBLE_EQ(p.embed_us + p.DecodeUs(0, 64) + p.DecodeUs(1, 64),
                   p.StepUs(0, 2, 64, true, false));
}

TEST(ReplannerTest, BandwidthDropMovesToTheDeviceAndRecoveryMovesBack) {
  Replanner r(Inputs(), {});
  EXPECT_EQ(2, r.PlanRequest());  // fast link: just the privacy floor here
  PlanInputs in = Inputs();
  in.link.up_mbit_s = 0.05;  // the uplink collapses
  r.UpdateLink(in.link);
  EXPECT_EQ(8, r.Replan(100, 200));
  r.UpdateLink(Inputs().link);  // and recovers
  EXPECT_EQ(2, r.Replan(100, 200));
}

TEST(ReplannerTest, OscillationAroundTheThresholdDoesNotFlap) {
  // Find the RTT at which splitting at the floor and running everything here
  // cost the same, then alternate 3% either side of it.
  PlanInputs in = Inputs();
  auto cuts = PredictAll(in);
  const double threshold = in.link.rtt_ms + (cuts[8].tpot_ms - cuts[2].tpot_ms);
  Replanner r(in, {});
  in.link.rtt_ms = threshold * 0.97;
  r.UpdateLink(in.link);
  const int first = r.Replan(100, 200);
  int changes = 0, last = first;
  for (int i = 0; i < 100; ++i) {
    in.link.rtt_ms = threshold * (i % 2 ? 0.97 : 1.03);
    r.UpdateLink(in.link);
    const int cut = r.Replan(100, 200);
    changes += cut != last;
    last = cut;
  }
  EXPECT_EQ(0, changes);
  // A decisive change still moves it.
  in.link.rtt_ms = threshold * 3;
  r.UpdateLink(in.link);
  EXPECT_EQ(8, r.Replan(100, 200));
}

TEST(ReplannerTest, MovingIsNotWorthItNearTheEnd) {
  Replanner r(Inputs(), {});
  ASSERT_EQ(2, r.PlanRequest());
  PlanInputs in = Inputs();
  in.link.rtt_ms = 20;  // the device alone is now ~2x faster per token...
  r.UpdateLink(in.link);
  EXPECT_EQ(2, r.Replan(900, 1))
      << "...but one token left does not pay for rebuilding 6 layers' KV";
  EXPECT_EQ(8, r.Replan(900, 500));
}

TEST(ReplannerTest, BetweenRequestsHysteresisKeepsANearlyEqualCut) {
  PlanInputs in = Inputs();
  Replanner r(in, {0.10, 0});
  ASSERT_EQ(2, r.PlanRequest());
  auto cuts = PredictAll(in);
  in.link.rtt_ms += (cuts[8].tpot_ms - cuts[2].tpot_ms) + 0.01;  // cut 8 now barely better
  r.UpdateLink(in.link);
  EXPECT_EQ(2, r.PlanRequest());
  in.link.rtt_ms += 5;
  r.UpdateLink(in.link);
  EXPECT_EQ(8, r.PlanRequest());
}

}  // namespace
}  // namespace splitlm::scheduler
