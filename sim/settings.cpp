#include "sim/settings.h"

#include <toml++/toml.h>

#include <cstdio>
#include <filesystem>
#include <map>
#include <regex>
#include <stdexcept>

#include "partition/weight_bytes.h"
#include "scheduler/cost_model.h"
#include "transport/error.h"
#include "transport/text_file.h"

namespace splitlm::sim {
namespace {

namespace fs = std::filesystem;

// Reads the keys of one table of `origin` into `s`. `condition`: a
// [[condition]] of a sweep. Relative paths are against `base`.
class TableReader {
 public:
  TableReader(const std::string& origin, const fs::path& base, bool condition)
      : origin_(origin), base_(base), condition_(condition) {}

  void Read(const toml::table& t, Settings& s) const {
    for (auto&& [k, n] : t) {
      const std::string key(k.str());
      try {
        if (!ReadLink(key, n, s) && !ReadWorkload(key, n, s) && !ReadSides(key, n, s)) {
          throw Exception(Exception::kInvalidArgument,
                          std::string("unknown key") +
                              (condition_ ? " in a [[condition]]" : " in [sim]") +
                              " (see docs/simulation.md)");
        }
      } catch (const Located&) {
        throw;
      } catch (const Exception& e) {
        throw Exception(e.code(), Where(n, key) + e.what());
      }
    }
  }

 private:
  // An error that already names its place.
  struct Located : Exception {
    explicit Located(const std::string& message) : Exception(kInvalidArgument, message) {}
  };

  std::string Where(const toml::node& n, const std::string& key) const {
    return origin_ + ":" + std::to_string(n.source().begin.line) + ": " + key + ": ";
  }
  static std::string Str(const toml::node& n) {
    if (!n.is_string()) throw Exception(Exception::kInvalidArgument, "expected a string");
    return *n.value<std::string>();
  }
  static double Num(const toml::node& n, double lo, double hi) {
    if (!n.is_number()) throw Exception(Exception::kInvalidArgument, "expected a number");
    const double v = *n.value<double>();
    if (!(v >= lo && v <= hi)) {
      throw Exception(
          Exception::kInvalidArgument,
          std::to_string(v) + " is outside " + std::to_string(lo) + ".." + std::to_string(hi));
    }
    return v;
  }
  std::string Path(const std::string& v) const {
    return v.empty() || fs::path(v).is_absolute() ? v : (base_ / v).string();
  }

  // Hardware, weights, model, name and policy.
  bool ReadSides(const std::string& key, const toml::node& n, Settings& s) const {
    if (key == "name" && condition_) {
      s.name = Str(n);
      if (!std::regex_match(s.name, std::regex("[A-Za-z0-9_.+-]+"))) {
        throw Exception(Exception::kInvalidArgument, "use letters, digits and _ . + - only");
      }
    } else if (key == "model" && !condition_) {
      s.model = Path(Str(n));
    } else if (key == "device" || key == "cloud") {
      std::string v = Str(n);
      if (v.find('/') != std::string::npos || (v.size() > 5 && v.substr(v.size() - 5) == ".toml"))
        v = Path(v);
      (key == "device" ? s.device : s.cloud) = v;
    } else if (key == "device_weights" || key == "cloud_weights") {
      (key == "device_weights" ? s.device_weights : s.cloud_weights) = CheckWeights(Str(n));
    } else if (key == "policy" && !condition_) {
      s.policy = Str(n);
    } else if (key == "speculate") {
      s.speculate = Str(n);
      if (s.speculate == "off") s.speculate.clear();
    } else {
      return false;
    }
    return true;
  }

  bool ReadLink(const std::string& key, const toml::node& n, Settings& s) const {
    if (key == "link_type") {
      s.link_type = CheckLinkType(Str(n));
    } else if (key == "up_mbit_s") {
      s.link.up_mbit_s = Num(n, 0.001, 1e6);
    } else if (key == "down_mbit_s") {
      s.link.down_mbit_s = Num(n, 0.001, 1e6);
    } else if (key == "rtt_ms") {
      s.link.delay_ms = Num(n, 0, 60000) / 2;
    } else if (key == "jitter_ms") {
      s.link.jitter_ms = Num(n, 0, 60000);
    } else if (key == "trace") {
      s.trace = Path(Str(n));
    } else if (key == "outages") {
      const toml::array* a = n.as_array();
      if (!a)
        throw Exception(Exception::kInvalidArgument,
                        "expected a list of \"START:END[:cut]\" strings");
      s.outages.clear();
      for (const auto& e : *a) {
        try {
          s.outages.push_back(ParseOutage(Str(e)));
        } catch (const Exception& x) {
          throw Located(Where(e, key) + x.what());
        }
      }
    } else {
      return false;
    }
    return true;
  }

  bool ReadWorkload(const std::string& key, const toml::node& n, Settings& s) const {
    if (key == "prompt_file") {
      s.prompt_file = Path(Str(n));
    } else if (key == "cuts") {
      const toml::array* a = n.as_array();
      if (!a || a->empty())
        throw Exception(Exception::kInvalidArgument, "expected a list of cuts, e.g. [0, 2, 4]");
      s.cuts.clear();
      for (const auto& e : *a) {
        try {
          s.cuts.push_back(static_cast<int>(Num(e, 0, 4096)));
        } catch (const Exception& x) {
          throw Located(Where(e, key) + x.what());
        }
      }
    } else if (key == "temperature") {
      s.temperature = Num(n, 0, 100);
    } else if (key == "seed") {
      s.seed = static_cast<uint64_t>(Num(n, 0, 9007199254740992.0));
    } else if (key == "prompts") {
      s.prompts = static_cast<int>(Num(n, 1, 10000));
    } else if (key == "prompt_tokens") {
      s.prompt_tokens = static_cast<int>(Num(n, 1, 100000));
    } else if (key == "tokens") {
      s.tokens = static_cast<int>(Num(n, 2, 100000));
    } else {
      return false;
    }
    return true;
  }

  std::string origin_;
  fs::path base_;
  bool condition_;
};

toml::table ParseFile(const std::string& file) {
  try {
    return toml::parse(transport::ReadTextFileOrThrow(file, transport::kMaxConfigBytes), file);
  } catch (const toml::parse_error& e) {
    throw Exception(
        Exception::kInvalidArgument,
        file + ":" + std::to_string(e.source().begin.line) + ": " + std::string(e.description()));
  }
}

std::string Line(const std::string& file, const toml::node& n) {
  return file + ":" + std::to_string(n.source().begin.line) + ": ";
}

// The [[condition]] tables of a sweep file, each on top of `base`.
std::vector<Settings> ReadConditions(const std::string& file, const toml::table& root,
                                     const fs::path& dir, const Settings& base) {
  const toml::array* list = root["condition"].as_array();
  if (!list || list->empty())
    throw Exception(Exception::kInvalidArgument, file + ": a sweep needs [[condition]] tables");
  std::vector<Settings> out;
  std::map<std::string, int> names;
  for (const auto& e : *list) {
    if (!e.is_table())
      throw Exception(Exception::kInvalidArgument,
                      Line(file, e) + "condition: expected [[condition]] tables");
    Settings c = base;
    c.name.clear();
    TableReader(file, dir, true).Read(*e.as_table(), c);
    if (c.name.empty())
      throw Exception(Exception::kInvalidArgument, Line(file, e) + "condition: needs a name");
    if (names[c.name]++)
      throw Exception(Exception::kInvalidArgument,
                      Line(file, e) + "name: \"" + c.name + "\" used twice");
    out.push_back(c);
  }
  return out;
}

}  // namespace

std::string CheckWeights(const std::string& v) {
  if (v == "model" || partition::IsWeightFormat(v)) return v;
  throw Exception(Exception::kInvalidArgument, "weights \"" + v +
                                                   "\": unknown format (choose model, " +
                                                   partition::WeightFormatList() + ")");
}

Outage ParseOutage(const std::string& text) {
  Outage out;
  char kind[8] = {0};
  if (std::sscanf(text.c_str(), "%lf:%lf:%7s", &out.start_s, &out.end_s, kind) < 2 ||
      out.end_s <= out.start_s || out.start_s < 0 || (kind[0] != 0 && std::string(kind) != "cut")) {
    throw Exception(
        Exception::kInvalidArgument,
        "outage \"" + text + "\": expected START:END[:cut] in seconds with END > START >= 0");
  }
  out.cut = std::string(kind) == "cut";
  return out;
}

std::string CheckLinkType(const std::string& name) {
  scheduler::Link probe;
  scheduler::ApplyRadioPreset(name, probe);
  return name;
}

Settings ReadSimFile(const std::string& file, std::vector<Settings>* conditions) {
  if (!fs::exists(file)) throw Exception(Exception::kNotFound, file + ": no such file");
  const toml::table root = ParseFile(file);
  const fs::path dir = fs::absolute(file).parent_path();
  Settings s;
  for (auto&& [k, n] : root) {
    const std::string key(k.str());
    const std::string line = Line(file, n) + key + ": ";
    if (key == "sim") {
      if (!n.is_table())
        throw Exception(Exception::kInvalidArgument, line + "expected a [sim] table");
      TableReader(file, dir, false).Read(*n.as_table(), s);
    } else if (key != "condition" || !conditions) {
      throw Exception(
          Exception::kInvalidArgument,
          line + (conditions ? "unknown section (sim, condition)" : "unknown section (sim)"));
    }
  }
  if (conditions) {
    for (auto& c : ReadConditions(file, root, dir, s)) conditions->push_back(std::move(c));
  }
  return s;
}

std::string Timing(const Settings& s) {
  std::string t = "compute: ";
  t += s.device.empty() ? "device = this machine (wall clock)" : "device emulated as " + s.device;
  t += s.cloud.empty() ? ", cloud = this machine (wall clock)" : ", cloud emulated as " + s.cloud;
  t += " (roofline time on a virtual clock: slept where the emulated hardware is slower than this "
       "machine, "
       "skipped where it is faster); network: wall clock through the shaping relay";
  return t;
}

}  // namespace splitlm::sim
