// The TOML configuration: every bad value is named by file, line and key;
// the examples parse; docs/config.md matches the schema; flags override.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <nlohmann/json.hpp>

#include <fstream>
#include <sstream>

#include "scheduler/config.h"
#include "scheduler/cost_model.h"
#include "tests/common/test_util.h"
#include "transport/error.h"

namespace splitlm::scheduler {
namespace {

std::string ErrorOf(const std::string& text) {
  try {
    Config::Parse(text, "dev.toml");
  } catch (const Exception& e) {
    return e.what();
  }
  return "";
}

TEST(ConfigTest, ParsesValuesOfEveryType) {
  Config c = Config::Parse(
      "[device]\ncut = 3\nfallback = \"wait\"\n[cloud]\nkv_budget_mb = 1.5\ninsecure = "
      "true\nmax_batch = 8\n",
      "x");
  EXPECT_EQ(3, c.Int("device.cut"));
  EXPECT_EQ("wait", c.String("device.fallback"));
  EXPECT_DOUBLE_EQ(1.5, *c.Float("cloud.kv_budget_mb"));
  EXPECT_EQ(true, c.Bool("cloud.insecure"));
  EXPECT_DOUBLE_EQ(8.0, *c.Float("cloud.max_batch"));  // integers read as numbers too
  EXPECT_FALSE(c.Int("device.retry_ms").has_value());
}

TEST(ConfigTest, ErrorsNameFileLineAndKey) {
  EXPECT_EQ("dev.toml:3: device.cutt: unknown key (see docs/config.md)",
            ErrorOf("[device]\ncut = 1\ncutt = 2\n"));
  EXPECT_EQ("dev.toml:2: device.cut: expected an integer", ErrorOf("[device]\ncut = \"four\"\n"));
  EXPECT_EQ("dev.toml:2: device.cut: -1 is outside 0..4096", ErrorOf("[device]\ncut = -1\n"));
  EXPECT_EQ("dev.toml:2: device.fallback: \"sometimes\" is not one of local, wait, fail",
            ErrorOf("[device]\nfallback = \"sometimes\"\n"));
  EXPECT_EQ("dev.toml:1: cut: expected a [cut] section, not a value", ErrorOf("cut = 3\n"));
  EXPECT_NE(std::string::npos, ErrorOf("[device\ncut = 3\n").find("dev.toml:1: "));
  EXPECT_EQ("dev.toml:2: cloud.insecure: expected true or false",
            ErrorOf("[cloud]\ninsecure = 1\n"));
  EXPECT_THROW(Config::Load("/nonexistent.toml"), Exception);
}

TEST(ConfigTest, ADeviceOrAFifoAsTheConfigFileIsRefusedWithoutReadingIt) {
  auto load_error = [](const std::string& path) -> std::string {
    try {
      Config::Load(path);
    } catch (const Exception& e) {
      return e.what();
    }
    return "";
  };
  EXPECT_EQ("/dev/zero: not a regular file (a character device)", load_error("/dev/zero"));
  testing::TempDir dir;
  ASSERT_EQ(0, ::mkfifo(dir.Sub("fifo").c_str(), 0600));
  EXPECT_EQ(dir.Sub("fifo") + ": not a regular file (a FIFO)", load_error(dir.Sub("fifo")));
}

TEST(ConfigTest, FlagTextIsCheckedByTheRuleOfTheFile) {
  const KeySpec& kv = SchemaKey("cloud.kv_budget_mb");
  EXPECT_EQ("", CheckText(kv, "0.5"));
  EXPECT_EQ("nan is not a finite number", CheckText(kv, "nan"));
  EXPECT_EQ("inf is not a finite number", CheckText(kv, "inf"));
  EXPECT_EQ("1e-09 is outside 0.001..1000000000000", CheckText(kv, "1e-9"));
  EXPECT_EQ("\"12x\" is not a number", CheckText(kv, "12x"));
  EXPECT_EQ("-1 is outside 0..4096", CheckText(SchemaKey("device.cut"), "-1"));
  EXPECT_EQ("\"1.5\" is not an integer", CheckText(SchemaKey("device.cut"), "1.5"));
  EXPECT_EQ("\"sometimes\" is not one of local, wait, fail",
            CheckText(SchemaKey("device.fallback"), "sometimes"));
  EXPECT_EQ("\"yes\" is not true or false", CheckText(SchemaKey("cloud.insecure"), "yes"));
  // The file's values get the same reasons.
  EXPECT_EQ("dev.toml:2: cloud.kv_budget_mb: nan is not a finite number",
            ErrorOf("[cloud]\nkv_budget_mb = nan\n"));
  EXPECT_EQ("dev.toml:2: cloud.kv_budget_mb: 1e-09 is outside 0.001..1000000000000",
            ErrorOf("[cloud]\nkv_budget_mb = 1e-9\n"));
  EXPECT_THROW(SchemaKey("cloud.turbo"), Exception);
}

TEST(ConfigTest, FlagsOverrideTheFile) {
  Config c = Config::Parse("[device]\ncut = 3\n", "x");
  int cut = 1;
  FillFromConfig(c, "device.cut", /*flag_given=*/true, cut);
  EXPECT_EQ(1, cut);
  FillFromConfig(c, "device.cut", /*flag_given=*/false, cut);
  EXPECT_EQ(3, cut);
  std::string codec = "f32";
  FillFromConfig(c, "device.codec", false, codec);  // absent: default kept
  EXPECT_EQ("f32", codec);
}

TEST(ConfigTest, ExamplesParseAndDocsMatchTheSchema) {
  for (const char* f : {"examples/configs/cloud.toml", "examples/configs/device.toml",
                        "examples/configs/plan.toml"}) {
    EXPECT_NO_THROW(Config::Load(std::string(SPLITLM_SOURCE_DIR) + "/" + f)) << f;
  }
  std::ifstream in(std::string(SPLITLM_SOURCE_DIR) + "/docs/config.md");
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_NE(std::string::npos, ss.str().find(ConfigMarkdown()))
      << "docs/config.md is out of date: regenerate its table with `splitlm config-keys`";
}

TEST(ConfigCli, BinariesReadTheFileAndFlagsWin) {
  testing::TempDir dir;
  const std::string model = dir.Sub("m");
  ASSERT_EQ(0, testing::RunCommand(testing::BinPath("splitlm") +
                                   " make-model --preset tiny --out " + model)
                   .exit_code);
  std::ofstream(dir.Sub("d.toml"))
      << "[model]\ndir = \"" << model << "\"\nthreads = 1\n[device]\ncut = 9\n";
  auto r = testing::RunCommand(testing::BinPath("splitlm-device") + " --config " +
                               dir.Sub("d.toml") + " generate --prompt-ids 1 --max-tokens 2");
  EXPECT_NE(0, r.exit_code);
  EXPECT_NE(std::string::npos, r.err.find("cut 9 is out of range")) << r.err;
  r = testing::RunCommand(testing::BinPath("splitlm-device") + " --config " + dir.Sub("d.toml") +
                          " --cut 4 generate --prompt-ids 1 --max-tokens 2 --print-ids");
  EXPECT_EQ(0, r.exit_code) << r.err;
  std::ofstream(dir.Sub("bad.toml")) << "[cloud]\nmin_cut = 1\nbogus = 2\n";
  r = testing::RunCommand(testing::BinPath("splitlm-cloud") + " --model " + model + " --config " +
                          dir.Sub("bad.toml"));
  EXPECT_NE(0, r.exit_code);
  EXPECT_NE(std::string::npos, r.err.find("bad.toml:3: cloud.bogus: unknown key")) << r.err;
}

}  // namespace
}  // namespace splitlm::scheduler

namespace splitlm::scheduler {
namespace {

TEST(PlanCli, PrintsEveryCutAndTheChoiceOrWhyNone) {
  testing::TempDir dir;
  const std::string model = dir.Sub("m");
  ASSERT_EQ(0, testing::RunCommand(testing::BinPath("splitlm") +
                                   " make-model --preset tiny --out " + model)
                   .exit_code);
  std::ofstream(dir.Sub("p.toml"))
      << "[model]\ndir = \"" << model << "\"\n[scheduler]\nprivacy_floor = 2\n"
      << "device_profile = \"" << dir.Sub("dev.json") << "\"\n[link]\nrtt_ms = 1000\n";
  auto r = testing::RunCommand(testing::BinPath("splitlm") + " plan --threads 1 --json --config " +
                               dir.Sub("p.toml"));
  ASSERT_EQ(0, r.exit_code) << r.err;
  EXPECT_NE(std::string::npos, r.out.find("\"chosen\":4")) << r.out;  // a 1 s RTT: all local
  EXPECT_NE(std::string::npos, r.out.find("\"violations\":[\"privacy_floor 2\"]")) << r.out;
  EXPECT_NE(std::string::npos, r.err.find("measured and cached the device profile")) << r.err;
  // The cached profile is reused on the next run.
  r = testing::RunCommand(testing::BinPath("splitlm") + " plan --threads 1 --config " +
                          dir.Sub("p.toml"));
  EXPECT_EQ(std::string::npos, r.err.find("measured and cached")) << r.err;
  EXPECT_NE(std::string::npos, r.out.find("objective latency: cut 4 has the lowest latency score"))
      << r.out;
  std::ofstream(dir.Sub("q.toml"))
      << "[model]\ndir = \"" << model << "\"\n[scheduler]\nmax_tpot_ms = 0.000001\n"
      << "device_profile = \"" << dir.Sub("dev.json") << "\"\n";
  r = testing::RunCommand(testing::BinPath("splitlm") + " plan --threads 1 --config " +
                          dir.Sub("q.toml"));
  EXPECT_EQ(3, r.exit_code);
  EXPECT_NE(std::string::npos, r.out.find("no cut is feasible: no cut meets max_tpot_ms")) << r.out;
}

}  // namespace
}  // namespace splitlm::scheduler

namespace splitlm::scheduler {
namespace {

// bench-plan's report: every cut, measured through a real worker on loopback
// in rounds, next to the cost model's prediction, the median error over the
// rounds and the measurement's spread (interquartile range / median). How
// close they are is a benchmark figure (`splitlm bench-plan`, docs/scheduler.md),
// not a pass/fail one: it depends on how busy this machine is.
TEST(BenchPlan, ReportsPredictedAndMeasuredTimePerTokenAtEveryCut) {
  testing::TempDir dir;
  const std::string model = dir.Sub("m");
  ASSERT_EQ(0, testing::RunCommand(testing::BinPath("splitlm") +
                                   " make-model --preset small --seed 2 --out " + model)
                   .exit_code);
  auto r = testing::RunCommand(
      testing::BinPath("splitlm") +
      " bench-plan --threads 1 --json --tokens 16 --rounds 2 --log-level warn --model " + model);
  ASSERT_EQ(0, r.exit_code) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  ASSERT_EQ(9u, j["cuts"].size());
  for (size_t cut = 0; cut < j["cuts"].size(); ++cut) {
    const auto& row = j["cuts"][cut];
    EXPECT_EQ(cut, row["cut"].get<size_t>());
    const double predicted = row["predicted_ms"].get<double>();
    EXPECT_TRUE(std::isfinite(predicted) && predicted > 0) << row.dump();
    // Two rounds: the median of two is their mean, for the time, the error
    // and the interquartile range alike.
    const auto rounds = row["measured_rounds_ms"].get<std::vector<double>>();
    ASSERT_EQ(2u, rounds.size()) << row.dump();
    for (double m : rounds) EXPECT_TRUE(std::isfinite(m) && m > 0) << row.dump();
    const double median = (rounds[0] + rounds[1]) / 2;
    EXPECT_NEAR(median, row["measured_ms"].get<double>(), 1e-9) << row.dump();
    EXPECT_NEAR((std::fabs(predicted / rounds[0] - 1) + std::fabs(predicted / rounds[1] - 1)) / 2,
                row["median_abs_error"].get<double>(), 1e-9)
        << row.dump();
    EXPECT_NEAR(std::fabs(rounds[0] - rounds[1]) / 2 / median, row["measured_spread"].get<double>(),
                1e-9)
        << row.dump();
  }
  EXPECT_EQ(1, j["threads"].get<int>());
  EXPECT_EQ(2, j["rounds"].get<int>());
}

TEST(ConfigTest, LinkTypeAndHardwareProfileSetTheEnergyFigures) {
  // examples/configs/plan.toml: an LTE radio and a mid-range phone's power, the profile path
  // relative to the file.
  const Config c = Config::Load(std::string(SPLITLM_SOURCE_DIR) + "/examples/configs/plan.toml");
  PlanInputs in;
  ApplyPlanConfig(c, in);
  Link lte;
  ApplyRadioPreset("lte", lte);
  EXPECT_DOUBLE_EQ(lte.tx_nj_per_byte, in.link.tx_nj_per_byte);
  EXPECT_DOUBLE_EQ(lte.radio_w, in.link.radio_w);
  EXPECT_DOUBLE_EQ(3.5, in.power.compute_w);
  EXPECT_DOUBLE_EQ(0.6, in.power.wait_w);
  EXPECT_EQ(1, in.constraints.privacy_floor);
  // An explicit figure overrides the preset; a missing profile is an error naming it.
  const Config o = Config::Parse(
      "[link]\ntype = \"3g\"\ntx_nj_per_byte = 7\n[power]\nhardware = \"/nope.toml\"\n", "x.toml");
  PlanInputs in2;
  EXPECT_THROW(ApplyPlanConfig(o, in2), std::runtime_error);
  const Config o2 = Config::Parse("[link]\ntype = \"3g\"\ntx_nj_per_byte = 7\n", "x.toml");
  ApplyPlanConfig(o2, in2);
  EXPECT_DOUBLE_EQ(7, in2.link.tx_nj_per_byte);
  EXPECT_DOUBLE_EQ(122.12 * 8, in2.link.rx_nj_per_byte);
}

}  // namespace
}  // namespace splitlm::scheduler
