// The cost model on synthetic profiles whose optimum is known analytically:
// each objective picks it, constraints are never violated, and infeasible
// configurations name the constraint that cannot be met.
#include <gtest/gtest.h>

#include <random>

#include "scheduler/cost_model.h"
#include "tests/scheduler/synthetic_profiles.h"

namespace splitlm::scheduler {
namespace {

// Every layer takes `layer_us` to decode (any context), prefill = n x that.
using testing::Flat;

PlanInputs Inputs(double device_layer_us, double cloud_layer_us, double rtt_ms, double up_mbit_s) {
  PlanInputs in;
  in.device = Flat(8, device_layer_us);
  in.cloud = Flat(8, cloud_layer_us, 20);
  in.link.rtt_ms = rtt_ms;
  in.link.up_mbit_s = up_mbit_s;
  in.link.down_mbit_s = up_mbit_s;
  in.workload.activation_bytes = 3072;
  in.workload.max_context = 1024;
  return in;
}

TEST(CostModelTest, TimePerTokenFollowsTheFormula) {
  PlanInputs in = Inputs(1000, 100, 5, 8);  // 8 Mbit/s = 1 byte/us
  auto p = PredictAll(in);
  ASSERT_EQ(9u, p.size());
  // cut 3: device 1 + 3*1000 us; network 5 ms + (3072+128) B up + 128 B down at 1 B/us;
  // cloud 5*100 + 20 us.
  EXPECT_NEAR(3.001, p[3].device_ms, 1e-9);
  EXPECT_NEAR(5.0 + 3.2 + 0.128, p[3].network_ms, 1e-9);
  EXPECT_NEAR(0.52, p[3].cloud_ms, 1e-9);
  EXPECT_NEAR(p[3].device_ms + p[3].network_ms + p[3].cloud_ms, p[3].tpot_ms, 1e-9);
  // cut 8: everything local, head on the device, no network.
  EXPECT_NEAR((1 + 8 * 1000 + 100) / 1e3, p[8].tpot_ms, 1e-9);
  EXPECT_EQ(0, p[8].network_ms);
  // Memory grows with the cut: embedding + K layers + KV at max context.
  EXPECT_NEAR((4.0 * (1 << 20) + 3 * 10.0 * (1 << 20) + 3 * 1024.0 * 1024) / (1 << 20),
              p[3].memory_mb, 1e-9);
}

TEST(CostModelTest, LatencyPicksTheAnalyticOptimum) {
  // Fast link, slow device: as little as possible on the device.
  EXPECT_EQ(0, *ChooseCut(Inputs(1000, 100, 1, 1000)).chosen);
  // Same with a privacy floor: exactly the floor.
  PlanInputs floor = Inputs(1000, 100, 1, 1000);
  floor.constraints.privacy_floor = 3;
  EXPECT_EQ(3, *ChooseCut(floor).chosen);
  // A slow link costs more than running everything here.
  EXPECT_EQ(8, *ChooseCut(Inputs(1000, 100, 50, 1000)).chosen);
  // A cloud slower than the device: never split.
  EXPECT_EQ(8, *ChooseCut(Inputs(100, 1000, 0, 1e6)).chosen);
}

TEST(CostModelTest, EnergyAndCostObjectives) {
  PlanInputs in = Inputs(1000, 100, 1, 1000);
  in.objective = Objective::kEnergy;
  in.power.compute_w = 10;  // computing here is expensive
  in.power.wait_w = 0.01;
  EXPECT_EQ(0, *ChooseCut(in).chosen);
  in.power.compute_w = 0.01;  // waiting on the radio is expensive
  in.power.wait_w = 10;
  EXPECT_EQ(8, *ChooseCut(in).chosen);
  in.objective = Objective::kCost;  // the cloud costs money; the device is free
  EXPECT_EQ(8, *ChooseCut(in).chosen);
  in.cloud_usd_per_s = 0;  // free cloud: ties broken by latency
  EXPECT_EQ(0, *ChooseCut(in).chosen);
  in.objective = Objective::kWeighted;
  in.weights = {0, 0, 1};
  in.cloud_usd_per_s = 1;
  EXPECT_EQ(8, *ChooseCut(in).chosen);
}

TEST(CostModelTest, ConstraintsAreNeverViolated) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<double> u(0, 1);
  for (int i = 0; i < 2000; ++i) {
    PlanInputs in = Inputs(50 + 2000 * u(rng), 20 + 500 * u(rng), 100 * u(rng), 0.1 + 500 * u(rng));
    in.objective = static_cast<Objective>(i % 4);
    in.weights = {u(rng), u(rng), u(rng)};
    if (u(rng) < 0.5) in.constraints.memory_budget_mb = 4 + 100 * u(rng);
    if (u(rng) < 0.5) in.constraints.max_tpot_ms = 30 * u(rng);
    if (u(rng) < 0.3) in.constraints.max_ttft_ms = 3000 * u(rng);
    if (u(rng) < 0.3) in.constraints.max_energy_mj = 50 * u(rng);
    in.constraints.privacy_floor = static_cast<int>(9 * u(rng));
    const Plan plan = ChooseCut(in);
    if (!plan.chosen) {
      for (const auto& p : plan.cuts) ASSERT_FALSE(p.violations.empty());
      continue;
    }
    const Prediction& best = plan.cuts[*plan.chosen];
    ASSERT_TRUE(best.violations.empty());
    ASSERT_GE(best.cut, in.constraints.privacy_floor);
    if (in.constraints.max_tpot_ms) ASSERT_LE(best.tpot_ms, *in.constraints.max_tpot_ms);
    if (in.constraints.memory_budget_mb)
      ASSERT_LE(best.memory_mb, *in.constraints.memory_budget_mb);
    for (const auto& p : plan.cuts) {
      if (p.violations.empty()) ASSERT_LE(best.score, p.score);
    }
  }
}

TEST(CostModelTest, InfeasibleConfigurationsSayWhy) {
  PlanInputs in = Inputs(1000, 100, 1, 1000);
  in.constraints.max_tpot_ms = 0.5;
  Plan plan = ChooseCut(in);
  EXPECT_FALSE(plan.chosen.has_value());
  EXPECT_NE(std::string::npos,
            plan.reason.find("no cut meets max_tpot_ms (best any cut achieves: "))
      << plan.reason;
  in = Inputs(1000, 100, 1, 1000);
  in.constraints.privacy_floor = 9;
  plan = ChooseCut(in);
  EXPECT_NE(std::string::npos, plan.reason.find("privacy_floor exceeds the layer count"))
      << plan.reason;
  // Each alone is satisfiable, together not: memory allows only small cuts,
  // the latency SLO only cut 8.
  in = Inputs(1000, 100, 50, 1000);
  in.constraints.memory_budget_mb = 40;
  in.constraints.max_tpot_ms = 9;
  plan = ChooseCut(in);
  EXPECT_FALSE(plan.chosen.has_value());
  EXPECT_NE(std::string::npos, plan.reason.find("together rule out every cut")) << plan.reason;
}

TEST(CostModelTest, ABandwidthDropMovesTheCutTowardsTheDevice) {
  // A 2-layer privacy floor and a memory budget leave cuts 2..8 in play;
  // the uplink decides between the floor and everything local.
  int previous = -1;
  for (double mbit : {1000.0, 100.0, 10.0, 1.0, 0.1}) {
    PlanInputs in = Inputs(1000, 100, 2, mbit);
    in.constraints.privacy_floor = 2;
    const int cut = *ChooseCut(in).chosen;
    EXPECT_GE(cut, previous) << mbit << " Mbit/s";
    previous = cut;
  }
  EXPECT_EQ(8, previous);
  PlanInputs fast = Inputs(1000, 100, 2, 1000);
  fast.constraints.privacy_floor = 2;
  EXPECT_EQ(2, *ChooseCut(fast).chosen);
}

TEST(CostModelTest, MismatchedProfilesAreRefused) {
  PlanInputs in = Inputs(1000, 100, 1, 1000);
  in.cloud = Flat(6, 100);
  EXPECT_THROW(PredictAll(in), std::runtime_error);
}

TEST(ProfileTest, JsonRoundTripAndInterpolation) {
  ComputeProfile p = Flat(2, 100);
  p.decode_contexts = {10, 110};
  p.layer_decode_us = {{100, 200}, {100, 300}};
  p.hardware = "test";
  ComputeProfile q = ComputeProfile::FromJson(p.ToJson(), "x");
  EXPECT_EQ(p.layer_decode_us, q.layer_decode_us);
  EXPECT_DOUBLE_EQ(150, q.DecodeUs(0, 60));
  EXPECT_DOUBLE_EQ(400, q.DecodeUs(1, 160));  // extrapolated
  EXPECT_THROW(ComputeProfile::FromJson("{}", "bad.json"), std::runtime_error);
  EXPECT_THROW(ComputeProfile::FromJson("[1]", "bad.json"), std::runtime_error);
}

}  // namespace
}  // namespace splitlm::scheduler
