// splitlm codec-eval: what a lossy activation codec costs in accuracy, per
// cut, measured against the f32 run of the same model.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <iostream>

#include "examples/splitlm/cli.h"
#include "examples/splitlm/local_split.h"
#include "partition/tokenizer.h"
#include "transport/error.h"

namespace splitlm::cli {
namespace {

int Argmax(const std::vector<float>& v) {
  return static_cast<int>(std::max_element(v.begin(), v.end()) - v.begin());
}

// Greedy ids after `prompt`, `n` of them, through `pipe`.
std::vector<int32_t> FreeRun(LocalSplit& pipe, const std::vector<int32_t>& prompt, int n) {
  std::vector<int32_t> out;
  int32_t next = Argmax(pipe.Step(prompt.data(), static_cast<int>(prompt.size())));
  for (int i = 0; i < n; ++i) {
    out.push_back(next);
    if (i + 1 < n) next = Argmax(pipe.Step(&next, 1));
  }
  return out;
}

// Fraction of positions where `pipe`'s greedy choice equals `reference`'s
// next token when fed the reference's own tokens (teacher forcing).
double TeacherForced(LocalSplit& pipe, const std::vector<int32_t>& prompt,
                     const std::vector<int32_t>& reference) {
  int same = Argmax(pipe.Step(prompt.data(), static_cast<int>(prompt.size()))) == reference[0];
  for (size_t i = 1; i < reference.size(); ++i)
    same += Argmax(pipe.Step(&reference[i - 1], 1)) == reference[i];
  return static_cast<double>(same) / reference.size();
}

}  // namespace

Runner AddCodecEval(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "codec-eval", "bytes per token and greedy agreement with f32, per codec and cut");
  auto dir = std::make_shared<std::string>();
  auto prompt = std::make_shared<std::string>("1");
  auto tokens = std::make_shared<int>(300);
  auto cuts = std::make_shared<std::vector<int>>();
  auto json = std::make_shared<bool>(false);
  cmd->add_option("--model", *dir, "model directory or .gguf file")->required();
  cmd->add_option("--prompt-ids", *prompt, "prompt token ids")->capture_default_str();
  cmd->add_option("--tokens", *tokens, "tokens generated per run")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  cmd->add_option("--cuts", *cuts, "cuts to evaluate (default: every cut 0..L-1)")->delimiter(',');
  cmd->add_flag("--json", *json, "JSON lines instead of a table");
  return [=](const Context& ctx) {
    auto model = partition::Model::Open(*dir, "", ctx.isa);
    const auto& c = model->config();
    const std::vector<int32_t> ids = partition::ParseTokenIds(*prompt);
    if (ids.empty()) throw Exception(Exception::kInvalidArgument, "--prompt-ids holds no tokens");
    const int n = std::min(*tokens, c.max_context - static_cast<int>(ids.size()));
    std::vector<int> which = *cuts;
    if (which.empty())
      for (int k = 0; k < c.num_layers; ++k) which.push_back(k);

    LocalSplit local(*model, c.num_layers, transport::Codec::kF32);
    const std::vector<int32_t> reference = FreeRun(local, ids, n);
    if (!*json) {
      std::printf("| codec | cut | bytes/token | teacher-forced agreement | free-run match |\n");
      std::printf("|---|---|---|---|---|\n");
    }
    for (transport::Codec codec : transport::kAllCodecs) {
      for (int cut : which) {
        ctx.log->info("codec-eval: {} at cut {} ({} tokens)", transport::CodecName(codec), cut, n);
        LocalSplit forced(*model, cut, codec);
        const double agree = TeacherForced(forced, ids, reference);
        LocalSplit free(*model, cut, codec);
        const std::vector<int32_t> run = FreeRun(free, ids, n);
        int match = 0;
        for (int i = 0; i < n; ++i) match += run[i] == reference[i];
        const size_t bytes = transport::EncodedSize(codec, 1, c.hidden_size);
        if (*json) {
          std::cout << nlohmann::json{{"codec", transport::CodecName(codec)},
                                      {"cut", cut},
                                      {"bytes_per_token", bytes},
                                      {"teacher_forced_agreement", agree},
                                      {"free_run_match", static_cast<double>(match) / n},
                                      {"tokens", n}}
                           .dump()
                    << std::endl;
        } else {
          std::printf("| %s | %d | %zu | %.4f | %.4f |\n", transport::CodecName(codec), cut, bytes,
                      agree, static_cast<double>(match) / n);
        }
      }
    }
    return 0;
  };
}

}  // namespace splitlm::cli
