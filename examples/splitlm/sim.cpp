// splitlm sim: scenarios on one machine — the real worker and the real device
// agent, the link between them emulated by the shaping relay, the device and
// the cloud emulated by hardware profiles (roofline time on a virtual clock).
// `--sweep FILE` runs a grid of conditions x policies and writes CSV, JSON
// and SVG charts.
#include <ATen/Parallel.h>
#include <nlohmann/json.hpp>
#include <toml++/toml.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <regex>
#include <tuple>
#include <thread>

#include "device/agent.h"
#include "examples/splitlm/cli.h"
#include "examples/splitlm/in_process_worker.h"
#include "scheduler/flags.h"
#include "partition/model.h"
#include "partition/tokenizer.h"
#include "scheduler/hardware.h"
#include "scheduler/weights.h"
#include "transport/clock.h"
#include "transport/shaper.h"
#include "transport/text_file.h"

#ifndef SPLITLM_HARDWARE_DIR
#define SPLITLM_HARDWARE_DIR "examples/hardware"
#endif

namespace splitlm::cli {
namespace {

namespace fs = std::filesystem;

std::atomic<bool> g_interrupted{false};
extern "C" void OnInterrupt(int) { g_interrupted = true; }

double Percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<size_t>(p * (v.size() - 1) + 0.5))];
}

// One scenario's settings: the [sim] table, a [[condition]] of a sweep, or flags.
struct Settings {
  std::string name = "default";
  std::string model;
  std::string device;  // hardware profile (name or file); "" = this machine as it is
  std::string cloud;
  // Weight formats the emulated sides hold (partition/weight_bytes.h);
  // "model" = the model's own (a GGUF file's types, f32 for a directory).
  std::string device_weights = "model", cloud_weights = "model";
  std::string policy = "auto";
  std::string link_type = "wifi";
  transport::LinkConditions link{50, 100, 10, 0};
  std::string trace;
  std::vector<transport::Outage> outages;
  std::string prompt_file;  // one prompt of token ids per line; else generated prompts
  int prompts = 2, prompt_tokens = 16, tokens = 32;
};

// Throws naming the accepted names unless `v` is a weight format or "model".
std::string CheckWeights(const std::string& v) {
  if (v == "model" || partition::IsWeightFormat(v)) return v;
  throw std::runtime_error("weights \"" + v + "\": unknown format (choose model, " + partition::WeightFormatList() + ")");
}

transport::Outage ParseOutage(const std::string& w) {
  transport::Outage out;
  char kind[8] = {0};
  if (std::sscanf(w.c_str(), "%lf:%lf:%7s", &out.start_s, &out.end_s, kind) < 2 || out.end_s <= out.start_s ||
      out.start_s < 0 || (kind[0] != 0 && std::string(kind) != "cut")) {
    throw std::runtime_error("outage \"" + w + "\": expected START:END[:cut] in seconds with END > START >= 0");
  }
  out.cut = std::string(kind) == "cut";
  return out;
}

// Reads the keys of one table into `s`. `condition`: a [[condition]] of a sweep.
void ReadTable(const toml::table& t, const std::string& origin, const fs::path& base, bool condition, Settings& s) {
  auto where = [&](const toml::node& n, const std::string& key) {
    return origin + ":" + std::to_string(n.source().begin.line) + ": " + key + ": ";
  };
  auto str = [&](const toml::node& n, const std::string& key) {
    if (!n.is_string()) throw std::runtime_error(where(n, key) + "expected a string");
    return *n.value<std::string>();
  };
  auto num = [&](const toml::node& n, const std::string& key, double lo, double hi) {
    if (!n.is_number()) throw std::runtime_error(where(n, key) + "expected a number");
    const double v = *n.value<double>();
    if (!(v >= lo && v <= hi)) {
      throw std::runtime_error(where(n, key) + std::to_string(v) + " is outside " + std::to_string(lo) + ".." + std::to_string(hi));
    }
    return v;
  };
  auto path = [&](const std::string& v) { return v.empty() || fs::path(v).is_absolute() ? v : (base / v).string(); };
  for (auto&& [k, n] : t) {
    const std::string key(k.str());
    if (key == "name" && condition) {
      s.name = str(n, key);
      if (!std::regex_match(s.name, std::regex("[A-Za-z0-9_.+-]+"))) {
        throw std::runtime_error(where(n, key) + "use letters, digits and _ . + - only");
      }
    } else if (key == "model" && !condition) {
      s.model = path(str(n, key));
    } else if (key == "device" || key == "cloud") {
      std::string v = str(n, key);
      if (v.find('/') != std::string::npos || (v.size() > 5 && v.substr(v.size() - 5) == ".toml")) v = path(v);
      (key == "device" ? s.device : s.cloud) = v;
    } else if (key == "device_weights" || key == "cloud_weights") {
      try {
        (key == "device_weights" ? s.device_weights : s.cloud_weights) = CheckWeights(str(n, key));
      } catch (const std::runtime_error& e) {
        throw std::runtime_error(where(n, key) + e.what());
      }
    } else if (key == "policy" && !condition) {
      s.policy = str(n, key);
    } else if (key == "link_type") {
      s.link_type = str(n, key);
      scheduler::Link probe;
      try {
        scheduler::ApplyRadioPreset(s.link_type, probe);
      } catch (const std::exception& e) {
        throw std::runtime_error(where(n, key) + e.what());
      }
    } else if (key == "up_mbit_s") {
      s.link.up_mbit_s = num(n, key, 0.001, 1e6);
    } else if (key == "down_mbit_s") {
      s.link.down_mbit_s = num(n, key, 0.001, 1e6);
    } else if (key == "rtt_ms") {
      s.link.delay_ms = num(n, key, 0, 60000) / 2;
    } else if (key == "jitter_ms") {
      s.link.jitter_ms = num(n, key, 0, 60000);
    } else if (key == "trace") {
      s.trace = path(str(n, key));
    } else if (key == "outages") {
      const toml::array* a = n.as_array();
      if (!a) throw std::runtime_error(where(n, key) + "expected a list of \"START:END[:cut]\" strings");
      s.outages.clear();
      for (const auto& e : *a) {
        try {
          s.outages.push_back(ParseOutage(str(e, key)));
        } catch (const std::runtime_error& x) {
          throw std::runtime_error(where(e, key) + x.what());
        }
      }
    } else if (key == "prompt_file") {
      s.prompt_file = path(str(n, key));
    } else if (key == "prompts") {
      s.prompts = static_cast<int>(num(n, key, 1, 10000));
    } else if (key == "prompt_tokens") {
      s.prompt_tokens = static_cast<int>(num(n, key, 1, 100000));
    } else if (key == "tokens") {
      s.tokens = static_cast<int>(num(n, key, 2, 100000));
    } else {
      throw std::runtime_error(where(n, key) + "unknown key" + (condition ? " in a [[condition]]" : " in [sim]") +
                               " (see docs/simulation.md)");
    }
  }
}

toml::table ParseFile(const std::string& file) {
  try {
    return toml::parse(transport::ReadTextFileOr<std::runtime_error>(file, transport::kMaxConfigBytes), file);
  } catch (const toml::parse_error& e) {
    throw std::runtime_error(file + ":" + std::to_string(e.source().begin.line) + ": " + std::string(e.description()));
  }
}

// The [sim] table of `file` (and, for a sweep, its [[condition]] list).
Settings ReadSimFile(const std::string& file, std::vector<Settings>* conditions) {
  if (!fs::exists(file)) throw std::runtime_error(file + ": no such file");
  const toml::table root = ParseFile(file);
  const fs::path base = fs::absolute(file).parent_path();
  Settings s;
  for (auto&& [k, n] : root) {
    const std::string key(k.str());
    const std::string line = file + ":" + std::to_string(n.source().begin.line) + ": " + key + ": ";
    if (key == "sim") {
      if (!n.is_table()) throw std::runtime_error(line + "expected a [sim] table");
      ReadTable(*n.as_table(), file, base, false, s);
    } else if (key == "condition" && conditions) {
      // read after [sim], below
    } else {
      throw std::runtime_error(line + (conditions ? "unknown section (sim, condition)" : "unknown section (sim)"));
    }
  }
  if (conditions) {
    const toml::array* list = root["condition"].as_array();
    if (!list || list->empty()) throw std::runtime_error(file + ": a sweep needs [[condition]] tables");
    std::map<std::string, int> names;
    for (const auto& e : *list) {
      if (!e.is_table()) throw std::runtime_error(file + ":" + std::to_string(e.source().begin.line) + ": condition: expected [[condition]] tables");
      Settings c = s;
      c.name.clear();
      ReadTable(*e.as_table(), file, base, true, c);
      if (c.name.empty()) throw std::runtime_error(file + ":" + std::to_string(e.source().begin.line) + ": condition: needs a name");
      if (names[c.name]++) throw std::runtime_error(file + ":" + std::to_string(e.source().begin.line) + ": name: \"" + c.name + "\" used twice");
      conditions->push_back(c);
    }
  }
  return s;
}

std::optional<scheduler::HardwareProfile> Hardware(const std::string& v, const std::string& dir, const char* kind) {
  if (v.empty() || v == "host") return std::nullopt;
  const std::string file = v.find('/') != std::string::npos ? v : dir + "/" + v + ".toml";
  if (!fs::exists(file)) {
    std::string names;
    if (fs::is_directory(dir)) {
      for (const auto& e : fs::directory_iterator(dir)) {
        if (e.path().extension() == ".toml") names += (names.empty() ? "" : ", ") + e.path().stem().string();
      }
    }
    throw std::runtime_error(std::string(kind) + " profile \"" + v + "\" not found (" + file + "); profiles in " + dir +
                             ": " + (names.empty() ? "none" : names));
  }
  auto hw = scheduler::LoadHardwareProfile(file);
  if (hw.kind != kind) throw std::runtime_error(file + ": a " + hw.kind + " profile, used as the " + kind);
  return hw;
}

struct TimelinePoint {
  double t_s;
  int cut;
  double token_ms;
  transport::LinkConditions link;
};

struct RunResult {
  std::string policy;
  std::vector<int> cuts;  // per request, at its start
  int mode_cut = 0;       // the cut most tokens were made at
  double ttft_ms = 0, tpot_ms = 0, tpot_p95_ms = 0, bytes_per_token = 0, energy_mj_per_token = 0;
  double agreement = 1;
  double predicted_tpot_ms = 0;  // auto: the cost model's figure for its cut (last request)
  int cut_changes = 0, fallbacks = 0, recoveries = 0;
  bool interrupted = false;
  std::vector<TimelinePoint> timeline;
};

// Prompts and the all-local reference run's tokens for them.
struct Reference {
  std::vector<std::vector<int32_t>> prompts, tokens;
};

// What all runs of one model share.
struct Bench {
  const partition::Model* model;
  std::string hardware_dir;
  std::shared_ptr<spdlog::logger> log;
  std::map<std::tuple<std::string, int, int, int>, Reference> references;  // by (file, prompts, prompt_tokens, tokens)
};

// The reference for `s`'s workload (computed once, before any clock starts).
const Reference& ReferenceFor(Bench& b, const Settings& s) {
  auto& r = b.references[{s.prompt_file, s.prompts, s.prompt_tokens, s.tokens}];
  if (!r.prompts.empty()) return r;
  const auto& c = b.model->config();
  if (!s.prompt_file.empty()) {
    std::istringstream in(transport::ReadTextFileOr<std::runtime_error>(s.prompt_file, transport::kMaxListBytes));
    std::string line;
    for (int n = 1; std::getline(in, line); ++n) {
      if (line.find_first_not_of(" \t\r") == std::string::npos || line[line.find_first_not_of(" \t")] == '#') continue;
      std::vector<int32_t> ids;
      try {
        ids = partition::ParseTokenIds(line);
      } catch (const std::exception& e) {
        throw std::runtime_error(s.prompt_file + ":" + std::to_string(n) + ": " + e.what());
      }
      for (int32_t id : ids) {
        if (id < 0 || id >= c.vocab_size) {
          throw std::runtime_error(s.prompt_file + ":" + std::to_string(n) + ": token id " + std::to_string(id) +
                                   " is outside the vocabulary of " + std::to_string(c.vocab_size));
        }
      }
      r.prompts.push_back(ids);
    }
    if (r.prompts.empty()) throw std::runtime_error(s.prompt_file + ": no prompts (one line of token ids each)");
  } else {
    for (int p = 0; p < s.prompts; ++p) {
      std::vector<int32_t> ids(s.prompt_tokens);
      for (int i = 0; i < s.prompt_tokens; ++i) ids[i] = static_cast<int32_t>((1 + 97 * p + 31 * i) % c.vocab_size);
      r.prompts.push_back(ids);
    }
  }
  for (const auto& ids : r.prompts) {
    if (static_cast<int>(ids.size()) + s.tokens > c.max_context) {
      throw std::runtime_error("a prompt of " + std::to_string(ids.size()) + " tokens + " + std::to_string(s.tokens) +
                               " tokens exceed the model's context of " + std::to_string(c.max_context));
    }
  }
  device::AgentOptions lo;
  lo.cut = c.num_layers;
  zmq::context_t z;
  transport::Metrics m;
  device::Agent local(*b.model, lo, z, m);
  for (const auto& ids : r.prompts) r.tokens.push_back(local.Generate({ids, s.tokens, {}, false}).tokens);
  return r;
}

// One policy's tokens over one or more runs.
struct Tally {
  std::vector<double> ttft, tpot;
  std::map<int, int> per_cut;
  std::vector<int> cuts;
  std::vector<TimelinePoint> timeline;
  int agree = 0, total = 0, fallbacks = 0, recoveries = 0, cut_changes = 0;
  double predicted_tpot_ms = 0;
  // Device metrics over the runs (deltas): tokens, steps, bytes, seconds.
  double tokens = 0, steps = 0, bytes = 0, compute_s = 0, wait_s = 0;
  bool interrupted = false;
};

int ParseCut(const std::string& policy, int layers) {
  if (policy == "device") return layers;
  if (policy == "cloud") return 0;
  size_t used = 0;
  int k = -1;
  try {
    k = std::stoi(policy, &used);
  } catch (const std::exception&) {
  }
  if (used != policy.size() || k < 0 || k > layers) {
    throw std::runtime_error("policy \"" + policy + "\": expected auto, device, cloud or a cut 0.." + std::to_string(layers));
  }
  return k;
}

// One condition: the clock, the emulated hardware, a worker, the relay, and
// two agents (one for the fixed cuts, one with --cut auto) that every run
// of the condition shares.
class Rig {
 public:
  Rig(Bench& b, const Settings& s)
      : b_(b), s_(s), c_(b.model->config()), ref_(ReferenceFor(b, s)),
        device_hw_(Hardware(s.device, b.hardware_dir, "device")), cloud_hw_(Hardware(s.cloud, b.hardware_dir, "cloud")) {
    if (device_hw_) device_emu_.emplace(*device_hw_, c_, DeviceWeights(), clock_);
    if (cloud_hw_) cloud_emu_.emplace(*cloud_hw_, c_, CloudWeights(), clock_);
    cloud::WorkerOptions wo;
    wo.clock = &clock_;
    if (cloud_emu_) {
      wo.compute_hook = &*cloud_emu_;
      const auto cp = scheduler::RooflineProfile(*cloud_hw_, c_, CloudWeights(), b.model->fingerprint());
      for (int l = 0; l < c_.num_layers; ++l) wo.report_layer_decode_us.push_back(static_cast<float>(cp.layer_decode_us[l][0]));
      wo.report_head_decode_us = static_cast<float>(cp.head_decode_us);
    }
    worker_ = std::make_unique<InProcessWorker>(*b.model, zctx_, cloud_metrics_, b.log, wo);
    transport::ShaperOptions so;
    so.link = s.link;
    so.log = b.log;
    so.clock = &clock_;
    so.outages = s.outages;
    if (!s.trace.empty()) so.trace = transport::ReadTrace(s.trace);
    so.upstream = worker_->endpoint().substr(6);
    trace_ = so.trace;
    relay_ = std::make_unique<transport::ShapingRelay>(so);
  }

  int layers() const { return c_.num_layers; }
  scheduler::WeightCost DeviceWeights() const { return {partition::ModelWeightBytes(*b_.model, s_.device_weights), 1.0}; }
  scheduler::WeightCost CloudWeights() const { return {partition::ModelWeightBytes(*b_.model, s_.cloud_weights), 1.0}; }
  size_t prompts() const { return ref_.prompts.size(); }

  // Runs prompts [first, last) with `policy` and adds them to `t`.
  void Run(const std::string& policy, size_t first, size_t last, Tally& t, bool restart_link) {
    device::Agent& agent = policy == "auto" ? AutoAgent() : FixedAgent();
    transport::Metrics& m = policy == "auto" ? auto_metrics_ : fixed_metrics_;
    if (policy != "auto") agent.UseCut(ParseCut(policy, c_.num_layers));
    auto part = [&](const char* name) { return m.Get(std::string("splitlm_device_latency_seconds_total{part=\"") + name + "\"}"); };
    auto snapshot = [&] {
      return std::array<double, 5>{m.Get("splitlm_device_tokens_total"), m.Get("splitlm_device_cloud_steps_total"),
                                   m.Get("splitlm_device_bytes_sent_total"),
                                   part("device_compute") + part("local_compute") + part("codec"),
                                   part("network") + part("cloud_compute") + part("cloud_queue")};
    };
    const auto before = snapshot();
    if (restart_link) relay_->Restart();
    const auto t_start = clock_.Now();
    for (size_t p = first; p < last && !g_interrupted; ++p) {
      auto last_at = clock_.Now();
      bool first_token = true;
      auto g = agent.Generate({ref_.prompts[p], s_.tokens, {}, false}, [&](int32_t) {
        const auto now = clock_.Now();
        const double ms = std::chrono::duration<double, std::milli>(now - last_at).count();
        (first_token ? t.ttft : t.tpot).push_back(ms);
        t.timeline.push_back({std::chrono::duration<double>(now - t_start).count(), agent.cut(), ms, relay_->Current()});
        ++t.per_cut[agent.cut()];
        first_token = false;
        last_at = now;
        return !g_interrupted.load();
      });
      t.fallbacks += g.fallbacks;
      t.recoveries += g.recoveries;
      t.predicted_tpot_ms = g.predicted_tpot_ms;
      t.cut_changes += g.recuts;
      t.cuts.push_back(g.cut);
      for (size_t i = 0; i < g.tokens.size() && i < ref_.tokens[p].size(); ++i) t.agree += g.tokens[i] == ref_.tokens[p][i];
      t.total += static_cast<int>(ref_.tokens[p].size());
    }
    const auto after = snapshot();
    t.tokens += after[0] - before[0];
    t.steps += after[1] - before[1];
    t.bytes += after[2] - before[2];
    t.compute_s += after[3] - before[3];
    t.wait_s += after[4] - before[4];
    t.interrupted = t.interrupted || g_interrupted;
  }

  RunResult Result(const std::string& policy, const Tally& t) const {
    const scheduler::PlanInputs plan = Plan();
    RunResult r;
    r.policy = policy;
    r.cuts = t.cuts;
    r.interrupted = t.interrupted;
    r.ttft_ms = Percentile(t.ttft, 0.5);
    r.tpot_ms = Percentile(t.tpot, 0.5);
    r.tpot_p95_ms = Percentile(t.tpot, 0.95);
    r.agreement = t.total > 0 ? static_cast<double>(t.agree) / t.total : 1.0;
    r.fallbacks = t.fallbacks;
    r.recoveries = t.recoveries;
    r.cut_changes = t.cut_changes;
    r.predicted_tpot_ms = t.predicted_tpot_ms;
    r.timeline = t.timeline;
    r.mode_cut = t.per_cut.empty() ? (policy == "auto" ? c_.num_layers : ParseCut(policy, c_.num_layers))
                                   : std::max_element(t.per_cut.begin(), t.per_cut.end(),
                                                      [](auto& x, auto& y) { return x.second < y.second; })->first;
    // Device energy (model): compute power x device compute time, radio
    // energy per byte, and (waiting + radio) power x the time steps are out.
    const double sent = t.bytes + 128 * t.steps, received = 128 * t.steps;
    const auto& pw = plan.power;
    const double joules = pw.compute_w * t.compute_s +
                          (sent * plan.link.tx_nj_per_byte + received * plan.link.rx_nj_per_byte) * 1e-9 +
                          (pw.wait_w + plan.link.radio_w) * t.wait_s;
    r.bytes_per_token = t.tokens > 0 ? t.bytes / t.tokens : 0;
    r.energy_mj_per_token = t.tokens > 0 ? joules * 1e3 / t.tokens : 0;
    return r;
  }

 private:
  scheduler::PlanInputs Plan() const {
    scheduler::PlanInputs plan;
    scheduler::ApplyRadioPreset(s_.link_type, plan.link);
    if (device_hw_) {
      plan.power.compute_w = device_hw_->compute_w;
      plan.power.wait_w = device_hw_->wait_w;
    }
    if (cloud_hw_) plan.cloud_usd_per_s = cloud_hw_->usd_per_hour / 3600;
    plan.device.threads = at::get_num_threads();
    plan.workload.prompt_tokens = s_.prompt_tokens;
    plan.workload.context = s_.prompt_tokens + s_.tokens / 2;
    return plan;
  }

  device::AgentOptions Options(bool automatic) {
    device::AgentOptions o;
    o.fallback = device::Fallback::kLocal;
    // Heartbeats must outlast the slowest legitimate step (a prompt's hidden
    // states queued on the uplink delay our heartbeats behind them), or a
    // slow link would be taken for a dead one.
    size_t longest = 1;
    for (const auto& p : ref_.prompts) longest = std::max(longest, p.size());
    const double prompt_bytes = 4.0 * c_.hidden_size * static_cast<double>(longest) + 256;
    double slowest_ms = 0;
    auto consider = [&](double up_mbit_s, double rtt_ms) {
      slowest_ms = std::max(slowest_ms, rtt_ms + (up_mbit_s > 0 ? prompt_bytes * 8 / (up_mbit_s * 1e3) : 0));
    };
    consider(s_.link.up_mbit_s, 2 * s_.link.delay_ms + 2 * s_.link.jitter_ms);
    for (const auto& t : trace_) {
      if (t.state == transport::TracePoint::State::kUp) consider(t.up_mbit_s, t.rtt_ms);
    }
    const auto heartbeat = std::chrono::milliseconds(static_cast<int64_t>(std::max(100.0, slowest_ms)));
    o.channel.heartbeat_interval = heartbeat;
    o.step_deadline = std::max(std::chrono::milliseconds(5000), 4 * heartbeat);
    o.retry_interval = std::chrono::milliseconds(250);
    o.channel.endpoint = relay_->endpoint();
    o.log = b_.log;
    o.clock = &clock_;
    if (device_emu_) o.compute_hook = &*device_emu_;
    o.auto_cut.plan = Plan();
    if (automatic) {
      o.auto_cut.enabled = true;
      if (device_hw_) {
        o.auto_cut.device_profile = scheduler::RooflineProfile(*device_hw_, c_, DeviceWeights(), b_.model->fingerprint());
      }
      o.cut = c_.num_layers;
    } else {
      o.cut = 0;  // below L with local fallback: all layers loaded, so UseCut can pick any cut
    }
    return o;
  }
  device::Agent& FixedAgent() {
    if (!fixed_) fixed_ = std::make_unique<device::Agent>(*b_.model, Options(false), zctx_, fixed_metrics_);
    return *fixed_;
  }
  device::Agent& AutoAgent() {
    if (!auto_) auto_ = std::make_unique<device::Agent>(*b_.model, Options(true), zctx_, auto_metrics_);
    return *auto_;
  }

  Bench& b_;
  const Settings& s_;
  const partition::ModelConfig& c_;
  const Reference& ref_;
  std::optional<scheduler::HardwareProfile> device_hw_, cloud_hw_;
  transport::VirtualClock clock_;
  std::optional<scheduler::HardwareEmulator> device_emu_, cloud_emu_;
  zmq::context_t zctx_;
  transport::Metrics cloud_metrics_, fixed_metrics_, auto_metrics_;
  std::unique_ptr<InProcessWorker> worker_;
  std::vector<transport::TracePoint> trace_;
  std::unique_ptr<transport::ShapingRelay> relay_;
  std::unique_ptr<device::Agent> fixed_, auto_;
};

std::string Timing(const Settings& s) {
  std::string t = "compute: ";
  t += s.device.empty() ? "device = this machine (wall clock)" : "device emulated as " + s.device;
  t += s.cloud.empty() ? ", cloud = this machine (wall clock)" : ", cloud emulated as " + s.cloud;
  t += " (roofline time on a virtual clock: slept where the emulated hardware is slower than this machine, "
       "skipped where it is faster); network: wall clock through the shaping relay";
  return t;
}

nlohmann::json RunJson(const RunResult& r) {
  return {{"policy", r.policy},
          {"cuts", r.cuts},
          {"ttft_ms_median", r.ttft_ms},
          {"ms_per_token_median", r.tpot_ms},
          {"ms_per_token_p95", r.tpot_p95_ms},
          {"bytes_per_token", r.bytes_per_token},
          {"energy_mj_per_token", r.energy_mj_per_token},
          {"cut_changes", r.cut_changes},
          {"fallbacks", r.fallbacks},
          {"recoveries", r.recoveries},
          {"predicted_ms_per_token", r.predicted_tpot_ms},
          {"token_agreement", r.agreement}};
}

// Writes `text` to `path` or throws naming it.
void WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out) throw std::runtime_error(path.string() + ": cannot write");
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace

Runner AddSim(CLI::App& app) {
  auto* cmd = app.add_subcommand("sim", "simulate: worker + device through an emulated link on emulated hardware");
  struct Args {
    std::string config, sweep, out = "sim-out", model, device, cloud, policy, link_type, trace, prompt_file;
    std::string device_weights, cloud_weights;
    std::string weights;
    std::string hardware_dir = SPLITLM_HARDWARE_DIR;
    std::vector<std::string> outages;
    std::optional<double> up, down, rtt, jitter;
    std::optional<int> prompts, prompt_tokens, tokens;
    bool json = false;
  };
  auto a = std::make_shared<Args>();
  cmd->add_option("--config", a->config, "scenario file ([sim] table; see docs/simulation.md)")->check(CLI::ExistingFile);
  cmd->add_option("--sweep", a->sweep, "sweep file: [sim] defaults and [[condition]] tables")->check(CLI::ExistingFile);
  cmd->add_option("--out", a->out, "sweep: directory for sweep.csv, sweep.json and the SVG charts")->capture_default_str();
  cmd->add_option("--model", a->model, "model directory or .gguf file (overrides the file)");
  cmd->add_option("--weights", a->weights, WeightsHelp())->check(scheduler::flags::Schema("model.weights"));
  cmd->add_option("--device", a->device, "device hardware profile: a name in --hardware-dir, a .toml file, or host (no emulation)");
  cmd->add_option("--cloud", a->cloud, "cloud hardware profile, as --device");
  cmd->add_option("--device-weights", a->device_weights,
                  "weight format of the emulated device: model (its own), f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, q4_k_m");
  cmd->add_option("--cloud-weights", a->cloud_weights, "weight format of the emulated cloud, as --device-weights");
  cmd->add_option("--hardware-dir", a->hardware_dir, "where profile names are looked up")->capture_default_str();
  cmd->add_option("--cut", a->policy, "policy: a cut K, auto, device (all local) or cloud (cut 0); default auto");
  cmd->add_option("--link-type", a->link_type, "radio energy preset: wifi, lte, lte-2021, 5g, 5g-mmwave, 3g");
  cmd->add_option("--up-mbit", a->up, "uplink bandwidth, Mbit/s (default 50)")->check(scheduler::flags::Number(0.001, 1e6));
  cmd->add_option("--down-mbit", a->down, "downlink bandwidth, Mbit/s (default 100)")->check(scheduler::flags::Number(0.001, 1e6));
  cmd->add_option("--rtt-ms", a->rtt, "round-trip time added by the relay (default 20)")->check(scheduler::flags::Number(0, 60000));
  cmd->add_option("--jitter-ms", a->jitter, "uniform extra one-way delay")->check(scheduler::flags::Number(0, 60000));
  cmd->add_option("--trace", a->trace, "CSV trace time_s,up_mbit_s,down_mbit_s,rtt_ms (overrides the fixed link)")->check(CLI::ExistingFile);
  cmd->add_option("--outage", a->outages, "START:END[:cut] in seconds of emulated time; stall unless :cut");
  cmd->add_option("--prompts", a->prompts, "requests per run (default 2)")->check(CLI::Range(1, 10000));
  cmd->add_option("--prompt-file", a->prompt_file, "prompts: one line of token ids each (default: generated prompts)")->check(CLI::ExistingFile);
  cmd->add_option("--prompt-tokens", a->prompt_tokens, "prompt length (default 16)")->check(CLI::Range(1, 100000));
  cmd->add_option("--tokens", a->tokens, "tokens per request (default 32)")->check(CLI::Range(2, 100000));
  cmd->add_flag("--json", a->json, "print JSON (one line per scenario; the whole sweep document with --sweep)");
  cmd->get_option("--config")->excludes(cmd->get_option("--sweep"));
  return [a](const Context& ctx) {
    if (!a->config.empty() && !a->sweep.empty()) throw std::runtime_error("give --config or --sweep, not both");
    std::vector<Settings> conditions;
    Settings base;
    if (!a->sweep.empty()) base = ReadSimFile(a->sweep, &conditions);
    if (!a->config.empty()) base = ReadSimFile(a->config, nullptr);
    // Flags override the file (for a sweep: every condition).
    auto apply = [&](Settings& s) {
      if (!a->model.empty()) s.model = a->model;
      if (!a->device.empty()) s.device = a->device;
      if (!a->cloud.empty()) s.cloud = a->cloud;
      if (!a->device_weights.empty()) s.device_weights = CheckWeights(a->device_weights);
      if (!a->cloud_weights.empty()) s.cloud_weights = CheckWeights(a->cloud_weights);
      if (!a->policy.empty()) s.policy = a->policy;
      if (!a->link_type.empty()) {
        scheduler::Link probe;
        scheduler::ApplyRadioPreset(a->link_type, probe);
        s.link_type = a->link_type;
      }
      if (a->up) s.link.up_mbit_s = *a->up;
      if (a->down) s.link.down_mbit_s = *a->down;
      if (a->rtt) s.link.delay_ms = *a->rtt / 2;
      if (a->jitter) s.link.jitter_ms = *a->jitter;
      if (!a->trace.empty()) s.trace = a->trace;
      if (!a->outages.empty()) {
        s.outages.clear();
        for (const auto& w : a->outages) s.outages.push_back(ParseOutage(w));
      }
      if (!a->prompt_file.empty()) s.prompt_file = a->prompt_file;
      if (a->prompts) s.prompts = *a->prompts;
      if (a->prompt_tokens) s.prompt_tokens = *a->prompt_tokens;
      if (a->tokens) s.tokens = *a->tokens;
    };
    apply(base);
    for (auto& c : conditions) apply(c);
    if (base.model.empty()) throw std::runtime_error("no model: give --model DIR or model = \"DIR\" in [sim]");
    auto model = partition::Model::Open(base.model, a->weights);
    const int L = model->config().num_layers;
    Bench bench{model.get(), a->hardware_dir, ctx.log, {}};
    // Validate every profile and trace, and make the references, before the first run.
    for (const auto& s : conditions.empty() ? std::vector<Settings>{base} : conditions) {
      const bool device_emulated = Hardware(s.device, a->hardware_dir, "device").has_value();
      const bool cloud_emulated = Hardware(s.cloud, a->hardware_dir, "cloud").has_value();
      if ((!device_emulated && s.device_weights != "model") || (!cloud_emulated && s.cloud_weights != "model")) {
        ctx.log->warn("{}: weights of a side that is not emulated (host) change nothing: it runs the weights as loaded",
                      s.name);
      }
      if (!s.trace.empty()) transport::ReadTrace(s.trace);
      ReferenceFor(bench, s);
    }
    std::signal(SIGINT, OnInterrupt);
    std::signal(SIGTERM, OnInterrupt);

    if (conditions.empty()) {
      // One scenario.
      Rig rig(bench, base);
      Tally tally;
      rig.Run(base.policy, 0, rig.prompts(), tally, false);
      const RunResult r = rig.Result(base.policy, tally);
      nlohmann::json j = RunJson(r);
      j["timing"] = Timing(base);
      j["device_weights"] = base.device_weights;
      j["cloud_weights"] = base.cloud_weights;
      j["device_weight_bytes"] = partition::ModelWeightBytes(*model, base.device_weights).LayersBytes(0, L);
      j["cloud_weight_bytes"] = partition::ModelWeightBytes(*model, base.cloud_weights).LayersBytes(0, L);
      j["interrupted"] = r.interrupted;
      if (a->json) {
        std::cout << j.dump() << std::endl;
      } else {
        std::printf("policy %s, cuts used:", base.policy.c_str());
        for (int k : r.cuts) std::printf(" %d", k);
        std::printf("\n  time to first token (median)  %8.2f ms\n  time per token median / p95   %8.2f / %.2f ms\n"
                    "  bytes per token               %8.0f\n  device energy per token       %8.3f mJ (model)\n"
                    "  cut changes %d, fallbacks %d, recoveries %d\n  token agreement with local    %8.4f\n",
                    r.ttft_ms, r.tpot_ms, r.tpot_p95_ms, r.bytes_per_token, r.energy_mj_per_token, r.cut_changes,
                    r.fallbacks, r.recoveries, r.agreement);
        std::printf("  weights: device %s, cloud %s\n",
                    partition::ModelWeightBytes(*model, base.device_weights).Summary().c_str(),
                    partition::ModelWeightBytes(*model, base.cloud_weights).Summary().c_str());
        std::printf("  (%s)\n", Timing(base).c_str());
      }
      return r.interrupted ? 130 : 0;
    }

    // A sweep: every fixed cut and auto, per condition.
    const fs::path out(a->out);
    fs::create_directories(out);
    std::vector<std::string> policies;
    for (int k = 0; k <= L; ++k) policies.push_back(std::to_string(k));
    policies.push_back("auto");
    // Fixed links interleave the policies prompt by prompt (a round per
    // prompt), so a slow moment of this machine falls on every policy alike;
    // traces and outages run each policy over all prompts from the start of
    // the schedule.
    auto scheduled = [](const Settings& s) { return !s.trace.empty() || !s.outages.empty(); };
    size_t runs = 0;
    for (const Settings& s : conditions) runs += policies.size() * (scheduled(s) ? 1 : ReferenceFor(bench, s).prompts.size());
    std::ofstream csv(out / "sweep.csv");
    if (!csv) throw std::runtime_error((out / "sweep.csv").string() + ": cannot write");
    csv << "condition,device,cloud,device_weights,cloud_weights,up_mbit_s,down_mbit_s,rtt_ms,trace,policy,cut,ms_per_token,ms_per_token_p95,ttft_ms,"
           "bytes_per_token,energy_mj_per_token,cut_changes,fallbacks,token_agreement\n";
    std::ofstream timeline(out / "timeline.csv");
    timeline << "condition,t_s,cut,token_ms,up_mbit_s,down_mbit_s,rtt_ms\n";
    nlohmann::json doc = {{"model", base.model}, {"conditions", nlohmann::json::array()}};
    double worst_regret = 0;
    std::string worst_condition;
    size_t done = 0;
    bool interrupted = false;
    std::string fixed_data, auto_data, titles;
    std::vector<std::string> trace_conditions;
    for (const Settings& s : conditions) {
      nlohmann::json cj = {{"name", s.name}, {"device", s.device.empty() ? "host" : s.device},
                           {"cloud", s.cloud.empty() ? "host" : s.cloud}, {"trace", s.trace},
                           {"device_weights", s.device_weights}, {"cloud_weights", s.cloud_weights},
                           {"device_weight_bytes", partition::ModelWeightBytes(*model, s.device_weights).LayersBytes(0, L)},
                           {"up_mbit_s", s.link.up_mbit_s}, {"down_mbit_s", s.link.down_mbit_s},
                           {"rtt_ms", 2 * s.link.delay_ms}, {"timing", Timing(s)}};
      nlohmann::json measured = nlohmann::json::object(), energy = nlohmann::json::object();
      std::optional<RunResult> autor;
      std::map<std::string, RunResult> results;
      int oracle = -1;
      double oracle_ms = 0;
      fixed_data += "# " + s.name + "\n";
      std::map<std::string, Tally> tallies;
      {
        Rig rig(bench, s);
        const size_t rounds = scheduled(s) ? 1 : rig.prompts();
        for (size_t round = 0; round < rounds && !g_interrupted; ++round) {
          for (const std::string& policy : policies) {
            if (g_interrupted) break;
            Tally& t = tallies[policy];
            rig.Run(policy, scheduled(s) ? 0 : round, scheduled(s) ? rig.prompts() : round + 1, t, scheduled(s));
            ++done;
            if (t.interrupted) break;
            if (!a->json) {  // progress: a line per run
              std::printf("[%zu/%zu] %s round %zu/%zu %s: %.2f ms/token so far\n", done, runs, s.name.c_str(), round + 1,
                          rounds, policy == "auto" ? "auto" : ("cut " + policy).c_str(), Percentile(t.tpot, 0.5));
              std::fflush(stdout);
            }
          }
        }
        if (g_interrupted) {
          interrupted = true;
          break;
        }
        for (const std::string& policy : policies) results.emplace(policy, rig.Result(policy, tallies[policy]));
      }
      for (const std::string& policy : policies) {
        const RunResult& r = results.at(policy);
        const int cut = policy == "auto" ? r.mode_cut : std::stoi(policy);
        if (r.fallbacks > 0 && !scheduled(s)) {
          ctx.log->warn("{} {}: {} fallbacks to the device on a link without outages: this run measured the "
                        "fallback, not the cut", s.name, policy, r.fallbacks);
        }
        char row[640];
        std::snprintf(row, sizeof row, "%s,%s,%s,%s,%s,%g,%g,%g,%s,%s,%d,%.4f,%.4f,%.4f,%.1f,%.4f,%d,%d,%.4f\n", s.name.c_str(),
                      s.device.empty() ? "host" : fs::path(s.device).stem().c_str(),
                      s.cloud.empty() ? "host" : fs::path(s.cloud).stem().c_str(), s.device_weights.c_str(),
                      s.cloud_weights.c_str(), s.link.up_mbit_s, s.link.down_mbit_s,
                      2 * s.link.delay_ms, s.trace.empty() ? "" : fs::path(s.trace).filename().c_str(), policy.c_str(), cut,
                      r.tpot_ms, r.tpot_p95_ms, r.ttft_ms, r.bytes_per_token, r.energy_mj_per_token, r.cut_changes,
                      r.fallbacks, r.agreement);
        csv << row << std::flush;
        if (policy == "auto") {
          autor = r;
          if (!s.trace.empty()) {
            for (const auto& t : r.timeline) {
              timeline << s.name << ',' << t.t_s << ',' << t.cut << ',' << t.token_ms << ',' << t.link.up_mbit_s << ','
                       << t.link.down_mbit_s << ',' << 2 * t.link.delay_ms << '\n';
            }
          }
        } else {
          measured[policy] = r.tpot_ms;
          energy[policy] = r.energy_mj_per_token;
          fixed_data += std::to_string(cut) + " " + std::to_string(r.tpot_ms) + "\n";
          if (oracle < 0 || r.tpot_ms < oracle_ms) oracle = cut, oracle_ms = r.tpot_ms;
        }
      }
      fixed_data += "\n\n";
      const double regret = oracle_ms > 0 ? autor->tpot_ms / oracle_ms - 1 : 0;
      if (regret > worst_regret || worst_condition.empty()) worst_regret = regret, worst_condition = s.name;
      cj["measured_ms_per_token"] = measured;
      cj["auto_cut"] = autor->mode_cut;
      cj["auto_cuts"] = autor->cuts;
      cj["auto_ms_per_token"] = autor->tpot_ms;
      cj["auto_predicted_ms_per_token"] = autor->predicted_tpot_ms;
      cj["auto_cut_changes"] = autor->cut_changes;
      cj["auto_token_agreement"] = autor->agreement;
      cj["auto_energy_mj_per_token"] = autor->energy_mj_per_token;
      cj["energy_mj_per_token"] = energy;
      cj["oracle_cut"] = oracle;
      cj["oracle_ms_per_token"] = oracle_ms;
      cj["regret"] = regret;
      doc["conditions"].push_back(cj);
      auto_data += std::to_string(autor->mode_cut) + " " + std::to_string(autor->tpot_ms) + "\n\n\n";
      titles += (titles.empty() ? "" : " ") + s.name;
      if (!s.trace.empty()) trace_conditions.push_back(s.name);
      if (!a->json) {
        std::printf("%s: auto cut %d at %.2f ms/token, oracle (best fixed) cut %d at %.2f ms/token, regret %+.1f%%\n",
                    s.name.c_str(), autor->mode_cut, autor->tpot_ms, oracle, oracle_ms, 100 * regret);
        std::fflush(stdout);
      }
    }
    doc["worst_regret"] = worst_regret;
    doc["worst_regret_condition"] = worst_condition;
    doc["interrupted"] = interrupted;
    WriteFile(out / "sweep.json", doc.dump(2) + "\n");
    timeline.close();

    // Charts.
    const size_t n = doc["conditions"].size();
    if (n > 0) {
      WriteFile(out / "sweep-fixed.dat", fixed_data);
      WriteFile(out / "sweep-auto.dat", auto_data);
      std::string gp =
          "# gnuplot script written by splitlm sim --sweep\n"
          "set terminal svg size 960,600 dynamic background rgb 'white' font 'sans,12'\n"
          "set output 'sweep.svg'\n"
          "set title 'Time per token against the cut (lines: fixed cuts, measured; circles: auto)'\n"
          "set xlabel 'cut K: layers on the device (0 = all in the cloud, " + std::to_string(L) + " = all on the device)'\n"
          "set ylabel 'time per token, ms (median, log scale)'\n"
          "set logscale y\nset grid\nset key outside right top\nset xrange [-0.5:" + std::to_string(L) + ".5]\n"
          "titles = \"" + titles + "\"\n"
          "plot for [i=0:" + std::to_string(n - 1) + "] 'sweep-fixed.dat' index i using 1:2 with linespoints lc i+1 pt 7 ps 0.5 title word(titles, i+1), \\\n"
          "     for [i=0:" + std::to_string(n - 1) + "] 'sweep-auto.dat' index i using 1:2 with points lc i+1 pt 6 ps 2 notitle\n";
      for (const auto& name : trace_conditions) {
        gp += "set output 'timeline-" + name + ".svg'\nunset logscale y\nset datafile separator ','\n"
              "set title 'Trace " + name + ": uplink bandwidth and the cut auto chose'\n"
              "set xlabel 'emulated time, s'\nset ylabel 'uplink, Mbit/s'\nset y2label 'cut'\nset y2tics\nset ytics nomirror\n"
              "set autoscale x\nset yrange [0:*]\nset y2range [-0.5:" + std::to_string(L) + ".5]\n"
              "sel(x) = strcol(1) eq '" + name + "' ? x : NaN\n"
              "plot 'timeline.csv' using (sel($2)):(sel($5)) skip 1 with steps lw 2 title 'uplink Mbit/s', \\\n"
              "     'timeline.csv' using (sel($2)):(sel($3)) skip 1 axes x1y2 with steps lw 2 title 'cut'\n"
              "set datafile separator whitespace\nunset y2tics\nunset y2label\nset ytics mirror\n";
      }
      WriteFile(out / "sweep.gp", gp);
      const std::string cmdline = "cd " + Quote(fs::absolute(out).string()) + " && gnuplot sweep.gp 2> gnuplot.log";
      if (std::system(cmdline.c_str()) != 0) {
        ctx.log->warn("gnuplot failed or is not installed (see {}): the CSV and JSON are written, the SVG charts are not",
                      (out / "gnuplot.log").string());
      }
    }
    if (a->json) {
      std::cout << doc.dump() << std::endl;
      return interrupted ? 130 : 0;
    }
    std::printf("%-24s %10s %10s %10s %10s %8s\n", "condition", "auto cut", "auto ms", "oracle", "oracle ms", "regret");
    for (const auto& cj : doc["conditions"]) {
      std::printf("%-24s %10d %10.2f %10d %10.2f %+7.1f%%\n", cj["name"].get<std::string>().c_str(), cj["auto_cut"].get<int>(),
                  cj["auto_ms_per_token"].get<double>(), cj["oracle_cut"].get<int>(), cj["oracle_ms_per_token"].get<double>(),
                  100 * cj["regret"].get<double>());
    }
    std::printf("worst regret of auto against the best fixed cut: %+.1f%% (%s); outputs in %s\n", 100 * worst_regret,
                worst_condition.c_str(), out.c_str());
    if (interrupted) {
      std::printf("interrupted: %zu of %zu runs done; the files hold the finished conditions\n", done, runs);
      return 130;
    }
    return 0;
  };
}

}  // namespace splitlm::cli
