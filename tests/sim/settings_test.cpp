// Scenario and sweep files: conditions inherit [sim], paths resolve against
// the file's folder, and every bad value is named with its file and line.
#include <gtest/gtest.h>

#include <fstream>

#include "sim/settings.h"
#include "tests/common/test_util.h"

namespace splitlm::sim {
namespace {

std::string Write(const testing::TempDir& dir, const std::string& text) {
  const std::string path = dir.Sub("s.toml");
  std::ofstream(path) << text;
  return path;
}

std::string ErrorOf(const std::string& file, bool sweep) {
  std::vector<Settings> conditions;
  try {
    ReadSimFile(file, sweep ? &conditions : nullptr);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

TEST(ReadSimFile, ConditionsInheritTheSimTableAndOverrideItsKeys) {
  testing::TempDir dir;
  const std::string file =
      Write(dir,
            "[sim]\nmodel = \"m\"\ntokens = 8\nrtt_ms = 20\nspeculate = \"prompt-lookup:4\"\n"
            "[[condition]]\nname = \"a\"\n"
            "[[condition]]\nname = \"b\"\nrtt_ms = 80\noutages = [\"1:2:cut\"]\ntemperature = 0.8\n"
            "cuts = [0, 2]\n");
  std::vector<Settings> conditions;
  const Settings base = ReadSimFile(file, &conditions);
  EXPECT_EQ(dir.Sub("m"), base.model);
  ASSERT_EQ(2u, conditions.size());
  EXPECT_EQ("a", conditions[0].name);
  EXPECT_EQ(8, conditions[0].tokens);
  EXPECT_DOUBLE_EQ(10, conditions[0].link.delay_ms);
  EXPECT_FALSE(conditions[0].scheduled());
  EXPECT_EQ("prompt-lookup:4", conditions[1].speculate);
  EXPECT_DOUBLE_EQ(40, conditions[1].link.delay_ms);
  ASSERT_EQ(1u, conditions[1].outages.size());
  EXPECT_TRUE(conditions[1].outages[0].cut);
  EXPECT_TRUE(conditions[1].scheduled());
  EXPECT_DOUBLE_EQ(0, conditions[0].temperature);
  EXPECT_DOUBLE_EQ(0.8, conditions[1].temperature);
  EXPECT_EQ((std::vector<int>{0, 2}), conditions[1].cuts);
  EXPECT_TRUE(conditions[0].cuts.empty());
}

TEST(ReadSimFile, NamesTheFileLineAndKeyOfEveryBadValue) {
  testing::TempDir dir;
  EXPECT_EQ(dir.Sub("s.toml") + ":2: turbo: unknown key in [sim] (see docs/simulation.md)",
            ErrorOf(Write(dir, "[sim]\nturbo = 1\n"), false));
  EXPECT_EQ(dir.Sub("s.toml") + ":2: tokens: expected a number",
            ErrorOf(Write(dir, "[sim]\ntokens = \"x\"\n"), false));
  EXPECT_EQ(
      dir.Sub("s.toml") +
          ":2: outages: outage \"3:2\": expected START:END[:cut] in seconds with END > START >= 0",
      ErrorOf(Write(dir, "[sim]\noutages = [\"3:2\"]\n"), false));
  EXPECT_EQ(dir.Sub("s.toml") + ": a sweep needs [[condition]] tables",
            ErrorOf(Write(dir, "[sim]\n"), true));
  EXPECT_EQ(
      dir.Sub("s.toml") + ":3: name: \"a\" used twice",
      ErrorOf(Write(dir, "[[condition]]\nname = \"a\"\n[[condition]]\nname = \"a\"\n"), true));
  EXPECT_EQ(
      dir.Sub("s.toml") + ":2: model: unknown key in a [[condition]] (see docs/simulation.md)",
      ErrorOf(Write(dir, "[[condition]]\nmodel = \"m\"\nname = \"a\"\n"), true));
  EXPECT_NE(std::string::npos, ErrorOf(Write(dir, "[sim]\nlink_type = \"carrier-pigeon\"\n"), false)
                                   .find(":2: link_type: "));
}

}  // namespace
}  // namespace splitlm::sim
