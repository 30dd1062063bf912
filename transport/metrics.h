// A small thread-safe registry of counters and gauges, rendered in the
// Prometheus text format (served at GET /metrics by both binaries).
#pragma once

#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace splitlm::transport {

class Metrics {
 private:
  // One series' value, found by name once (on the first update, so that a
  // series appears in Render() only once it has been updated, as with the
  // string-keyed calls) and then through a pointer: std::map's nodes stay
  // put. A handle is used by one thread at a time; updates take the
  // registry's lock.
  class Slot {
   public:
    Slot(Metrics* metrics, std::string series) : metrics_(metrics), series_(std::move(series)) {}

   protected:
    template <typename F>
    void Update(F&& f) {
      std::lock_guard<std::mutex> lock(metrics_->mu_);
      if (value_ == nullptr) value_ = &metrics_->values_[series_];
      f(*value_);
    }

   private:
    Metrics* metrics_;
    std::string series_;
    double* value_ = nullptr;
  };

 public:
  enum class Kind { kCounter, kGauge };

  // A counter series, made once (CounterOf) and added to on the hot path
  // without building or looking up its name. Valid while its Metrics lives.
  class Counter : private Slot {
   public:
    using Slot::Slot;
    void Add(double value) {
      Update([value](double& v) { v += value; });
    }
  };
  // A gauge series, as Counter.
  class Gauge : private Slot {
   public:
    using Slot::Slot;
    void Set(double value) {
      Update([value](double& v) { v = value; });
    }
    void Add(double value) {
      Update([value](double& v) { v += value; });
    }
  };

  Metrics() = default;
  // Handles point into the registry.
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // Declares a metric family (once, before use).
  void Describe(const std::string& family, Kind kind, const std::string& help);
  // Handles to `series` (see Add); the series is created at its first update.
  Counter CounterOf(const std::string& series) { return Counter(this, series); }
  Gauge GaugeOf(const std::string& series) { return Gauge(this, series); }
  // `series` is the family name plus optional labels, e.g.
  // splitlm_latency_seconds_sum{part="network"}. Looks the name up at every
  // call: hot paths hold a Counter or Gauge instead.
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
