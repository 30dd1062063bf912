// Speculative decoding on the device: a drafter proposes the tokens that
// probably come next, the cloud verifies them all in one round trip (see
// transport/splitlm.capnp, Forward.drafts), and the generation keeps those
// the cloud's own choices agree with: the tokens are exactly those of a run
// without drafts, in fewer round trips when the drafts are good.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace splitlm::device {

// Proposes draft tokens. Implementations hold no per-generation state (one
// drafter serves every generation of an agent).
class Drafter {
 public:
  virtual ~Drafter() = default;
  virtual std::string name() const = 0;
  // Up to `k` tokens likely to follow `ids` (the prompt and the tokens so
  // far); fewer, or none, when it has no guess.
  virtual std::vector<int32_t> Propose(const std::vector<int32_t>& ids, int k) const = 0;
};

// Prompt lookup: finds the latest earlier occurrence of the longest suffix of
// `ids` (max_ngram tokens down to min_ngram) and proposes what followed it,
// continued periodically when that runs into the end (a text looping with
// period p after the match is proposed as looping on).
// Needs no model; strong when the output repeats the prompt or itself.
class PromptLookupDrafter : public Drafter {
 public:
  explicit PromptLookupDrafter(int max_ngram = 3, int min_ngram = 1) : max_ngram_(max_ngram), min_ngram_(min_ngram) {}
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

// `--speculate` / device.speculate: "off", "prompt-lookup" or
// "prompt-lookup:K" (K = most drafts per step, 1..8; default 8).
struct SpeculateSpec {
  std::string drafter;  // "" = off
  int max_drafts = 8;
};
inline constexpr int kMaxDraftsPerStep = 8;
// Parses the flag's text; nullopt with `why` set when it is not valid.
std::optional<SpeculateSpec> ParseSpeculate(const std::string& text, std::string* why);
// The drafter a spec names (null for off).
std::shared_ptr<const Drafter> MakeDrafter(const SpeculateSpec& spec);

}  // namespace splitlm::device
