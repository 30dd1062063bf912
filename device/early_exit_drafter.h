// Early-exit drafting: the model's own final norm and head applied to the
// device's hidden state at the cut, as if the model ended there. Costs the
// head's weights on the device (the embedding matrix again for a tied
// model, see bytes()) and one head evaluation per draft.
#pragma once

#include <memory>

#include "device/drafter.h"

namespace splitlm::partition {
class StageWeights;
}

namespace splitlm::device {

// Drafts autoregressively through the device's own layers: draft 1 from the
// last real token's row at the cut; each draft then goes through [0, cut)
// alone, and its row gives the next draft. Those are exactly the rows a
// batched speculative step computes for the drafts (a row does not depend on
// how positions are grouped, partition/stage.h), so the step costs no extra
// layer work; it is sequential instead of one batch. The device's KV caches
// end up holding the drafts as after a batched step, so truncating them to
// the accepted drafts is the agent's ordinary rejection path.
class EarlyExitDrafter : public Drafter {
 public:
  // Loads `model`'s final norm and head (only them). Throws Exception(kCorrupt)
  // for a missing or mis-shaped tensor.
  explicit EarlyExitDrafter(const partition::Model& model);
  std::string name() const override { return "early-exit"; }
  std::unique_ptr<DraftRun> Begin() const override;
  size_t bytes() const override;

 private:
  std::shared_ptr<const partition::StageWeights> head_;
};

}  // namespace splitlm::device
