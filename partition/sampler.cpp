#include "partition/sampler.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <string>
#include <vector>

#include "transport/error.h"

namespace splitlm::partition {
namespace {

uint64_t SplitMix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

int Argmax(const float* logits, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i) {
    if (logits[i] > logits[best] || std::isnan(logits[best])) best = i;
  }
  return best;
}

}  // namespace

void ValidateSamplingParams(const SamplingParams& p) {
  if (std::isnan(p.temperature))
    throw Exception(Exception::kInvalidArgument, "temperature must be a number");
  if (p.top_k < 0)
    throw Exception(Exception::kInvalidArgument,
                    "top_k must be >= 0, got " + std::to_string(p.top_k));
  if (!(p.top_p > 0.0f && p.top_p <= 1.0f)) {
    throw Exception(Exception::kInvalidArgument,
                    "top_p must be in (0, 1], got " + std::to_string(p.top_p));
  }
}

int SampleToken(const float* logits, int n, const SamplingParams& p, int position) {
  if (p.temperature <= 0.0f) return Argmax(logits, n);

  std::vector<int> ids(n);
  std::iota(ids.begin(), ids.end(), 0);
  auto by_logit = [&](int a, int b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  int keep = p.top_k > 0 ? std::min(p.top_k, n) : n;
  std::partial_sort(ids.begin(), ids.begin() + keep, ids.end(), by_logit);
  ids.resize(keep);

  // Softmax over the kept ids in double, highest first.
  const double mx = logits[ids[0]];
  std::vector<double> prob(keep);
  double sum = 0;
  for (int i = 0; i < keep; ++i) {
    prob[i] = std::exp((logits[ids[i]] - mx) / p.temperature);
    sum += prob[i];
  }
  double cum = 0;
  int nucleus = keep;
  for (int i = 0; i < keep; ++i) {
    prob[i] /= sum;
    cum += prob[i];
    if (cum >= p.top_p) {
      nucleus = i + 1;
      break;
    }
  }
  double mass = 0;
  for (int i = 0; i < nucleus; ++i) mass += prob[i];

  const uint64_t bits = SplitMix64(SplitMix64(p.seed) ^ static_cast<uint64_t>(position));
  const double u = static_cast<double>(bits >> 11) * 0x1.0p-53 * mass;
  double acc = 0;
  for (int i = 0; i < nucleus; ++i) {
    acc += prob[i];
    if (u < acc) return ids[i];
  }
  return ids[nucleus - 1];
}

}  // namespace splitlm::partition
