// Speculative decoding in the cost model: what a drafter costs on the device,
// how many tokens one round trip yields for an acceptance rate and a number
// of drafts, and the measured acceptance rate (docs/scheduler.md,
// "Speculative decoding").
#pragma once

#include <optional>
#include <string>

namespace splitlm::scheduler {

enum class DrafterKind {
  kNone,          // plain split: one token per round trip
  kPromptLookup,  // n-gram lookup in the text so far: no model, ~0 device time
  kEarlyExit,     // the device's head on its own cut hidden state, draft by draft
  kDraftModel,    // a small model run wholly on the device, draft by draft
};

// "prompt-lookup", "early-exit", "draft-model" ("draft" too, as the device's
// --speculate draft:PATH names it), "off" / "" (kNone); nullopt otherwise.
std::optional<DrafterKind> DrafterKindFromName(const std::string& name);
const char* DrafterName(DrafterKind kind);

// The acceptance rate assumed for a drafter until one is measured. These are
// deliberately modest guesses, not measurements (docs/scheduler.md gives the
// reasoning); the agent replaces them with its own measurement after its
// first speculative steps.
double PriorAcceptance(DrafterKind kind);

// Expected tokens one speculative round trip yields with `drafts` drafts when
// every draft is accepted with probability `acceptance` independently of the
// position, given that those before it were (the standard assumption of
// speculative decoding, Leviathan et al. ICML 2023, eq. 1): the accepted
// prefix plus the cloud's own next token,
//   E = 1 + a + a^2 + ... + a^k = (1 - a^(k+1)) / (1 - a)   (= k + 1 at a = 1).
// Real drafts are not independent (a repeated passage is accepted whole, a
// novel one not at all), so this is an average over rounds, not a promise for
// any one of them. `acceptance` is clamped to [0, 1], `drafts` to >= 0.
double ExpectedTokensPerRound(double acceptance, int drafts);

// Speculation as the planner sees it.
struct Speculation {
  DrafterKind drafter = DrafterKind::kNone;
  // Per-position acceptance rate in [0, 1]; nullopt: PriorAcceptance(drafter).
  std::optional<double> acceptance;
  // The number of drafts per round is chosen per cut in [0, max_drafts]
  // (0 = a plain step, so speculation is never predicted worse than plain).
  int max_drafts = 8;
  // kDraftModel: the draft model's decode step on the device, microseconds
  // per draft token.
  double draft_model_us = 0;

  bool enabled() const { return drafter != DrafterKind::kNone && max_drafts > 0; }
  double rate() const;  // acceptance, or the prior
};

// The per-position acceptance rate measured from speculative rounds. A round
// of k drafts of which j were accepted tried j + 1 positions and had one
// rejection when j < k, none when j = k; the rate is accepted / (accepted +
// rejections), the maximum-likelihood estimate under the independence
// assumption above. (accepted / drafted would understate it: the drafts after
// a rejection are never tried.) Both counts decay by `decay` per round, so
// the rate follows a change of text (a repetitive prompt, then a novel one)
// within a few dozen rounds.
class AcceptanceEstimate {
 public:
  explicit AcceptanceEstimate(double decay = 0.95) : decay_(decay) {}
  // One round: `drafted` drafts sent, `accepted` of them kept. Ignored when
  // drafted <= 0 or accepted is outside [0, drafted].
  void Observe(int drafted, int accepted);
  // nullopt before any round with drafts.
  std::optional<double> rate() const;
  long long rounds() const { return rounds_; }

 private:
  double decay_;
  double accepted_ = 0, rejections_ = 0;
  long long rounds_ = 0;
};

}  // namespace splitlm::scheduler
