// `splitlm resident`: the memory a device stage at a cut keeps, read from
// /proc after loading it and running a few steps (partition/resident_memory.h).
#include <nlohmann/json.hpp>

#include <filesystem>
#include <iostream>
#include <vector>

#include "examples/splitlm/cli.h"
#include "partition/model.h"
#include "partition/resident_memory.h"
#include "partition/stage.h"
#include "scheduler/flags.h"

namespace splitlm::cli {
namespace {

// The model's files: the GGUF file, or a directory's .safetensors files.
std::vector<std::string> ModelFiles(const std::string& path) {
  if (!std::filesystem::is_directory(path)) return {path};
  std::vector<std::string> files;
  for (const auto& entry : std::filesystem::directory_iterator(path)) {
    if (entry.is_regular_file() && entry.path().extension() == ".safetensors")
      files.push_back(entry.path().string());
  }
  return files;
}

struct Figures {
  size_t file_bytes = 0, file_rss = 0;
};

Figures FileFigures(const std::vector<std::string>& files) {
  Figures figures;
  for (const std::string& file : files) {
    figures.file_bytes += std::filesystem::file_size(file);
    figures.file_rss += partition::FileMappedRss(file).value_or(0);
  }
  return figures;
}

double MiB(size_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

struct ResidentArgs {
  std::string dir, weights;
  int cut = -1;  // < 0: every layer and the head
  int steps = 8;
  bool json = false;
};

void AddResidentFlags(CLI::App* cmd, ResidentArgs* args) {
  cmd->add_option("--model", args->dir, "model directory or .gguf file")->required();
  cmd->add_option("--weights", args->weights, WeightsHelp())
      ->check(scheduler::flags::Schema("model.weights"));
  cmd->add_option("--cut", args->cut,
                  "the device runs layers [0, cut) (default: every layer and the head)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--steps", args->steps, "decode steps after an 8-token prefill")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "print one JSON line");
}

// What `resident` measured.
struct ResidentReport {
  int cut = 0, num_layers = 0;
  std::string weights;     // the model's weight formats
  std::string held;        // the formats the stage holds its matrices in
  size_t stage_bytes = 0;  // what the stage holds
  Figures files;
  size_t rss_start = 0, rss_open = 0, rss = 0;  // at start, after opening the model, at the end
};

// The buffers of a few steps of a stage: the input tokens and the output.
struct StageRun {
  std::vector<float> out;
  std::vector<int32_t> ids;
};

// An 8-token prefill, then `steps` decode steps.
StageRun RunSteps(partition::Stage& stage, int vocab_size, int steps) {
  StageRun run{std::vector<float>(stage.OutputSize(8)), std::vector<int32_t>(8)};
  for (int i = 0; i < 8; ++i) run.ids[i] = (i * 37 + 1) % vocab_size;
  stage.Forward({run.ids.data(), nullptr, 8}, run.out.data());
  for (int i = 0; i < steps; ++i) stage.Forward({&run.ids[i % 8], nullptr, 1}, run.out.data());
  return run;
}

void PrintResidentJson(const ResidentReport& report) {
  const nlohmann::json line = {{"cut", report.cut},
                               {"layers", report.num_layers},
                               {"weights", report.weights},
                               {"held", report.held},
                               {"stage_bytes", report.stage_bytes},
                               {"file_bytes", report.files.file_bytes},
                               {"file_mapped_rss", report.files.file_rss},
                               {"rss_start", report.rss_start},
                               {"rss_after_open", report.rss_open},
                               {"rss", report.rss}};
  std::cout << line.dump() << std::endl;
}

void PrintResidentText(const ResidentReport& report) {
  std::printf("device stage [0, %d) of %d layers%s, matrices held as %s\n", report.cut,
              report.num_layers, report.cut == report.num_layers ? " and the head" : "",
              report.held.empty() ? "(none: embedding only)" : report.held.c_str());
  std::printf("stage weights     %9.1f MiB (what the stage holds)\n", MiB(report.stage_bytes));
  std::printf("file pages mapped %9.1f MiB of the %.1f MiB file(s)\n", MiB(report.files.file_rss),
              MiB(report.files.file_bytes));
  std::printf("process RSS       %9.1f MiB (%.1f at start, %.1f after opening the model)\n",
              MiB(report.rss), MiB(report.rss_start), MiB(report.rss_open));
}

int RunResident(const ResidentArgs& args, const Context& ctx) {
  ResidentReport report;
  report.rss_start = partition::ProcessRss().value_or(0);
  auto model = partition::Model::Open(args.dir, args.weights, ctx.isa);
  const partition::ModelConfig& config = model->config();
  report.num_layers = config.num_layers;
  report.cut = args.cut < 0 ? config.num_layers : args.cut;
  if (report.cut > config.num_layers) {
    ctx.log->error("--cut {} is past the model's {} layers", report.cut, config.num_layers);
    return 2;
  }
  report.rss_open = partition::ProcessRss().value_or(0);
  const std::vector<std::string> files = ModelFiles(args.dir);
  partition::Stage stage(
      partition::StageWeights::Load(*model, partition::StageSpec::Device(config, report.cut)));
  // Alive until the end, as a generation's buffers are: they count in the RSS.
  const StageRun run = RunSteps(stage, config.vocab_size, args.steps);
  report.files = FileFigures(files);
  report.rss = partition::ProcessRss().value_or(0);
  report.stage_bytes = stage.weights().bytes();
  report.weights = model->weight_formats();
  report.held = stage.weights().weight_formats();
  if (args.json) {
    PrintResidentJson(report);
  } else {
    PrintResidentText(report);
  }
  return 0;
}

}  // namespace

Runner AddResident(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "resident", "resident memory of a device stage [0, cut) after a few steps (Linux)");
  auto args = std::make_shared<ResidentArgs>();
  AddResidentFlags(cmd, args.get());
  return [args](const Context& ctx) { return RunResident(*args, ctx); };
}

}  // namespace splitlm::cli
