#include <chrono>
#include <iostream>
#include <sstream>

#include "device/drafter.h"
#include "examples/splitlm/cli.h"
#include "examples/splitlm/local_split.h"
#include "examples/splitlm/prompt.h"
#include "scheduler/flags.h"
#include "partition/model.h"
#include "partition/prompt.h"
#include "partition/sampler.h"
#include "partition/stage.h"
#include "partition/tokenizer.h"
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

}  // namespace

Runner AddGenerate(CLI::App& app) {
  auto* cmd = app.add_subcommand("generate", "generate text, optionally split at a cut in one process");
  auto a = std::make_shared<GenerateArgs>();
  cmd->add_option("--model", a->model, "model directory or .gguf file")->required();
  cmd->add_option("--weights", a->weights, WeightsHelp())->check(scheduler::flags::Schema("model.weights"));
  cmd->add_option("--cut", a->cut, "run layers [0,K) and [K,L) as two stages exchanging serialized hidden states")
      ->check(scheduler::flags::Schema("device.cut"));
  auto* p = cmd->add_option("--prompt", a->prompt, "prompt text (needs a tokenizer)");
  auto* pi = cmd->add_option("--prompt-ids", a->prompt_ids, "prompt token ids, e.g. \"1 2 3\"");
  p->excludes(pi);
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json, tokenizer.model, .gguf or a directory (default: the model's own)");
  cmd->add_option("--max-tokens", a->max_tokens, "tokens to generate")
      ->check(CLI::Range(0, 1 << 20))->capture_default_str();
  cmd->add_option("--temperature", a->sampling.temperature, "0 = greedy")
      ->check(scheduler::flags::Number(0.0, 100.0))->capture_default_str();
  cmd->add_option("--top-k", a->sampling.top_k, "0 = no limit")
      ->check(CLI::Range(0, 1 << 30))->capture_default_str();
  cmd->add_option("--top-p", a->sampling.top_p, "nucleus mass in (0, 1]")
      ->check(scheduler::flags::Number(0.0, 1.0))->capture_default_str();
  cmd->add_option("--seed", a->sampling.seed, "sampling seed")->capture_default_str();
  cmd->add_flag("--print-ids", a->print_ids, "print prompt and generated ids on one line");
  cmd->add_flag("--ignore-eos", a->ignore_eos, "keep generating after an end-of-sequence token");
  cmd->add_option("--codec", a->codec, "activation codec at the cut: f32, f16, bf16, int8")
      ->check(scheduler::flags::Schema("device.codec"))->capture_default_str();
  cmd->add_option("--speculate", a->speculate,
                  "with --cut: speculative decoding, prompt-lookup[:K], early-exit[:K] or draft:PATH[:K] "
                  "(K = most drafts per step, 1..8; PATH a model of the same vocabulary), or off")
      ->capture_default_str();

  return [a](const Context& ctx) {
    using Clock = std::chrono::steady_clock;
    partition::ValidateSamplingParams(a->sampling);
    auto model = partition::Model::Open(a->model, a->weights, ctx.isa);
    const partition::ModelConfig& c = model->config();
    const int layers = c.num_layers;
    const int cut = a->cut < 0 ? layers : a->cut;
    partition::StageSpec::Device(c, cut);  // validates the cut with a clear message

    std::unique_ptr<partition::Tokenizer> tok = OpenTokenizer(*model, a->tokenizer, ctx.tokenizer);
    std::vector<int32_t> ids = PromptIds(*model, tok.get(), a->prompt, a->prompt_ids);
    partition::ValidatePrompt(ids, c);

    std::string why;
    const auto spec = device::ParseSpeculate(a->speculate, &why);
    if (!spec) throw Exception(Exception::kInvalidArgument, "--speculate: " + why);
    const auto drafter = device::MakeDrafter(*spec, *model);
    if (drafter && drafter->bytes() > 0) {
      ctx.log->info("drafter {} holds {:.1f} MB of weights beside the stages", drafter->name(), drafter->bytes() / 1e6);
    }
    const transport::Codec codec = *transport::ParseCodec(a->codec);
    LocalSplit pipe(*model, cut, codec);
    if (pipe.split()) {
      ctx.log->info("cut {}: device runs embedding + layers [0,{}) ({:.1f} MB), cloud runs [{},{}) + head ({:.1f} MB), codec {}",
                    cut, cut, pipe.device().weights().bytes() / 1e6, cut, layers,
                    pipe.cloud()->weights().bytes() / 1e6, a->codec);
    } else {
      ctx.log->info("no cut: all {} layers local ({:.1f} MB)", layers, pipe.device().weights().bytes() / 1e6);
    }
    const std::vector<float>* logits_ptr = nullptr;
    auto step = [&](const int32_t* tokens, int n) { logits_ptr = &pipe.Step(tokens, n); };

    const size_t prompt_len = ids.size();
    auto t0 = Clock::now();
    std::string printed;
    int generated = 0;
    // Emits one token: prints it; false when the generation ends with it.
    auto emit = [&](int32_t next) {
      ids.push_back(next);
      ++generated;
      if (tok && !a->print_ids) {
        std::string text = tok->Decode(std::vector<int32_t>(ids.begin() + prompt_len, ids.end()));
        std::cout << text.substr(std::min(printed.size(), text.size())) << std::flush;
        printed = text;
      }
      if (!a->ignore_eos && (c.IsEos(next) || (tok && tok->IsEos(next)))) return false;
      if (generated == a->max_tokens) return false;
      if (static_cast<int>(ids.size()) >= c.max_context) {
        ctx.log->warn("stopped: the context of {} tokens is full", c.max_context);
        return false;
      }
      return true;
    };
    // Speculative: each step carries the drafter's guesses; its verdict's
    // tokens are exactly those of the plain loop below.
    int round_trips = 0, drafted = 0, accepted = 0;
    auto t_first = t0;
    if (drafter && pipe.split() && a->max_tokens > 0) {
      device::DraftLength draft_len(spec->max_drafts);
      const auto run = drafter->Begin();
      int fed = 0;
      for (bool more = true; more;) {
        const int k = std::min({draft_len.k(), a->max_tokens - generated - 1, c.max_context - static_cast<int>(ids.size())});
        std::vector<int32_t> drafts;
        const auto v = pipe.Speculate(*run, ids, fed, std::max(k, 0), a->sampling, &drafts);
        fed = static_cast<int>(ids.size()) + static_cast<int>(v.accepted);
        if (round_trips++ == 0) t_first = Clock::now();
        drafted += static_cast<int>(drafts.size());
        accepted += static_cast<int>(v.accepted);
        if (!drafts.empty()) draft_len.Observe(static_cast<int>(drafts.size()), static_cast<int>(v.accepted));
        for (int32_t t : v.tokens) {
          if (!(more = emit(t))) break;
        }
      }
    }
    if (round_trips == 0) step(ids.data(), static_cast<int>(ids.size()));
    if (round_trips == 0) t_first = Clock::now();
    while (round_trips == 0 && generated < a->max_tokens) {
      const int32_t next = partition::SampleToken(logits_ptr->data(), c.vocab_size, a->sampling,
                                                  static_cast<int>(ids.size()));
      if (!emit(next)) break;
      step(&next, 1);
    }
    auto t_end = Clock::now();
    if (a->print_ids || !tok) {
      for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
    }
    std::cout << std::endl;
    const double first_ms = std::chrono::duration<double, std::milli>(t_first - t0).count();
    const double rest_ms = std::chrono::duration<double, std::milli>(t_end - t_first).count();
    ctx.log->info("{} prompt tokens, {} generated; first token {:.1f} ms, then {:.2f} ms/token{}",
                  prompt_len, generated, first_ms, generated > 1 ? rest_ms / (generated - 1) : 0.0,
                  pipe.split() ? fmt::format(", {:.0f} bytes/token across the cut",
                                             static_cast<double>(pipe.wire_bytes()) / (ids.size() - 1))
                        : "");
    if (round_trips > 0) {
      ctx.log->info("speculative ({}): {} round trips across the cut for {} tokens ({:.2f} per token); {} of {} drafts accepted ({:.0f}%); "
                    "device side {:.3f} ms per row ({} rows, drafting included)",
                    drafter->name(), round_trips, generated, generated ? static_cast<double>(round_trips) / generated : 0.0,
                    accepted, drafted, drafted ? 100.0 * accepted / drafted : 0.0,
                    pipe.device_rows() ? pipe.device_ms() / pipe.device_rows() : 0.0, pipe.device_rows());
    }
    return 0;
  };
}

}  // namespace splitlm::cli
