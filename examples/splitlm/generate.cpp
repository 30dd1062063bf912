#include <chrono>
#include <iostream>
#include <sstream>

#include "device/drafter.h"
#include "examples/splitlm/cli.h"
#include "examples/splitlm/local_split.h"
#include "examples/splitlm/prompt.h"
#include "partition/model.h"
#include "partition/prompt.h"
#include "partition/sampler.h"
#include "partition/stage.h"
#include "partition/tokenizer.h"
#include "scheduler/flags.h"
#include "transport/codec.h"
#include "transport/error.h"

namespace splitlm::cli {

namespace {

struct GenerateArgs {
  std::string model;
  std::string weights;
  int cut = -1;  // -1: no split
  std::string prompt;
  std::string prompt_ids;
  std::string tokenizer;
  int max_tokens = 32;
  partition::SamplingParams sampling;
  bool print_ids = false;
  bool ignore_eos = false;
  std::string codec = "f32";
  std::string speculate = "off";
};

void AddGenerateFlags(CLI::App* cmd, GenerateArgs* args) {
  cmd->add_option("--model", args->model, "model directory or .gguf file")->required();
  cmd->add_option("--weights", args->weights, WeightsHelp())
      ->check(scheduler::flags::Schema("model.weights"));
  cmd->add_option("--cut", args->cut,
                  "run layers [0,K) and [K,L) as two stages exchanging serialized hidden states")
      ->check(scheduler::flags::Schema("device.cut"));
  auto* prompt = cmd->add_option("--prompt", args->prompt, "prompt text (needs a tokenizer)");
  auto* prompt_ids =
      cmd->add_option("--prompt-ids", args->prompt_ids, "prompt token ids, e.g. \"1 2 3\"");
  prompt->excludes(prompt_ids);
  cmd->add_option(
      "--tokenizer", args->tokenizer,
      "tokenizer.json, tokenizer.model, .gguf or a directory (default: the model's own)");
  cmd->add_option("--max-tokens", args->max_tokens, "tokens to generate")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--temperature", args->sampling.temperature, "0 = greedy")
      ->check(scheduler::flags::Number(0.0, 100.0))
      ->capture_default_str();
  cmd->add_option("--top-k", args->sampling.top_k, "0 = no limit")
      ->check(CLI::Range(0, 1 << 30))
      ->capture_default_str();
  cmd->add_option("--top-p", args->sampling.top_p, "nucleus mass in (0, 1]")
      ->check(scheduler::flags::Number(0.0, 1.0))
      ->capture_default_str();
  cmd->add_option("--seed", args->sampling.seed, "sampling seed")->capture_default_str();
  cmd->add_flag("--print-ids", args->print_ids, "print prompt and generated ids on one line");
  cmd->add_flag("--ignore-eos", args->ignore_eos, "keep generating after an end-of-sequence token");
  cmd->add_option("--codec", args->codec, "activation codec at the cut: f32, f16, bf16, int8")
      ->check(scheduler::flags::Schema("device.codec"))
      ->capture_default_str();
  cmd->add_option(
         "--speculate", args->speculate,
         "with --cut: speculative decoding, prompt-lookup[:K], early-exit[:K] or draft:PATH[:K] "
         "(K = most drafts per step, 1..8; PATH a model of the same vocabulary), or off")
      ->capture_default_str();
}

using Clock = std::chrono::steady_clock;

// The prompt and the tokens generated after it: prints each new token as it
// comes and says when the generation ends.
struct Output {
  const GenerateArgs& args;
  const partition::ModelConfig& config;
  const partition::Tokenizer* tokenizer;  // null: no text, ids only
  const Context& ctx;
  std::vector<int32_t> ids;
  size_t prompt_len = 0;
  std::string printed;
  int generated = 0;

  // Emits one token: prints it; false when the generation ends with it.
  bool Emit(int32_t next) {
    ids.push_back(next);
    ++generated;
    if (tokenizer && !args.print_ids) {
      std::string text = tokenizer->Decode(
          std::vector<int32_t>(ids.begin() + static_cast<std::ptrdiff_t>(prompt_len), ids.end()));
      std::cout << text.substr(std::min(printed.size(), text.size())) << std::flush;
      printed = text;
    }
    if (!args.ignore_eos && (config.IsEos(next) || (tokenizer && tokenizer->IsEos(next))))
      return false;
    if (generated == args.max_tokens) return false;
    if (static_cast<int>(ids.size()) >= config.max_context) {
      ctx.log->warn("stopped: the context of {} tokens is full", config.max_context);
      return false;
    }
    return true;
  }
};

struct SpeculativeTally {
  int round_trips = 0;
  int drafted = 0;
  int accepted = 0;
};

// Speculative: each step carries the drafter's guesses; its verdict's tokens
// are exactly those of the plain loop (GeneratePlain). Sets *first_token at
// the first round trip.
SpeculativeTally GenerateSpeculative(LocalSplit& pipe, const device::Drafter& drafter,
                                     int max_drafts, Output& out, Clock::time_point* first_token) {
  SpeculativeTally tally;
  device::DraftLength draft_len(max_drafts);
  const auto run = drafter.Begin();
  int fed = 0;
  for (bool more = true; more;) {
    const int k = std::min({draft_len.k(), out.args.max_tokens - out.generated - 1,
                            out.config.max_context - static_cast<int>(out.ids.size())});
    std::vector<int32_t> drafts;
    const auto verdict =
        pipe.Speculate(*run, out.ids, fed, std::max(k, 0), out.args.sampling, &drafts);
    fed = static_cast<int>(out.ids.size()) + static_cast<int>(verdict.accepted);
    if (tally.round_trips++ == 0) *first_token = Clock::now();
    tally.drafted += static_cast<int>(drafts.size());
    tally.accepted += static_cast<int>(verdict.accepted);
    if (!drafts.empty())
      draft_len.Observe(static_cast<int>(drafts.size()), static_cast<int>(verdict.accepted));
    for (int32_t t : verdict.tokens) {
      if (!(more = out.Emit(t))) break;
    }
  }
  return tally;
}

// One token per step: the prompt, then each sampled token. Sets *first_token
// once the prompt's logits are there.
void GeneratePlain(LocalSplit& pipe, Output& out, Clock::time_point* first_token) {
  const std::vector<float>* logits = &pipe.Step(out.ids.data(), static_cast<int>(out.ids.size()));
  *first_token = Clock::now();
  while (out.generated < out.args.max_tokens) {
    const int32_t next = partition::SampleToken(
        logits->data(), out.config.vocab_size, out.args.sampling, static_cast<int>(out.ids.size()));
    if (!out.Emit(next)) break;
    logits = &pipe.Step(&next, 1);
  }
}

void LogPipe(const LocalSplit& pipe, const GenerateArgs& args, int cut, int layers,
             const Context& ctx) {
  if (pipe.split()) {
    ctx.log->info(
        "cut {}: device runs embedding + layers [0,{}) ({:.1f} MB), cloud runs [{},{}) + head "
        "({:.1f} MB), codec {}",
        cut, cut, pipe.device().weights().bytes() / 1e6, cut, layers,
        pipe.cloud()->weights().bytes() / 1e6, args.codec);
  } else {
    ctx.log->info("no cut: all {} layers local ({:.1f} MB)", layers,
                  pipe.device().weights().bytes() / 1e6);
  }
}

void LogTimes(const LocalSplit& pipe, const Output& out, Clock::time_point start,
              Clock::time_point first_token, Clock::time_point end) {
  const int generated = out.generated;
  const double first_ms = std::chrono::duration<double, std::milli>(first_token - start).count();
  const double rest_ms = std::chrono::duration<double, std::milli>(end - first_token).count();
  out.ctx.log->info(
      "{} prompt tokens, {} generated; first token {:.1f} ms, then {:.2f} ms/token{}",
      out.prompt_len, generated, first_ms, generated > 1 ? rest_ms / (generated - 1) : 0.0,
      pipe.split() ? fmt::format(", {:.0f} bytes/token across the cut",
                                 static_cast<double>(pipe.wire_bytes()) / (out.ids.size() - 1))
                   : "");
}

void LogSpeculative(const LocalSplit& pipe, const device::Drafter& drafter,
                    const SpeculativeTally& tally, int generated, const Context& ctx) {
  ctx.log->info(
      "speculative ({}): {} round trips across the cut for {} tokens ({:.2f} per token); {} of {} "
      "drafts accepted ({:.0f}%); "
      "device side {:.3f} ms per row ({} rows, drafting included)",
      drafter.name(), tally.round_trips, generated,
      generated ? static_cast<double>(tally.round_trips) / generated : 0.0, tally.accepted,
      tally.drafted, tally.drafted ? 100.0 * tally.accepted / tally.drafted : 0.0,
      pipe.device_rows() ? pipe.device_ms() / pipe.device_rows() : 0.0, pipe.device_rows());
}

int RunGenerate(const GenerateArgs& args, const Context& ctx) {
  partition::ValidateSamplingParams(args.sampling);
  auto model = partition::Model::Open(args.model, args.weights, ctx.isa);
  const partition::ModelConfig& config = model->config();
  const int layers = config.num_layers;
  const int cut = args.cut < 0 ? layers : args.cut;
  partition::StageSpec::Device(config, cut);  // validates the cut with a clear message

  std::unique_ptr<partition::Tokenizer> tok = OpenTokenizer(*model, args.tokenizer, ctx.tokenizer);
  std::vector<int32_t> ids = PromptIds(*model, tok.get(), args.prompt, args.prompt_ids);
  partition::ValidatePrompt(ids, config);
  const size_t prompt_len = ids.size();
  Output out{args, config, tok.get(), ctx, std::move(ids), prompt_len, "", 0};

  const auto spec = device::ParseSpeculate(args.speculate, "--speculate");
  const auto drafter = device::MakeDrafter(spec, *model);
  if (drafter && drafter->bytes() > 0) {
    ctx.log->info("drafter {} holds {:.1f} MB of weights beside the stages", drafter->name(),
                  drafter->bytes() / 1e6);
  }
  LocalSplit pipe(*model, cut, *transport::ParseCodec(args.codec));
  LogPipe(pipe, args, cut, layers, ctx);

  const auto start = Clock::now();
  auto first_token = start;
  SpeculativeTally tally;
  if (drafter && pipe.split() && args.max_tokens > 0) {
    tally = GenerateSpeculative(pipe, *drafter, spec.max_drafts, out, &first_token);
  }
  if (tally.round_trips == 0) GeneratePlain(pipe, out, &first_token);
  const auto end = Clock::now();
  if (args.print_ids || !tok) {
    for (size_t i = 0; i < out.ids.size(); ++i) std::cout << (i ? " " : "") << out.ids[i];
  }
  std::cout << std::endl;
  LogTimes(pipe, out, start, first_token, end);
  if (tally.round_trips > 0) LogSpeculative(pipe, *drafter, tally, out.generated, ctx);
  return 0;
}

}  // namespace

Runner AddGenerate(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("generate", "generate text, optionally split at a cut in one process");
  auto args = std::make_shared<GenerateArgs>();
  AddGenerateFlags(cmd, args.get());
  return [args](const Context& ctx) { return RunGenerate(*args, ctx); };
}

}  // namespace splitlm::cli
