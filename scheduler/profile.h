// Compute profiles: measured time per layer for decode (by context length)
// and prefill (by prompt length), plus embedding and head, for one model on
// one machine. The device measures its own at start-up or with
// `splitlm profile`; the cloud worker measures its own and reports it.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace splitlm::partition {
class Model;
}

namespace splitlm::scheduler {

struct ComputeProfile {
  std::string hardware;  // CPU model and thread count (or a profile name)
  uint64_t model_fingerprint = 0;
  int num_layers = 0;
  int hidden_size = 0;
  int threads = 0;
  std::vector<int> decode_contexts;                   // context lengths measured
  std::vector<std::vector<double>> layer_decode_us;   // [layer][context index]
  std::vector<int> prefill_lengths;                   // prompt lengths measured
  std::vector<std::vector<double>> layer_prefill_us;  // [layer][length index], whole prompt
  double embed_us = 0;                                // one token
  double head_decode_us = 0;                          // final norm + LM head, one token
  // The weight format the layers held when measured (partition/weight_bytes.h:
  // f32, q4_k_m, ..., or gguf for a GGUF file's own types); f32 in profiles
  // written before formats were recorded.
  std::string weights = "f32";
  // Memory, bytes. layer_weight_bytes holds each layer's weights in that
  // format; when empty (older profiles) every layer takes layer_bytes.
  double layer_bytes = 0;
  std::vector<double> layer_weight_bytes;
  double embed_bytes = 0;
  double head_bytes = 0;
  double kv_bytes_per_position_per_layer = 0;

  // Piecewise-linear interpolation in the context (or prompt) length, linear
  // extrapolation beyond the measured range.
  double DecodeUs(int layer, int context) const;
  double PrefillUs(int layer, int tokens) const;
  // One decode step through layers [begin, end), plus the embedding and the
  // head if asked.
  double StepUs(int begin, int end, int context, bool embed, bool head) const;
  // One step of `positions` new tokens at once (a speculative step: the new
  // token and its drafts) through layers [begin, end), embedding and head
  // (for every position) if asked. Profiles time single-token decode steps
  // and whole-prompt prefills, not small batches, so a batch is modelled as
  // one decode step plus (positions - 1) x ExtraPositionUs: the first
  // position pays for reading the weights, each further one its marginal
  // compute, which is the slope of the prefill times. positions = 1 is
  // StepUs exactly.
  double BatchStepUs(int begin, int end, int context, int positions, bool embed, bool head) const;
  // The marginal time of one more position in a batched step of `layer`:
  // the prefill slope between the shortest and the longest measured prompt
  // (prefill(n) / n with one length), clamped to [0, DecodeUs(layer,
  // context)]: an extra position never costs more than a step of its own.
  double ExtraPositionUs(int layer, int context) const;
  // Weights of layers [begin, end), bytes.
  double HeldLayerBytes(int begin, int end) const;
  // Every time multiplied by `factor` (see ComputeDrift).
  ComputeProfile Scaled(double factor) const;

  std::string ToJson() const;
  // Throws Exception(kCorrupt) naming `origin` and the field.
  static ComputeProfile FromJson(const std::string& text, const std::string& origin);
};

struct ProfileOptions {
  std::vector<int> decode_contexts = {16, 256};
  std::vector<int> prefill_lengths = {16, 128};
  // The median of this many runs counts: the typical time, which is what a
  // token will take, rather than the best, which is biased low on a busy
  // machine.
  int repeats = 5;
  int threads = 1;  // the compute threads in use (recorded with the hardware)
  std::function<void(const std::string&)> progress;
};

// Times each layer of `model` on this machine with the current thread count.
ComputeProfile MeasureProfile(const partition::Model& model, const ProfileOptions& options);

// "CPU model name x N threads" for this machine.
std::string HardwareId(int threads);

// Loads `path` if it exists and matches the model and hardware; otherwise
// measures and writes it (a cache keyed by fingerprint and hardware).
ComputeProfile LoadOrMeasureProfile(const partition::Model& model, const std::string& path,
                                    const ProfileOptions& options, bool* measured = nullptr);

}  // namespace splitlm::scheduler
