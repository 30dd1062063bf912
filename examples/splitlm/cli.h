// Subcommands of the `splitlm` tool. Each registers its options on the app
// and returns the function that runs it (exit status).
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <memory>

#include <spdlog/spdlog.h>

#include "partition/kernels.h"
#include "partition/tokenizer.h"

namespace splitlm::cli {

struct Context {
  std::shared_ptr<spdlog::logger> log;
  int threads = 0;
  partition::TokenizerOptions tokenizer;  // the SentencePiece shim ($SPLITLM_SPM_SHIM)
  partition::kernels::Isa isa = partition::kernels::Isa::Best();  // the kernels ($SPLITLM_KERNELS)
};

using Runner = std::function<int(const Context&)>;

// Help of the --weights option (partition/weight_matrix.h).
inline const char* WeightsHelp() {
  return "format the weight matrices are held in: q8_0, q4_0, q4_k, q6_k, q4_k_m, f16 (rounded, "
         "held in 16 bits) "
         "or f32 (default: as stored, a GGUF file's Q8_0/Q4_0/Q4_K/Q6_K/F16/BF16 matrices stay in "
         "their format)";
}

Runner AddMakeModel(CLI::App& app);
Runner AddGenerate(CLI::App& app);
Runner AddBench(CLI::App& app);
Runner AddBenchTransport(CLI::App& app);
Runner AddBenchCloud(CLI::App& app);
Runner AddBenchPlan(CLI::App& app);
Runner AddBenchSpeculate(CLI::App& app);
Runner AddSim(CLI::App& app);
Runner AddKeygen(CLI::App& app);
Runner AddConfigKeys(CLI::App& app);
Runner AddProfile(CLI::App& app);
Runner AddPlan(CLI::App& app);
Runner AddCodecEval(CLI::App& app);
Runner AddScore(CLI::App& app);
Runner AddQuantize(CLI::App& app);
Runner AddQuantEval(CLI::App& app);
Runner AddTokenize(CLI::App& app);
Runner AddDetokenize(CLI::App& app);
Runner AddChatRender(CLI::App& app);
Runner AddResident(CLI::App& app);

}  // namespace splitlm::cli
