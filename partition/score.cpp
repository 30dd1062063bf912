#include "partition/score.h"

#include <cmath>
#include <memory>
#include <string>

#include "partition/model.h"
#include "partition/stage.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

// Logits of every position of `ids`, count x vocab_size floats.
std::vector<float> TeacherForcedLogits(const Model& model, int cut,
                                       const std::vector<int32_t>& ids) {
  const ModelConfig& c = model.config();
  const int n = static_cast<int>(ids.size());
  std::vector<float> logits(static_cast<size_t>(n) * c.vocab_size);
  Stage device(StageWeights::Load(model, StageSpec::Device(c, cut)), n);
  if (cut == c.num_layers) {
    device.Forward({ids.data(), nullptr, n, /*all_logits=*/true}, logits.data());
    return logits;
  }
  std::vector<float> hidden(device.OutputSize(n));
  device.Forward({ids.data(), nullptr, n}, hidden.data());
  Stage cloud(StageWeights::Load(model, StageSpec::Cloud(c, cut)), n);
  cloud.Forward({nullptr, hidden.data(), n, /*all_logits=*/true}, logits.data());
  return logits;
}

double LogSoftmaxAt(const float* logits, int n, int index) {
  double max = logits[0];
  for (int i = 1; i < n; ++i) max = std::max(max, static_cast<double>(logits[i]));
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += std::exp(static_cast<double>(logits[i]) - max);
  return static_cast<double>(logits[index]) - max - std::log(sum);
}

}  // namespace

PositionScore TopTwo(const float* logits, int n) {
  int best = 0, second = -1;
  for (int i = 1; i < n; ++i) {
    if (logits[i] > logits[best]) {
      second = best;
      best = i;
    } else if (second < 0 || logits[i] > logits[second]) {
      second = i;
    }
  }
  PositionScore p;
  p.argmax = best;
  p.margin = logits[best] - logits[second];
  return p;
}

SequenceScore ScoreSequence(const Model& model, int cut, const std::vector<int32_t>& ids) {
  const ModelConfig& c = model.config();
  StageSpec::Device(c, cut);  // validates the cut
  if (c.vocab_size < 2)
    throw Exception(Exception::kInvalidArgument, "scoring needs a vocabulary of at least 2 tokens");
  if (ids.size() < 2)
    throw Exception(Exception::kInvalidArgument,
                    "scoring needs at least 2 tokens (got " + std::to_string(ids.size()) + ")");
  if (ids.size() > static_cast<size_t>(c.max_context)) {
    throw Exception(Exception::kInvalidArgument, std::to_string(ids.size()) +
                                                     " tokens exceed the context of " +
                                                     std::to_string(c.max_context));
  }
  const std::vector<float> logits = TeacherForcedLogits(model, cut, ids);
  SequenceScore score;
  double sum = 0;
  for (size_t i = 0; i < ids.size(); ++i) {
    const float* row = &logits[i * c.vocab_size];
    PositionScore p = TopTwo(row, c.vocab_size);
    if (i + 1 < ids.size()) {
      p.logprob_next = LogSoftmaxAt(row, c.vocab_size, ids[i + 1]);
      sum += *p.logprob_next;
    }
    score.positions.push_back(p);
  }
  score.perplexity = std::exp(-sum / static_cast<double>(ids.size() - 1));
  return score;
}

}  // namespace splitlm::partition
