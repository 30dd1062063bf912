// Drafting with a small model of the same vocabulary run wholly on the
// device (`--speculate draft:PATH`): e.g. a 1-layer or quantised relative of
// the model being split.
#pragma once

#include <memory>

#include "device/drafter.h"

namespace splitlm::partition {
class StageWeights;
}

namespace splitlm::device {

// Each generation keeps the draft model's own KV cache across steps: a step
// truncates it to the longest prefix it shares with the text so far (so
// rejected drafts are forgotten), feeds the rest, and drafts k tokens
// autoregressively, drawing each as the verifier would at its position
// (greedy, or the same seeded draw): a draft model that agrees with the
// model has every draft accepted, greedy or sampled.
class DraftModelDrafter : public Drafter {
 public:
  // Opens the model at `path` (a directory or .gguf file, in the weight
  // format it is stored in: `--weights` applies to the split model only).
  // Throws Exception naming `path` when it cannot be opened (as Model::Open)
  // or (kInvalidArgument) its vocabulary size differs from `model`'s.
  DraftModelDrafter(const std::string& path, const partition::Model& model);
  ~DraftModelDrafter() override;
  std::string name() const override { return "draft"; }
  std::unique_ptr<DraftRun> Begin() const override;
  size_t bytes() const override;

 private:
  std::unique_ptr<partition::Model> draft_;
  std::shared_ptr<const partition::StageWeights> weights_;
};

}  // namespace splitlm::device
