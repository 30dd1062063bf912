// A device stage and a cloud stage in one process, exchanging hidden states
// through an encoded buffer: `splitlm generate --cut` and `codec-eval`.
#pragma once

#include <chrono>
#include <memory>
#include <vector>

#include "cloud/speculation.h"
#include "device/drafter.h"
#include "partition/model.h"
#include "partition/stage.h"
#include "transport/codec.h"

namespace splitlm::cli {

class LocalSplit {
 public:
  // cut == L runs everything in the device stage. Throws Exception(kInvalidArgument) for
  // a cut out of range.
  LocalSplit(const partition::Model& model, int cut, transport::Codec codec)
      : cut_(cut),
        layers_(model.config().num_layers),
        codec_(codec),
        hidden_size_(model.config().hidden_size),
        device_(partition::StageWeights::Load(model,
                                              partition::StageSpec::Device(model.config(), cut))),
        logits_(model.config().vocab_size) {
    if (cut < layers_) {
      cloud_ = std::make_unique<partition::Stage>(
          partition::StageWeights::Load(model, partition::StageSpec::Cloud(model.config(), cut)));
    }
  }

  // Runs `n` positions through both stages; returns the last one's logits.
  const std::vector<float>& Step(const int32_t* tokens, int n) {
    if (!cloud_) {
      device_.Forward({tokens, nullptr, n}, logits_.data());
      return logits_;
    }
    hidden_.resize(device_.OutputSize(n));
    device_.Forward({tokens, nullptr, n}, hidden_.data());
    wire_.resize(transport::EncodedSize(codec_, n, hidden_size_));
    transport::Encode(codec_, hidden_.data(), n, hidden_size_, wire_.data());
    wire_bytes_ += wire_.size();
    transport::Decode(codec_, wire_.data(), wire_.size(), n, hidden_size_, hidden_.data());
    cloud_->Forward({nullptr, hidden_.data(), n}, logits_.data());
    return logits_;
  }

  // Speculative step (split only): `run` drafts up to `k` tokens after `ids`
  // (of which the device stage holds the first `fed`) and runs the new
  // tokens and the drafts through the device stage; the cloud stage runs all
  // their rows, keeps the drafts its own choices agree with
  // (cloud::VerifyDrafts), and both stages forget the rest. The verdict's
  // tokens are the kept drafts, then the next; `drafts` gets what was sent.
  cloud::Verdict Speculate(device::DraftRun& run, const std::vector<int32_t>& ids, int fed, int k,
                           const partition::SamplingParams& sampling,
                           std::vector<int32_t>* drafts) {
    const int start = device_.position(), n = static_cast<int>(ids.size()) - fed;
    const auto t0 = std::chrono::steady_clock::now();
    *drafts = run.Step(
        ids, fed, k, sampling, hidden_size_,
        [this](const int32_t* t, int count) {
          step_rows_.resize(device_.OutputSize(count));
          device_.Forward({t, nullptr, count}, step_rows_.data());
          return step_rows_.data();
        },
        &hidden_);
    const int d = static_cast<int>(drafts->size());
    device_ms_ +=
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    device_rows_ += n + d;
    wire_.resize(transport::EncodedSize(codec_, n + d, hidden_size_));
    transport::Encode(codec_, hidden_.data(), n + d, hidden_size_, wire_.data());
    wire_bytes_ += wire_.size();
    transport::Decode(codec_, wire_.data(), wire_.size(), n + d, hidden_size_, hidden_.data());
    const int vocab = static_cast<int>(logits_.size());
    all_logits_.resize(static_cast<size_t>(n + d) * vocab);
    cloud_->Forward({nullptr, hidden_.data(), n + d, true}, all_logits_.data());
    cloud::Verdict v = cloud::VerifyDrafts(&all_logits_[static_cast<size_t>(n - 1) * vocab], vocab,
                                           *drafts, sampling, start + n);
    device_.Truncate(start + n + static_cast<int>(v.accepted));
    cloud_->Truncate(start + n + static_cast<int>(v.accepted));
    return v;
  }

  bool split() const { return cloud_ != nullptr; }
  const partition::Stage& device() const { return device_; }
  const partition::Stage* cloud() const { return cloud_.get(); }
  size_t wire_bytes() const { return wire_bytes_; }
  // Speculative steps: the device side's time (drafting included) and rows.
  double device_ms() const { return device_ms_; }
  int device_rows() const { return device_rows_; }

 private:
  int cut_, layers_;
  transport::Codec codec_;
  int hidden_size_;
  partition::Stage device_;
  std::unique_ptr<partition::Stage> cloud_;
  std::vector<float> hidden_, logits_, all_logits_, step_rows_;
  std::vector<uint8_t> wire_;
  size_t wire_bytes_ = 0;
  double device_ms_ = 0;
  int device_rows_ = 0;
};

}  // namespace splitlm::cli
