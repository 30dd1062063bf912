// quant-eval's parts: a seeded corpus sampled from the model, and the
// comparison of two models' next-token distributions on it.
#include "partition/quant_eval.h"

#include <gtest/gtest.h>

#include <cmath>
#include <fstream>

#include "partition/gguf_quantize.h"
#include "partition/hf_to_gguf.h"
#include "partition/model.h"
#include "partition/score.h"
#include "tests/common/test_util.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

using testing::TempDir;

class QuantEvalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RandomModelOptions o;
    o.seed = 11;
    testing::MakeModel(dir_.Sub("hf"), o);
    model_ = Model::Open(dir_.Sub("hf"));
  }
  std::unique_ptr<Model> Quantised(QuantizeTarget target, const std::string& name) {
    if (!std::ifstream(dir_.Sub("f32.gguf"))) ConvertToGguf(*model_, dir_.Sub("f32.gguf"));
    QuantizeOptions q;
    q.target = target;
    QuantizeGguf(dir_.Sub("f32.gguf"), dir_.Sub(name), q);
    return Model::Open(dir_.Sub(name));
  }
  TempDir dir_;
  std::unique_ptr<Model> model_;
};

TEST_F(QuantEvalTest, TheCorpusIsSeededStartsWithBosAndHasTheTokensAskedFor) {
  CorpusOptions o;
  o.tokens = 100;
  o.sequence_length = 16;
  const auto a = SampleCorpus(*model_, o);
  EXPECT_EQ(a, SampleCorpus(*model_, o)) << "the same seed gives the same corpus";
  size_t generated = 0;
  for (const auto& seq : a) {
    ASSERT_GE(seq.size(), 2u);
    EXPECT_LE(seq.size(), 16u);
    EXPECT_EQ(model_->config().bos_token_id, seq[0]);
    generated += seq.size() - 1;
  }
  EXPECT_EQ(100u, generated);
  o.seed = 2;
  EXPECT_NE(a, SampleCorpus(*model_, o));
  o.sequence_length = model_->config().max_context + 1;
  EXPECT_THROW(SampleCorpus(*model_, o), Exception);
}

TEST_F(QuantEvalTest, AModelAgainstItselfHasNoDivergenceAndTheScoredPerplexity) {
  CorpusOptions o;
  o.tokens = 60;
  o.sequence_length = 20;
  const auto corpus = SampleCorpus(*model_, o);
  const FormatAccuracy self = CompareOnCorpus(*model_, *model_, corpus);
  EXPECT_EQ(0.0, self.mean_kl);
  EXPECT_EQ(1.0, self.top1_agreement);
  // The perplexity as `splitlm score` computes it, sequence by sequence.
  double logprob = 0;
  int64_t n = 0;
  for (const auto& seq : corpus) {
    for (const auto& p : ScoreSequence(*model_, model_->config().num_layers, seq).positions) {
      if (p.logprob_next) {
        logprob += *p.logprob_next;
        ++n;
      }
    }
  }
  EXPECT_EQ(n, self.positions);
  EXPECT_NEAR(std::exp(-logprob / n), self.perplexity, 1e-9 * self.perplexity);
}

TEST_F(QuantEvalTest, CoarserFormatsDivergeMore) {
  CorpusOptions o;
  o.tokens = 60;
  o.sequence_length = 20;
  const auto corpus = SampleCorpus(*model_, o);
  const FormatAccuracy f16 =
      CompareOnCorpus(*model_, *Quantised(QuantizeTarget::kF16, "f16.gguf"), corpus);
  const FormatAccuracy q8 =
      CompareOnCorpus(*model_, *Quantised(QuantizeTarget::kQ8_0, "q8.gguf"), corpus);
  const FormatAccuracy q4 =
      CompareOnCorpus(*model_, *Quantised(QuantizeTarget::kQ4_0, "q4.gguf"), corpus);
  EXPECT_GT(f16.mean_kl, 0.0);
  EXPECT_LT(f16.mean_kl, q8.mean_kl);
  EXPECT_LT(q8.mean_kl, q4.mean_kl);
  EXPECT_GE(f16.top1_agreement, q4.top1_agreement);
  for (const auto& a : {f16, q8, q4}) {
    EXPECT_LE(a.mean_kl, a.max_kl);
    EXPECT_GT(a.perplexity, 1.0);
  }
}

}  // namespace
}  // namespace splitlm::partition
