#include "device/draft_policy.h"

#include <algorithm>

namespace splitlm::device {

double ExpectedTokensPerStep(double acceptance, int k) {
  const double a = std::clamp(acceptance, 0.0, 1.0);
  double sum = 0, term = 1;
  for (int i = 0; i <= k; ++i, term *= a) sum += term;
  return sum;
}

int LinkDraftCap(double acceptance, double round_trip_ms, double row_ms, int max) {
  if (acceptance >= 1.0) return max;  // every k gains
  const double rt = std::max(0.0, round_trip_ms), row = std::max(0.0, row_ms);
  int best = 1;
  double best_rate = -1;
  for (int k = 1; k <= max; ++k) {
    const double time = rt + (k + 1) * row;
    const double tokens = ExpectedTokensPerStep(acceptance, k);
    const double rate = time > 0 ? tokens / time : tokens;
    if (rate >= best_rate) {
      best_rate = rate;
      best = k;
    }
  }
  return best;
}

void DraftMeter::Observe(int proposed, int accepted, double device_ms, int rows,
                         double round_trip_ms) {
  if (proposed <= 0 || rows <= 0) return;
  const double a = static_cast<double>(std::clamp(accepted, 0, proposed)) / proposed;
  const double row = device_ms / rows;
  if (steps_++ == 0) {  // the first step is the estimate
    acceptance_ = a;
    round_trip_ms_ = round_trip_ms;
    row_ms_ = row;
    return;
  }
  acceptance_ += alpha_ * (a - acceptance_);
  round_trip_ms_ += alpha_ * (round_trip_ms - round_trip_ms_);
  row_ms_ += alpha_ * (row - row_ms_);
}

int DraftMeter::Cap(int max) const {
  return measured() ? LinkDraftCap(acceptance_, round_trip_ms_, row_ms_, max) : max;
}

}  // namespace splitlm::device
