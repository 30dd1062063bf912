// How many drafts a speculative step should carry, from what the steps so
// far measured: the acceptance rate of the drafter (an EWMA, exported for
// the scheduler's cost model) and the link.
#pragma once

namespace splitlm::device {

// Expected tokens per step (accepted drafts + the verifier's own token) when
// each draft is accepted with probability `acceptance` given the previous
// one was: 1 + a + a^2 + ... + a^k.
double ExpectedTokensPerStep(double acceptance, int k);

// The k in [1, max] that maximises tokens per unit of time,
//   ExpectedTokensPerStep(a, k) / (round_trip_ms + (k + 1) * row_ms),
// where a step costs a round trip (send to answer, the cloud's work
// included) and the device's time per row it runs (drafting included: about
// one layer pass for a batched drafter, a pass and a head per draft for
// early exit, the draft model's step for a draft model). Large when the
// round trip is long and acceptance high; small when a row costs the device
// much next to the round trip. Ties go to the larger k (with a = 1 every k
// gains, so all-accepted steps are never capped).
int LinkDraftCap(double acceptance, double round_trip_ms, double row_ms, int max);

// Online measurements of one drafter's speculative steps (exponentially
// weighted, weight `alpha` for the newest step). Not thread-safe.
class DraftMeter {
 public:
  explicit DraftMeter(double alpha = 0.25) : alpha_(alpha) {}
  // A verified step: `proposed` drafts (> 0), `accepted` of them; the
  // device took `device_ms` for its `rows` rows (drafting included) and the
  // answer came `round_trip_ms` after the send.
  void Observe(int proposed, int accepted, double device_ms, int rows, double round_trip_ms);
  bool measured() const { return steps_ > 0; }
  int steps() const { return steps_; }
  // EWMA of accepted / proposed per step (0 before any step).
  double acceptance() const { return acceptance_; }
  double round_trip_ms() const { return round_trip_ms_; }
  double row_ms() const { return row_ms_; }
  // LinkDraftCap from the measurements; `max` before any.
  int Cap(int max) const;

 private:
  double alpha_;
  int steps_ = 0;
  double acceptance_ = 0, round_trip_ms_ = 0, row_ms_ = 0;
};

}  // namespace splitlm::device
