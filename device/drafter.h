// Speculative decoding on the device: a drafter proposes the tokens that
// probably come next, the cloud verifies them all in one round trip (see
// transport/splitlm.capnp, Forward.drafts), and the generation keeps those
// the cloud's own choices agree with: the tokens are exactly those of a run
// without drafts, in fewer round trips when the drafts are good.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "partition/sampler.h"

namespace splitlm::partition {
class Model;
}

namespace splitlm::device {

// The device's layers [0, cut) as a drafting step sees them: runs `n` more
// tokens (appending them to the device's KV caches) and returns their n
// hidden-state rows at the cut, valid until the next call.
using DeviceLayers = std::function<const float*(const int32_t* ids, int n)>;

// One generation's drafting: the per-sequence state of a drafter (a draft
// model's KV cache). Used by one thread.
class DraftRun {
 public:
  virtual ~DraftRun() = default;
  // One speculative step. `ids` are the prompt and the tokens so far, of
  // which [0, fed) are in the device's caches. Proposes up to `k` drafts (k
  // may be 0) and runs ids[fed, end) and then the drafts through `layers`,
  // leaving all their rows (hidden_size floats each, in that order) in
  // `*rows`. A drafter that samples draws draft j as the verifier does at
  // position ids.size() + j with `sampling`. Returns the drafts.
  virtual std::vector<int32_t> Step(const std::vector<int32_t>& ids, int fed, int k,
                                    const partition::SamplingParams& sampling, int hidden_size,
                                    const DeviceLayers& layers, std::vector<float>* rows) = 0;
};

// Proposes draft tokens. A drafter is immutable once built (one serves every
// generation of an agent); per-generation state lives in its DraftRun.
class Drafter {
 public:
  virtual ~Drafter() = default;
  virtual std::string name() const = 0;
  // Up to `k` tokens likely to follow `ids` (the prompt and the tokens so
  // far); fewer, or none, when it has no guess. For drafters without state;
  // the default proposes nothing.
  virtual std::vector<int32_t> Propose(const std::vector<int32_t>& ids, int k) const;
  // A new generation's drafting. The default proposes with Propose and runs
  // the new tokens and the drafts through the device's layers in one batch.
  virtual std::unique_ptr<DraftRun> Begin() const;
  // Bytes of weights the drafter holds beyond the device stage's own (a
  // head for early exit, a whole draft model).
  virtual size_t bytes() const { return 0; }
};

// Runs ids[fed, end) and `drafts` through `layers` as one batch into `*rows`
// (the common tail of every DraftRun::Step).
void RunRows(const std::vector<int32_t>& ids, int fed, const std::vector<int32_t>& drafts,
             int hidden_size, const DeviceLayers& layers, std::vector<float>* rows);

// Prompt lookup: finds the latest earlier occurrence of the longest suffix of
// `ids` (max_ngram tokens down to min_ngram) and proposes what followed it,
// continued periodically when that runs into the end (a text looping with
// period p after the match is proposed as looping on).
// Needs no model; strong when the output repeats the prompt or itself.
class PromptLookupDrafter : public Drafter {
 public:
  explicit PromptLookupDrafter(int max_ngram = 3, int min_ngram = 1)
      : max_ngram_(max_ngram), min_ngram_(min_ngram) {}
  std::string name() const override { return "prompt-lookup"; }
  std::vector<int32_t> Propose(const std::vector<int32_t>& ids, int k) const override;

 private:
  int max_ngram_, min_ngram_;
};

// The number of drafts per step, adapted to how many the cloud accepts:
// one more after all were accepted, the accepted count plus one after a
// rejection, within [1, max].
class DraftLength {
 public:
  explicit DraftLength(int max) : max_(max), k_(std::min(4, max)) {}
  int k() const { return k_; }
  void Observe(int proposed, int accepted);

 private:
  int max_, k_;
};

// `--speculate` / device.speculate: "off", or a drafter with an optional
// ":K" (K = most drafts per step, 1..8; default 8): "prompt-lookup",
// "early-exit", "draft:PATH" (PATH a model directory or .gguf file).
struct SpeculateSpec {
  std::string drafter;  // "" = off, "prompt-lookup", "early-exit" or "draft"
  std::string path;     // the draft model ("draft")
  int max_drafts = 8;
};
inline constexpr int kMaxDraftsPerStep = 8;
// Parses the text. Throws Exception(kInvalidArgument) "`where`: what is
// wrong" when it is not valid (`where` names the setting for the message).
SpeculateSpec ParseSpeculate(const std::string& text, const std::string& where = "speculate");
// The drafter a spec names (null for off), for `model` (the model being
// split: early exit loads its final norm and head, a draft model must share
// its vocabulary). Throws Exception for a draft model that cannot be
// used (kNotFound, kCorrupt as Model::Open; kInvalidArgument for another
// vocabulary), naming the file and the reason.
std::shared_ptr<const Drafter> MakeDrafter(const SpeculateSpec& spec,
                                           const partition::Model& model);

}  // namespace splitlm::device
