#include "scheduler/speculation.h"

#include <algorithm>
#include <cmath>

namespace splitlm::scheduler {

std::optional<DrafterKind> DrafterKindFromName(const std::string& name) {
  if (name.empty() || name == "off") return DrafterKind::kNone;
  if (name == "prompt-lookup") return DrafterKind::kPromptLookup;
  if (name == "early-exit") return DrafterKind::kEarlyExit;
  if (name == "draft-model" || name == "draft") return DrafterKind::kDraftModel;
  return std::nullopt;
}

const char* DrafterName(DrafterKind kind) {
  switch (kind) {
    case DrafterKind::kNone: return "off";
    case DrafterKind::kPromptLookup: return "prompt-lookup";
    case DrafterKind::kEarlyExit: return "early-exit";
    case DrafterKind::kDraftModel: return "draft-model";
  }
  return "?";
}

double PriorAcceptance(DrafterKind kind) {
  switch (kind) {
    case DrafterKind::kNone: return 0;
    case DrafterKind::kPromptLookup: return 0.3;
    case DrafterKind::kEarlyExit: return 0.4;
    case DrafterKind::kDraftModel: return 0.6;
  }
  return 0;
}

double ExpectedTokensPerRound(double acceptance, int drafts) {
  const double a = std::clamp(std::isfinite(acceptance) ? acceptance : 0.0, 0.0, 1.0);
  const int k = std::max(0, drafts);
  if (a >= 1.0) return k + 1.0;
  return (1.0 - std::pow(a, k + 1)) / (1.0 - a);
}

double Speculation::rate() const {
  return std::clamp(acceptance.value_or(PriorAcceptance(drafter)), 0.0, 1.0);
}

void AcceptanceEstimate::Observe(int drafted, int accepted) {
  if (drafted <= 0 || accepted < 0 || accepted > drafted) return;
  accepted_ = decay_ * accepted_ + accepted;
  rejections_ = decay_ * rejections_ + (accepted < drafted ? 1 : 0);
  ++rounds_;
}

std::optional<double> AcceptanceEstimate::rate() const {
  if (rounds_ == 0) return std::nullopt;
  const double tried = accepted_ + rejections_;
  return tried > 0 ? accepted_ / tried : 0.0;
}

}  // namespace splitlm::scheduler
