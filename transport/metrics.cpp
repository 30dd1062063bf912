#include "transport/metrics.h"

#include <cstdio>

namespace splitlm::transport {

void Metrics::Describe(const std::string& family, Kind kind, const std::string& help) {
  std::lock_guard<std::mutex> lock(mu_);
  families_[family] = {kind, help};
}

void Metrics::Add(const std::string& series, double value) {
  std::lock_guard<std::mutex> lock(mu_);
  values_[series] += value;
}

void Metrics::Set(const std::string& series, double value) {
  std::lock_guard<std::mutex> lock(mu_);
  values_[series] = value;
}

double Metrics::Get(const std::string& series) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = values_.find(series);
  return it == values_.end() ? 0.0 : it->second;
}

std::string Metrics::Render() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const auto& [family, meta] : families_) {
    out += "# HELP " + family + " " + meta.second + "\n";
    out += "# TYPE " + family + (meta.first == Kind::kCounter ? " counter\n" : " gauge\n");
    bool any = false;
    for (auto it = values_.lower_bound(family);
         it != values_.end() && it->first.rfind(family, 0) == 0; ++it) {
      const char next = it->first.size() > family.size() ? it->first[family.size()] : '\0';
      if (next != '\0' && next != '{') continue;  // another family sharing the prefix
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.9g", it->second);
      out += it->first + " " + buf + "\n";
      any = true;
    }
    if (!any) out += family + " 0\n";
  }
  return out;
}

}  // namespace splitlm::transport
