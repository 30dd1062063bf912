// splitlm: the command-line tool. See README.md for every subcommand.
#include <ATen/Parallel.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <thread>

#include "examples/splitlm/cli.h"
#include "partition/blas_check.h"
#include "partition/kernels.h"
#include "scheduler/flags.h"
#include "transport/error.h"

// `sim` and `bench-plan` run the device and the worker in one process, each
// with its own OpenMP team on the same cores. libgomp's idle threads spin by
// default and steal the other side's cores (and the relay's), so those
// commands run with OMP_WAIT_POLICY=passive. libgomp reads it when it loads,
// before main: set it and start again. An explicit setting is respected.
void PassiveOpenMpFor(int argc, char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") != nullptr) return;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "sim") == 0 || std::strcmp(argv[i], "bench-plan") == 0) {
      setenv("OMP_WAIT_POLICY", "passive", 1);
      execv("/proc/self/exe", argv);
      return;  // exec failed: carry on as we are
    }
  }
}

namespace {

using Commands = std::vector<std::pair<CLI::App*, splitlm::cli::Runner>>;

// Options before the subcommand.
struct GlobalFlags {
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string level = "info";
};

void AddGlobalFlags(CLI::App& app, GlobalFlags* flags) {
  app.add_option("--threads", flags->threads,
                 "compute threads (the kernels' pool and LibTorch's intra-op pool)")
      ->check(splitlm::scheduler::flags::Schema("model.threads"))
      ->capture_default_str();
  splitlm::scheduler::flags::AddLogLevel(app, flags->level);
}

// Every subcommand, with the function that runs it.
Commands AddCommands(CLI::App& app) {
  Commands commands;
  auto add = [&](splitlm::cli::Runner (*fn)(CLI::App&)) {
    size_t before = app.get_subcommands({}).size();
    splitlm::cli::Runner r = fn(app);
    commands.emplace_back(app.get_subcommands({})[before], std::move(r));
  };
  add(splitlm::cli::AddMakeModel);
  add(splitlm::cli::AddGenerate);
  add(splitlm::cli::AddScore);
  add(splitlm::cli::AddBench);
  add(splitlm::cli::AddBenchTransport);
  add(splitlm::cli::AddBenchCloud);
  add(splitlm::cli::AddBenchPlan);
  add(splitlm::cli::AddBenchSpeculate);
  add(splitlm::cli::AddSim);
  add(splitlm::cli::AddCodecEval);
  add(splitlm::cli::AddKeygen);
  add(splitlm::cli::AddConfigKeys);
  add(splitlm::cli::AddProfile);
  add(splitlm::cli::AddPlan);
  add(splitlm::cli::AddQuantize);
  add(splitlm::cli::AddQuantEval);
  add(splitlm::cli::AddTokenize);
  add(splitlm::cli::AddDetokenize);
  add(splitlm::cli::AddChatRender);
  add(splitlm::cli::AddResident);
  return commands;
}

// The logger and the compute threads, from the parsed global flags.
splitlm::cli::Context MakeContext(const GlobalFlags& flags) {
  splitlm::cli::Context ctx;
  ctx.log = spdlog::stderr_color_mt("splitlm");
  ctx.log->set_level(splitlm::scheduler::flags::ParseLogLevel(flags.level));
  ctx.log->set_pattern("[%H:%M:%S.%e] [%^%l%$] %v");
  ctx.threads = flags.threads;
  if (const char* shim = std::getenv("SPLITLM_SPM_SHIM")) ctx.tokenizer.spm_shim = shim;
  ctx.isa =
      splitlm::partition::kernels::Isa::Choose(std::getenv("SPLITLM_KERNELS"), "SPLITLM_KERNELS");
  at::set_num_threads(flags.threads);
  return ctx;
}

// Warns loudly when LibTorch runs on the reference BLAS.
void CheckBlas(const splitlm::cli::Context& ctx) {
  const auto blas = splitlm::partition::DetectBlas();
  if (!blas.openblas) {
    ctx.log->warn(
        "*** LibTorch is using the reference BLAS ({}): ~20x slower than OpenBLAS. "
        "Install libopenblas0-openmp (cmake/bootstrap.sh does). ***",
        blas.library.empty() ? "unknown" : blas.library);
  } else {
    ctx.log->debug("blas={} config={} kernels={} threads={}", blas.library, blas.config,
                   ctx.isa.name(), ctx.threads);
  }
}

// Runs the parsed subcommand; its exceptions become a message and an exit code.
int RunParsed(const Commands& commands, const splitlm::cli::Context& ctx) {
  for (auto& [sub, run] : commands) {
    if (!sub->parsed()) continue;
    try {
      return run(ctx);
    } catch (const std::exception& e) {
      ctx.log->error("{}", splitlm::MessageOf(e));
      return splitlm::ExitCodeOf(e);
    }
  }
  return 2;
}

// Everything but the last resort of main().
int Main(int argc, char** argv) {
  PassiveOpenMpFor(argc, argv);
  CLI::App app{"splitlm: edge-cloud split inference for transformer language models"};
  app.require_subcommand(1);
  app.fallthrough();
  GlobalFlags flags;
  AddGlobalFlags(app, &flags);
  const Commands commands = AddCommands(app);

  CLI11_PARSE(app, argc, argv);

  const splitlm::cli::Context ctx = MakeContext(flags);
  CheckBlas(ctx);
  return RunParsed(commands, ctx);
}

}  // namespace

int main(int argc, char** argv) { return splitlm::RunMain("splitlm", Main, argc, argv); }
