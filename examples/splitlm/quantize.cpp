#include <cstdio>

#include <filesystem>
#include "examples/splitlm/cli.h"

#include "partition/gguf_quantize.h"
#include "partition/hf_to_gguf.h"
#include "partition/model.h"

namespace splitlm::cli {
namespace {

struct QuantizeArgs {
  std::string model, type, out;
  std::string order = "source";
};

void AddQuantizeFlags(CLI::App* cmd, QuantizeArgs* args) {
  cmd->add_option(
         "--model", args->model,
         "source: a Hugging Face model directory, or a GGUF file with F32, F16 or BF16 weights")
      ->required();
  cmd->add_option("--type", args->type, "q8_0, q4_0, q4_k_m, f16, bf16 or f32")
      ->required()
      ->check(CLI::IsMember(partition::QuantizeTargetNames()));
  cmd->add_option("--out", args->out, "the GGUF file to write (replaced only when complete)")
      ->required();
  cmd->add_option(
         "--tensor-order", args->order,
         "source (keep the source's order) or llama (llama-quantize's order: the file is then "
         "byte for byte what llama-quantize writes)")
      ->check(CLI::IsMember({"source", "llama"}))
      ->capture_default_str();
}

// Writes the Hugging Face model directory `dir` as an F32 GGUF file `path`.
void ConvertDirectory(const std::string& dir, const std::string& path, const Context& ctx) {
  const auto hf_model = partition::Model::Open(dir);
  partition::ConvertOptions options;
  options.progress = [&](int done, int total) {
    if (done == total || done % 64 == 0) ctx.log->info("convert: {} of {} tensors", done, total);
  };
  for (const auto& note : partition::ConvertToGguf(*hf_model, path, options))
    ctx.log->warn("{}", note);
}

// Removes the file at `path` (if any) when it goes out of scope.
struct RemoveFileOnExit {
  std::string path;
  ~RemoveFileOnExit() {
    std::error_code ec;
    if (!path.empty()) std::filesystem::remove(path, ec);
  }
};

int RunQuantize(const QuantizeArgs& args, const Context& ctx) {
  partition::QuantizeOptions options;
  options.target = *partition::ParseQuantizeTarget(args.type);
  options.order =
      args.order == "llama" ? partition::TensorOrder::kLlamaCpp : partition::TensorOrder::kSource;
  int last_percent = -1;
  options.progress = [&](uint64_t done, uint64_t total) {
    const int percent = static_cast<int>(100 * done / std::max<uint64_t>(total, 1));
    if (total >= (uint64_t{64} << 20) && percent / 10 != last_percent / 10) {
      ctx.log->info("quantize {}: {}% of {:.1f} MB", args.type, percent, total / 1e6);
      last_percent = percent;
    }
  };
  std::string source = args.model;
  std::string converted;  // the directory as an F32 GGUF file, beside `out`
  if (std::filesystem::is_directory(args.model)) {
    converted = args.type == "f32" ? args.out : args.out + ".f32-source.tmp";
    ConvertDirectory(args.model, converted, ctx);
    if (args.type == "f32") {
      ctx.log->info("wrote {} (f32) from {}", args.out, args.model);
      return 0;
    }
    source = converted;
  }
  const RemoveFileOnExit remove_temp{converted};
  for (const auto& note : partition::QuantizeGguf(source, args.out, options))
    ctx.log->warn("{}", note);
  ctx.log->info("wrote {} ({}) from {}", args.out, args.type, args.model);
  return 0;
}

}  // namespace

Runner AddQuantize(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "quantize", "write a GGUF model file with quantised weights (as llama-quantize)");
  auto args = std::make_shared<QuantizeArgs>();
  AddQuantizeFlags(cmd, args.get());
  return [args](const Context& ctx) { return RunQuantize(*args, ctx); };
}

}  // namespace splitlm::cli
