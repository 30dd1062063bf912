#include "device/draft_model_drafter.h"

#include <algorithm>

#include "partition/model.h"
#include "partition/stage.h"
#include "transport/error.h"

namespace splitlm::device {
namespace {

class DraftModelRun : public DraftRun {
 public:
  explicit DraftModelRun(std::shared_ptr<const partition::StageWeights> w)
      : stage_(std::move(w)), logits_(stage_.weights().config().vocab_size) {}

  std::vector<int32_t> Step(const std::vector<int32_t>& ids, int fed, int k,
                            const partition::SamplingParams& sampling, int hidden_size,
                            const DeviceLayers& layers, std::vector<float>* rows) override {
    // Draft j sits at position ids.size() + j; the last one is not fed.
    k = std::min(k, stage_.max_context() - static_cast<int>(ids.size()) + 1);
    std::vector<int32_t> drafts;
    if (k > 0 && !ids.empty()) {
      Sync(ids);
      for (int j = 0; j < k; ++j) {
        const int32_t d = partition::SampleToken(logits_.data(), static_cast<int>(logits_.size()),
                                                 sampling, static_cast<int>(ids.size()) + j);
        drafts.push_back(d);
        if (j + 1 < k) Feed(&d, 1);
      }
    }
    RunRows(ids, fed, drafts, hidden_size, layers, rows);
    return drafts;
  }

 private:
  // Leaves the cache holding `ids` and logits_ the prediction after them,
  // keeping the longest prefix already cached (at least one token is fed).
  void Sync(const std::vector<int32_t>& ids) {
    size_t keep = std::mismatch(cached_.begin(), cached_.end(), ids.begin(), ids.end()).first -
                  cached_.begin();
    keep = std::min(keep, ids.size() - 1);
    stage_.Truncate(static_cast<int>(keep));
    cached_.resize(keep);
    Feed(ids.data() + keep, static_cast<int>(ids.size() - keep));
  }
  void Feed(const int32_t* ids, int n) {
    stage_.Forward({ids, nullptr, n}, logits_.data());
    cached_.insert(cached_.end(), ids, ids + n);
  }

  partition::Stage stage_;
  std::vector<float> logits_;
  std::vector<int32_t> cached_;  // the tokens in stage_'s cache
};

}  // namespace

DraftModelDrafter::DraftModelDrafter(const std::string& path, const partition::Model& model)
    : draft_(partition::Model::Open(path, "", model.isa())) {  // the model's kernels
  const int want = model.config().vocab_size, have = draft_->config().vocab_size;
  if (have != want) {
    throw Exception(Exception::kInvalidArgument, "draft model " + path + " has a vocabulary of " +
                                                     std::to_string(have) + " tokens, the model " +
                                                     std::to_string(want) +
                                                     ": a draft model must use the same tokenizer");
  }
  weights_ = partition::StageWeights::Load(
      *draft_, partition::StageSpec::Device(draft_->config(), draft_->config().num_layers));
}

DraftModelDrafter::~DraftModelDrafter() = default;

std::unique_ptr<DraftRun> DraftModelDrafter::Begin() const {
  return std::make_unique<DraftModelRun>(weights_);
}

size_t DraftModelDrafter::bytes() const { return weights_->bytes(); }

}  // namespace splitlm::device
