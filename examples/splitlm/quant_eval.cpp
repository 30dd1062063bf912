// splitlm quant-eval: what each weight format costs in accuracy against the
// model's own float weights, on a corpus sampled from the float model.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "examples/splitlm/cli.h"
#include "partition/gguf_quantize.h"
#include "partition/hf_to_gguf.h"
#include "partition/model.h"
#include "partition/quant_eval.h"
#include "transport/error.h"

namespace splitlm::cli {
namespace {

namespace fs = std::filesystem;

struct QuantEvalArgs {
  std::string model;
  std::string types = "f16,q8_0,q4_0,q4_k_m";
  partition::CorpusOptions corpus;
  bool json = false;
};

// A directory under the system's temporary one, removed with its files.
class ScratchDir {
 public:
  ScratchDir() {
    std::string pattern = (fs::temp_directory_path() / "splitlm-quant-eval-XXXXXX").string();
    if (mkdtemp(pattern.data()) == nullptr)
      throw Exception(Exception::kUnavailable,
                      "cannot create a directory in " + fs::temp_directory_path().string());
    path_ = pattern;
  }
  ~ScratchDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  std::string Sub(const std::string& name) const { return (fs::path(path_) / name).string(); }

 private:
  std::string path_;
};

std::vector<std::string> ParseTypes(const std::string& list) {
  std::vector<std::string> out;
  std::stringstream in(list);
  std::string t;
  while (std::getline(in, t, ',')) {
    if (!partition::ParseQuantizeTarget(t)) {
      std::string names;
      for (const auto& n : partition::QuantizeTargetNames())
        names += (names.empty() ? "" : ", ") + n;
      throw Exception(Exception::kInvalidArgument,
                      "--types: unknown format \"" + t + "\" (known: " + names + ")");
    }
    out.push_back(t);
  }
  if (out.empty())
    throw Exception(Exception::kInvalidArgument, "--types: give at least one format");
  return out;
}

struct Row {
  std::string format;
  uint64_t bytes = 0;
  partition::FormatAccuracy acc;
};

void PrintRows(const std::vector<Row>& rows, int tokens, int sequences, bool json) {
  const double ref_ppl = rows.front().acc.perplexity;
  if (json) {
    for (const Row& r : rows) {
      nlohmann::ordered_json j{{"format", r.format},
                               {"file_bytes", r.bytes},
                               {"mean_kl", r.acc.mean_kl},
                               {"max_kl", r.acc.max_kl},
                               {"top1_agreement", r.acc.top1_agreement},
                               {"perplexity", r.acc.perplexity},
                               {"perplexity_ratio", r.acc.perplexity / ref_ppl},
                               {"positions", r.acc.positions}};
      std::cout << j.dump() << "\n";
    }
    std::cout.flush();
    return;
  }
  std::printf("corpus: %d tokens in %d sequences sampled from the reference at temperature 1\n",
              tokens, sequences);
  std::printf("%-10s %10s %12s %12s %8s %11s %9s\n", "format", "file MB", "mean KL", "max KL",
              "top-1", "perplexity", "vs ref");
  for (const Row& r : rows) {
    std::printf("%-10s %10.2f %12.3e %12.3e %7.2f%% %11.4f %9.4f\n", r.format.c_str(),
                r.bytes / 1e6, r.acc.mean_kl, r.acc.max_kl, 100 * r.acc.top1_agreement,
                r.acc.perplexity, r.acc.perplexity / ref_ppl);
  }
  std::fflush(stdout);
}

int Run(const QuantEvalArgs& a, const Context& ctx) {
  const std::vector<std::string> types = ParseTypes(a.types);
  const auto reference = partition::Model::Open(a.model, "", ctx.isa);
  const std::string& formats = reference->weight_formats();
  for (const char* q : {"q4", "q5", "q6", "q8", "q2", "q3", "iq"}) {
    if (formats.find(q) != std::string::npos) {
      throw Exception(Exception::kInvalidArgument, a.model + " holds quantised weights (" +
                                                       formats +
                                                       "): the reference must be F32, F16 or BF16");
    }
  }
  partition::CorpusOptions co = a.corpus;
  co.progress = [&](int done, int total) { ctx.log->info("corpus: {} of {} tokens", done, total); };
  const auto corpus = partition::SampleCorpus(*reference, co);

  ScratchDir scratch;
  std::string source = a.model;
  if (!reference->is_gguf()) {
    source = scratch.Sub("source-f32.gguf");
    partition::ConvertToGguf(*reference, source);
  }
  std::vector<Row> rows;
  Row ref{"reference (" + formats + ")",
          reference->is_gguf() ? fs::file_size(a.model) : fs::file_size(source),
          {}};
  ref.acc = partition::CompareOnCorpus(*reference, *reference, corpus);
  rows.push_back(ref);
  for (const std::string& t : types) {
    const std::string path = scratch.Sub(t + ".gguf");
    partition::QuantizeOptions qo;
    qo.target = *partition::ParseQuantizeTarget(t);
    for (const auto& note : partition::QuantizeGguf(source, path, qo))
      ctx.log->debug("{}: {}", t, note);
    const auto model = partition::Model::Open(path, "", ctx.isa);
    ctx.log->info("{}: comparing on the corpus ({})", t, model->weight_formats());
    rows.push_back(
        {t, fs::file_size(path), partition::CompareOnCorpus(*reference, *model, corpus)});
  }
  PrintRows(rows, a.corpus.tokens, static_cast<int>(corpus.size()), a.json);
  return 0;
}

}  // namespace

Runner AddQuantEval(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("quant-eval",
                         "accuracy of weight formats against the float model: KL divergence, top-1 "
                         "agreement and perplexity on a sampled corpus");
  auto a = std::make_shared<QuantEvalArgs>();
  cmd->add_option("--model", a->model,
                  "model directory or GGUF file with F32, F16 or BF16 weights (the reference)")
      ->required();
  cmd->add_option("--types", a->types,
                  "formats to evaluate, comma-separated (f32, f16, bf16, q8_0, q4_0, q4_k_m)")
      ->capture_default_str();
  cmd->add_option("--tokens", a->corpus.tokens, "corpus size in sampled tokens")
      ->check(CLI::Range(1, 1 << 24))
      ->capture_default_str();
  cmd->add_option("--sequence-length", a->corpus.sequence_length,
                  "tokens per sequence, BOS included (default: min(256, the model's context))")
      ->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--seed", a->corpus.seed, "sampling seed (the same corpus every run)")
      ->capture_default_str();
  cmd->add_flag("--json", a->json, "one JSON object per format");
  return [a](const Context& ctx) { return Run(*a, ctx); };
}

}  // namespace splitlm::cli
