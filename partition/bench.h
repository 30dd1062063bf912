// Decode and prefill throughput of a whole model on this machine, each next
// to the limit the machine sets (memory bandwidth, fp32 GEMM rate) measured in
// the same run, so the figures read as ratios on a noisy shared machine.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <vector>

namespace splitlm::partition {

class Model;

struct BenchOptions {
  int prefill_tokens = 512;
  int decode_tokens = 128;  // decoded from a one-token prompt (like tg128)
  int repeats = 3;          // best of
  std::function<void(const std::string&)> progress;
};

struct BenchResult {
  double decode_tok_s = 0;
  double prefill_tok_s = 0;
  double read_gb_s = 0;               // measured streaming read bandwidth
  double decode_bytes_per_token = 0;  // weights (in their held format) + mean KV cache read
  double roofline_decode_tok_s = 0;   // read_gb_s / decode_bytes_per_token
  double gemm_gflops = 0;             // LibTorch/OpenBLAS 2048^3 fp32 GEMM
  double prefill_gflops = 0;          // useful FLOPs of the prefill / its time
  int threads = 0;
  std::string isa;
  std::string weights;         // Model::weights(), "as stored" when empty
  std::string weight_formats;  // StageWeights::weight_formats()
  bool emulated = false;       // an aarch64 binary under qemu on another CPU
};

// True when this binary's CPU is emulated: an aarch64 build that reads an x86
// host's /proc/cpuinfo (qemu user mode passes it through). Its timings say
// nothing about the device.
bool RunningEmulated();

// The (upper) median of each inner vector: per-part timings of repeated runs
// (the profile's and the worker's layer timings). Throws
// Exception(kInvalidArgument) on an empty one.
std::vector<double> MedianOfEach(std::vector<std::vector<double>> samples);

// Streaming read bandwidth in GB/s over `bytes` (default far above the
// caches), best of `repeats` (the first also faults the pages in), on the
// LibTorch thread pool.
double MeasureReadBandwidth(size_t bytes = size_t{1} << 30, int repeats = 10);
// fp32 GEMM rate of LibTorch's BLAS in GFLOP/s (n x n x n), best of `repeats`.
double MeasureGemmGflops(int n = 2048, int repeats = 3);

BenchResult RunBenchmark(const Model& model, const BenchOptions& options);

}  // namespace splitlm::partition
