// The sweep's logic without running the binary: the policies, the order of
// the runs (interleaved rounds on a fixed link), the oracle and the regret,
// and the per-policy summary (round trips, acceptance, energy).
#include <gtest/gtest.h>

#include <set>

#include "partition/model.h"
#include "scheduler/cost_model.h"
#include "sim/scenario.h"
#include "sim/stop_token.h"
#include "sim/sweep.h"
#include "sim/tally.h"
#include "tests/common/test_util.h"
#include "transport/error.h"
#include "transport/null_logger.h"

namespace splitlm::sim {
namespace {

RunResult Ms(double tpot_ms) {
  RunResult r;
  r.tpot_ms = tpot_ms;
  return r;
}

TEST(StopTokenTest, ARequestOnTheSourceReachesEveryTokenAndCopy) {
  const StopSource source;
  const StopToken token = source.GetToken(), copy = token;
  EXPECT_FALSE(StopToken().StopRequested());
  EXPECT_FALSE(token.StopRequested());
  const StopSource same = source;
  same.RequestStop();
  EXPECT_TRUE(token.StopRequested());
  EXPECT_TRUE(copy.StopRequested());
  EXPECT_FALSE(StopSource().GetToken().StopRequested()) << "another source is another request";
}

TEST(SweepPolicies, EveryCutThenAutoThenASpeculativePolicyPerSplitCut) {
  EXPECT_EQ((std::vector<std::string>{"0", "1", "2", "auto"}), SweepPolicies(2, false));
  EXPECT_EQ((std::vector<std::string>{"0", "1", "2", "auto", "0+spec", "1+spec"}),
            SweepPolicies(2, true));
  EXPECT_EQ((std::vector<std::string>{"2", "1", "auto", "1+spec"}), SweepPolicies(2, true, {2, 1}));
  EXPECT_THROW(SweepPolicies(2, false, {3}), std::runtime_error);
}

TEST(SweepSchedule, AFixedLinkInterleavesThePoliciesPromptByPrompt) {
  const std::vector<std::string> policies = {"0", "1", "auto"};
  const auto runs = SweepSchedule(policies, 3, /*scheduled=*/false);
  ASSERT_EQ(9u, runs.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    const size_t round = i / policies.size();
    EXPECT_EQ(round, runs[i].round);
    EXPECT_EQ(policies[i % policies.size()], runs[i].policy);
    EXPECT_EQ(round, runs[i].first);
    EXPECT_EQ(round + 1, runs[i].last);
    EXPECT_FALSE(runs[i].restart_link);
  }
}

TEST(SweepSchedule, AScheduledLinkRunsEachPolicyOverAllPromptsFromTheStart) {
  const auto runs = SweepSchedule({"0", "auto"}, 4, /*scheduled=*/true);
  ASSERT_EQ(2u, runs.size());
  for (const auto& r : runs) {
    EXPECT_EQ(0u, r.round);
    EXPECT_EQ(0u, r.first);
    EXPECT_EQ(4u, r.last);
    EXPECT_TRUE(r.restart_link);
  }
}

TEST(Oracle, IsTheFastestFixedCutWithoutSpeculationAndRegretIsRelativeToIt) {
  const std::map<std::string, RunResult> results = {{"0", Ms(30)},     {"1", Ms(20)},
                                                    {"2", Ms(25)},     {"auto", Ms(10)},
                                                    {"0+spec", Ms(5)}, {"1+spec", Ms(8)}};
  const Oracle oracle = BestFixedCut(results, 2);
  EXPECT_EQ(1, oracle.cut);
  EXPECT_EQ("1", oracle.policy);
  EXPECT_DOUBLE_EQ(20, oracle.ms_per_token);
  EXPECT_DOUBLE_EQ(0.5, Regret(30, oracle));
  EXPECT_DOUBLE_EQ(-0.5, Regret(10, oracle));
  EXPECT_DOUBLE_EQ(0, Regret(20, oracle));
  EXPECT_DOUBLE_EQ(0, Regret(20, Oracle{}));  // no oracle time: no regret
  const Oracle spec = FastestPolicy(
      results, 2, [](const std::string& p) { return p.find('+') != std::string::npos; });
  EXPECT_EQ(0, spec.cut);
  EXPECT_EQ("0+spec", spec.policy);
  EXPECT_EQ(-1, BestFixedCut({{"auto", Ms(1)}}, 2).cut);
}

TEST(ParsePolicy, NamesCutsAutoAndTheSpeculativeSuffix) {
  EXPECT_EQ(3, ParsePolicy("device", 3).cut);
  EXPECT_EQ(0, ParsePolicy("cloud", 3).cut);
  EXPECT_TRUE(ParsePolicy("auto", 3).automatic);
  const Policy p = ParsePolicy("2+spec", 3);
  EXPECT_EQ(2, p.cut);
  EXPECT_TRUE(p.speculative);
  EXPECT_FALSE(p.automatic);
  EXPECT_TRUE(ParsePolicy("auto+spec", 3).speculative);
  for (const char* bad : {"4", "-1", "fast", "2+", "+spec", "2+specx", ""}) {
    try {
      ParsePolicy(bad, 3);
      ADD_FAILURE() << bad;
    } catch (const std::runtime_error& e) {
      EXPECT_NE(std::string::npos,
                std::string(e.what()).find("expected auto, device, cloud or a cut 0..3"))
          << e.what();
    }
  }
}

TEST(Summarize, CountsRoundTripsPerGeneratedTokenAndTheAcceptanceRate) {
  Tally t;
  t.generated = 40;
  t.tokens = 40;
  t.steps = 10;
  t.drafted = 60;
  t.accepted = 30;
  t.tpot = {3, 1, 2};
  t.agree = t.total = 40;
  const RunResult r = Summarize("1+spec", t, 1, scheduler::PlanInputs{});
  EXPECT_DOUBLE_EQ(0.25, r.round_trips_per_token);
  EXPECT_DOUBLE_EQ(0.5, r.acceptance_rate);
  EXPECT_DOUBLE_EQ(2, r.tpot_ms);
  EXPECT_DOUBLE_EQ(2, r.tpot_mean_ms);
  EXPECT_DOUBLE_EQ(1, r.agreement);
  EXPECT_EQ(1, r.mode_cut);  // no token recorded at a cut: the policy's
  const RunResult none = Summarize("1", Tally{}, 1, scheduler::PlanInputs{});
  EXPECT_DOUBLE_EQ(0, none.round_trips_per_token);
  EXPECT_DOUBLE_EQ(0, none.acceptance_rate);
}

TEST(Summarize, EnergyIsTheCostModelsFormulaWithAHeaderEachWayPerRoundTrip) {
  Tally t;
  t.tokens = 10;
  t.steps = 10;
  t.bytes = 5000;
  t.compute_s = 0.2;
  t.wait_s = 0.3;
  scheduler::PlanInputs plan;
  const double header = plan.workload.header_bytes;
  const double joules =
      scheduler::DeviceEnergyJ(plan.power, plan.link, 0.2, 5000 + 10 * header, 10 * header, 0.3);
  EXPECT_DOUBLE_EQ(joules * 1e3 / 10, Summarize("1", t, 1, plan).energy_mj_per_token);
  // Each part counts: more bytes, more compute or more waiting cost more.
  Tally more = t;
  more.bytes *= 2;
  EXPECT_GT(Summarize("1", more, 1, plan).energy_mj_per_token,
            Summarize("1", t, 1, plan).energy_mj_per_token);
  more = t;
  more.wait_s *= 2;
  EXPECT_GT(Summarize("1", more, 1, plan).energy_mj_per_token,
            Summarize("1", t, 1, plan).energy_mj_per_token);
}

// The message of what `conditions` throws ("" if nothing), checking it is
// an Exception with `code`.
std::string CheckError(Workbench& bench, const std::vector<Settings>& conditions,
                       Exception::Code code) {
  try {
    CheckConditions(bench, conditions);
  } catch (const Exception& e) {
    EXPECT_EQ(code, e.code()) << e.what();
    return e.what();
  }
  return "";
}

TEST(CheckConditions, FindsAMistakeInAnyConditionBeforeTheFirstRun) {
  testing::TempDir dir;
  const auto model = partition::Model::Open(testing::MakeModel(dir.Sub("tiny")));
  Workbench bench{model.get(), dir.path(), transport::NullLogger(), {}, {}};
  Settings good;
  good.name = "good";
  good.prompts = 1;
  good.prompt_tokens = 4;
  good.tokens = 3;
  EXPECT_EQ("", CheckError(bench, {good}, Exception::kInternal));
  EXPECT_EQ(1u, bench.references.size()) << "the reference is made while checking";

  Settings bad_cut = good;
  bad_cut.name = "bad-cut";
  bad_cut.cuts = {99};
  EXPECT_NE("", CheckError(bench, {good, bad_cut}, Exception::kInvalidArgument));
  Settings bad_drafter = good;
  bad_drafter.name = "bad-drafter";
  bad_drafter.speculate = "magic";
  EXPECT_NE(std::string::npos, CheckError(bench, {good, bad_drafter}, Exception::kInvalidArgument)
                                   .find("bad-drafter: speculate: unknown drafter \"magic\""));
  Settings bad_trace = good;
  bad_trace.name = "bad-trace";
  bad_trace.trace = dir.Sub("no-such-trace.csv");
  EXPECT_NE(std::string::npos,
            CheckError(bench, {good, bad_trace}, Exception::kNotFound).find("no-such-trace.csv"));
  Settings bad_device = good;
  bad_device.name = "bad-device";
  bad_device.device = "no-such-phone";
  EXPECT_NE(std::string::npos,
            CheckError(bench, {bad_device}, Exception::kNotFound).find("no-such-phone"));
  Settings long_prompt = good;
  long_prompt.name = "long-prompt";
  long_prompt.prompt_tokens = model->config().max_context;
  EXPECT_NE("", CheckError(bench, {long_prompt}, Exception::kInvalidArgument));
}

TEST(Percentile, NearestRank) {
  EXPECT_DOUBLE_EQ(0, Percentile({}, 0.5));
  EXPECT_DOUBLE_EQ(2, Percentile({3, 1, 2}, 0.5));
  EXPECT_DOUBLE_EQ(3, Percentile({3, 1, 2}, 0.95));
}

}  // namespace
}  // namespace splitlm::sim
