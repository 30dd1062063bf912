#include "partition/bench.h"

#include <ATen/ATen.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "partition/kernels.h"
#include "partition/model.h"
#include "partition/model_config.h"
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
      for (int64_t c = b; c < e; ++c)
        s += kernels::ReadSum(kernels::Isa::Best(), buf.data() + c * (n / chunks), n / chunks);
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

namespace {

// Seconds of the fastest of `repeats` prefills of `prompt` into a fresh stage.
double BestPrefillSeconds(const std::shared_ptr<const StageWeights>& weights,
                          const std::vector<int32_t>& prompt, int repeats) {
  std::vector<float> logits(weights->config().vocab_size);
  double best = 1e30;
  for (int rep = 0; rep < repeats; ++rep) {
    Stage stage(weights);
    auto t0 = Clock::now();
    stage.Forward({prompt.data(), nullptr, static_cast<int>(prompt.size())}, logits.data());
    best = std::min(best, Seconds(t0, Clock::now()));
  }
  return best;
}

// Seconds of the fastest of `repeats` greedy decodes of `tokens` tokens after
// a one-token prompt.
double BestDecodeSeconds(const std::shared_ptr<const StageWeights>& weights, int tokens,
                         int repeats) {
  std::vector<float> logits(weights->config().vocab_size);
  double best = 1e30;
  for (int rep = 0; rep < repeats; ++rep) {
    Stage stage(weights);
    int32_t tok = 1;
    stage.Forward({&tok, nullptr, 1}, logits.data());
    auto t0 = Clock::now();
    for (int i = 0; i < tokens; ++i) {
      tok = static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
      stage.Forward({&tok, nullptr, 1}, logits.data());
    }
    best = std::min(best, Seconds(t0, Clock::now()));
  }
  return best;
}

// Useful FLOPs of a prefill of `prompt` positions: the matrices, the causal
// attention, and the head for the last position.
double PrefillFlops(const ModelConfig& c, int prompt) {
  const double qd = static_cast<double>(c.num_heads) * c.head_dim,
               kvd = static_cast<double>(c.num_kv_heads) * c.head_dim;
  const double layer_params = c.num_layers * (c.hidden_size * (2 * qd + 2 * kvd) +
                                              3.0 * c.hidden_size * c.intermediate_size);
  const double attn_flops = 2.0 * 2.0 * c.num_layers * c.num_heads * c.head_dim *
                            (static_cast<double>(prompt) * (prompt + 1) / 2);
  return 2.0 * layer_params * prompt + attn_flops + 2.0 * c.vocab_size * c.hidden_size;
}

}  // namespace

BenchResult RunBenchmark(const Model& model, const BenchOptions& options) {
  auto say = [&](const std::string& s) {
    if (options.progress) options.progress(s);
  };
  const ModelConfig& c = model.config();
  BenchResult result;
  result.threads = at::get_num_threads();
  result.isa = model.isa().name();
  result.weights = model.weights().empty() ? "as stored" : model.weights();
  result.emulated = RunningEmulated();

  say("loading weights");
  auto weights = StageWeights::Load(model, StageSpec::Range(c, 0, c.num_layers));
  result.weight_formats = weights->weight_formats();
  const int prefill = std::min(options.prefill_tokens, c.max_context - 1);
  const int decode = std::min(options.decode_tokens, c.max_context - 1);
  std::vector<int32_t> prompt(prefill);
  for (int i = 0; i < prefill; ++i) prompt[i] = (i * 7919 + 13) % c.vocab_size;

  say("measuring prefill (" + std::to_string(prefill) + " tokens)");
  const double prefill_s = BestPrefillSeconds(weights, prompt, options.repeats);
  result.prefill_tok_s = prefill / prefill_s;
  result.prefill_gflops = PrefillFlops(c, prefill) / prefill_s / 1e9;

  say("measuring decode (" + std::to_string(decode) + " tokens)");
  result.decode_tok_s = decode / BestDecodeSeconds(weights, decode, options.repeats);
  const double mean_context = 1.0 + decode / 2.0;
  result.decode_bytes_per_token =
      static_cast<double>(weights->decode_bytes_per_token()) +
      mean_context * c.num_layers * 2.0 * c.num_kv_heads * c.head_dim * 4;

  say("measuring memory bandwidth");
  result.read_gb_s = MeasureReadBandwidth();
  result.roofline_decode_tok_s = result.read_gb_s * 1e9 / result.decode_bytes_per_token;
  say("measuring fp32 GEMM rate");
  result.gemm_gflops = MeasureGemmGflops();
  return result;
}

std::vector<double> MedianOfEach(std::vector<std::vector<double>> samples) {
  std::vector<double> out;
  for (auto& s : samples) {
    if (s.empty()) throw Exception(Exception::kInvalidArgument, "MedianOfEach: no samples");
    std::nth_element(s.begin(), s.begin() + static_cast<std::ptrdiff_t>(s.size() / 2), s.end());
    out.push_back(s[s.size() / 2]);
  }
  return out;
}

}  // namespace splitlm::partition
