// What quantisation costs in accuracy (the question MELT asks of on-device
// models): a corpus sampled from the reference model, then, for each other
// weight format of the same model, how far its next-token distributions are
// from the reference's.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace splitlm::partition {

class Model;

struct CorpusOptions {
  int tokens = 2048;        // generated tokens in all (BOS not counted)
  int sequence_length = 0;  // per sequence, BOS included; 0: min(256, context)
  uint64_t seed = 1;
  // Called after each sequence with the tokens generated so far.
  std::function<void(int done, int total)> progress;
};

// Sequences that start with BOS, each continued by sampling the model at
// temperature 1 (seeded: the same corpus every run), until the sequence
// length or `tokens` in all; an end-of-sequence token starts the next
// sequence. Throws Exception(kInvalidArgument) for bad options.
std::vector<std::vector<int32_t>> SampleCorpus(const Model& model, const CorpusOptions& options);

struct FormatAccuracy {
  double mean_kl = 0;  // mean over positions of KL(reference || this), nats
  double max_kl = 0;
  double top1_agreement = 0;  // share of positions with the reference's argmax
  double perplexity = 0;      // of the corpus's next tokens under this model
  int64_t positions = 0;
};

// Teacher-forced logits of `model` and `reference` over every sequence of
// `corpus` (both must have the same vocabulary), compared position by
// position in double precision. For the reference itself the KL is 0 and the
// agreement 1.
FormatAccuracy CompareOnCorpus(const Model& reference, const Model& model,
                               const std::vector<std::vector<int32_t>>& corpus);

}  // namespace splitlm::partition
