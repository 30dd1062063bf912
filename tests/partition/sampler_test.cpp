#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "partition/sampler.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

std::vector<float> Logits() { return {0.1f, 2.0f, -1.0f, 1.5f, 1.9f, 0.0f}; }

TEST(SamplerTest, GreedyTakesTheArgmaxAndTheLowestIdOnTies) {
  auto l = Logits();
  EXPECT_EQ(1, SampleToken(l.data(), 6, {}, 0));
  std::vector<float> tie = {1.0f, 3.0f, 3.0f};
  EXPECT_EQ(1, SampleToken(tie.data(), 3, {}, 0));
  std::vector<float> nan = {NAN, 1.0f, 0.5f};
  EXPECT_EQ(1, SampleToken(nan.data(), 3, {}, 0));
}

TEST(SamplerTest, SameSeedAndPositionSameToken) {
  auto l = Logits();
  SamplingParams p{1.0f, 0, 1.0f, 42};
  std::vector<int> a, b;
  for (int pos = 0; pos < 200; ++pos) a.push_back(SampleToken(l.data(), 6, p, pos));
  for (int pos = 0; pos < 200; ++pos) b.push_back(SampleToken(l.data(), 6, p, pos));
  EXPECT_EQ(a, b);
  p.seed = 43;
  std::vector<int> c;
  for (int pos = 0; pos < 200; ++pos) c.push_back(SampleToken(l.data(), 6, p, pos));
  EXPECT_NE(a, c);
}

TEST(SamplerTest, TopKAndTopPRestrictTheCandidates) {
  auto l = Logits();
  for (int pos = 0; pos < 300; ++pos) {
    EXPECT_EQ(1, SampleToken(l.data(), 6, {1.0f, 1, 1.0f, 9}, pos));
    int t = SampleToken(l.data(), 6, {1.0f, 2, 1.0f, 9}, pos);
    EXPECT_TRUE(t == 1 || t == 4) << t;
    EXPECT_EQ(1, SampleToken(l.data(), 6, {1.0f, 0, 1e-6f, 9}, pos));
  }
}

TEST(SamplerTest, FrequenciesFollowTheSoftmax) {
  std::vector<float> l = {0.0f, std::log(3.0f)};  // p = 0.25, 0.75
  int ones = 0;
  const int n = 20000;
  for (int pos = 0; pos < n; ++pos) ones += SampleToken(l.data(), 2, {1.0f, 0, 1.0f, 1}, pos);
  EXPECT_NEAR(0.75, static_cast<double>(ones) / n, 0.02);
}

TEST(SamplerTest, RejectsBadParameters) {
  EXPECT_THROW(ValidateSamplingParams({1.0f, -1, 1.0f, 0}), Exception);
  EXPECT_THROW(ValidateSamplingParams({1.0f, 0, 0.0f, 0}), Exception);
  EXPECT_THROW(ValidateSamplingParams({1.0f, 0, 1.5f, 0}), Exception);
  EXPECT_THROW(ValidateSamplingParams({NAN, 0, 1.0f, 0}), Exception);
  EXPECT_NO_THROW(ValidateSamplingParams({0.7f, 40, 0.9f, 0}));
}

}  // namespace
}  // namespace splitlm::partition
