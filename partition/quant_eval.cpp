#include "partition/quant_eval.h"

#include <algorithm>
#include <cmath>
#include <memory>

#include "partition/model.h"
#include "partition/sampler.h"
#include "partition/stage.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

std::shared_ptr<const StageWeights> WholeModel(const Model& model) {
  const ModelConfig& c = model.config();
  return StageWeights::Load(model, StageSpec::Device(c, c.num_layers));
}

// log softmax of `n` logits, in double.
void LogSoftmax(const float* logits, int n, std::vector<double>& out) {
  out.resize(static_cast<size_t>(n));
  double max = logits[0];
  for (int i = 1; i < n; ++i) max = std::max(max, static_cast<double>(logits[i]));
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - max);
  const double log_sum = std::log(sum);
  for (int i = 0; i < n; ++i)
    out[static_cast<size_t>(i)] = static_cast<double>(logits[i]) - max - log_sum;
}

int Argmax(const float* logits, int n) {
  return static_cast<int>(std::max_element(logits, logits + n) - logits);
}

std::vector<float> AllLogits(const std::shared_ptr<const StageWeights>& weights,
                             const std::vector<int32_t>& ids) {
  const int n = static_cast<int>(ids.size());
  Stage stage(weights, n);
  std::vector<float> logits(static_cast<size_t>(n) * stage.OutputSize(1));
  stage.Forward({ids.data(), nullptr, n, /*all_logits=*/true}, logits.data());
  return logits;
}

}  // namespace

std::vector<std::vector<int32_t>> SampleCorpus(const Model& model, const CorpusOptions& options) {
  const ModelConfig& c = model.config();
  const int length =
      options.sequence_length > 0 ? options.sequence_length : std::min(256, c.max_context);
  if (options.tokens < 1)
    throw Exception(Exception::kInvalidArgument, "the corpus needs at least 1 token");
  if (length < 2 || length > c.max_context) {
    throw Exception(Exception::kInvalidArgument,
                    "sequence length " + std::to_string(length) + " must be in [2, " +
                        std::to_string(c.max_context) + "] (the model's context)");
  }
  const auto weights = WholeModel(model);
  SamplingParams sampling;
  sampling.temperature = 1.0f;
  std::vector<std::vector<int32_t>> corpus;
  std::vector<float> logits(static_cast<size_t>(c.vocab_size));
  int generated = 0;
  while (generated < options.tokens) {
    sampling.seed = options.seed + corpus.size();
    std::vector<int32_t> seq{c.bos_token_id};
    Stage stage(weights, length);
    stage.Forward({seq.data(), nullptr, 1}, logits.data());
    while (static_cast<int>(seq.size()) < length && generated < options.tokens) {
      const int32_t next =
          SampleToken(logits.data(), c.vocab_size, sampling, static_cast<int>(seq.size()));
      seq.push_back(next);
      ++generated;
      if (c.IsEos(next) || static_cast<int>(seq.size()) == length) break;
      stage.Forward({&seq.back(), nullptr, 1}, logits.data());
    }
    if (seq.size() >= 2) corpus.push_back(std::move(seq));
    if (options.progress) options.progress(generated, options.tokens);
  }
  return corpus;
}

FormatAccuracy CompareOnCorpus(const Model& reference, const Model& model,
                               const std::vector<std::vector<int32_t>>& corpus) {
  const int vocab = reference.config().vocab_size;
  if (model.config().vocab_size != vocab) {
    throw Exception(Exception::kInvalidArgument,
                    "the models' vocabularies differ (" + std::to_string(vocab) + " and " +
                        std::to_string(model.config().vocab_size) + " tokens)");
  }
  const auto ref_weights = WholeModel(reference);
  const auto weights = &reference == &model ? ref_weights : WholeModel(model);
  FormatAccuracy acc;
  double kl_sum = 0, logprob_sum = 0;
  int64_t agree = 0, scored = 0;
  std::vector<double> p, q;
  for (const auto& seq : corpus) {
    const std::vector<float> ref_logits = AllLogits(ref_weights, seq);
    const std::vector<float> logits = AllLogits(weights, seq);
    // Every position but the last predicts a token of the corpus.
    for (size_t i = 0; i + 1 < seq.size(); ++i) {
      const float* r = &ref_logits[i * vocab];
      const float* m = &logits[i * vocab];
      LogSoftmax(r, vocab, p);
      LogSoftmax(m, vocab, q);
      double kl = 0;
      for (int t = 0; t < vocab; ++t) kl += std::exp(p[t]) * (p[t] - q[t]);
      kl = std::max(kl, 0.0);  // rounding can make an exact 0 slightly negative
      kl_sum += kl;
      acc.max_kl = std::max(acc.max_kl, kl);
      agree += Argmax(r, vocab) == Argmax(m, vocab);
      logprob_sum += q[static_cast<size_t>(seq[i + 1])];
      ++scored;
    }
  }
  if (scored == 0)
    throw Exception(Exception::kInvalidArgument, "the corpus has no position to compare");
  acc.positions = scored;
  acc.mean_kl = kl_sum / static_cast<double>(scored);
  acc.top1_agreement = static_cast<double>(agree) / static_cast<double>(scored);
  acc.perplexity = std::exp(-logprob_sum / static_cast<double>(scored));
  return acc;
}

}  // namespace splitlm::partition
