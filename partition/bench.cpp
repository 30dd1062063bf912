#include "partition/bench.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <stdexcept>
#include <fstream>
#include <string>
#include <vector>

#include "partition/kernels.h"
#include "partition/model.h"
#include "partition/stage.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

using Clock = std::chrono::steady_clock;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

}  // namespace

double MeasureReadBandwidth(size_t bytes, int repeats) {
  const size_t n = bytes / sizeof(float);
  std::vector<float> buf(n, 1.0f);
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    std::vector<float> partial(at::get_num_threads() * 64, 0.0f);
    auto t0 = Clock::now();
    const int64_t chunks = 16;  // a few per thread, each read as 8 streams
    at::parallel_for(0, chunks, 1, [&](int64_t b, int64_t e) {
      float s = 0;
      for (int64_t c = b; c < e; ++c) s += kernels::ReadSum(kernels::Isa::Best(), buf.data() + c * (n / chunks), n / chunks);
      partial[at::get_thread_num() * 64] += s;
    });
    auto t1 = Clock::now();
    volatile float sink = partial[0];
    (void)sink;
    best = std::max(best, static_cast<double>(bytes) / Seconds(t0, t1) / 1e9);
  }
  return best;
}

double MeasureGemmGflops(int n, int repeats) {
  at::Tensor a = at::randn({n, n}), b = at::randn({n, n}), c = at::empty({n, n});
  at::mm_out(c, a, b);  // warm up
  double best = 0;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = Clock::now();
    at::mm_out(c, a, b);
    auto t1 = Clock::now();
    best = std::max(best, 2.0 * n * n * static_cast<double>(n) / Seconds(t0, t1) / 1e9);
  }
  return best;
}

bool RunningEmulated() {
#if defined(__aarch64__)
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("vendor_id", 0) == 0 || line.rfind("flags", 0) == 0) return true;  // x86 fields
  }
#endif
  return false;
}

BenchResult RunBenchmark(const Model& model, const BenchOptions& o) {
  auto say = [&](const std::string& s) {
    if (o.progress) o.progress(s);
  };
  const ModelConfig& c = model.config();
  BenchResult r;
  r.threads = at::get_num_threads();
  r.isa = model.isa().name();
  r.weights = model.weights().empty() ? "as stored" : model.weights();
  r.emulated = RunningEmulated();

  say("loading weights");
  auto weights = StageWeights::Load(model, StageSpec::Range(c, 0, c.num_layers));
  r.weight_formats = weights->weight_formats();
  const int prefill = std::min(o.prefill_tokens, c.max_context - 1);
  const int decode = std::min(o.decode_tokens, c.max_context - 1);
  std::vector<int32_t> prompt(prefill);
  for (int i = 0; i < prefill; ++i) prompt[i] = (i * 7919 + 13) % c.vocab_size;
  std::vector<float> logits(c.vocab_size);

  say("measuring prefill (" + std::to_string(prefill) + " tokens)");
  double best_prefill = 1e30;
  for (int rep = 0; rep < o.repeats; ++rep) {
    Stage stage(weights);
    auto t0 = Clock::now();
    stage.Forward({prompt.data(), nullptr, prefill}, logits.data());
    best_prefill = std::min(best_prefill, Seconds(t0, Clock::now()));
  }
  r.prefill_tok_s = prefill / best_prefill;
  const double qd = static_cast<double>(c.num_heads) * c.head_dim, kvd = static_cast<double>(c.num_kv_heads) * c.head_dim;
  const double layer_params =
      c.num_layers * (c.hidden_size * (2 * qd + 2 * kvd) + 3.0 * c.hidden_size * c.intermediate_size);
  const double attn_flops = 2.0 * 2.0 * c.num_layers * c.num_heads * c.head_dim *
                            (static_cast<double>(prefill) * (prefill + 1) / 2);
  r.prefill_gflops = (2.0 * layer_params * prefill + attn_flops +
                      2.0 * c.vocab_size * c.hidden_size) / best_prefill / 1e9;

  say("measuring decode (" + std::to_string(decode) + " tokens)");
  double best_decode = 1e30;
  for (int rep = 0; rep < o.repeats; ++rep) {
    Stage stage(weights);
    int32_t tok = 1;
    stage.Forward({&tok, nullptr, 1}, logits.data());
    auto t0 = Clock::now();
    for (int i = 0; i < decode; ++i) {
      tok = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      stage.Forward({&tok, nullptr, 1}, logits.data());
    }
    best_decode = std::min(best_decode, Seconds(t0, Clock::now()));
  }
  r.decode_tok_s = decode / best_decode;
  const double mean_context = 1.0 + decode / 2.0;
  r.decode_bytes_per_token = static_cast<double>(weights->decode_bytes_per_token()) +
                             mean_context * c.num_layers * 2.0 * c.num_kv_heads * c.head_dim * 4;

  say("measuring memory bandwidth");
  r.read_gb_s = MeasureReadBandwidth();
  r.roofline_decode_tok_s = r.read_gb_s * 1e9 / r.decode_bytes_per_token;
  say("measuring fp32 GEMM rate");
  r.gemm_gflops = MeasureGemmGflops();
  return r;
}

std::vector<double> MedianOfEach(std::vector<std::vector<double>> samples) {
  std::vector<double> out;
  for (auto& s : samples) {
    if (s.empty()) throw Exception(Exception::kInvalidArgument, "MedianOfEach: no samples");
    std::nth_element(s.begin(), s.begin() + s.size() / 2, s.end());
    out.push_back(s[s.size() / 2]);
  }
  return out;
}

}  // namespace splitlm::partition
