#include "examples/splitlm/cli.h"
#include "partition/random_model.h"

namespace splitlm::cli {

Runner AddMakeModel(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("make-model", "write a deterministic random-weight model directory");
  auto o = std::make_shared<partition::RandomModelOptions>();
  auto out = std::make_shared<std::string>();
  auto arch = std::make_shared<std::string>("llama");
  auto dtype = std::make_shared<std::string>("f32");
  cmd->add_option("--preset", o->preset, "tiny, small or 110m")
      ->check(CLI::IsMember(partition::RandomModelPresets()))
      ->capture_default_str();
  cmd->add_option("--seed", o->seed, "weights seed")->capture_default_str();
  cmd->add_option("--out", *out, "output directory")->required();
  cmd->add_option("--arch", *arch, "llama, mistral or qwen2 (q/k/v biases)")
      ->check(CLI::IsMember({"llama", "mistral", "qwen2"}))
      ->capture_default_str();
  cmd->add_option("--dtype", *dtype, "stored dtype: f32, f16 or bf16")
      ->check(CLI::IsMember({"f32", "f16", "bf16"}))
      ->capture_default_str();
  cmd->add_option("--shards", o->shards, "number of safetensors shards (> 1 writes an index)")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  cmd->add_option("--vocab", o->vocab,
                  "override the preset's vocabulary size (e.g. 32000 for the Llama 2 tokenizer)")
      ->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--tokenizer", o->tokenizer,
                  "tokenizer.json or tokenizer.model to copy into the directory (sets the "
                  "vocabulary size and BOS/EOS ids)")
      ->check(CLI::ExistingFile);
  return [=](const Context& ctx) {
    partition::RandomModelOptions opts = *o;
    opts.arch = *arch == "qwen2"     ? partition::Arch::kQwen2
                : *arch == "mistral" ? partition::Arch::kMistral
                                     : partition::Arch::kLlama;
    opts.dtype = *dtype == "f16"    ? partition::StoredDType::kF16
                 : *dtype == "bf16" ? partition::StoredDType::kBF16
                                    : partition::StoredDType::kF32;
    int last = -1;
    opts.progress = [&](uint64_t done, uint64_t total) {
      int pct = static_cast<int>(100 * done / std::max<uint64_t>(total, 1));
      if (pct / 10 != last / 10) {
        ctx.log->info("make-model {}: {}% of {:.1f} MB", opts.preset, pct, total / 1e6);
        last = pct;
      }
    };
    partition::WriteRandomModel(opts, *out);
    ctx.log->info("wrote {} model ({}, seed {}) to {}", opts.preset, *dtype, opts.seed, *out);
    return 0;
  };
}

}  // namespace splitlm::cli
