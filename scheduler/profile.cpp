#include "scheduler/profile.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "partition/bench.h"
#include "partition/model.h"
#include "partition/stage.h"
#include "partition/weight_bytes.h"
#include "transport/error.h"
#include "transport/text_file.h"

namespace splitlm::scheduler {
namespace {

double Interpolate(const std::vector<int>& xs, const std::vector<double>& ys, int x) {
  if (xs.empty()) return 0;
  if (xs.size() == 1) return ys[0] * (xs[0] > 0 ? static_cast<double>(x) / xs[0] : 1.0);
  size_t i = 1;
  while (i + 1 < xs.size() && x > xs[i]) ++i;
  const double x0 = xs[i - 1], x1 = xs[i], y0 = ys[i - 1], y1 = ys[i];
  return std::max(0.0, y0 + (y1 - y0) * (x - x0) / (x1 - x0));
}

// The weight format whose layer 0 takes `layer_bytes` (what the loaded stage
// holds; weight_bytes.h counts held bytes, so a match is exact): the model as
// opened (a GGUF file's own types, or its --weights), else the first format
// of WeightFormatNames() that matches (f16 and bf16 are alike in bytes),
// else f32.
std::string HeldFormat(const partition::Model& model, double layer_bytes) {
  if (model.config().num_layers < 1) return "f32";
  if (model.is_gguf() && partition::ModelWeightBytes(model, "model").layers.at(0) == layer_bytes)
    return "gguf";
  for (const auto& f : partition::WeightFormatNames()) {
    if (partition::WeightBytesOf(model.config(), f).layers.at(0) == layer_bytes) return f;
  }
  return "f32";
}

}  // namespace

double ComputeProfile::DecodeUs(int layer, int context) const {
  return Interpolate(decode_contexts, layer_decode_us.at(layer), context);
}

double ComputeProfile::PrefillUs(int layer, int tokens) const {
  return Interpolate(prefill_lengths, layer_prefill_us.at(layer), tokens);
}

std::string ComputeProfile::ToJson() const {
  nlohmann::json j = {{"hardware", hardware},
                      {"model_fingerprint", model_fingerprint},
                      {"num_layers", num_layers},
                      {"hidden_size", hidden_size},
                      {"threads", threads},
                      {"decode_contexts", decode_contexts},
                      {"layer_decode_us", layer_decode_us},
                      {"prefill_lengths", prefill_lengths},
                      {"layer_prefill_us", layer_prefill_us},
                      {"embed_us", embed_us},
                      {"head_decode_us", head_decode_us},
                      {"weights", weights},
                      {"layer_bytes", layer_bytes},
                      {"layer_weight_bytes", layer_weight_bytes},
                      {"embed_bytes", embed_bytes},
                      {"head_bytes", head_bytes},
                      {"kv_bytes_per_position_per_layer", kv_bytes_per_position_per_layer}};
  return j.dump(2) + "\n";
}

ComputeProfile ComputeProfile::FromJson(const std::string& text, const std::string& origin) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    throw Exception(Exception::kCorrupt, origin + ": not a JSON profile");
  ComputeProfile p;
  try {
    p.hardware = j.at("hardware").get<std::string>();
    p.model_fingerprint = j.at("model_fingerprint").get<uint64_t>();
    p.num_layers = j.at("num_layers").get<int>();
    p.hidden_size = j.value("hidden_size", 0);
    p.threads = j.value("threads", 0);
    p.decode_contexts = j.at("decode_contexts").get<std::vector<int>>();
    p.layer_decode_us = j.at("layer_decode_us").get<std::vector<std::vector<double>>>();
    p.prefill_lengths = j.at("prefill_lengths").get<std::vector<int>>();
    p.layer_prefill_us = j.at("layer_prefill_us").get<std::vector<std::vector<double>>>();
    p.embed_us = j.at("embed_us").get<double>();
    p.head_decode_us = j.at("head_decode_us").get<double>();
    p.weights = j.value("weights", std::string("f32"));
    p.layer_bytes = j.at("layer_bytes").get<double>();
    p.layer_weight_bytes = j.value("layer_weight_bytes", std::vector<double>{});
    p.embed_bytes = j.at("embed_bytes").get<double>();
    p.head_bytes = j.at("head_bytes").get<double>();
    p.kv_bytes_per_position_per_layer = j.at("kv_bytes_per_position_per_layer").get<double>();
  } catch (const nlohmann::json::exception& e) {
    throw Exception(Exception::kCorrupt, origin + ": bad profile: " + e.what());
  }
  if (p.num_layers < 0 || static_cast<int>(p.layer_decode_us.size()) != p.num_layers ||
      static_cast<int>(p.layer_prefill_us.size()) != p.num_layers || p.decode_contexts.empty() ||
      p.prefill_lengths.empty()) {
    throw Exception(Exception::kCorrupt, origin + ": profile tables do not match num_layers");
  }
  if (!p.layer_weight_bytes.empty() &&
      static_cast<int>(p.layer_weight_bytes.size()) != p.num_layers) {
    throw Exception(Exception::kCorrupt,
                    origin + ": layer_weight_bytes must have num_layers entries");
  }
  for (const auto& row : p.layer_decode_us) {
    if (row.size() != p.decode_contexts.size())
      throw Exception(Exception::kCorrupt,
                      origin + ": layer_decode_us rows must match decode_contexts");
  }
  for (const auto& row : p.layer_prefill_us) {
    if (row.size() != p.prefill_lengths.size())
      throw Exception(Exception::kCorrupt,
                      origin + ": layer_prefill_us rows must match prefill_lengths");
  }
  return p;
}

std::string HardwareId(int threads) {
  std::ifstream in("/proc/cpuinfo");
  std::string line, model = "unknown CPU";
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0 || line.rfind("Model", 0) == 0) {
      model = line.substr(line.find(':') + 2);
      break;
    }
  }
  return model + " x" + std::to_string(threads) + " threads";
}

double ComputeProfile::StepUs(int begin, int end, int context, bool embed, bool head) const {
  double us = (embed ? embed_us : 0) + (head ? head_decode_us : 0);
  for (int l = begin; l < end; ++l) us += DecodeUs(l, context);
  return us;
}

double ComputeProfile::ExtraPositionUs(int layer, int context) const {
  const auto& ys = layer_prefill_us.at(layer);
  if (prefill_lengths.empty()) return DecodeUs(layer, context);
  double slope = 0;
  if (prefill_lengths.size() == 1 || prefill_lengths.back() == prefill_lengths.front()) {
    slope = prefill_lengths.front() > 0 ? ys.front() / prefill_lengths.front() : 0;
  } else {
    slope = (ys.back() - ys.front()) / (prefill_lengths.back() - prefill_lengths.front());
  }
  return std::clamp(slope, 0.0, DecodeUs(layer, context));
}

double ComputeProfile::BatchStepUs(int begin, int end, int context, int positions, bool embed,
                                   bool head) const {
  const int extra = std::max(0, positions - 1);
  double us = StepUs(begin, end, context, embed, head);
  if (extra == 0) return us;
  if (embed) us += extra * embed_us;
  double ratio_sum = 0;
  int ratio_n = 0;
  for (int l = begin; l < end; ++l) us += extra * ExtraPositionUs(l, context);
  if (head) {
    // The head has no prefill timing of its own: its extra positions cost
    // what the model's layers' do relative to their decode step.
    for (int l = 0; l < num_layers; ++l) {
      const double d = DecodeUs(l, context);
      if (d > 0) ratio_sum += ExtraPositionUs(l, context) / d, ++ratio_n;
    }
    us += extra * head_decode_us * (ratio_n > 0 ? ratio_sum / ratio_n : 1.0);
  }
  return us;
}

double ComputeProfile::HeldLayerBytes(int begin, int end) const {
  double bytes = 0;
  for (int l = begin; l < end; ++l) {
    bytes +=
        layer_weight_bytes.empty() ? layer_bytes : layer_weight_bytes.at(static_cast<size_t>(l));
  }
  return bytes;
}

ComputeProfile ComputeProfile::Scaled(double factor) const {
  ComputeProfile p = *this;
  for (auto& layer : p.layer_decode_us)
    for (double& v : layer) v *= factor;
  for (auto& layer : p.layer_prefill_us)
    for (double& v : layer) v *= factor;
  p.embed_us *= factor;
  p.head_decode_us *= factor;
  return p;
}

namespace {

// Bytes of the embedding, the head, each layer and its KV entry, and the
// weight format they are held in, as the planning arithmetic counts them
// (partition::WeightBytes, equal to what the stages hold): the head is what a
// stage holding the embedding adds by holding it too, so a tied table is
// counted once. A property of the model as opened, not of a measurement: a
// cached profile gets them anew (they change when the held formats do).
void FillSizes(const partition::Model& model, ComputeProfile& p) {
  const auto& c = model.config();
  const partition::WeightBytes w = partition::ModelWeightBytes(model, "model");
  p.kv_bytes_per_position_per_layer = 2.0 * c.num_kv_heads * c.head_dim * sizeof(float);
  p.embed_bytes = w.embed;
  p.head_bytes = w.head;
  p.layer_weight_bytes = w.layers;
  p.layer_bytes = w.layers.empty() ? 0 : w.layers[0];
  p.weights = HeldFormat(model, p.layer_bytes);
}

// Times the parts of whole-model runs: each part's median over the repeats.
// Every part is timed inside whole-model runs (Stage::SetPartTimer), so the
// figures carry the cache and memory behaviour of a real step.
class PartTimer {
 public:
  PartTimer(partition::Stage& stage, const partition::ModelConfig& config, int repeats)
      : stage_(stage),
        config_(config),
        repeats_(repeats),
        logits_(config.vocab_size),
        tokens_(static_cast<size_t>(config.max_context)) {
    for (size_t i = 0; i < tokens_.size(); ++i)
      tokens_[i] = static_cast<int32_t>((i * 7919 + 13) % config.vocab_size);
  }

  // Per part (embedding, layers, head): one decode step after `context`
  // positions, the mean of `steps` steps.
  std::vector<double> Decode(int context, int steps) {
    return Median([&](std::vector<double>& parts) {
      stage_.Truncate(0);
      stage_.Forward({tokens_.data(), nullptr, context}, logits_.data());
      stage_.SetPartTimer(&parts);
      for (int s = 0; s < steps; ++s)
        stage_.Forward({&tokens_[context + s], nullptr, 1}, logits_.data());
      stage_.SetPartTimer(nullptr);
      for (double& v : parts) v /= steps;
    });
  }

  // Per part: a whole prompt of `tokens` positions.
  std::vector<double> Prefill(int tokens) {
    return Median([&](std::vector<double>& parts) {
      stage_.Truncate(0);
      stage_.SetPartTimer(&parts);
      stage_.Forward({tokens_.data(), nullptr, tokens}, logits_.data());
      stage_.SetPartTimer(nullptr);
    });
  }

 private:
  std::vector<double> Median(const std::function<void(std::vector<double>&)>& run) {
    std::vector<std::vector<double>> runs(config_.num_layers + 2);
    std::vector<double> parts;
    for (int r = 0; r < repeats_; ++r) {
      parts.assign(config_.num_layers + 2, 0.0);
      run(parts);
      for (size_t i = 0; i < parts.size(); ++i) runs[i].push_back(parts[i]);
    }
    return partition::MedianOfEach(std::move(runs));
  }

  partition::Stage& stage_;
  const partition::ModelConfig& config_;
  int repeats_;
  std::vector<float> logits_;
  std::vector<int32_t> tokens_;
};

}  // namespace

ComputeProfile MeasureProfile(const partition::Model& model, const ProfileOptions& options) {
  const auto& c = model.config();
  ComputeProfile p;
  p.threads = options.threads;
  p.hardware = HardwareId(options.threads);
  p.model_fingerprint = model.fingerprint();
  p.num_layers = c.num_layers;
  p.hidden_size = c.hidden_size;
  for (int ctx : options.decode_contexts)
    p.decode_contexts.push_back(std::min(ctx, c.max_context - 1));
  for (int n : options.prefill_lengths) p.prefill_lengths.push_back(std::min(n, c.max_context));
  auto say = [&](const std::string& s) {
    if (options.progress) options.progress(s);
  };
  auto all = partition::StageWeights::Load(model, partition::StageSpec::Device(c, c.num_layers));
  FillSizes(model, p);
  partition::Stage stage(all);
  PartTimer timer(stage, c, options.repeats);
  const int kSteps = 8;
  p.layer_decode_us.assign(c.num_layers, {});
  p.layer_prefill_us.assign(c.num_layers, {});
  for (size_t ci = 0; ci < p.decode_contexts.size(); ++ci) {
    const int ctx = std::min(p.decode_contexts[ci], c.max_context - kSteps - 1);
    say("decode at context " + std::to_string(ctx));
    const auto median = timer.Decode(ctx, kSteps);
    for (int l = 0; l < c.num_layers; ++l) p.layer_decode_us[l].push_back(median[1 + l]);
    if (ci == 0) {
      p.embed_us = median[0];
      p.head_decode_us = median[c.num_layers + 1];
    }
  }
  for (int n : p.prefill_lengths) {
    say("prefill of " + std::to_string(n) + " tokens");
    const auto median = timer.Prefill(n);
    for (int l = 0; l < c.num_layers; ++l) p.layer_prefill_us[l].push_back(median[1 + l]);
  }
  return p;
}

ComputeProfile LoadOrMeasureProfile(const partition::Model& model, const std::string& path,
                                    const ProfileOptions& options, bool* measured) {
  if (std::filesystem::exists(path)) {
    ComputeProfile p = ComputeProfile::FromJson(
        transport::ReadTextFileOrThrow(path, transport::kMaxListBytes), path);
    if (p.model_fingerprint == model.fingerprint() && p.hardware == HardwareId(options.threads)) {
      FillSizes(model, p);
      if (measured) *measured = false;
      return p;
    }
  }
  ComputeProfile p = MeasureProfile(model, options);
  std::ofstream out(path, std::ios::trunc);
  out << p.ToJson();
  if (measured) *measured = true;
  return p;
}

}  // namespace splitlm::scheduler
