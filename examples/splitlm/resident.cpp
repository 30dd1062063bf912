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
  for (const auto& e : std::filesystem::directory_iterator(path)) {
    if (e.is_regular_file() && e.path().extension() == ".safetensors")
      files.push_back(e.path().string());
  }
  return files;
}

struct Figures {
  size_t file_bytes = 0, file_rss = 0;
};

Figures FileFigures(const std::vector<std::string>& files) {
  Figures f;
  for (const std::string& file : files) {
    f.file_bytes += std::filesystem::file_size(file);
    f.file_rss += partition::FileMappedRss(file).value_or(0);
  }
  return f;
}

double MiB(size_t bytes) { return static_cast<double>(bytes) / (1 << 20); }

}  // namespace

// NOLINTNEXTLINE(readability-function-size): over 60 lines, to split (issue 14)
Runner AddResident(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "resident", "resident memory of a device stage [0, cut) after a few steps (Linux)");
  auto dir = std::make_shared<std::string>();
  auto weights = std::make_shared<std::string>();
  auto cut = std::make_shared<int>(-1);
  auto steps = std::make_shared<int>(8);
  auto json = std::make_shared<bool>(false);
  cmd->add_option("--model", *dir, "model directory or .gguf file")->required();
  cmd->add_option("--weights", *weights, WeightsHelp())
      ->check(scheduler::flags::Schema("model.weights"));
  cmd->add_option("--cut", *cut,
                  "the device runs layers [0, cut) (default: every layer and the head)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--steps", *steps, "decode steps after an 8-token prefill")
      ->check(CLI::Range(0, 100000))
      ->capture_default_str();
  cmd->add_flag("--json", *json, "print one JSON line");
  return [=](const Context& ctx) {
    const size_t rss_start = partition::ProcessRss().value_or(0);
    auto model = partition::Model::Open(*dir, *weights, ctx.isa);
    const partition::ModelConfig& c = model->config();
    const int k = *cut < 0 ? c.num_layers : *cut;
    if (k > c.num_layers) {
      ctx.log->error("--cut {} is past the model's {} layers", k, c.num_layers);
      return 2;
    }
    const size_t rss_open = partition::ProcessRss().value_or(0);
    const std::vector<std::string> files = ModelFiles(*dir);
    partition::Stage stage(
        partition::StageWeights::Load(*model, partition::StageSpec::Device(c, k)));
    std::vector<float> out(stage.OutputSize(8));
    std::vector<int32_t> ids(8);
    for (int i = 0; i < 8; ++i) ids[i] = (i * 37 + 1) % c.vocab_size;
    stage.Forward({ids.data(), nullptr, 8}, out.data());
    for (int i = 0; i < *steps; ++i) stage.Forward({&ids[i % 8], nullptr, 1}, out.data());
    const Figures f = FileFigures(files);
    const size_t rss = partition::ProcessRss().value_or(0);
    const size_t held = stage.weights().bytes();
    if (*json) {
      nlohmann::json j = {{"cut", k},
                          {"layers", c.num_layers},
                          {"weights", model->weight_formats()},
                          {"held", stage.weights().weight_formats()},
                          {"stage_bytes", held},
                          {"file_bytes", f.file_bytes},
                          {"file_mapped_rss", f.file_rss},
                          {"rss_start", rss_start},
                          {"rss_after_open", rss_open},
                          {"rss", rss}};
      std::cout << j.dump() << std::endl;
    } else {
      const std::string held_as = stage.weights().weight_formats();
      std::printf("device stage [0, %d) of %d layers%s, matrices held as %s\n", k, c.num_layers,
                  k == c.num_layers ? " and the head" : "",
                  held_as.empty() ? "(none: embedding only)" : held_as.c_str());
      std::printf("stage weights     %9.1f MiB (what the stage holds)\n", MiB(held));
      std::printf("file pages mapped %9.1f MiB of the %.1f MiB file(s)\n", MiB(f.file_rss),
                  MiB(f.file_bytes));
      std::printf("process RSS       %9.1f MiB (%.1f at start, %.1f after opening the model)\n",
                  MiB(rss), MiB(rss_start), MiB(rss_open));
    }
    return 0;
  };
}

}  // namespace splitlm::cli
