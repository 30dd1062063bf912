// Speculative decoding across the split (protocol 1.4): whatever the drafts,
// the tokens are exactly those of a local run without them, at every cut,
// for every number of drafts, greedy and sampled, and through a fallback.
#include <gtest/gtest.h>

#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <thread>

#include "cloud/speculation.h"
#include "cloud/worker.h"
#include "device/agent.h"
#include "device/drafter.h"
#include "partition/model.h"
#include "tests/common/test_util.h"

namespace splitlm {
namespace {

std::shared_ptr<spdlog::logger> NullLog() {
  return std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::null_sink_mt>());
}

// Drafts from a known continuation of the prompt: exactly it (every draft
// accepted), or each token shifted by one (every draft rejected).
class ScriptedDrafter : public device::Drafter {
 public:
  ScriptedDrafter(std::vector<int32_t> sequence, int shift, int vocab)
      : sequence_(std::move(sequence)), shift_(shift), vocab_(vocab) {}
  std::string name() const override { return "scripted"; }
  std::vector<int32_t> Propose(const std::vector<int32_t>& ids, int k) const override {
    std::vector<int32_t> out;
    for (size_t i = ids.size(); i < sequence_.size() && static_cast<int>(out.size()) < k; ++i) {
      out.push_back((sequence_[i] + shift_) % vocab_);
    }
    return out;
  }

 private:
  std::vector<int32_t> sequence_;
  int shift_, vocab_;
};

class SpeculativeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = partition::Model::Open(testing::MakeModel(dir_.Sub("tiny")));
    cloud::WorkerOptions o;
    o.server.bind = "tcp://127.0.0.1:*";
    o.server.log = NullLog();
    o.log = NullLog();
    worker_ = std::make_unique<cloud::Worker>(*model_, o, ctx_, cloud_metrics_);
    thread_ = std::thread([this] { worker_->Run(stop_); });
  }
  void TearDown() override {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int layers() const { return model_->config().num_layers; }
  device::AgentOptions Options(int cut, std::shared_ptr<const device::Drafter> drafter, int max_drafts) {
    device::AgentOptions o;
    o.cut = cut;
    o.fallback = device::Fallback::kFail;  // any failure would show
    o.channel.endpoint = worker_->endpoint();
    o.log = NullLog();
    o.drafter = std::move(drafter);
    o.max_drafts = max_drafts;
    return o;
  }
  device::GenerateResult Run(const device::AgentOptions& o, const device::GenerateRequest& r) {
    transport::Metrics m;
    device::Agent agent(*model_, o, ctx_, m);
    return agent.Generate(r);
  }
  // The reference: everything on the device, no drafts.
  std::vector<int32_t> Local(const device::GenerateRequest& r) {
    return Run(Options(layers(), nullptr, 1), r).tokens;
  }
  std::vector<int32_t> Concat(std::vector<int32_t> a, const std::vector<int32_t>& b) {
    a.insert(a.end(), b.begin(), b.end());
    return a;
  }

  testing::TempDir dir_;
  std::unique_ptr<partition::Model> model_;
  zmq::context_t ctx_;
  transport::Metrics cloud_metrics_;
  std::unique_ptr<cloud::Worker> worker_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Round trips for `tokens` tokens when every draft is accepted: the prompt's
// step, then the drafts (as DraftLength grows them, never past the end) and
// one more token per step.
int StepsWhenAllAccepted(int tokens, int max_drafts) {
  device::DraftLength length(max_drafts);
  int steps = 1;
  for (int left = tokens - 1; left > 0; ++steps) {
    const int d = std::min(length.k(), left - 1);
    if (d > 0) length.Observe(d, d);
    left -= d + 1;
  }
  return steps;
}

TEST_F(SpeculativeTest, GreedyTokensEqualALocalRunAtEveryCutForEveryDrafterAndK) {
  const device::GenerateRequest req{{1, 7, 3, 7, 3, 9}, 24, {}, false};
  const auto want = Local(req);
  const int vocab = model_->config().vocab_size;
  const auto all_good = std::make_shared<ScriptedDrafter>(Concat(req.prompt, want), 0, vocab);
  const auto all_bad = std::make_shared<ScriptedDrafter>(Concat(req.prompt, want), 1, vocab);
  const auto lookup = std::make_shared<device::PromptLookupDrafter>();
  for (int cut = 0; cut < layers(); ++cut) {
    for (int k = 1; k <= device::kMaxDraftsPerStep; ++k) {
      SCOPED_TRACE("cut " + std::to_string(cut) + ", k " + std::to_string(k));
      const auto good = Run(Options(cut, all_good, k), req);
      EXPECT_EQ(want, good.tokens);
      EXPECT_GT(good.drafted, 0);
      EXPECT_EQ(good.drafted, good.accepted) << "every scripted draft is the local run's token";
      // The first step carries the prompt; then as many tokens per round
      // trip as the adapting draft length allows, plus one.
      EXPECT_EQ(StepsWhenAllAccepted(static_cast<int>(want.size()), k), good.cloud_steps);
      const auto bad = Run(Options(cut, all_bad, k), req);
      EXPECT_EQ(want, bad.tokens);
      EXPECT_GT(bad.drafted, 0);
      EXPECT_EQ(0, bad.accepted) << "every shifted draft differs from the local run's token";
      EXPECT_EQ(static_cast<int>(want.size()), bad.cloud_steps);
      EXPECT_EQ(want, Run(Options(cut, lookup, k), req).tokens);
    }
  }
  EXPECT_GT(cloud_metrics_.Get("splitlm_cloud_drafts_accepted_total"), 0);
}

TEST_F(SpeculativeTest, SampledTokensEqualTheRunWithoutDraftsWithTheSameSeed) {
  device::GenerateRequest req{{1, 7, 3, 7, 3, 9}, 24, {}, false};
  req.sampling.temperature = 1.5f;
  req.sampling.top_k = 40;
  req.sampling.top_p = 0.95f;
  req.sampling.seed = 1234;
  const auto want = Local(req);
  req.sampling.seed = 99;
  ASSERT_NE(want, Local(req)) << "the seed must matter for this test to mean anything";
  req.sampling.seed = 1234;
  const int vocab = model_->config().vocab_size;
  const auto all_good = std::make_shared<ScriptedDrafter>(Concat(req.prompt, want), 0, vocab);
  const auto lookup = std::make_shared<device::PromptLookupDrafter>();
  for (int cut : {0, 2}) {
    for (int k : {1, 3, 8}) {
      SCOPED_TRACE("cut " + std::to_string(cut) + ", k " + std::to_string(k));
      // The sampled continuation as drafts: every one is the token the
      // worker draws at that position, so all are accepted.
      const auto good = Run(Options(cut, all_good, k), req);
      EXPECT_EQ(want, good.tokens);
      EXPECT_EQ(good.drafted, good.accepted);
      EXPECT_LT(good.cloud_steps, static_cast<int>(want.size()));
      EXPECT_EQ(want, Run(Options(cut, lookup, k), req).tokens);
    }
  }
}

TEST_F(SpeculativeTest, PromptLookupNeedsFewerRoundTripsThanTokensWhereTheOutputRepeats) {
  // The local run's own continuation, repeated, as the prompt: the model
  // continues it the way it did, and lookup finds each next token there.
  const device::GenerateRequest probe{{1, 7, 3}, 40, {}, false};
  const auto cont = Local(probe);
  device::GenerateRequest req{Concat(Concat(probe.prompt, cont), Concat(probe.prompt, std::vector<int32_t>(cont.begin(), cont.begin() + 4))), 32, {}, false};
  const auto want = Local(req);
  const auto got = Run(Options(2, std::make_shared<device::PromptLookupDrafter>(), 8), req);
  EXPECT_EQ(want, got.tokens);
  EXPECT_LT(got.cloud_steps, static_cast<int>(got.tokens.size())) << got.accepted << " of " << got.drafted << " drafts accepted";
  EXPECT_GT(got.accepted, 0);
}

TEST_F(SpeculativeTest, TheCloudGoingAwayMidSpeculationFinishesLocallyWithIdenticalTokens) {
  const device::GenerateRequest req{{1, 7, 3, 7, 3, 9}, 30, {}, false};
  const auto want = Local(req);
  auto o = Options(2, std::make_shared<ScriptedDrafter>(Concat(req.prompt, want), 0, model_->config().vocab_size), 4);
  o.fallback = device::Fallback::kLocal;
  o.step_deadline = std::chrono::milliseconds(2000);
  o.retry_interval = std::chrono::milliseconds(600000);  // stay local
  o.channel.heartbeat_interval = std::chrono::milliseconds(200);
  transport::Metrics m;
  device::Agent agent(*model_, o, ctx_, m);
  int seen = 0;
  auto got = agent.Generate(req, [&](int32_t) {
    if (++seen == 3) {  // the next step, with its drafts, gets no answer
      stop_ = true;
      thread_.join();
      worker_.reset();
    }
    return true;
  });
  EXPECT_EQ(want, got.tokens);
  EXPECT_EQ(1, got.fallbacks);
  EXPECT_GT(got.drafted, 0);
  EXPECT_GT(got.local_steps, 0);
}

TEST(DraftLength, GrowsOnFullAcceptanceShrinksOnRejectionWithinBounds) {
  device::DraftLength k(8);
  EXPECT_EQ(4, k.k());
  k.Observe(4, 4);
  EXPECT_EQ(5, k.k());
  for (int i = 0; i < 10; ++i) k.Observe(k.k(), k.k());
  EXPECT_EQ(8, k.k());
  k.Observe(8, 2);
  EXPECT_EQ(3, k.k());
  k.Observe(3, 0);
  EXPECT_EQ(1, k.k());
  k.Observe(1, 0);
  EXPECT_EQ(1, k.k());
  EXPECT_EQ(2, device::DraftLength(2).k());
}

TEST(PromptLookup, ProposesWhatFollowedTheLatestEarlierOccurrenceOfTheLongestSuffix) {
  device::PromptLookupDrafter d;
  // "5 6" occurs twice before the end; the latest is followed by 9 4 5 6.
  EXPECT_EQ((std::vector<int32_t>{9, 4, 5}), d.Propose({5, 6, 7, 1, 5, 6, 9, 4, 5, 6}, 3));
  EXPECT_EQ((std::vector<int32_t>{9}), d.Propose({5, 6, 9, 4, 5, 6}, 1));
  EXPECT_TRUE(d.Propose({1, 2, 3}, 4).empty());  // nothing repeats
  EXPECT_TRUE(d.Propose({}, 4).empty());
  // Running into the end, the repetition goes on: "1" was followed by "2 1",
  // so "2 1 2 1"; a run of one token continues as that token.
  EXPECT_EQ((std::vector<int32_t>{2, 1, 2, 1}), d.Propose({1, 2, 1}, 4));
  EXPECT_EQ((std::vector<int32_t>{7, 7, 7}), d.Propose({3, 7, 7, 7}, 3));
}

TEST(ParseSpeculate, AcceptsTheDrafterAndKAndNamesWhatIsWrong) {
  std::string why;
  EXPECT_EQ("", device::ParseSpeculate("off", &why)->drafter);
  auto s = device::ParseSpeculate("prompt-lookup:3", &why);
  ASSERT_TRUE(s);
  EXPECT_EQ("prompt-lookup", s->drafter);
  EXPECT_EQ(3, s->max_drafts);
  EXPECT_EQ(8, device::ParseSpeculate("prompt-lookup", &why)->max_drafts);
  for (const char* bad : {"prompt-lookup:0", "prompt-lookup:9", "prompt-lookup:", "prompt-lookup:x", "magic"}) {
    why.clear();
    EXPECT_FALSE(device::ParseSpeculate(bad, &why)) << bad;
    EXPECT_FALSE(why.empty()) << bad;
  }
}

TEST(VerifyDrafts, KeepsTheLongestAgreeingPrefixAndAddsItsOwnNextToken) {
  // Three rows over a vocabulary of 4: the greedy choices are 2, 1, 3.
  const std::vector<float> logits = {0, 0, 5, 0, /**/ 0, 5, 0, 0, /**/ 0, 0, 0, 5};
  partition::SamplingParams greedy;
  auto all = cloud::VerifyDrafts(logits.data(), 4, {2, 1}, greedy, 10);
  EXPECT_EQ(2u, all.accepted);
  EXPECT_EQ((std::vector<int32_t>{2, 1, 3}), all.tokens);
  auto first = cloud::VerifyDrafts(logits.data(), 4, {2, 0}, greedy, 10);
  EXPECT_EQ(1u, first.accepted);
  EXPECT_EQ((std::vector<int32_t>{2, 1}), first.tokens);
  auto none = cloud::VerifyDrafts(logits.data(), 4, {3, 1}, greedy, 10);
  EXPECT_EQ(0u, none.accepted);
  EXPECT_EQ((std::vector<int32_t>{2}), none.tokens);
}

}  // namespace
}  // namespace splitlm
