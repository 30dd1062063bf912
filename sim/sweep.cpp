#include "sim/sweep.h"

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <stdexcept>

#include "device/drafter.h"
#include "partition/weight_bytes.h"
#include "sim/scenario.h"
#include "sim/shaper.h"
#include "transport/error.h"

namespace splitlm::sim {
namespace {

namespace fs = std::filesystem;

bool IsFixedCut(const std::string& policy) {
  return !policy.empty() && policy.find_first_not_of("0123456789") == std::string::npos;
}

bool IsSpeculative(const std::string& policy) {
  const std::string suffix = kSpeculativeSuffix;
  return policy.size() > suffix.size() &&
         policy.compare(policy.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Runs one condition's schedule; false when stopped before its end.
bool RunCondition(Workbench& bench, const Settings& s, const std::vector<std::string>& policies,
                  const SweepCallbacks& callbacks, SweepReport& report, ConditionResult& result) {
  std::map<std::string, Tally> tallies;
  Scenario scenario(bench, s);
  const auto schedule = SweepSchedule(policies, scenario.prompts(), s.scheduled());
  const size_t rounds = schedule.empty() ? 0 : schedule.back().round + 1;
  for (const SweepRun& run : schedule) {
    if (bench.stop.StopRequested()) return false;
    Tally& t = tallies[run.policy];
    scenario.Run(run.policy, run.first, run.last, t, run.restart_link);
    ++report.runs_done;
    if (t.interrupted) return false;
    if (callbacks.progress) {
      callbacks.progress({report.runs_done, report.runs_total, &s, run.round, rounds, run.policy,
                          Percentile(t.tpot, 0.5)});
    }
  }
  if (bench.stop.StopRequested()) return false;
  for (const std::string& policy : policies)
    result.results.emplace(policy, scenario.Result(policy, tallies[policy]));
  return true;
}

}  // namespace

std::vector<std::string> SweepPolicies(int layers, bool speculative, const std::vector<int>& cuts) {
  std::vector<int> ks = cuts;
  if (ks.empty()) {
    for (int k = 0; k <= layers; ++k) ks.push_back(k);
  }
  std::vector<std::string> policies;
  for (int k : ks) {
    if (k < 0 || k > layers) {
      throw Exception(Exception::kInvalidArgument,
                      "cuts: " + std::to_string(k) + " is outside 0.." + std::to_string(layers));
    }
    policies.push_back(std::to_string(k));
  }
  policies.push_back("auto");
  if (speculative) {
    for (int k : ks) {
      if (k < layers) policies.push_back(std::to_string(k) + kSpeculativeSuffix);
    }
  }
  return policies;
}

void CheckConditions(Workbench& bench, const std::vector<Settings>& conditions) {
  for (const auto& s : conditions) {
    const bool device_emulated = FindHardware(s.device, bench.hardware_dir, "device").has_value();
    const bool cloud_emulated = FindHardware(s.cloud, bench.hardware_dir, "cloud").has_value();
    if ((!device_emulated && s.device_weights != "model") ||
        (!cloud_emulated && s.cloud_weights != "model")) {
      bench.log->warn(
          "{}: weights of a side that is not emulated (host) change nothing: it runs the weights "
          "as loaded",
          s.name);
    }
    if (!s.trace.empty()) ReadTrace(s.trace);
    if (!s.speculate.empty()) device::ParseSpeculate(s.speculate, s.name + ": speculate");
    SweepPolicies(bench.model->config().num_layers, !s.speculate.empty(), s.cuts);
    ReferenceFor(bench, s);
  }
}

std::vector<SweepRun> SweepSchedule(const std::vector<std::string>& policies, size_t prompts,
                                    bool scheduled) {
  std::vector<SweepRun> runs;
  if (scheduled) {
    for (const auto& p : policies) runs.push_back({0, p, 0, prompts, true});
    return runs;
  }
  for (size_t round = 0; round < prompts; ++round) {
    for (const auto& p : policies) runs.push_back({round, p, round, round + 1, false});
  }
  return runs;
}

Oracle FastestPolicy(const std::map<std::string, RunResult>& results, int layers,
                     const std::function<bool(const std::string&)>& eligible) {
  Oracle best;
  for (const auto& [policy, r] : results) {
    if (!eligible(policy)) continue;
    if (best.cut < 0 || r.tpot_ms < best.ms_per_token) {
      best.policy = policy;
      best.cut = ParsePolicy(policy, layers).cut;
      best.ms_per_token = r.tpot_ms;
    }
  }
  return best;
}

Oracle BestFixedCut(const std::map<std::string, RunResult>& results, int layers) {
  return FastestPolicy(results, layers, IsFixedCut);
}

double Regret(double ms_per_token, const Oracle& oracle) {
  return oracle.ms_per_token > 0 ? ms_per_token / oracle.ms_per_token - 1 : 0;
}

SweepReport RunSweep(Workbench& bench, const std::vector<Settings>& conditions,
                     const SweepCallbacks& callbacks) {
  const int layers = bench.model->config().num_layers;
  SweepReport report;
  for (const Settings& s : conditions) {
    const size_t per_policy = s.scheduled() ? 1 : ReferenceFor(bench, s).prompts.size();
    report.runs_total += SweepPolicies(layers, !s.speculate.empty(), s.cuts).size() * per_policy;
  }
  for (const Settings& s : conditions) {
    ConditionResult c;
    c.settings = s;
    c.policies = SweepPolicies(layers, !s.speculate.empty(), s.cuts);
    if (!RunCondition(bench, s, c.policies, callbacks, report, c)) {
      report.interrupted = true;
      break;
    }
    for (const auto& [policy, r] : c.results) {
      if (r.fallbacks > 0 && !s.scheduled()) {
        bench.log->warn(
            "{} {}: {} fallbacks to the device on a link without outages: this run measured the "
            "fallback, not the cut",
            s.name, policy, r.fallbacks);
      }
    }
    c.oracle = BestFixedCut(c.results, layers);
    c.speculative = FastestPolicy(c.results, layers, IsSpeculative);
    c.regret = Regret(c.results.at("auto").tpot_ms, c.oracle);
    if (c.regret > report.worst_regret || report.worst_condition.empty()) {
      report.worst_regret = c.regret;
      report.worst_condition = s.name;
    }
    if (callbacks.condition) callbacks.condition(c);
    report.conditions.push_back(std::move(c));
  }
  return report;
}

SweepWriter::SweepWriter(fs::path out, const partition::Model& model, std::string model_path)
    : out_(std::move(out)), model_(model) {
  fs::create_directories(out_);
  csv_.open(out_ / "sweep.csv");
  if (!csv_)
    throw Exception(Exception::kUnavailable, (out_ / "sweep.csv").string() + ": cannot write");
  csv_ << "condition,device,cloud,device_weights,cloud_weights,up_mbit_s,down_mbit_s,rtt_ms,trace,"
          "policy,cut,"
          "ms_per_token,ms_per_token_p95,ttft_ms,bytes_per_token,energy_mj_per_token,cut_changes,"
          "fallbacks,"
          "token_agreement,round_trips_per_token,acceptance_rate,ms_per_token_mean\n";
  timeline_.open(out_ / "timeline.csv");
  if (!timeline_)
    throw Exception(Exception::kUnavailable, (out_ / "timeline.csv").string() + ": cannot write");
  timeline_ << "condition,t_s,cut,token_ms,up_mbit_s,down_mbit_s,rtt_ms\n";
  doc_ = {{"model", model_path}, {"conditions", nlohmann::json::array()}};
}

namespace {

// A condition's settings as sweep.json records them.
nlohmann::json ConditionJson(const Settings& s, const partition::Model& model) {
  const int layers = model.config().num_layers;
  return {{"name", s.name},
          {"device", s.device.empty() ? "host" : s.device},
          {"cloud", s.cloud.empty() ? "host" : s.cloud},
          {"trace", s.trace},
          {"device_weights", s.device_weights},
          {"cloud_weights", s.cloud_weights},
          {"device_weight_bytes",
           partition::ModelWeightBytes(model, s.device_weights).LayersBytes(0, layers)},
          {"up_mbit_s", s.link.up_mbit_s},
          {"down_mbit_s", s.link.down_mbit_s},
          {"rtt_ms", 2 * s.link.delay_ms},
          {"timing", Timing(s)}};
}

// One policy's line of sweep.csv.
std::string CsvRow(const Settings& s, const std::string& policy, int cut, const RunResult& r) {
  char row[768];
  std::snprintf(
      row, sizeof row,
      "%s,%s,%s,%s,%s,%g,%g,%g,%s,%s,%d,%.4f,%.4f,%.4f,%.1f,%.4f,%d,%d,%.4f,%.4f,%.4f,%.4f\n",
      s.name.c_str(), s.device.empty() ? "host" : fs::path(s.device).stem().c_str(),
      s.cloud.empty() ? "host" : fs::path(s.cloud).stem().c_str(), s.device_weights.c_str(),
      s.cloud_weights.c_str(), s.link.up_mbit_s, s.link.down_mbit_s, 2 * s.link.delay_ms,
      s.trace.empty() ? "" : fs::path(s.trace).filename().c_str(), policy.c_str(), cut, r.tpot_ms,
      r.tpot_p95_ms, r.ttft_ms, r.bytes_per_token, r.energy_mj_per_token, r.cut_changes,
      r.fallbacks, r.agreement, r.round_trips_per_token, r.acceptance_rate, r.tpot_mean_ms);
  return row;
}

// The auto policy, the oracle and the best speculative cut of a condition.
void AddSummary(const ConditionResult& c, nlohmann::json& cj) {
  const RunResult& autor = c.results.at("auto");
  cj["auto_cut"] = autor.mode_cut;
  cj["auto_cuts"] = autor.cuts;
  cj["auto_ms_per_token"] = autor.tpot_ms;
  cj["auto_predicted_ms_per_token"] = autor.predicted_tpot_ms;
  cj["auto_cut_changes"] = autor.cut_changes;
  cj["auto_token_agreement"] = autor.agreement;
  cj["auto_energy_mj_per_token"] = autor.energy_mj_per_token;
  cj["oracle_cut"] = c.oracle.cut;
  cj["oracle_ms_per_token"] = c.oracle.ms_per_token;
  cj["regret"] = c.regret;
  if (!c.settings.speculate.empty()) {
    cj["speculate"] = c.settings.speculate;
    cj["speculative_best_cut"] = c.speculative.cut;
    cj["speculative_best_ms_per_token"] = c.speculative.ms_per_token;
  }
}

}  // namespace

void SweepWriter::Add(const ConditionResult& c) {
  const Settings& s = c.settings;
  const int layers = model_.config().num_layers;
  nlohmann::json cj = ConditionJson(s, model_);
  nlohmann::json measured = nlohmann::json::object(), energy = nlohmann::json::object();
  nlohmann::json spec_ms = nlohmann::json::object(), spec_trips = nlohmann::json::object(),
                 spec_accept = nlohmann::json::object(), mean = nlohmann::json::object();
  fixed_data_ += "# " + s.name + "\n";
  for (const std::string& policy : c.policies) {
    const RunResult& r = c.results.at(policy);
    const int cut = policy == "auto" ? r.mode_cut : ParsePolicy(policy, layers).cut;
    csv_ << CsvRow(s, policy, cut, r) << std::flush;
    mean[policy] = r.tpot_mean_ms;
    if (policy == "auto") {
      if (!s.trace.empty()) WriteTimeline(s.name, r);
    } else if (IsSpeculative(policy)) {
      const std::string k = std::to_string(cut);
      spec_ms[k] = r.tpot_ms;
      spec_trips[k] = r.round_trips_per_token;
      spec_accept[k] = r.acceptance_rate;
    } else {
      measured[policy] = r.tpot_ms;
      energy[policy] = r.energy_mj_per_token;
      fixed_data_ += std::to_string(cut) + " " + std::to_string(r.tpot_ms) + "\n";
    }
  }
  timeline_.flush();
  fixed_data_ += "\n\n";
  cj["measured_ms_per_token"] = measured;
  cj["energy_mj_per_token"] = energy;
  cj["mean_ms_per_token"] = mean;  // every policy
  AddSummary(c, cj);
  if (!s.speculate.empty()) {
    cj["speculative_ms_per_token"] = spec_ms;
    cj["speculative_round_trips_per_token"] = spec_trips;
    cj["speculative_acceptance_rate"] = spec_accept;
  }
  doc_["conditions"].push_back(cj);
  const RunResult& autor = c.results.at("auto");
  auto_data_ += std::to_string(autor.mode_cut) + " " + std::to_string(autor.tpot_ms) + "\n\n\n";
  titles_ += (titles_.empty() ? "" : " ") + s.name;
  if (!s.trace.empty()) trace_conditions_.push_back(s.name);
}

void SweepWriter::WriteTimeline(const std::string& condition, const RunResult& r) {
  for (const auto& t : r.timeline) {
    timeline_ << condition << ',' << t.t_s << ',' << t.cut << ',' << t.token_ms << ','
              << t.link.up_mbit_s << ',' << t.link.down_mbit_s << ',' << 2 * t.link.delay_ms
              << '\n';
  }
}

namespace {

// Writes `text` to `path` or throws naming it.
void WriteFile(const fs::path& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
  if (!out) throw Exception(Exception::kUnavailable, path.string() + ": cannot write");
}

std::string Quote(const std::string& s) { return "'" + s + "'"; }

}  // namespace

std::string SweepWriter::ChartScript() const {
  const std::string L = std::to_string(model_.config().num_layers);
  const std::string last = std::to_string(doc_["conditions"].size() - 1);
  std::string gp =
      "# gnuplot script written by splitlm sim --sweep\n"
      "set terminal svg size 960,600 dynamic background rgb 'white' font 'sans,12'\n"
      "set output 'sweep.svg'\n"
      "set title 'Time per token against the cut (lines: fixed cuts, measured; circles: auto)'\n"
      "set xlabel 'cut K: layers on the device (0 = all in the cloud, " +
      L +
      " = all on the device)'\n"
      "set ylabel 'time per token, ms (median, log scale)'\n"
      "set logscale y\nset grid\nset key outside right top\nset xrange [-0.5:" +
      L +
      ".5]\n"
      "titles = \"" +
      titles_ +
      "\"\n"
      "plot for [i=0:" +
      last +
      "] 'sweep-fixed.dat' index i using 1:2 with linespoints lc i+1 pt 7 ps 0.5 title "
      "word(titles, i+1), \\\n"
      "     for [i=0:" +
      last + "] 'sweep-auto.dat' index i using 1:2 with points lc i+1 pt 6 ps 2 notitle\n";
  for (const auto& name : trace_conditions_) {
    gp += "set output 'timeline-" + name +
          ".svg'\nunset logscale y\nset datafile separator ','\n"
          "set title 'Trace " +
          name +
          ": uplink bandwidth and the cut auto chose'\n"
          "set xlabel 'emulated time, s'\nset ylabel 'uplink, Mbit/s'\nset y2label 'cut'\nset "
          "y2tics\nset ytics nomirror\n"
          "set autoscale x\nset yrange [0:*]\nset y2range [-0.5:" +
          L +
          ".5]\n"
          "sel(x) = strcol(1) eq '" +
          name +
          "' ? x : NaN\n"
          "plot 'timeline.csv' using (sel($2)):(sel($5)) skip 1 with steps lw 2 title 'uplink "
          "Mbit/s', \\\n"
          "     'timeline.csv' using (sel($2)):(sel($3)) skip 1 axes x1y2 with steps lw 2 title "
          "'cut'\n"
          "set datafile separator whitespace\nunset y2tics\nunset y2label\nset ytics mirror\n";
  }
  return gp;
}

nlohmann::json SweepWriter::Finish(const SweepReport& report,
                                   const std::shared_ptr<spdlog::logger>& log) {
  doc_["worst_regret"] = report.worst_regret;
  doc_["worst_regret_condition"] = report.worst_condition;
  doc_["interrupted"] = report.interrupted;
  WriteFile(out_ / "sweep.json", doc_.dump(2) + "\n");
  timeline_.close();
  if (doc_["conditions"].empty()) return doc_;
  WriteFile(out_ / "sweep-fixed.dat", fixed_data_);
  WriteFile(out_ / "sweep-auto.dat", auto_data_);
  WriteFile(out_ / "sweep.gp", ChartScript());
  const std::string command =
      "cd " + Quote(fs::absolute(out_).string()) + " && gnuplot sweep.gp 2> gnuplot.log";
  if (std::system(command.c_str()) != 0) {
    log->warn(
        "gnuplot failed or is not installed (see {}): the CSV and JSON are written, the SVG charts "
        "are not",
        (out_ / "gnuplot.log").string());
  }
  return doc_;
}

}  // namespace splitlm::sim
