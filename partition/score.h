// Teacher-forced scoring: a token sequence run in one prefill (split at a
// cut, or not), with every position's prediction compared to the next token.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace splitlm::partition {

class Model;

struct PositionScore {
  int32_t argmax = 0;  // the highest logit's id (the lowest id on a tie)
  float margin = 0;    // top-1 minus top-2 logit
  // log p(next given token) under the softmax of the logits (natural log,
  // computed in double); absent for the last position.
  std::optional<double> logprob_next;
};

struct SequenceScore {
  std::vector<PositionScore> positions;
  double perplexity = 0;  // exp(-mean logprob_next)
};

// Scores `ids` (at least 2, within the model's context and vocabulary): the
// device stage runs [0, cut), the cloud stage [cut, L) and the head, hidden
// states passing as fp32 (bitwise the same logits at every cut;
// cut == L runs one stage). Throws Exception(kInvalidArgument) for a bad cut, too few or
// too many ids, or an id outside the vocabulary.
SequenceScore ScoreSequence(const Model& model, int cut, const std::vector<int32_t>& ids);

// The argmax and margin of `n` logits (n >= 2).
PositionScore TopTwo(const float* logits, int n);

}  // namespace splitlm::partition
