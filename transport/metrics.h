// A small thread-safe registry of counters and gauges, rendered in the
// Prometheus text format (served at GET /metrics by both binaries).
#pragma once

#include <map>
#include <mutex>
#include <string>

namespace splitlm::transport {

class Metrics {
 public:
  enum class Kind { kCounter, kGauge };
  // Declares a metric family (once, before use).
  void Describe(const std::string& family, Kind kind, const std::string& help);
  // `series` is the family name plus optional labels, e.g.
  // splitlm_latency_seconds_sum{part="network"}.
  void Add(const std::string& series, double value);
  void Set(const std::string& series, double value);
  double Get(const std::string& series) const;
  std::string Render() const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::pair<Kind, std::string>> families_;
  std::map<std::string, double> values_;
};

}  // namespace splitlm::transport
