#include "scheduler/config.h"

#include <toml++/toml.h>

#include "transport/error.h"
#include "transport/text_file.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace splitlm::scheduler {
namespace {

using T = KeySpec::Type;

// NOLINTNEXTLINE(readability-function-size): a table of every config key, data only
std::vector<KeySpec> BuildSchema() {
  const double kBig = 1e12;
  return {
      // [model]
      {"model.dir",
       T::kString,
       0,
       0,
       {},
       "(required unless a model is given)",
       "Hugging Face model directory"},
      {"model.tokenizer",
       T::kString,
       0,
       0,
       {},
       "the model's own",
       "tokenizer: tokenizer.json, tokenizer.model, .gguf or a directory"},
      {"model.threads",
       T::kInt,
       1,
       256,
       {},
       "all cores",
       "compute threads (the kernels' pool and LibTorch's intra-op pool)"},
      {"model.weights",
       T::kString,
       0,
       0,
       {"f32", "f16", "q8_0", "q4_0", "q4_k", "q6_k", "q4_k_m"},
       "(as stored)",
       "format the weight matrices are held in: by default as stored (a GGUF file's "
       "Q8_0/Q4_0/Q4_K/Q6_K blocks stay, Q5_0/IQ4_NL become Q8_0 and Q3_K Q6_K blocks of the same "
       "values, F16/BF16 of a file or directory stay 16-bit, other types become fp32); f16 rounds "
       "to fp16 held in 16 bits; a q* value quantises at load (README, Quantised weights)"},
      // [cloud]
      {"cloud.bind",
       T::kString,
       0,
       0,
       {},
       "tcp://127.0.0.1:5555",
       "ZeroMQ endpoint the worker binds; * as port picks one"},
      {"cloud.min_cut",
       T::kInt,
       0,
       4096,
       {},
       "0",
       "lowest cut served: layers [min_cut, L) are loaded"},
      {"cloud.kv_budget_mb",
       T::kFloat,
       0.001,
       kBig,
       {},
       "2048",
       "KV cache budget for all sessions; LRU idle sessions are evicted past it"},
      {"cloud.max_batch", T::kInt, 1, 4096, {}, "32", "requests run through the layers together"},
      {"cloud.batch_window_ms",
       T::kInt,
       0,
       1000,
       {},
       "2",
       "wait this long for the previous batch's sessions to arrive"},
      {"cloud.key",
       T::kString,
       0,
       0,
       {},
       "(none: no CURVE)",
       "the worker's CURVE key pair file (splitlm keygen)"},
      {"cloud.allow",
       T::kString,
       0,
       0,
       {},
       "(none)",
       "allow-list of device public keys, one per line"},
      {"cloud.require_exact",
       T::kBool,
       0,
       0,
       {},
       "false",
       "refuse devices holding the same model in other weight formats"},
      {"cloud.insecure",
       T::kBool,
       0,
       0,
       {},
       "false",
       "allow binding beyond loopback without CURVE (loudly warned)"},
      {"cloud.http", T::kString, 0, 0, {}, "(off)", "HOST:PORT serving GET /metrics and /health"},
      {"cloud.http_public",
       T::kBool,
       0,
       0,
       {},
       "false",
       "allow cloud.http beyond loopback (unencrypted, unauthenticated; warned)"},
      {"cloud.max_sessions",
       T::kInt,
       1,
       1000000,
       {},
       "4096",
       "open sessions, all connections together; past it an open is refused (busy)"},
      {"cloud.max_sessions_per_connection",
       T::kInt,
       1,
       1000000,
       {},
       "64",
       "open sessions of one connection; past it an open is refused (busy)"},
      {"cloud.session_idle_timeout_s",
       T::kInt,
       1,
       10000000,
       {},
       "300",
       "a session without a step for this long is closed (its device rebuilds it)"},
      {"cloud.peer_timeout_s",
       T::kInt,
       1,
       10000000,
       {},
       "60",
       "a connection silent this long (not even heartbeats) loses its sessions; keep above "
       "device.heartbeat_ms"},
      {"cloud.max_queued_messages",
       T::kInt,
       1,
       1000000,
       {},
       "16",
       "messages queued per connection before the worker stops reading it (ZMQ_RCVHWM)"},
      {"cloud.log_lines_per_peer",
       T::kInt,
       0,
       1000000,
       {},
       "10",
       "log lines about one peer's bad input per interval; the rest are counted"},
      {"cloud.drain_timeout_s",
       T::kInt,
       0,
       86400,
       {},
       "30",
       "on SIGTERM the worker refuses new sessions and gives the open ones this long to finish "
       "before it exits; set Kubernetes' terminationGracePeriodSeconds above it"},
      {"cloud.log_interval_s",
       T::kInt,
       1,
       86400,
       {},
       "60",
       "interval of log_lines_per_peer; suppressed counts are logged at its end"},
      // [device]
      {"device.cloud",
       T::kString,
       0,
       0,
       {},
       "tcp://127.0.0.1:5555",
       "the worker's ZeroMQ endpoint; several comma-separated, or dns://NAME:PORT (all its "
       "addresses): each session is placed on the least loaded worker and fails over to another"},
      {"device.resolve_interval_s",
       T::kInt,
       1,
       86400,
       {},
       "30",
       "dns:// names in device.cloud are resolved again after this (at a session's placement)"},
      {"device.cut",
       T::kInt,
       0,
       4096,
       {},
       "(required unless a cut is given or auto_cut)",
       "layers [0, cut) run on the device"},
      {"device.auto_cut",
       T::kBool,
       0,
       0,
       {},
       "false",
       "choose the cut per request with the cost model (a cut of auto)"},
      {"device.fallback",
       T::kString,
       0,
       0,
       {"local", "wait", "fail"},
       "local",
       "what to do when the cloud does not answer"},
      {"device.codec",
       T::kString,
       0,
       0,
       {"f32", "f16", "bf16", "int8"},
       "f32",
       "activation codec at the cut (f32 is exact)"},
      {"device.speculate",
       T::kString,
       0,
       0,
       {},
       "off",
       "speculative decoding in split mode: prompt-lookup[:K], early-exit[:K] or draft:PATH[:K] (K "
       "= most drafts per step, 1..8; PATH a model with the same vocabulary, in its stored format; "
       "exact tokens, fewer round trips)"},
      {"device.step_deadline_ms",
       T::kInt,
       1,
       3600000,
       {},
       "5000",
       "a step not answered by then fails over"},
      {"device.wait_deadline_ms",
       T::kInt,
       1,
       86400000,
       {},
       "30000",
       "fallback = wait gives up after this"},
      {"device.retry_ms",
       T::kInt,
       1,
       3600000,
       {},
       "1000",
       "fallback = local probes the cloud again after this"},
      {"device.heartbeat_ms",
       T::kInt,
       1,
       600000,
       {},
       "500",
       "heartbeat interval; 3 missed = cloud dead"},
      {"device.key", T::kString, 0, 0, {}, "(none: no CURVE)", "this device's CURVE key pair file"},
      {"device.server_key", T::kString, 0, 0, {}, "(none)", "the worker's public key file"},
      {"device.http",
       T::kString,
       0,
       0,
       {},
       "127.0.0.1:8080",
       "HOST:PORT of the OpenAI-compatible API (serve)"},
      {"device.require_exact",
       T::kBool,
       0,
       0,
       {},
       "false",
       "refuse a cloud holding the same model in other weight formats"},
      {"device.http_public",
       T::kBool,
       0,
       0,
       {},
       "false",
       "allow device.http beyond loopback (unencrypted, unauthenticated; warned)"},
      {"device.chat_template",
       T::kString,
       0,
       0,
       {},
       "the model's own",
       "chat template for /v1/chat/completions: llama2, llama3, chatml, mistral, zephyr, or a "
       "FILE"},
      // [scheduler]
      {"scheduler.objective",
       T::kString,
       0,
       0,
       {"latency", "energy", "cost", "weighted"},
       "latency",
       "what the chosen cut minimises"},
      {"scheduler.weight_ms",
       T::kFloat,
       0,
       kBig,
       {},
       "1",
       "weighted objective: score per ms of time per token"},
      {"scheduler.weight_mj",
       T::kFloat,
       0,
       kBig,
       {},
       "0",
       "weighted objective: score per mJ of device energy per token"},
      {"scheduler.weight_micro_usd",
       T::kFloat,
       0,
       kBig,
       {},
       "0",
       "weighted objective: score per micro-dollar of cloud cost per token"},
      {"scheduler.memory_budget_mb",
       T::kFloat,
       0,
       kBig,
       {},
       "(none)",
       "device memory limit: weights held + KV cache at max context"},
      {"scheduler.privacy_floor",
       T::kInt,
       0,
       4096,
       {},
       "0",
       "at least this many layers stay on the device"},
      {"scheduler.max_tpot_ms",
       T::kFloat,
       0,
       kBig,
       {},
       "(none)",
       "latency SLO: time per output token"},
      {"scheduler.max_ttft_ms",
       T::kFloat,
       0,
       kBig,
       {},
       "(none)",
       "latency SLO: time to first token"},
      {"scheduler.max_energy_mj",
       T::kFloat,
       0,
       kBig,
       {},
       "(none)",
       "device energy budget per token"},
      {"scheduler.prompt_tokens",
       T::kInt,
       1,
       1 << 20,
       {},
       "64",
       "expected prompt length (time to first token)"},
      {"scheduler.context",
       T::kInt,
       1,
       1 << 20,
       {},
       "64",
       "context length the time per token is predicted at"},
      {"scheduler.device_profile",
       T::kString,
       0,
       0,
       {},
       "(measure now)",
       "device profile file (splitlm profile); measured and cached there if absent"},
      {"scheduler.cloud_profile",
       T::kString,
       0,
       0,
       {},
       "(device profile / cloud_speedup)",
       "cloud profile file"},
      {"scheduler.cloud_speedup",
       T::kFloat,
       1e-6,
       kBig,
       {},
       "1",
       "without a cloud profile: cloud layer time = device time / this"},
      {"scheduler.margin",
       T::kFloat,
       0,
       10,
       {},
       "0.1",
       "auto cut: a new cut must be better by this fraction to be taken"},
      {"scheduler.follow_drift",
       T::kBool,
       0,
       0,
       {},
       "true",
       "auto cut: rescale both profiles by the measured compute time of real decode steps"},
      {"scheduler.device_weights",
       T::kString,
       0,
       0,
       {"model", "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k", "q4_k_m"},
       "model",
       "weight format the device holds, for memory and time (model = the model's own: a GGUF "
       "file's tensor types, f32 for a directory; docs/scheduler.md)"},
      {"scheduler.cloud_weights",
       T::kString,
       0,
       0,
       {"model", "f32", "f16", "bf16", "q8_0", "q4_0", "q4_k", "q6_k", "q4_k_m"},
       "model",
       "weight format the cloud holds, as device_weights"},
      {"scheduler.quant_compute_factor",
       T::kFloat,
       0.01,
       100,
       {},
       "1",
       "compute-bound (prefill) time of block-quantised weights relative to fp32 (1 = same flops; "
       "assumption, measure yours)"},
      {"scheduler.cloud_queue_ms",
       T::kFloat,
       0,
       kBig,
       {},
       "0",
       "expected queueing at the cloud per step"},
      {"scheduler.cloud_usd_per_hour",
       T::kFloat,
       0,
       kBig,
       {},
       "0.36",
       "price of one cloud compute-hour"},
      {"scheduler.acceptance",
       T::kFloat,
       0,
       1,
       {},
       "(the drafter's prior)",
       "speculative: per-position draft acceptance rate the plan assumes until the agent measures "
       "one (docs/scheduler.md)"},
      {"scheduler.draft_step_ms",
       T::kFloat,
       0,
       kBig,
       {},
       "0",
       "speculative with a draft model: its decode step on the device, ms per draft token"},
      // [link]
      {"link.rtt_ms", T::kFloat, 0, kBig, {}, "10", "network round-trip time"},
      {"link.up_mbit_s", T::kFloat, 1e-6, kBig, {}, "50", "uplink bandwidth"},
      {"link.down_mbit_s", T::kFloat, 1e-6, kBig, {}, "100", "downlink bandwidth"},
      {"link.type",
       T::kString,
       0,
       0,
       {"wifi", "lte", "lte-2021", "5g", "5g-mmwave", "3g"},
       "wifi",
       "radio energy preset: lte = Huang et al. MobiSys 2012, lte-2021 / 5g (NSA low-band) / "
       "5g-mmwave = Narayanan et al. SIGCOMM 2021 (sources in docs/scheduler.md); the keys below "
       "override it"},
      {"link.tx_nj_per_byte", T::kFloat, 0, kBig, {}, "2265 (wifi)", "radio energy per byte sent"},
      {"link.rx_nj_per_byte",
       T::kFloat,
       0,
       kBig,
       {},
       "1096 (wifi)",
       "radio energy per byte received"},
      {"link.radio_w",
       T::kFloat,
       0,
       kBig,
       {},
       "0.133 (wifi)",
       "radio power while a step is out (network and cloud time)"},
      // [power]
      {"power.hardware",
       T::kString,
       0,
       0,
       {},
       "(none)",
       "device hardware profile (examples/hardware/*.toml, relative to this file): sets compute_w "
       "and wait_w"},
      {"power.compute_w",
       T::kFloat,
       0,
       kBig,
       {},
       "3",
       "device power while computing (assumption: set it for your device; examples/hardware/*.toml "
       "have sourced figures)"},
      {"power.wait_w",
       T::kFloat,
       0,
       kBig,
       {},
       "0.5",
       "device power while waiting for the cloud, radio excluded (assumption, as above)"},
  };
}

const char* TypeName(T t) {
  switch (t) {
    case T::kInt: return "an integer";
    case T::kFloat: return "a number";
    case T::kString: return "a string";
    case T::kBool: return "true or false";
  }
  return "?";
}

std::string Fmt(double v) {
  std::ostringstream s;
  s.precision(15);
  s << v;
  return s.str();
}

}  // namespace

const std::vector<KeySpec>& ConfigSchema() {
  static const std::vector<KeySpec> schema = BuildSchema();
  return schema;
}

const KeySpec& SchemaKey(const std::string& key) {
  const auto& schema = ConfigSchema();
  auto spec =
      std::find_if(schema.begin(), schema.end(), [&](const KeySpec& k) { return k.key == key; });
  if (spec == schema.end())
    throw Exception(Exception::kInvalidArgument, key + ": unknown key (see docs/config.md)");
  return *spec;
}

std::string CheckNumber(const KeySpec& spec, double value) {
  if (!std::isfinite(value)) return Fmt(value) + " is not a finite number";
  if (spec.type == T::kInt && value != std::floor(value)) return Fmt(value) + " is not an integer";
  if (value < spec.min || value > spec.max)
    return Fmt(value) + " is outside " + Fmt(spec.min) + ".." + Fmt(spec.max);
  return "";
}

std::string CheckChoice(const KeySpec& spec, const std::string& value) {
  if (spec.choices.empty() ||
      std::find(spec.choices.begin(), spec.choices.end(), value) != spec.choices.end())
    return "";
  std::string all;
  for (const auto& ch : spec.choices) all += (all.empty() ? "" : ", ") + ch;
  return "\"" + value + "\" is not one of " + all;
}

std::string CheckText(const KeySpec& spec, const std::string& text) {
  switch (spec.type) {
    case T::kString: return CheckChoice(spec, text);
    case T::kBool:
      return text == "true" || text == "false" ? "" : "\"" + text + "\" is not true or false";
    case T::kInt:
    case T::kFloat: {
      const char* begin = text.c_str();
      char* end = nullptr;
      const double v = std::strtod(begin, &end);
      if (text.empty() || end != begin + text.size() ||
          std::isspace(static_cast<unsigned char>(text[0]))) {
        return "\"" + text + "\" is not " + TypeName(spec.type);
      }
      if (spec.type == T::kInt && text.find_first_not_of("+-0123456789") != std::string::npos) {
        return "\"" + text + "\" is not an integer";
      }
      return CheckNumber(spec, v);
    }
  }
  return "";
}

std::string ConfigMarkdown() {
  std::string out = "| key | type | default | meaning |\n|---|---|---|---|\n";
  for (const auto& k : ConfigSchema()) {
    std::string type = k.type == T::kInt     ? "integer"
                       : k.type == T::kFloat ? "number"
                       : k.type == T::kBool  ? "bool"
                                             : "string";
    if ((k.type == T::kInt || k.type == T::kFloat) && k.max > k.min)
      type += " " + Fmt(k.min) + ".." + Fmt(k.max);
    if (!k.choices.empty()) {
      type += " (";
      for (size_t i = 0; i < k.choices.size(); ++i) type += (i ? ", " : "") + k.choices[i];
      type += ")";
    }
    out += "| `" + k.key + "` | " + type + " | " + k.default_value + " | " + k.help + " |\n";
  }
  return out;
}

Config Config::Load(const std::string& path) {
  return Parse(transport::ReadTextFileOrThrow(path, transport::kMaxConfigBytes), path);
}

namespace {

// "origin:line: key: ", the start of every error about one node of the file.
std::string Where(const std::string& origin, const toml::node& node, const std::string& key) {
  return origin + ":" + std::to_string(node.source().begin.line) + ": " + key + ": ";
}

toml::table ParseToml(const std::string& text, const std::string& origin) {
  try {
    return toml::parse(text, origin);
  } catch (const toml::parse_error& e) {
    throw Exception(
        Exception::kInvalidArgument,
        origin + ":" + std::to_string(e.source().begin.line) + ": " + std::string(e.description()));
  }
}

// The schema's entry for `key`, or "origin:line: key: unknown key".
const KeySpec& FindKey(const std::string& key, const toml::node& node, const std::string& origin) {
  const auto& schema = ConfigSchema();
  auto spec = std::find_if(schema.begin(), schema.end(),
                           [&](const KeySpec& known) { return known.key == key; });
  if (spec == schema.end())
    throw Exception(Exception::kInvalidArgument,
                    Where(origin, node, key) + "unknown key (see docs/config.md)");
  return *spec;
}

// Throws "origin:line: key: expected <type>" unless `node` holds the type
// `spec` declares (any number for a float key).
void RequireType(const KeySpec& spec, const toml::node& node, const std::string& origin,
                 const std::string& key) {
  bool matches = false;
  switch (spec.type) {
    case T::kInt: matches = node.is_integer(); break;
    case T::kFloat: matches = node.is_number(); break;
    case T::kString: matches = node.is_string(); break;
    case T::kBool: matches = node.is_boolean(); break;
  }
  if (!matches)
    throw Exception(Exception::kInvalidArgument,
                    Where(origin, node, key) + "expected " + TypeName(spec.type));
}

}  // namespace

Config Config::Parse(const std::string& text, const std::string& origin) {
  Config config;
  config.origin_ = origin;
  const toml::table root = ParseToml(text, origin);
  for (auto&& [section, section_node] : root) {
    const std::string section_name(section.str());
    const toml::table* table = section_node.as_table();
    if (!table)
      throw Exception(Exception::kInvalidArgument, Where(origin, section_node, section_name) +
                                                       "expected a [" + section_name +
                                                       "] section, not a value");
    for (auto&& [name, node] : *table) {
      const std::string key = section_name + "." + std::string(name.str());
      const KeySpec& spec = FindKey(key, node, origin);
      RequireType(spec, node, origin, key);
      std::string why;
      Value value;
      value.type = spec.type;
      switch (spec.type) {
        case T::kInt:
          value.i = *node.value<int64_t>();
          why = CheckNumber(spec, static_cast<double>(value.i));
          break;
        case T::kFloat:
          value.f = *node.value<double>();
          why = CheckNumber(spec, value.f);
          break;
        case T::kString:
          value.s = *node.value<std::string>();
          why = CheckChoice(spec, value.s);
          break;
        case T::kBool: value.b = *node.value<bool>(); break;
      }
      if (!why.empty())
        throw Exception(Exception::kInvalidArgument, Where(origin, node, key) + why);
      config.values_[key] = std::move(value);
    }
  }
  return config;
}

std::optional<int64_t> Config::Int(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return std::nullopt;
  return it->second.i;
}

std::optional<double> Config::Float(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return std::nullopt;
  return it->second.type == T::kInt ? static_cast<double>(it->second.i) : it->second.f;
}

std::optional<std::string> Config::String(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return std::nullopt;
  return it->second.s;
}

std::optional<bool> Config::Bool(const std::string& key) const {
  auto it = values_.find(key);
  if (it == values_.end()) return std::nullopt;
  return it->second.b;
}

}  // namespace splitlm::scheduler
