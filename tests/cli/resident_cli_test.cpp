// `splitlm resident` as a user runs it: a device stage's figures as JSON, and
// a cut past the model is an error.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "tests/common/test_util.h"

namespace splitlm {
namespace {

using testing::BinPath;
using testing::RunCommand;

TEST(ResidentCli, ReportsADeviceStagesMemory) {
  REQUIRE_SHARED(gguf, "gguf/stories260K-f32.gguf");
  auto r = RunCommand(BinPath("splitlm") + " --log-level warn resident --model " + gguf +
                      " --cut 2 --steps 2 --json");
  ASSERT_EQ(0, r.exit_code) << r.err;
  const auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(2, j["cut"]);
  EXPECT_EQ(5, j["layers"]);
  EXPECT_EQ("embed:f32 0-1:f32", j["held"]);
  EXPECT_GT(j["stage_bytes"].get<double>(), 0);
  EXPECT_EQ(0, j["file_mapped_rss"]);  // released once copied
  EXPECT_GE(j["rss"].get<double>(), j["rss_after_open"].get<double>());
  auto bad = RunCommand(BinPath("splitlm") + " resident --model " + gguf + " --cut 9");
  EXPECT_NE(0, bad.exit_code);
  EXPECT_NE(std::string::npos, bad.err.find("--cut 9 is past the model's 5 layers")) << bad.err;
}

}  // namespace
}  // namespace splitlm
