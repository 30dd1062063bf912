// Speculative decoding in the cost model: the expected tokens per round trip
// against hand-computed cases, the measured acceptance rate, batched steps
// from the profiles, and how the drafts and the cut respond to the link.
#include <gtest/gtest.h>

#include <random>

#include "scheduler/cost_model.h"
#include "scheduler/replanner.h"
#include "scheduler/speculation.h"
#include "tests/scheduler/synthetic_profiles.h"

namespace splitlm::scheduler {
namespace {

using testing::Flat;

// Flat profiles whose extra batch positions cost `fraction` of a decode step
// (prefill of n tokens = decode + (n - 1) x fraction x decode).
ComputeProfile CheapBatches(ComputeProfile p, double fraction) {
  for (int l = 0; l < p.num_layers; ++l) {
    const double d = p.layer_decode_us[l][0];
    p.layer_prefill_us[l] = {d, d + 999 * fraction * d};
  }
  return p;
}

PlanInputs Inputs(double device_layer_us, double cloud_layer_us, double rtt_ms, double mbit_s) {
  PlanInputs in;
  in.device = Flat(8, device_layer_us);
  in.cloud = Flat(8, cloud_layer_us, 20);
  in.link.rtt_ms = rtt_ms;
  in.link.up_mbit_s = in.link.down_mbit_s = mbit_s;
  in.workload.activation_bytes = 3072;
  in.workload.max_context = 1024;
  return in;
}

PlanInputs Speculative(PlanInputs in, double acceptance, int max_drafts = 8) {
  in.speculation.drafter = DrafterKind::kPromptLookup;
  in.speculation.acceptance = acceptance;
  in.speculation.max_drafts = max_drafts;
  return in;
}

TEST(SpeculationTest, ExpectedTokensPerRoundMatchesHandComputedCases) {
  for (int k = 0; k <= 8; ++k) {
    EXPECT_DOUBLE_EQ(1.0, ExpectedTokensPerRound(0.0, k)) << k;      // every draft rejected
    EXPECT_DOUBLE_EQ(k + 1.0, ExpectedTokensPerRound(1.0, k)) << k;  // every draft accepted
  }
  EXPECT_DOUBLE_EQ(1.0, ExpectedTokensPerRound(0.7, 0));
  EXPECT_DOUBLE_EQ(1.75, ExpectedTokensPerRound(0.5, 2));  // 1 + 0.5 + 0.25
  EXPECT_NEAR(1 + 0.9 + 0.81 + 0.729, ExpectedTokensPerRound(0.9, 3), 1e-12);
  EXPECT_DOUBLE_EQ(1.0, ExpectedTokensPerRound(-3, 4));  // clamped to [0, 1]
  EXPECT_DOUBLE_EQ(5.0, ExpectedTokensPerRound(7, 4));
}

TEST(SpeculationTest, DrafterNamesAndPriors) {
  EXPECT_EQ(DrafterKind::kPromptLookup, DrafterKindFromName("prompt-lookup"));
  EXPECT_EQ(DrafterKind::kEarlyExit, DrafterKindFromName("early-exit"));
  EXPECT_EQ(DrafterKind::kDraftModel, DrafterKindFromName("draft"));
  EXPECT_EQ(DrafterKind::kNone, DrafterKindFromName("off"));
  EXPECT_FALSE(DrafterKindFromName("oracle").has_value());
  Speculation s;
  s.drafter = DrafterKind::kPromptLookup;
  EXPECT_EQ(PriorAcceptance(DrafterKind::kPromptLookup), s.rate());
  s.acceptance = 0.8;
  EXPECT_EQ(0.8, s.rate());
}

TEST(SpeculationTest, AcceptanceCountsTriedPositionsNotDrafts) {
  AcceptanceEstimate e(/*decay=*/1.0);
  EXPECT_FALSE(e.rate().has_value());
  e.Observe(4, 2);  // two accepted, the third rejected (the fourth never tried)
  e.Observe(3, 3);  // all accepted: no rejection
  e.Observe(0, 0);  // no drafts: ignored
  e.Observe(2, 5);  // impossible: ignored
  EXPECT_EQ(2, e.rounds());
  EXPECT_DOUBLE_EQ(5.0 / 6.0, *e.rate());
  AcceptanceEstimate none(1.0);
  none.Observe(4, 0);
  EXPECT_DOUBLE_EQ(0.0, *none.rate());
  // With decay, recent rounds weigh more: after many rejections the rate falls.
  AcceptanceEstimate d(0.5);
  for (int i = 0; i < 10; ++i) d.Observe(4, 4);
  for (int i = 0; i < 10; ++i) d.Observe(4, 0);
  EXPECT_LT(*d.rate(), 0.01);
}

TEST(SpeculationTest, BatchedStepsComeFromThePrefillSlope) {
  ComputeProfile p = Flat(2, 100, 50, 2);
  p.prefill_lengths = {16, 128};
  p.layer_prefill_us = {{400, 1520}, {400, 8000}};  // slopes 10 and 67.86 us per position
  EXPECT_DOUBLE_EQ(p.StepUs(0, 2, 16, true, true), p.BatchStepUs(0, 2, 16, 1, true, true));
  EXPECT_DOUBLE_EQ(10, p.ExtraPositionUs(0, 16));
  EXPECT_NEAR((8000.0 - 400) / 112, p.ExtraPositionUs(1, 16), 1e-9);
  // 3 positions: embedding 3 x 2, layers 2 x 100 + 2 x (10 + 67.86), head 50 x (1 + 2 x mean
  // ratio).
  const double ratio = (10 / 100.0 + (7600.0 / 112) / 100.0) / 2;
  EXPECT_NEAR(6 + 200 + 2 * (10 + 7600.0 / 112) + 50 * (1 + 2 * ratio),
              p.BatchStepUs(0, 2, 16, 3, true, true), 1e-9);
  // An extra position never costs more than its own decode step.
  p.layer_prefill_us[1] = {400, 400 + 112 * 500};
  EXPECT_DOUBLE_EQ(100, p.ExtraPositionUs(1, 16));
}

TEST(SpeculationTest, SpeculativeCutFollowsTheFormula) {
  const PlanInputs in = Speculative(Inputs(1000, 100, 5, 8), 0.5);  // 8 Mbit/s = 1 byte/us
  const Prediction p = PredictCut(in, 3, 2);
  const double e = 1.75;
  // 3 positions: device 3 x 1 + 3 layers x 3 x 1000 us; cloud 5 x 3 x 100 + head 20 x 3 us;
  // up 3 x 3072 + 128 B, down 128 + 2 x 8 B, at 1 B/us.
  EXPECT_EQ(2, p.drafts);
  EXPECT_DOUBLE_EQ(e, p.tokens_per_round_trip);
  EXPECT_NEAR(9.003 / e, p.device_ms, 1e-9);
  EXPECT_NEAR(1.56 / e, p.cloud_ms, 1e-9);
  EXPECT_NEAR((5 + 9.344 + 0.144) / e, p.network_ms, 1e-9);
  EXPECT_NEAR(9344 / e, p.up_bytes, 1e-9);
  EXPECT_NEAR(p.device_ms + p.network_ms + p.cloud_ms, p.tpot_ms, 1e-9);
  // Everything local: no round trip to hide, so no drafts.
  EXPECT_EQ(0, PredictCut(in, 8, 4).drafts);
}

TEST(SpeculationTest, PlainSplitIsTheZeroDraftCase) {
  const PlanInputs plain = Inputs(1000, 100, 5, 8);
  // Acceptance 0: a draft never pays, so every cut keeps 0 drafts and is
  // predicted exactly as without speculation.
  const auto off = PredictAll(plain);
  const auto zero = PredictAll(Speculative(plain, 0.0));
  ASSERT_EQ(off.size(), zero.size());
  for (size_t k = 0; k < off.size(); ++k) {
    EXPECT_EQ(0, zero[k].drafts);
    EXPECT_EQ(off[k].tpot_ms, zero[k].tpot_ms);
    EXPECT_EQ(off[k].ttft_ms, zero[k].ttft_ms);
    EXPECT_EQ(off[k].energy_mj, zero[k].energy_mj);
    EXPECT_EQ(off[k].cloud_micro_usd, zero[k].cloud_micro_usd);
    EXPECT_EQ(off[k].memory_mb, zero[k].memory_mb);
    EXPECT_EQ(off[k].tpot_ms, zero[k].plain_tpot_ms);
    EXPECT_EQ(off[k].tpot_ms, PredictCut(Speculative(plain, 0.9), static_cast<int>(k), 0).tpot_ms);
  }
}

TEST(SpeculationTest, NeverPredictedWorseThanPlain) {
  std::mt19937 rng(16);
  std::uniform_real_distribution<double> u(0, 1);
  for (int i = 0; i < 500; ++i) {
    PlanInputs plain =
        Inputs(50 + 2000 * u(rng), 20 + 500 * u(rng), 100 * u(rng), 0.1 + 500 * u(rng));
    plain.device = CheapBatches(plain.device, u(rng));
    plain.cloud = CheapBatches(plain.cloud, u(rng));
    plain.objective = static_cast<Objective>(i % 4);
    plain.weights = {u(rng), u(rng), u(rng)};
    PlanInputs spec = Speculative(plain, u(rng), 1 + i % 8);
    spec.speculation.drafter = static_cast<DrafterKind>(1 + i % 3);
    spec.speculation.draft_model_us = 500 * u(rng);
    const auto a = PredictAll(plain), b = PredictAll(spec);
    for (size_t k = 0; k < a.size(); ++k) {
      ASSERT_LE(b[k].score, a[k].score) << "cut " << k << " case " << i;
      ASSERT_EQ(a[k].tpot_ms, b[k].plain_tpot_ms);
      ASSERT_LE(b[k].drafts, spec.speculation.max_drafts);
    }
    const Plan pa = ChooseCut(plain), pb = ChooseCut(spec);
    ASSERT_EQ(pa.chosen.has_value(), pb.chosen.has_value());
    if (pa.chosen) {
      ASSERT_LE(pb.cuts[*pb.chosen].score, pa.cuts[*pa.chosen].score);
    }
  }
}

TEST(SpeculationTest, LongerRoundTripsTakeMoreDraftsWhenAcceptanceIsHigh) {
  int previous = 0;
  for (double rtt : {0.1, 1.0, 5.0, 20.0, 50.0, 100.0, 300.0}) {
    PlanInputs in = Speculative(Inputs(1000, 100, rtt, 1000), 0.9, 16);
    const int drafts = PredictCut(in, 0, 0).drafts;  // plain, for reference
    EXPECT_EQ(0, drafts);
    const int chosen = PredictAll(in)[2].drafts;
    EXPECT_GE(chosen, previous) << rtt << " ms";
    previous = chosen;
  }
  EXPECT_GT(previous, 4);
  // Low acceptance: drafts hardly pay, even on a long round trip.
  EXPECT_LE(PredictAll(Speculative(Inputs(1000, 100, 300, 1000), 0.05, 16))[2].drafts, 1);
}

TEST(SpeculationTest, HighAcceptanceOnALongRoundTripMovesTheCutTowardsTheCloud) {
  PlanInputs plain = Inputs(1000, 100, 50, 1000);
  plain.device = CheapBatches(plain.device, 0.1);
  plain.cloud = CheapBatches(plain.cloud, 0.1);
  ASSERT_EQ(
      8, *ChooseCut(plain).chosen);  // plain: the round trip costs more than the whole model here
  const Plan spec = ChooseCut(Speculative(plain, 0.95));
  ASSERT_TRUE(spec.chosen.has_value());
  EXPECT_LT(*spec.chosen, 8);
  EXPECT_GT(spec.cuts[*spec.chosen].drafts, 0);
  EXPECT_GT(spec.cuts[*spec.chosen].tokens_per_round_trip, 2.0);
  EXPECT_NE(std::string::npos, spec.reason.find("speculative with")) << spec.reason;
  EXPECT_NE(std::string::npos, FormatPlan(spec, Objective::kLatency).find("tok/trip"));
  // Low acceptance: back on the device.
  EXPECT_EQ(8, *ChooseCut(Speculative(plain, 0.1)).chosen);
}

TEST(SpeculationTest, TheReplannerUsesTheMeasuredAcceptance) {
  PlanInputs in = Inputs(1000, 100, 50, 1000);
  in.device = CheapBatches(in.device, 0.1);
  in.cloud = CheapBatches(in.cloud, 0.1);
  in.speculation.drafter = DrafterKind::kPromptLookup;
  Replanner r(in, {0.0, 0});
  r.UpdateAcceptance(0.1);
  EXPECT_EQ(8, r.PlanRequest());
  r.UpdateAcceptance(0.95);
  EXPECT_LT(*r.PlanRequest(), 8);
  r.UpdateAcceptance(std::nullopt);  // back to the prior
  EXPECT_FALSE(r.inputs().speculation.acceptance.has_value());
}

}  // namespace
}  // namespace splitlm::scheduler
