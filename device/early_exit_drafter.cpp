#include "device/early_exit_drafter.h"

#include "partition/model.h"
#include "partition/stage.h"

namespace splitlm::device {
namespace {

class EarlyExitRun : public DraftRun {
 public:
  explicit EarlyExitRun(std::shared_ptr<const partition::StageWeights> head)
      : head_(std::move(head)), logits_(head_.weights().config().vocab_size) {}

  std::vector<int32_t> Step(const std::vector<int32_t>& ids, int fed, int k,
                            const partition::SamplingParams& sampling, int hidden_size,
                            const DeviceLayers& layers, std::vector<float>* rows) override {
    const int n = static_cast<int>(ids.size()) - fed;
    const size_t h = static_cast<size_t>(hidden_size);
    const float* out = layers(&ids[fed], n);
    rows->assign(out, out + static_cast<size_t>(n) * h);
    std::vector<int32_t> drafts;
    for (int j = 0; j < k; ++j) {
      // The head over the last row at the cut (a stage of no layers: its
      // one position is forgotten at once).
      head_.Forward({nullptr, rows->data() + rows->size() - h, 1}, logits_.data());
      head_.Truncate(0);
      const int32_t d = partition::SampleToken(logits_.data(), static_cast<int>(logits_.size()),
                                               sampling, static_cast<int>(ids.size()) + j);
      drafts.push_back(d);
      out = layers(&d, 1);
      rows->insert(rows->end(), out, out + h);
    }
    return drafts;
  }

 private:
  partition::Stage head_;
  std::vector<float> logits_;
};

}  // namespace

EarlyExitDrafter::EarlyExitDrafter(const partition::Model& model) {
  const int layers = model.config().num_layers;
  head_ = partition::StageWeights::Load(
      model, partition::StageSpec::Range(model.config(), layers, layers));
}

std::unique_ptr<DraftRun> EarlyExitDrafter::Begin() const {
  return std::make_unique<EarlyExitRun>(head_);
}

size_t EarlyExitDrafter::bytes() const { return head_->bytes(); }

}  // namespace splitlm::device
