#include <nlohmann/json.hpp>

#include <iostream>

#include "examples/splitlm/cli.h"
#include "partition/bench.h"
#include "partition/model.h"
#include "scheduler/flags.h"

namespace splitlm::cli {

Runner AddBench(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench", "decode and prefill speed against this machine's limits");
  auto dir = std::make_shared<std::string>();
  auto json = std::make_shared<bool>(false);
  auto o = std::make_shared<partition::BenchOptions>();
  cmd->add_option("--model", *dir, "model directory or .gguf file")->required();
  auto weights = std::make_shared<std::string>();
  cmd->add_option("--weights", *weights, WeightsHelp())
      ->check(scheduler::flags::Schema("model.weights"));
  cmd->add_flag("--json", *json, "print one JSON line");
  cmd->add_option("--prefill-tokens", o->prefill_tokens, "prompt length for prefill")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--decode-tokens", o->decode_tokens, "tokens decoded")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--repeats", o->repeats, "best of N")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  return [=](const Context& ctx) {
    auto model = partition::Model::Open(*dir, *weights, ctx.isa);
    partition::BenchOptions opts = *o;
    opts.progress = [&](const std::string& s) { ctx.log->info("bench: {}", s); };
    partition::BenchResult r = partition::RunBenchmark(*model, opts);
    if (*json) {
      nlohmann::json j = {{"decode_tok_s", r.decode_tok_s},
                          {"prefill_tok_s", r.prefill_tok_s},
                          {"roofline_decode_tok_s", r.roofline_decode_tok_s},
                          {"decode_roofline_ratio", r.decode_tok_s / r.roofline_decode_tok_s},
                          {"read_gb_s", r.read_gb_s},
                          {"decode_bytes_per_token", r.decode_bytes_per_token},
                          {"prefill_gflops", r.prefill_gflops},
                          {"gemm_gflops", r.gemm_gflops},
                          {"prefill_gemm_ratio", r.prefill_gflops / r.gemm_gflops},
                          {"threads", r.threads},
                          {"isa", r.isa},
                          {"weights", r.weights},
                          {"weight_formats", r.weight_formats},
                          {"emulated", r.emulated}};
      std::cout << j.dump() << std::endl;
    } else {
      std::printf(
          "threads %d, kernels %s, weights %s (%s)%s\n", r.threads, r.isa.c_str(),
          r.weights.c_str(), r.weight_formats.c_str(),
          r.emulated ? "; EMULATED (qemu): these figures say nothing about the device" : "");
      std::printf(
          "decode   %8.2f tok/s   roofline %8.2f tok/s (%.1f GB/s / %.1f MB per token)   ratio "
          "%.2f\n",
          r.decode_tok_s, r.roofline_decode_tok_s, r.read_gb_s, r.decode_bytes_per_token / 1e6,
          r.decode_tok_s / r.roofline_decode_tok_s);
      std::printf("prefill  %8.2f tok/s   %.1f GFLOP/s vs GEMM %.1f GFLOP/s          ratio %.2f\n",
                  r.prefill_tok_s, r.prefill_gflops, r.gemm_gflops,
                  r.prefill_gflops / r.gemm_gflops);
    }
    return 0;
  };
}

}  // namespace splitlm::cli
