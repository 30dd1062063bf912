#include "scheduler/hardware.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "transport/error.h"
#include "transport/text_file.h"

namespace splitlm::scheduler {
namespace {

struct FigureSpec {
  const char* key;
  double min, max;
  bool required;
  double HardwareProfile::*field;
};

const std::vector<FigureSpec>& Figures() {
  static const std::vector<FigureSpec> f = {
      {"memory_bandwidth_gb_s", 0.01, 1e5, true, &HardwareProfile::memory_bandwidth_gb_s},
      {"compute_gflop_s", 0.01, 1e7, true, &HardwareProfile::compute_gflop_s},
      {"bandwidth_efficiency", 0.01, 1, true, &HardwareProfile::bandwidth_efficiency},
      {"compute_efficiency", 0.01, 1, true, &HardwareProfile::compute_efficiency},
      {"layer_overhead_us", 0, 1e6, true, &HardwareProfile::layer_overhead_us},
      {"memory_gb", 0.001, 1e5, true, &HardwareProfile::memory_gb},
      {"compute_w", 0, 1e4, false, &HardwareProfile::compute_w},
      {"wait_w", 0, 1e4, false, &HardwareProfile::wait_w},
      {"usd_per_hour", 0, 1e4, false, &HardwareProfile::usd_per_hour},
  };
  return f;
}

double PartUs(const HardwareProfile& hw, double bytes, double flops, int overhead_steps) {
  const double mem_us = bytes / (hw.memory_bandwidth_gb_s * hw.bandwidth_efficiency * 1e3);
  const double flop_us = flops / (hw.compute_gflop_s * hw.compute_efficiency * 1e3);
  return std::max(mem_us, flop_us) + overhead_steps * hw.layer_overhead_us;
}

}  // namespace

namespace {

// "FILE:LINE: KEY: " for an error about `node`.
std::string Where(const std::string& path, const toml::node& node, const std::string& key) {
  return path + ":" + std::to_string(node.source().begin.line) + ": " + key + ": ";
}

// name, kind or description.
void ReadTextKey(const std::string& path, const std::string& key, const toml::node& node,
                 HardwareProfile& hw) {
  if (!node.is_string())
    throw Exception(Exception::kInvalidArgument, Where(path, node, key) + "expected a string");
  const std::string v = *node.value<std::string>();
  if (key == "name") hw.name = v;
  if (key == "kind") {
    if (v != "device" && v != "cloud")
      throw Exception(Exception::kInvalidArgument,
                      Where(path, node, key) + "\"" + v + "\" is not one of device, cloud");
    hw.kind = v;
  }
  if (key == "description") hw.description = v;
}

// A figure of Figures(): { value = NUMBER, source = "..." }, in range.
void ReadFigure(const std::string& path, const std::string& key, const toml::node& node,
                HardwareProfile& hw) {
  auto spec = std::find_if(Figures().begin(), Figures().end(),
                           [&](const FigureSpec& f) { return key == f.key; });
  if (spec == Figures().end())
    throw Exception(Exception::kInvalidArgument, Where(path, node, key) + "unknown key");
  const toml::table* t = node.as_table();
  if (!t)
    throw Exception(
        Exception::kInvalidArgument,
        Where(path, node, key) + "expected { value = NUMBER, source = \"where it comes from\" }");
  for (auto&& [sub, _] : *t) {
    if (sub.str() != "value" && sub.str() != "source") {
      throw Exception(Exception::kInvalidArgument, Where(path, node, key) + "unknown field \"" +
                                                       std::string(sub.str()) +
                                                       "\" (value, source)");
    }
  }
  const toml::node* value = t->get("value");
  const toml::node* source = t->get("source");
  if (!value || !value->is_number())
    throw Exception(Exception::kInvalidArgument, Where(path, node, key) + "value must be a number");
  if (!source || !source->is_string() || source->value<std::string>()->empty()) {
    throw Exception(Exception::kInvalidArgument,
                    Where(path, node, key) + "every figure needs a non-empty source");
  }
  const double v = *value->value<double>();
  if (!(v >= spec->min && v <= spec->max)) {
    throw Exception(Exception::kInvalidArgument, Where(path, *value, key) + std::to_string(v) +
                                                     " is outside " + std::to_string(spec->min) +
                                                     ".." + std::to_string(spec->max));
  }
  hw.*(spec->field) = v;
  hw.sources[key] = *source->value<std::string>();
}

// Name, kind and every figure this kind of profile needs are present.
void CheckComplete(const std::string& path, const HardwareProfile& hw,
                   const std::vector<std::string>& seen) {
  if (hw.name.empty()) throw Exception(Exception::kInvalidArgument, path + ": name: missing");
  if (hw.kind.empty())
    throw Exception(Exception::kInvalidArgument, path + ": kind: missing (device or cloud)");
  for (const auto& f : Figures()) {
    const bool needed =
        f.required ||
        (hw.kind == "device" ? (std::string(f.key) == "compute_w" || std::string(f.key) == "wait_w")
                             : std::string(f.key) == "usd_per_hour");
    if (needed && std::find(seen.begin(), seen.end(), f.key) == seen.end()) {
      throw Exception(Exception::kInvalidArgument,
                      path + ": " + f.key + ": missing (a " + hw.kind + " profile needs it)");
    }
  }
}

}  // namespace

HardwareProfile LoadHardwareProfile(const std::string& path) {
  toml::table root;
  try {
    root = toml::parse(transport::ReadTextFileOrThrow(path, transport::kMaxConfigBytes), path);
  } catch (const toml::parse_error& e) {
    throw Exception(
        Exception::kInvalidArgument,
        path + ":" + std::to_string(e.source().begin.line) + ": " + std::string(e.description()));
  }
  HardwareProfile hw;
  hw.path = path;
  std::vector<std::string> seen;
  for (auto&& [k, node] : root) {
    const std::string key(k.str());
    seen.push_back(key);
    if (key == "name" || key == "kind" || key == "description") {
      ReadTextKey(path, key, node, hw);
    } else {
      ReadFigure(path, key, node, hw);
    }
  }
  CheckComplete(path, hw, seen);
  return hw;
}

double RooflineUs(const HardwareProfile& hw, const partition::ModelConfig& c, const WeightCost& w,
                  const partition::StageSpec& spec, int rows, int sequences, double kv_reads) {
  const double kv_bytes = 2.0 * c.num_kv_heads * c.head_dim * 4;
  const double qd = double(c.num_heads) * c.head_dim;
  double us = 0;
  if (spec.embedding) us += PartUs(hw, rows * w.bytes.embed_row, 0, 0);
  for (int l = spec.begin; l < spec.end; ++l) {
    const double flops =
        rows * w.bytes.layer_params[l] * 2 * w.LayerComputeFactor(l) + 4 * qd * kv_reads;
    us += PartUs(hw, w.bytes.layers[l] + kv_reads * kv_bytes, flops, 1);
  }
  if (spec.head) {
    us += PartUs(hw, w.bytes.head_read,
                 2.0 * c.vocab_size * c.hidden_size * sequences * w.HeadComputeFactor(), 1);
  }
  return us;
}

double RooflineUs(const HardwareProfile& hw, const partition::ModelConfig& c,
                  const partition::StageSpec& spec, int rows, int sequences, double kv_reads) {
  return RooflineUs(hw, c, F32Weights(c), spec, rows, sequences, kv_reads);
}

ComputeProfile RooflineProfile(const HardwareProfile& hw, const partition::ModelConfig& c,
                               const WeightCost& w, uint64_t fingerprint, const ProfileOptions& o) {
  ComputeProfile p;
  p.hardware = "emulated " + hw.name + " (roofline of " + hw.path + ")";
  p.model_fingerprint = fingerprint;
  p.num_layers = c.num_layers;
  p.hidden_size = c.hidden_size;
  p.threads = 0;
  for (int ctx : o.decode_contexts) p.decode_contexts.push_back(std::min(ctx, c.max_context - 1));
  for (int n : o.prefill_lengths) p.prefill_lengths.push_back(std::min(n, c.max_context));
  p.layer_decode_us.assign(c.num_layers, {});
  p.layer_prefill_us.assign(c.num_layers, {});
  for (int l = 0; l < c.num_layers; ++l) {
    partition::StageSpec layer = partition::StageSpec::Range(c, l, l + 1);
    layer.embedding = layer.head = false;
    // A decode step at context `ctx` reads ctx + 1 positions (MeasureProfile's convention).
    for (int ctx : p.decode_contexts)
      p.layer_decode_us[l].push_back(RooflineUs(hw, c, w, layer, 1, 1, ctx + 1.0));
    for (int n : p.prefill_lengths)
      p.layer_prefill_us[l].push_back(RooflineUs(hw, c, w, layer, n, 1, n * (n + 1.0) / 2));
  }
  partition::StageSpec embed = partition::StageSpec::Range(c, 0, 0);
  embed.embedding = true;
  embed.head = false;
  p.embed_us = RooflineUs(hw, c, w, embed, 1, 1, 0);
  partition::StageSpec head = partition::StageSpec::Range(c, c.num_layers, c.num_layers);
  head.embedding = false;
  head.head = true;
  p.head_decode_us = RooflineUs(hw, c, w, head, 1, 1, 0);
  SetWeightMemory(w.bytes, p);
  p.kv_bytes_per_position_per_layer = 2.0 * c.num_kv_heads * c.head_dim * 4;
  return p;
}

ComputeProfile RooflineProfile(const HardwareProfile& hw, const partition::ModelConfig& c,
                               uint64_t fingerprint, const ProfileOptions& o) {
  return RooflineProfile(hw, c, F32Weights(c), fingerprint, o);
}

}  // namespace splitlm::scheduler
