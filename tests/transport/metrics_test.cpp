// The metrics registry: handles made once export exactly what string-keyed
// updates do.
#include <gtest/gtest.h>

#include <string>

#include "transport/metrics.h"

namespace splitlm::transport {
namespace {

void DescribeAll(Metrics& m) {
  m.Describe("splitlm_test_tokens_total", Metrics::Kind::kCounter, "Tokens.");
  m.Describe("splitlm_test_latency_seconds_total", Metrics::Kind::kCounter, "Latency by part.");
  m.Describe("splitlm_test_kv_bytes", Metrics::Kind::kGauge, "KV bytes.");
}

TEST(Metrics, HandlesRenderAsStringKeyedUpdatesDo) {
  Metrics by_name, by_handle;
  DescribeAll(by_name);
  DescribeAll(by_handle);
  by_name.Add("splitlm_test_tokens_total", 1);
  by_name.Add("splitlm_test_tokens_total", 2);
  by_name.Add("splitlm_test_latency_seconds_total{part=\"network\"}", 0.25);
  by_name.Set("splitlm_test_kv_bytes", 7);
  by_name.Set("splitlm_test_kv_bytes", 5);

  Metrics::Counter tokens = by_handle.CounterOf("splitlm_test_tokens_total");
  Metrics::Counter network =
      by_handle.CounterOf("splitlm_test_latency_seconds_total{part=\"network\"}");
  Metrics::Counter compute =
      by_handle.CounterOf("splitlm_test_latency_seconds_total{part=\"compute\"}");
  Metrics::Gauge kv = by_handle.GaugeOf("splitlm_test_kv_bytes");
  tokens.Add(1);
  tokens.Add(2);
  network.Add(0.25);
  kv.Set(7);
  kv.Set(5);
  (void)compute;  // made but never updated: not exported, as a name never used is not

  EXPECT_EQ(by_name.Render(), by_handle.Render());
  EXPECT_EQ(3, by_handle.Get("splitlm_test_tokens_total"));
  EXPECT_EQ(std::string::npos, by_handle.Render().find("part=\"compute\""));
}

TEST(Metrics, HandlesAndNamesShareTheSeries) {
  Metrics m;
  Metrics::Counter c = m.CounterOf("splitlm_test_tokens_total");
  m.Add("splitlm_test_tokens_total", 4);
  c.Add(1);
  m.Add("splitlm_test_tokens_total", 10);
  c.Add(1);
  EXPECT_EQ(16, m.Get("splitlm_test_tokens_total"));
}

}  // namespace
}  // namespace splitlm::transport
