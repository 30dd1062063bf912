#include "partition/model_config.h"

#include <algorithm>
#include <nlohmann/json.hpp>

#include "transport/error.h"

namespace splitlm::partition {
namespace {

using nlohmann::json;

[[noreturn]] void Fail(const std::string& origin, const std::string& what) {
  throw Exception(Exception::kCorrupt, origin + ": " + what);
}

int RequiredInt(const json& j, const char* key, const std::string& origin) {
  auto it = j.find(key);
  if (it == j.end()) Fail(origin, std::string("missing key \"") + key + "\"");
  if (!it->is_number_integer()) Fail(origin, std::string("\"") + key + "\" must be an integer");
  int64_t v = it->get<int64_t>();
  if (v <= 0 || v > (int64_t{1} << 30)) {
    Fail(origin, std::string("\"") + key + "\" = " + std::to_string(v) + " is out of range");
  }
  return static_cast<int>(v);
}

double OptionalPositive(const json& j, const char* key, double def, const std::string& origin) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_number()) Fail(origin, std::string("\"") + key + "\" must be a number");
  double v = it->get<double>();
  if (!(v > 0)) Fail(origin, std::string("\"") + key + "\" must be positive");
  return v;
}

bool OptionalBool(const json& j, const char* key, bool def, const std::string& origin) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return def;
  if (!it->is_boolean()) Fail(origin, std::string("\"") + key + "\" must be true or false");
  return it->get<bool>();
}

std::string OptionalString(const json& j, const char* key, const std::string& origin) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return "";
  if (!it->is_string()) Fail(origin, std::string("\"") + key + "\" must be a string");
  return it->get<std::string>();
}

// A special token id from config.json: an integer inside the vocabulary (an
// EOS id outside it would never end a generation; a BOS id outside it would
// index past the embedding).
int SpecialId(const json& v, const char* key, int vocab_size, const std::string& origin) {
  if (!v.is_number_integer()) Fail(origin, std::string("\"") + key + "\" must hold integers");
  const bool inside = v.is_number_unsigned()
                          ? v.get<uint64_t>() < static_cast<uint64_t>(vocab_size)
                          : v.get<int64_t>() >= 0 && v.get<int64_t>() < vocab_size;
  if (!inside) {
    Fail(origin, std::string("\"") + key + "\" = " + v.dump() +
                     " is outside the vocabulary (vocab_size " + std::to_string(vocab_size) + ")");
  }
  return v.get<int>();
}

}  // namespace

const char* ArchName(Arch arch) {
  switch (arch) {
    case Arch::kLlama: return "LlamaForCausalLM";
    case Arch::kMistral: return "MistralForCausalLM";
    case Arch::kQwen2: return "Qwen2ForCausalLM";
  }
  return "?";
}

bool ModelConfig::IsEos(int token) const {
  return std::find(eos_token_ids.begin(), eos_token_ids.end(), token) != eos_token_ids.end();
}

namespace {

Arch ParseArch(const json& j, const std::string& origin) {
  auto archs = j.find("architectures");
  if (archs == j.end() || !archs->is_array() || archs->empty() || !(*archs)[0].is_string()) {
    Fail(origin, "missing \"architectures\" (expected e.g. [\"LlamaForCausalLM\"])");
  }
  const std::string name = (*archs)[0].get<std::string>();
  for (Arch arch : {Arch::kLlama, Arch::kMistral, Arch::kQwen2}) {
    if (name == ArchName(arch)) return arch;
  }
  Fail(origin, "unknown architecture \"" + name +
                   "\" (supported: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM)");
}

// The sizes: hidden, layers, heads, kv heads, MLP, vocabulary, context, head dim.
void ParseShape(const json& j, const std::string& origin, ModelConfig& c) {
  c.hidden_size = RequiredInt(j, "hidden_size", origin);
  c.num_layers = RequiredInt(j, "num_hidden_layers", origin);
  c.num_heads = RequiredInt(j, "num_attention_heads", origin);
  c.num_kv_heads = j.contains("num_key_value_heads") && !j["num_key_value_heads"].is_null()
                       ? RequiredInt(j, "num_key_value_heads", origin)
                       : c.num_heads;
  c.intermediate_size = RequiredInt(j, "intermediate_size", origin);
  c.vocab_size = RequiredInt(j, "vocab_size", origin);
  c.max_context = RequiredInt(j, "max_position_embeddings", origin);
  if (j.contains("head_dim") && !j["head_dim"].is_null()) {
    c.head_dim = RequiredInt(j, "head_dim", origin);
  } else {
    if (c.hidden_size % c.num_heads != 0) {
      Fail(origin, "hidden_size " + std::to_string(c.hidden_size) +
                       " is not a multiple of num_attention_heads " + std::to_string(c.num_heads));
    }
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0) Fail(origin, "head_dim must be even for rotary embeddings");
  if (c.num_heads % c.num_kv_heads != 0) {
    Fail(origin, "num_attention_heads " + std::to_string(c.num_heads) +
                     " is not a multiple of num_key_value_heads " + std::to_string(c.num_kv_heads));
  }
}

// BOS and EOS ids (the defaults checked against the vocabulary too).
void ParseSpecialIds(const json& j, const std::string& origin, ModelConfig& c) {
  if (auto b = j.find("bos_token_id"); b != j.end() && !b->is_null()) {
    c.bos_token_id = SpecialId(*b, "bos_token_id", c.vocab_size, origin);
  } else {
    SpecialId(json(c.bos_token_id), "bos_token_id (default, key absent)", c.vocab_size, origin);
  }
  if (auto e = j.find("eos_token_id"); e != j.end() && !e->is_null()) {
    c.eos_token_ids.clear();
    for (const auto& v : e->is_array() ? *e : json::array({*e})) {
      c.eos_token_ids.push_back(SpecialId(v, "eos_token_id", c.vocab_size, origin));
    }
  } else {
    SpecialId(json(c.eos_token_ids[0]), "eos_token_id (default, key absent)", c.vocab_size, origin);
  }
}

RopeScaling ParseRopeScaling(const json& rs, const std::string& origin) {
  if (!rs.is_object()) Fail(origin, "\"rope_scaling\" must be an object or null");
  RopeScaling out;
  std::string type = OptionalString(rs, "rope_type", origin);
  if (type.empty()) type = OptionalString(rs, "type", origin);
  if (type == "linear") {
    out.kind = RopeScaling::Kind::kLinear;
  } else if (type == "llama3") {
    out.kind = RopeScaling::Kind::kLlama3;
    out.low_freq_factor = OptionalPositive(rs, "low_freq_factor", 1.0, origin);
    out.high_freq_factor = OptionalPositive(rs, "high_freq_factor", 4.0, origin);
    out.original_max_position = RequiredInt(rs, "original_max_position_embeddings", origin);
  } else if (type != "default") {
    Fail(origin, "unsupported rope_scaling type \"" + type + "\" (supported: linear, llama3)");
  }
  out.factor = OptionalPositive(rs, "factor", 1.0, origin);
  return out;
}

}  // namespace

ModelConfig ParseModelConfig(const std::string& json_text, const std::string& origin) {
  json j = json::parse(json_text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) Fail(origin, "not a valid JSON object");

  ModelConfig c;
  c.arch = ParseArch(j, origin);
  if (auto act = j.find("hidden_act"); act != j.end() && act->is_string() && *act != "silu") {
    Fail(origin, "unsupported hidden_act \"" + act->get<std::string>() + "\" (only silu)");
  }
  ParseShape(j, origin, c);
  c.rope_theta = OptionalPositive(j, "rope_theta", 10000.0, origin);
  c.rms_norm_eps = OptionalPositive(j, "rms_norm_eps", 1e-6, origin);
  c.tie_word_embeddings = OptionalBool(j, "tie_word_embeddings", false, origin);
  c.qkv_bias = c.arch == Arch::kQwen2;
  if (auto b = j.find("attention_bias"); b != j.end() && b->is_boolean())
    c.qkv_bias = b->get<bool>();
  ParseSpecialIds(j, origin, c);
  if (auto rs = j.find("rope_scaling"); rs != j.end() && !rs->is_null())
    c.rope_scaling = ParseRopeScaling(*rs, origin);
  return c;
}

std::string ModelConfigToJson(const ModelConfig& c) {
  json j;
  j["architectures"] = {ArchName(c.arch)};
  j["model_type"] = c.arch == Arch::kLlama     ? "llama"
                    : c.arch == Arch::kMistral ? "mistral"
                                               : "qwen2";
  j["hidden_size"] = c.hidden_size;
  j["intermediate_size"] = c.intermediate_size;
  j["num_hidden_layers"] = c.num_layers;
  j["num_attention_heads"] = c.num_heads;
  j["num_key_value_heads"] = c.num_kv_heads;
  if (c.head_dim != c.hidden_size / c.num_heads) j["head_dim"] = c.head_dim;
  j["vocab_size"] = c.vocab_size;
  j["max_position_embeddings"] = c.max_context;
  j["rms_norm_eps"] = c.rms_norm_eps;
  j["rope_theta"] = c.rope_theta;
  j["hidden_act"] = "silu";
  j["tie_word_embeddings"] = c.tie_word_embeddings;
  j["bos_token_id"] = c.bos_token_id;
  j["eos_token_id"] =
      c.eos_token_ids.size() == 1 ? json(c.eos_token_ids[0]) : json(c.eos_token_ids);
  j["torch_dtype"] = "float32";
  return j.dump(2) + "\n";
}

}  // namespace splitlm::partition
