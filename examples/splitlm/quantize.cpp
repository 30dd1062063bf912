#include <cstdio>

#include <filesystem>
#include "examples/splitlm/cli.h"

#include "partition/gguf_quantize.h"
#include "partition/hf_to_gguf.h"
#include "partition/model.h"

namespace splitlm::cli {

// NOLINTNEXTLINE(readability-function-size): over 60 lines, to split (issue 14)
Runner AddQuantize(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "quantize", "write a GGUF model file with quantised weights (as llama-quantize)");
  auto model = std::make_shared<std::string>();
  auto type = std::make_shared<std::string>();
  auto out = std::make_shared<std::string>();
  auto order = std::make_shared<std::string>("source");
  cmd->add_option(
         "--model", *model,
         "source: a Hugging Face model directory, or a GGUF file with F32, F16 or BF16 weights")
      ->required();
  cmd->add_option("--type", *type, "q8_0, q4_0, q4_k_m, f16, bf16 or f32")
      ->required()
      ->check(CLI::IsMember(partition::QuantizeTargetNames()));
  cmd->add_option("--out", *out, "the GGUF file to write (replaced only when complete)")
      ->required();
  cmd->add_option(
         "--tensor-order", *order,
         "source (keep the source's order) or llama (llama-quantize's order: the file is then "
         "byte for byte what llama-quantize writes)")
      ->check(CLI::IsMember({"source", "llama"}))
      ->capture_default_str();
  return [=](const Context& ctx) {
    partition::QuantizeOptions opts;
    opts.target = *partition::ParseQuantizeTarget(*type);
    opts.order =
        *order == "llama" ? partition::TensorOrder::kLlamaCpp : partition::TensorOrder::kSource;
    int last = -1;
    opts.progress = [&](uint64_t done, uint64_t total) {
      const int pct = static_cast<int>(100 * done / std::max<uint64_t>(total, 1));
      if (total >= (uint64_t{64} << 20) && pct / 10 != last / 10) {
        ctx.log->info("quantize {}: {}% of {:.1f} MB", *type, pct, total / 1e6);
        last = pct;
      }
    };
    std::string source = *model;
    std::string converted;  // the directory as an F32 GGUF file, beside `out`
    if (std::filesystem::is_directory(*model)) {
      const auto hf = partition::Model::Open(*model);
      converted = *type == "f32" ? *out : *out + ".f32-source.tmp";
      partition::ConvertOptions co;
      co.progress = [&](int done, int total) {
        if (done == total || done % 64 == 0)
          ctx.log->info("convert: {} of {} tensors", done, total);
      };
      for (const auto& note : partition::ConvertToGguf(*hf, converted, co))
        ctx.log->warn("{}", note);
      if (*type == "f32") {
        ctx.log->info("wrote {} (f32) from {}", *out, *model);
        return 0;
      }
      source = converted;
    }
    struct RemoveTemp {
      std::string path;
      ~RemoveTemp() {
        std::error_code ec;
        if (!path.empty()) std::filesystem::remove(path, ec);
      }
    } remove_temp{converted};
    for (const auto& note : partition::QuantizeGguf(source, *out, opts)) ctx.log->warn("{}", note);
    ctx.log->info("wrote {} ({}) from {}", *out, *type, *model);
    return 0;
  };
}

}  // namespace splitlm::cli
