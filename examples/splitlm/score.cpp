// splitlm score: a sequence teacher-forced in one prefill (split at --cut if
// given); per position the argmax, the top-1 minus top-2 margin and the
// log-probability of the next given token, then the perplexity.
#include <cstdio>
#include <iostream>
#include <nlohmann/json.hpp>

#include "examples/splitlm/cli.h"
#include "examples/splitlm/prompt.h"
#include "partition/model.h"
#include "partition/prompt.h"
#include "partition/score.h"
#include "partition/stage.h"
#include "scheduler/flags.h"

namespace splitlm::cli {
namespace {

struct ScoreArgs {
  std::string model;
  std::string weights;
  int cut = -1;  // -1: no split
  std::string prompt;
  std::string prompt_ids;
  std::string tokenizer;
  bool json = false;
};

void PrintJson(const partition::SequenceScore& s) {
  for (size_t i = 0; i < s.positions.size(); ++i) {
    const partition::PositionScore& p = s.positions[i];
    nlohmann::ordered_json j;
    j["pos"] = i;
    j["argmax"] = p.argmax;
    j["margin"] = p.margin;
    j["logprob_next"] = p.logprob_next ? nlohmann::ordered_json(*p.logprob_next) : nullptr;
    std::cout << j.dump() << "\n";
  }
  std::cout << nlohmann::ordered_json{{"perplexity", s.perplexity}}.dump() << std::endl;
}

void PrintTable(const partition::SequenceScore& s) {
  std::printf("pos argmax margin logprob_next\n");
  for (size_t i = 0; i < s.positions.size(); ++i) {
    const partition::PositionScore& p = s.positions[i];
    if (p.logprob_next) {
      std::printf("%zu %d %.6f %.6f\n", i, p.argmax, p.margin, *p.logprob_next);
    } else {
      std::printf("%zu %d %.6f -\n", i, p.argmax, p.margin);
    }
  }
  std::printf("perplexity %.6f\n", s.perplexity);
  std::fflush(stdout);
}

}  // namespace

Runner AddScore(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "score", "score a token sequence teacher-forced (argmax, margin, log-prob, perplexity)");
  auto a = std::make_shared<ScoreArgs>();
  cmd->add_option("--model", a->model, "model directory or .gguf file")->required();
  cmd->add_option("--weights", a->weights, WeightsHelp())
      ->check(scheduler::flags::Schema("model.weights"));
  cmd->add_option("--cut", a->cut,
                  "run layers [0,K) and [K,L) as two stages (same numbers bit for bit)");
  auto* p =
      cmd->add_option("--prompt", a->prompt, "text to score (needs a tokenizer; BOS is prepended)");
  auto* pi = cmd->add_option("--prompt-ids", a->prompt_ids, "token ids to score, e.g. \"1 2 3\"");
  p->excludes(pi);
  cmd->add_option(
      "--tokenizer", a->tokenizer,
      "tokenizer.json, tokenizer.model, .gguf or a directory (default: the model's own)");
  cmd->add_flag("--json", a->json, "one JSON object per position, then {\"perplexity\": x}");

  return [a](const Context& ctx) {
    auto model = partition::Model::Open(a->model, a->weights, ctx.isa);
    const int cut = a->cut < 0 ? model->config().num_layers : a->cut;
    partition::StageSpec::Device(model->config(), cut);  // validates the cut with a clear message
    auto tok = OpenTokenizer(*model, a->tokenizer, ctx.tokenizer);
    const std::vector<int32_t> ids = PromptIds(*model, tok.get(), a->prompt, a->prompt_ids);
    partition::ValidateSequence(ids, model->config());
    const partition::SequenceScore score = partition::ScoreSequence(*model, cut, ids);
    ctx.log->info("{} tokens scored{}", ids.size(),
                  cut < model->config().num_layers ? fmt::format(", split at cut {}", cut) : "");
    if (a->json) {
      PrintJson(score);
    } else {
      PrintTable(score);
    }
    return 0;
  };
}

}  // namespace splitlm::cli
