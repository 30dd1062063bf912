#include "device/drafter.h"

#include <algorithm>
#include <cstring>

#include "device/draft_model_drafter.h"
#include "device/early_exit_drafter.h"
#include "transport/error.h"

namespace splitlm::device {
namespace {

// The default run: the drafter's proposal, then one batch through [0, cut).
class ProposeRun : public DraftRun {
 public:
  explicit ProposeRun(const Drafter& drafter) : drafter_(drafter) {}
  std::vector<int32_t> Step(const std::vector<int32_t>& ids, int fed, int k,
                            const partition::SamplingParams&, int hidden_size,
                            const DeviceLayers& layers, std::vector<float>* rows) override {
    std::vector<int32_t> drafts = k > 0 ? drafter_.Propose(ids, k) : std::vector<int32_t>{};
    if (static_cast<int>(drafts.size()) > k) drafts.resize(static_cast<size_t>(std::max(k, 0)));
    RunRows(ids, fed, drafts, hidden_size, layers, rows);
    return drafts;
  }

 private:
  const Drafter& drafter_;
};

bool AllDigits(const std::string& s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

[[noreturn]] void Invalid(const std::string& where, const std::string& why) {
  throw Exception(Exception::kInvalidArgument, where + ": " + why);
}

}  // namespace

std::vector<int32_t> Drafter::Propose(const std::vector<int32_t>&, int) const { return {}; }

std::unique_ptr<DraftRun> Drafter::Begin() const { return std::make_unique<ProposeRun>(*this); }

void RunRows(const std::vector<int32_t>& ids, int fed, const std::vector<int32_t>& drafts,
             int hidden_size, const DeviceLayers& layers, std::vector<float>* rows) {
  std::vector<int32_t> feed(ids.begin() + fed, ids.end());
  feed.insert(feed.end(), drafts.begin(), drafts.end());
  const float* out = layers(feed.data(), static_cast<int>(feed.size()));
  rows->assign(out, out + feed.size() * static_cast<size_t>(hidden_size));
}

std::vector<int32_t> PromptLookupDrafter::Propose(const std::vector<int32_t>& ids, int k) const {
  const int n = static_cast<int>(ids.size());
  for (int len = std::min(max_ngram_, n - 1); len >= min_ngram_; --len) {
    const int32_t* suffix = ids.data() + (n - len);
    // The latest earlier occurrence (ending before the suffix itself).
    for (int start = n - len - 1; start >= 0; --start) {
      if (!std::equal(suffix, suffix + len, ids.data() + start)) continue;
      // What followed it, continued as the repetition the match implies:
      // past the end of `ids` the drafts copy themselves, so a loop of
      // period p (the match p tokens back) yields k drafts, not p.
      const int from = start + len;
      std::vector<int32_t> drafts;
      for (int j = 0; j < k; ++j) {
        const int src = from + j;
        drafts.push_back(src < n ? ids[static_cast<size_t>(src)]
                                 : drafts[static_cast<size_t>(src - n)]);
      }
      return drafts;
    }
  }
  return {};
}

void DraftLength::Observe(int proposed, int accepted) {
  if (proposed <= 0) return;
  k_ = accepted >= proposed ? std::min(max_, k_ + 1) : std::clamp(accepted + 1, 1, max_);
}

SpeculateSpec ParseSpeculate(const std::string& text, const std::string& where) {
  SpeculateSpec spec;
  if (text.empty() || text == "off") return spec;
  const auto colon = text.find(':');
  spec.drafter = text.substr(0, colon);
  std::string rest = colon == std::string::npos ? "" : text.substr(colon + 1);
  bool has_k = colon != std::string::npos;
  if (spec.drafter == "draft") {
    // draft:PATH[:K]: a trailing ":digits" is K, the rest the path.
    const auto last = rest.rfind(':');
    has_k = last != std::string::npos && AllDigits(rest.substr(last + 1));
    spec.path = has_k ? rest.substr(0, last) : rest;
    rest = has_k ? rest.substr(last + 1) : "";
    if (spec.path.empty()) {
      Invalid(
          where,
          "draft needs a model: draft:PATH or draft:PATH:K (PATH a model directory or .gguf file)");
    }
  } else if (spec.drafter != "prompt-lookup" && spec.drafter != "early-exit") {
    Invalid(where, "unknown drafter \"" + spec.drafter +
                       "\" (known: prompt-lookup, early-exit, draft:PATH, or off)");
  }
  if (has_k) {
    if (!AllDigits(rest) || rest.size() > 2 || std::stoi(rest) < 1 ||
        std::stoi(rest) > kMaxDraftsPerStep) {
      Invalid(where, "the number of drafts after ':' must be 1.." +
                         std::to_string(kMaxDraftsPerStep) + ", not \"" + rest + "\"");
    }
    spec.max_drafts = std::stoi(rest);
  }
  return spec;
}

std::shared_ptr<const Drafter> MakeDrafter(const SpeculateSpec& spec,
                                           const partition::Model& model) {
  if (spec.drafter == "prompt-lookup") return std::make_shared<PromptLookupDrafter>();
  if (spec.drafter == "early-exit") return std::make_shared<EarlyExitDrafter>(model);
  if (spec.drafter == "draft") return std::make_shared<DraftModelDrafter>(spec.path, model);
  return nullptr;
}

}  // namespace splitlm::device
