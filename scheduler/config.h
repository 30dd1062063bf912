// The splitlm configuration file: one TOML format for the device, the cloud
// and the scheduler. Every key is declared in a schema with its type, range,
// default and meaning (docs/config.md is generated from it); anything else is
// an error naming the file, line and key. Command-line flags override it.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <type_traits>
#include <vector>

#include "transport/error.h"

namespace splitlm::scheduler {

struct KeySpec {
  enum class Type { kInt, kFloat, kString, kBool };
  std::string key;  // "section.name"
  Type type;
  double min = 0, max = 0;           // numbers: inclusive range
  std::vector<std::string> choices;  // strings: allowed values (empty = any)
  std::string default_value;         // as written in docs
  std::string help;
};

// Every key the file may hold.
const std::vector<KeySpec>& ConfigSchema();
// The schema's entry for `key`; throws Exception(kInvalidArgument) for a
// key it lacks.
const KeySpec& SchemaKey(const std::string& key);

// The one validation of a value, whether it comes from the file or from a
// command-line flag: "" when `spec` admits it, else why not, e.g. "nan is not
// a finite number", "-1 is outside 0..4096", "\"x\" is not one of a, b".
std::string CheckNumber(const KeySpec& spec, double value);
std::string CheckChoice(const KeySpec& spec, const std::string& value);
// As above for a value written as text (a flag): parses it as the key's type
// (integers in full, numbers finite, booleans true/false) and checks it.
std::string CheckText(const KeySpec& spec, const std::string& text);
// The schema as a Markdown table (docs/config.md).
std::string ConfigMarkdown();

class Config {
 public:
  // An empty configuration (everything at its default).
  Config() = default;
  // Parses and validates `path`. Throws Exception(kInvalidArgument)
  // "path:line: key: why", or kNotFound when `path` cannot be read.
  static Config Load(const std::string& path);
  // Parses TOML text; `origin` names it in errors. Throws
  // Exception(kInvalidArgument) "origin:line: key: why".
  static Config Parse(const std::string& text, const std::string& origin);

  // Values present in the file (validated against the schema).
  std::optional<int64_t> Int(const std::string& key) const;
  std::optional<double> Float(const std::string& key) const;
  std::optional<std::string> String(const std::string& key) const;
  std::optional<bool> Bool(const std::string& key) const;
  bool Has(const std::string& key) const { return values_.count(key) > 0; }
  const std::string& origin() const { return origin_; }

 private:
  struct Value {
    KeySpec::Type type;
    int64_t i = 0;
    double f = 0;
    std::string s;
    bool b = false;
  };
  std::string origin_;
  std::map<std::string, Value> values_;
};

// Sets `field` from the file's `key` unless the flag was given on the
// command line (flags override the file).
template <typename T>
void FillFromConfig(const Config& config, const std::string& key, bool flag_given, T& field) {
  if (flag_given) return;
  if constexpr (std::is_same_v<T, std::string>) {
    if (auto v = config.String(key)) field = *v;
  } else if constexpr (std::is_same_v<T, bool>) {
    if (auto v = config.Bool(key)) field = *v;
  } else if constexpr (std::is_floating_point_v<T>) {
    if (auto v = config.Float(key)) field = static_cast<T>(*v);
  } else {
    if (auto v = config.Int(key)) field = static_cast<T>(*v);
  }
}

}  // namespace splitlm::scheduler
