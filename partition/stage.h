// A stage: the weights of one contiguous layer range of a model, and a KV
// cache for one sequence. The device runs [0, K), the cloud [K, L).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "partition/huge_pages.h"
#include "partition/model_config.h"

namespace splitlm::partition {

class Model;

struct StageSpec {
  int begin = 0;           // first layer
  int end = 0;             // one past the last layer
  bool embedding = false;  // takes token ids (begin == 0)
  bool head = false;       // final norm and LM head, produces logits (end == L)

  // The stage for layers [begin, end) of a model with `config`: embedding iff
  // begin == 0, head iff end == L. Throws Exception(kInvalidArgument) unless
  // 0 <= begin <= end <= L.
  static StageSpec Range(const ModelConfig& config, int begin, int end);
  // The device's side of cut K: embedding and layers [0, K); the head too
  // when K == L (everything local).
  static StageSpec Device(const ModelConfig& config, int cut);
  // The cloud's side of cut K: layers [K, L) and the head, taking hidden
  // states (even at K == 0, where the device sends embeddings).
  static StageSpec Cloud(const ModelConfig& config, int cut);
};

// The weights of a stage (matrices in the model's weight format, see
// weight_matrix.h; the rest fp32), immutable once loaded: share one among
// many Stage objects (sessions) and threads. Holds nothing outside the range.
class StageWeights {
 public:
  // Reads only the tensors `spec` needs from `model`, holding the matrices
  // in model.weights()'s format (weight_matrix.h). Throws Exception(kCorrupt) naming a missing or
  // mis-shaped tensor.
  static std::shared_ptr<const StageWeights> Load(const Model& model, const StageSpec& spec);
  // A view of `spec` (inside this stage's range, with the embedding or head
  // only if this has them) sharing this stage's tensors: no copy. Lets a
  // cloud serve every cut >= its minimum from one load, and a device run its
  // cut and its local fallback from one load. Throws
  // Exception(kInvalidArgument) for a spec outside this one's layers.
  std::shared_ptr<const StageWeights> Slice(const StageSpec& spec) const;
  ~StageWeights();
  StageWeights(const StageWeights&) = delete;
  StageWeights& operator=(const StageWeights&) = delete;

  const StageSpec& spec() const;
  const ModelConfig& config() const;
  uint64_t model_fingerprint() const;
  // Bytes of weights held.
  size_t bytes() const;
  // Bytes of weights read to decode one token (the embedding lookup reads one
  // row of the table as held): the numerator of the decode roofline.
  size_t decode_bytes_per_token() const;
  // The formats the matrices are held in (Model::weights()): an embedding
  // table held apart from the head (untied, or a stage without the head),
  // then by layer range, then the head's: e.g.
  // "embed:q4_k 0-5:q4_k/q6_k 6-11:q4_k head:q6_k", or "0-11:f32 head:f32"
  // (tied: the head's matrix serves as the table). Each layer entry is the
  // set of formats of that layer's q/k/v/o/gate/up/down matrices. Norms and
  // biases are always fp32.
  std::string weight_formats() const;

 private:
  friend class Stage;  // runs on the tensors
  struct Impl;
  const Impl& impl() const { return *impl_; }
  StageWeights();
  std::unique_ptr<Impl> impl_;
};

// Hardware emulation (splitlm sim): told the work and the wall time of every
// Forward / ForwardBatch of a stage it is set on.
class ComputeHook {
 public:
  virtual ~ComputeHook() = default;
  // `rows` positions of `sequences` sequences went through `spec`; their
  // attention read `kv_reads` cached positions in each layer, all rows
  // together; it took `measured_us` on this machine.
  virtual void AfterForward(const StageSpec& spec, int rows, int sequences, double kv_reads,
                            double measured_us) = 0;
};

// What Forward consumes: token ids for a stage with the embedding, hidden
// states ([count, hidden_size] floats, row-major) otherwise.
struct StageInput {
  const int32_t* tokens = nullptr;
  const float* hidden = nullptr;
  int count = 0;
  // A stage with the head writes the logits of every position (count x
  // vocab_size floats, position by position) instead of the last one's:
  // teacher-forced scoring. Each row equals what the last-position output
  // would give for that prefix, bit for bit.
  bool all_logits = false;
};

// One sequence's state in a stage. Not thread-safe; many Stages may share
// their weights. Every row's result is bit-identical however positions are
// grouped into calls (prefill, decode, batches of sessions): see kernels.h.
class Stage {
 public:
  // `max_context` 0 means the model's max_position_embeddings.
  explicit Stage(std::shared_ptr<const StageWeights> weights, int max_context = 0);
  ~Stage();
  Stage(const Stage&) = delete;
  Stage& operator=(const Stage&) = delete;

  const StageSpec& spec() const;
  const StageWeights& weights() const { return *weights_; }
  // Number of positions in the KV cache: the next Forward starts here.
  int position() const { return position_; }
  int max_context() const { return max_context_; }

  // Floats Forward writes for `count` positions: the logits of the last
  // position (vocab_size) for a stage with the head, else count x hidden_size.
  // (count x vocab_size with StageInput::all_logits.)
  size_t OutputSize(int count) const;

  // Runs positions [position(), position() + input.count) and appends them to
  // the KV cache. `out` receives OutputSize(input.count) floats. Throws
  // Exception(kInvalidArgument) (and changes nothing) if the input does not match the
  // spec, a token id is out of range, or the context would overflow.
  void Forward(const StageInput& input, float* out);

  // Runs several sequences in one pass, sharing each weight read among their
  // rows (the cloud batches sessions' decode steps this way). All stages must
  // share one StageWeights. Results are identical to calling Forward on each.
  static void ForwardBatch(const std::vector<Stage*>& stages, const std::vector<StageInput>& inputs,
                           const std::vector<float*>& outs);

  // Forgets positions >= `position` (e.g. to resume or re-cut). Throws if
  // position > this->position().
  void Truncate(int position);

  // Bytes of KV cache allocated, whole huge pages included (grows in chunks
  // as the sequence does).
  size_t kv_bytes() const;

  // Profiling: when set, every Forward adds the microseconds it spends in
  // each part to `us` (resized to layers + 2): [0] input (embedding or
  // copy), [1 + i] the i-th layer of this stage, [last] the head. Null stops.
  void SetPartTimer(std::vector<double>* us) { part_timer_ = us; }
  // Emulation: `hook` (not owned; null stops) sees every Forward, and for
  // ForwardBatch the hook of the first stage sees the batch.
  void SetComputeHook(ComputeHook* hook) { compute_hook_ = hook; }

 private:
  struct Batch;  // one ForwardBatch call's rows and buffers (stage.cpp)
  static void ForwardHooked(const std::vector<Stage*>& stages,
                            const std::vector<StageInput>& inputs, const std::vector<float*>& outs);
  void Reserve(int positions);
  // Layer l's keys, [kv_heads][head_dim][KeyStride(capacity_)], and values,
  // [kv_heads][capacity_][head_dim], in kv_.
  float* Keys(size_t l);
  float* Values(size_t l);

  std::shared_ptr<const StageWeights> weights_;
  int max_context_;
  int position_ = 0;
  int capacity_ = 0;
  // Every layer's keys then values, in one buffer of huge pages: a new
  // session's cache and each doubling of it fault in a few 2 MiB pages
  // instead of thousands of small ones.
  HugePageVector<float> kv_;
  std::vector<double>* part_timer_ = nullptr;
  ComputeHook* compute_hook_ = nullptr;
};

}  // namespace splitlm::partition
