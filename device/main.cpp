// splitlm-device: the device agent. See README.md ("The deployable pair").
#include <ATen/Parallel.h>
#include <spdlog/fmt/ranges.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <sstream>
#include <thread>

#include "device/agent.h"
#include "device/chat_template.h"
#include "device/openai_api.h"
#include "device/replicas.h"
#include "partition/blas_check.h"
#include "partition/model.h"
#include "partition/prompt.h"
#include "partition/tokenizer.h"
#include "scheduler/config.h"
#include "scheduler/cost_model.h"
#include "scheduler/flags.h"
#include "transport/error.h"

namespace {

using splitlm::Exception;
using splitlm::scheduler::flags::Schema;

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

// The values of every flag, defaults as --help shows them; --config fills
// those not given on the command line.
struct DeviceFlags {
  std::string config_file;
  std::string model_dir;
  std::string weights;
  std::string tokenizer_path;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string level = "info";
  std::string cloud = "tcp://127.0.0.1:5555";
  int resolve_s = 30;
  std::string cut_text;               // a layer count or "auto"
  splitlm::device::AutoCut auto_cut;  // set from --config only
  std::string fallback = "local";
  std::string codec = "f32";
  std::string speculate = "off";
  std::string key_file;
  std::string server_key_file;
  int step_ms = 5000;
  int wait_ms = 30000;
  int retry_ms = 1000;
  int heartbeat_ms = 500;
  bool require_exact = false;
  // generate
  std::string prompt;
  std::string prompt_ids;
  int max_tokens = 32;
  bool print_ids = false;
  bool ignore_eos = false;
  splitlm::partition::SamplingParams sampling;
  // serve
  std::string http = "127.0.0.1:8080";
  bool http_public = false;
  std::string chat_template;
};

// The two sub-commands, to tell which one the command line chose.
struct Commands {
  CLI::App* generate = nullptr;
  CLI::App* serve = nullptr;
};

// --cut: a layer count as device.cut allows, or "auto".
CLI::Validator CutValidator() {
  const CLI::Validator cut_check = Schema("device.cut");
  return CLI::Validator(
      [cut_check](std::string& s) {
        const std::string why = s == "auto" ? "" : cut_check(s);
        return why.empty() ? why : why + " (give a cut or auto)";
      },
      "a cut or auto", "CUT");
}

// The flags before the sub-command (a table; the order is --help's).
void AddFlags(CLI::App& app, DeviceFlags& flags) {
  app.add_option("--config", flags.config_file,
                 "TOML configuration file (docs/config.md); flags override it")
      ->check(CLI::ExistingFile);
  app.add_option("--model", flags.model_dir, "model directory or .gguf file");
  app.add_option("--weights", flags.weights,
                 "format the weight matrices are held in (model.weights): q8_0, q4_0, q4_k, q6_k, "
                 "q4_k_m, f16, f32; default as stored")
      ->check(Schema("model.weights"));
  app.add_option(
         "--cloud", flags.cloud,
         "the worker's ZeroMQ endpoint; several, comma-separated, or dns://NAME:PORT for all "
         "of a name's addresses: each session goes to the least loaded, and fails over")
      ->capture_default_str();
  app.add_option("--resolve-interval-s", flags.resolve_s,
                 "dns:// names in --cloud are resolved again after this")
      ->check(Schema("device.resolve_interval_s"))
      ->capture_default_str();
  app.add_option("--cut", flags.cut_text,
                 "layers [0, cut) run here (the layer count: everything here), or auto")
      ->check(CutValidator());
  app.add_option("--fallback", flags.fallback,
                 "when the cloud does not answer: local, wait or fail")
      ->check(Schema("device.fallback"))
      ->capture_default_str();
  app.add_option("--codec", flags.codec, "activation codec: f32 (exact), f16, bf16, int8")
      ->check(Schema("device.codec"))
      ->capture_default_str();
  app.add_option(
         "--speculate", flags.speculate,
         "speculative decoding in split mode: prompt-lookup[:K], early-exit[:K] or draft:PATH[:K] "
         "(K = most drafts per step, 1..8; PATH a model of the same vocabulary), or off")
      ->capture_default_str();
  app.add_option(
      "--tokenizer", flags.tokenizer_path,
      "tokenizer.json, tokenizer.model, .gguf or a directory (default: the model's own)");
  app.add_option("--key", flags.key_file, "this device's CURVE key pair file (enables encryption)");
  app.add_option("--server-key", flags.server_key_file, "the worker's public key file");
  app.add_option("--step-deadline-ms", flags.step_ms, "a step not answered by then fails over")
      ->check(Schema("device.step_deadline_ms"))
      ->capture_default_str();
  app.add_option("--wait-deadline-ms", flags.wait_ms, "--fallback wait gives up after this")
      ->check(Schema("device.wait_deadline_ms"))
      ->capture_default_str();
  app.add_option("--retry-ms", flags.retry_ms, "--fallback local tries the cloud again after this")
      ->check(Schema("device.retry_ms"))
      ->capture_default_str();
  app.add_flag("--require-exact", flags.require_exact,
               "refuse a cloud holding the same model in other weight formats (default: warn)");
  app.add_option("--heartbeat-ms", flags.heartbeat_ms, "heartbeat interval (3 missed = cloud dead)")
      ->check(Schema("device.heartbeat_ms"))
      ->capture_default_str();
  app.add_option("--threads", flags.threads, "compute threads")
      ->check(Schema("model.threads"))
      ->capture_default_str();
  splitlm::scheduler::flags::AddLogLevel(app, flags.level);
}

CLI::App* AddGenerateCommand(CLI::App& app, DeviceFlags& flags) {
  using splitlm::scheduler::flags::Number;
  auto* gen =
      app.add_subcommand("generate", "generate once and print the result (as splitlm generate)");
  auto* p = gen->add_option("--prompt", flags.prompt, "prompt text (needs a tokenizer)");
  gen->add_option("--prompt-ids", flags.prompt_ids, "prompt token ids, e.g. \"1 2 3\"")
      ->excludes(p);
  gen->add_option("--max-tokens", flags.max_tokens, "tokens to generate")
      ->check(CLI::Range(0, 1 << 20))
      ->capture_default_str();
  gen->add_option("--temperature", flags.sampling.temperature, "0 = greedy")
      ->check(Number(0.0, 100.0))
      ->capture_default_str();
  gen->add_option("--top-k", flags.sampling.top_k, "0 = no limit")
      ->check(CLI::Range(0, 1 << 30))
      ->capture_default_str();
  gen->add_option("--top-p", flags.sampling.top_p, "nucleus mass in (0, 1]")
      ->check(Number(0.0, 1.0))
      ->capture_default_str();
  gen->add_option("--seed", flags.sampling.seed, "sampling seed")->capture_default_str();
  gen->add_flag("--print-ids", flags.print_ids, "print prompt and generated ids on one line");
  gen->add_flag("--ignore-eos", flags.ignore_eos, "keep generating after an end-of-sequence token");
  return gen;
}

CLI::App* AddServeCommand(CLI::App& app, DeviceFlags& flags) {
  auto* serve = app.add_subcommand("serve", "serve the OpenAI-compatible HTTP API");
  serve->add_option("--http", flags.http, "HOST:PORT to listen on (port 0 picks one)")
      ->capture_default_str();
  serve->add_flag("--http-public", flags.http_public, "allow --http beyond loopback (warned)");
  serve->add_option("--chat-template", flags.chat_template,
                    "chat template: llama2, llama3, chatml, mistral, zephyr, or FILE (a template, "
                    "tokenizer_config.json or .gguf); default: the model's own");
  return serve;
}

// Fills from the --config file every value whose flag was not given.
void ApplyConfig(const CLI::App& app, const Commands& commands, DeviceFlags& flags) {
  using splitlm::scheduler::FillFromConfig;
  const auto given = [&app](const char* flag) { return app.count(flag) > 0; };
  const auto served = [&commands](const char* flag) { return commands.serve->count(flag) > 0; };
  const auto cfg = splitlm::scheduler::Config::Load(flags.config_file);
  FillFromConfig(cfg, "model.dir", given("--model"), flags.model_dir);
  FillFromConfig(cfg, "model.weights", given("--weights"), flags.weights);
  FillFromConfig(cfg, "model.tokenizer", given("--tokenizer"), flags.tokenizer_path);
  FillFromConfig(cfg, "model.threads", given("--threads"), flags.threads);
  FillFromConfig(cfg, "device.cloud", given("--cloud"), flags.cloud);
  FillFromConfig(cfg, "device.resolve_interval_s", given("--resolve-interval-s"), flags.resolve_s);
  int config_cut = -1;
  bool config_auto = false;
  FillFromConfig(cfg, "device.cut", given("--cut"), config_cut);
  FillFromConfig(cfg, "device.auto_cut", given("--cut"), config_auto);
  if (!given("--cut"))
    flags.cut_text = config_auto ? "auto" : config_cut >= 0 ? std::to_string(config_cut) : "";
  splitlm::scheduler::ApplyPlanConfig(cfg, flags.auto_cut.plan);
  FillFromConfig(cfg, "scheduler.device_profile", false, flags.auto_cut.profile_path);
  FillFromConfig(cfg, "scheduler.margin", false, flags.auto_cut.margin);
  FillFromConfig(cfg, "scheduler.follow_drift", false, flags.auto_cut.follow_drift);
  FillFromConfig(cfg, "device.fallback", given("--fallback"), flags.fallback);
  FillFromConfig(cfg, "device.codec", given("--codec"), flags.codec);
  FillFromConfig(cfg, "device.speculate", given("--speculate"), flags.speculate);
  FillFromConfig(cfg, "device.step_deadline_ms", given("--step-deadline-ms"), flags.step_ms);
  FillFromConfig(cfg, "device.wait_deadline_ms", given("--wait-deadline-ms"), flags.wait_ms);
  FillFromConfig(cfg, "device.retry_ms", given("--retry-ms"), flags.retry_ms);
  FillFromConfig(cfg, "device.require_exact", given("--require-exact"), flags.require_exact);
  FillFromConfig(cfg, "device.heartbeat_ms", given("--heartbeat-ms"), flags.heartbeat_ms);
  FillFromConfig(cfg, "device.key", given("--key"), flags.key_file);
  FillFromConfig(cfg, "device.server_key", given("--server-key"), flags.server_key_file);
  FillFromConfig(cfg, "device.http", served("--http"), flags.http);
  FillFromConfig(cfg, "device.http_public", served("--http-public"), flags.http_public);
  FillFromConfig(cfg, "device.chat_template", served("--chat-template"), flags.chat_template);
}

// The flags that bear on a cloud fault (the agent's messages name none).
const char* FlagHint(splitlm::device::CloudFault fault) {
  using splitlm::device::CloudFault;
  switch (fault) {
    case CloudFault::kRefused: return "; is splitlm-cloud running at --cloud?";
    case CloudFault::kHandshakeRefused:
      return "; check --server-key (the worker's .pub file) and that the public key of --key is on "
             "the worker's "
             "--allow list, or that both sides use CURVE or neither";
    case CloudFault::kNoHeartbeat:
      return "; the worker is up but silent (3 missed --heartbeat-ms intervals)";
    case CloudFault::kStepTimeout: return "; --step-deadline-ms sets how long a step may take";
    default: return "";
  }
}

// The template /v1/chat/completions renders with: --chat-template, else the
// model's own, else none (the "role: content" transcript, warned).
std::shared_ptr<const splitlm::device::ChatTemplate> ChooseChatTemplate(const std::string& model,
                                                                        const std::string& flag,
                                                                        spdlog::logger& log) {
  using namespace splitlm::device;
  ChatTemplateSource own = ModelChatTemplate(model);
  ChatTemplateSource chosen = own;
  if (!flag.empty()) {
    chosen = LoadChatTemplate(flag);
    // A built-in or bare template file gets the model's BOS/EOS strings.
    if (chosen.bos_token.empty()) chosen.bos_token = own.bos_token;
    if (chosen.eos_token.empty()) chosen.eos_token = own.eos_token;
  }
  if (chosen.source.empty()) {
    log.warn(
        "{} has no chat template: /v1/chat/completions renders messages as \"role: content\" "
        "lines, which "
        "instruction-tuned models were not trained on; pass --chat-template NAME ({}) or FILE",
        model, fmt::join(BuiltinChatTemplateNames(), ", "));
    return nullptr;
  }
  auto t = std::make_shared<const ChatTemplate>(chosen);
  log.info("chat template: {}", chosen.origin);
  return t;
}

// --cut's layer count (not "auto").
int ParseCut(const std::string& cut_text) {
  try {
    size_t used = 0;
    const int cut = std::stoi(cut_text, &used);
    if (used != cut_text.size()) throw Exception(Exception::kInvalidArgument, cut_text);
    return cut;
  } catch (const std::exception&) {
    throw Exception(Exception::kInvalidArgument,
                    "--cut \"" + cut_text + "\" is neither a layer count nor auto");
  }
}

// --speculate / device.speculate, checked.
splitlm::device::SpeculateSpec ParseSpeculateFlag(const std::string& speculate) {
  return splitlm::device::ParseSpeculate(speculate, "--speculate / device.speculate");
}

// --key and --server-key: both or neither.
void SetCurveKeys(const DeviceFlags& flags, splitlm::transport::ClientOptions& channel) {
  if (flags.key_file.empty() && flags.server_key_file.empty()) return;
  if (flags.key_file.empty() || flags.server_key_file.empty())
    throw Exception(Exception::kInvalidArgument, "CURVE needs both --key and --server-key");
  channel.keys = splitlm::transport::ReadKeyFile(flags.key_file);
  if (channel.keys.secret_key.empty())
    throw Exception(Exception::kInvalidArgument,
                    flags.key_file + ": no secret key (use the .key file)");
  channel.server_public_key = splitlm::transport::ReadKeyFile(flags.server_key_file).public_key;
}

// The agent's options from the flags, all but what needs the model (the
// drafter, the auto cut's start and the tokenizer's EOS ids). Throws on a
// bad flag, in the order the flags are checked: --model, --cloud, --cut,
// (serving) --http, then the rest.
splitlm::device::AgentOptions BuildAgentOptions(const DeviceFlags& flags, bool serving,
                                                std::shared_ptr<spdlog::logger> log) {
  if (flags.model_dir.empty())
    throw Exception(Exception::kInvalidArgument,
                    "no model: pass --model DIR or set model.dir in --config");
  splitlm::device::AgentOptions options;
  options.channel.endpoint = flags.cloud;
  options.auto_cut = flags.auto_cut;
  options.require_exact = flags.require_exact;
  if (flags.cloud.find(',') != std::string::npos || flags.cloud.rfind("dns://", 0) == 0) {
    try {
      options.clouds = splitlm::device::ParseCloudList(flags.cloud);
    } catch (const Exception& e) {
      throw Exception(e.code(), std::string("--cloud / device.cloud: ") + e.what());
    }
    options.resolve_interval = std::chrono::seconds(flags.resolve_s);
  }
  if (flags.cut_text.empty())
    throw Exception(Exception::kInvalidArgument,
                    "no cut: pass --cut K (or auto), or set device.cut in --config");
  if (serving) splitlm::scheduler::flags::CheckHttpExposure(flags.http, flags.http_public);
  if (flags.cut_text == "auto") {
    options.auto_cut.enabled = true;
    options.auto_cut.plan.device.threads = flags.threads;
    options.cut = -2;  // set by AddModelOptions, once the model's layer count is known
  } else {
    options.cut = ParseCut(flags.cut_text);
  }
  options.fallback = flags.fallback == "local"  ? splitlm::device::Fallback::kLocal
                     : flags.fallback == "wait" ? splitlm::device::Fallback::kWait
                                                : splitlm::device::Fallback::kFail;
  options.codec = *splitlm::transport::ParseCodec(flags.codec);
  options.max_drafts = ParseSpeculateFlag(flags.speculate).max_drafts;
  options.step_deadline = std::chrono::milliseconds(flags.step_ms);
  options.wait_deadline = std::chrono::milliseconds(flags.wait_ms);
  options.retry_interval = std::chrono::milliseconds(flags.retry_ms);
  options.channel.heartbeat_interval = std::chrono::milliseconds(flags.heartbeat_ms);
  options.log = std::move(log);
  SetCurveKeys(flags, options.channel);
  return options;
}

// What needs the model: the auto cut starts all local; the drafter.
void AddModelOptions(const DeviceFlags& flags, const splitlm::partition::Model& model,
                     splitlm::device::AgentOptions& options) {
  if (options.cut == -2) options.cut = model.config().num_layers;  // auto starts all local
  const auto spec = ParseSpeculateFlag(flags.speculate);  // valid: BuildAgentOptions checked it
  try {
    options.drafter = splitlm::device::MakeDrafter(spec, model);
  } catch (const std::exception& e) {
    throw Exception(Exception::kInvalidArgument,
                    std::string("--speculate / device.speculate: ") + e.what());
  }
  if (options.drafter && options.drafter->bytes() > 0) {
    options.log->info(
        "speculative drafter {}: {:.1f} MB of weights on the device beside the stage's",
        options.drafter->name(), options.drafter->bytes() / 1e6);
  }
}

// --tokenizer, else the model's own; null when there is none.
std::unique_ptr<splitlm::partition::Tokenizer> OpenTokenizer(
    const DeviceFlags& flags, const splitlm::partition::Model& model) {
  std::string path = flags.tokenizer_path;
  if (path.empty() && model.tokenizer_path()) path = *model.tokenizer_path();
  splitlm::partition::TokenizerOptions tokenizer_options;
  if (const char* shim = std::getenv("SPLITLM_SPM_SHIM")) tokenizer_options.spm_shim = shim;
  if (path.empty()) return nullptr;
  return splitlm::partition::Tokenizer::Open(path, tokenizer_options);
}

void LogPlacement(const DeviceFlags& flags, const splitlm::device::AgentOptions& options) {
  if (options.auto_cut.enabled) {
    options.log->info(
        "cut auto: chosen per request by the cost model; cloud {}, fallback {}, codec {}",
        options.channel.endpoint, flags.fallback, flags.codec);
  } else {
    options.log->info(
        "cut {}: device runs embedding + layers [0,{}), cloud {} runs the rest; fallback {}, codec "
        "{}",
        options.cut, options.cut, options.channel.endpoint, flags.fallback, flags.codec);
  }
}

// What a sub-command works with, built by main's RunCommand.
struct Runtime {
  const DeviceFlags& flags;
  const splitlm::partition::Model& model;
  const splitlm::partition::Tokenizer* tokenizer;  // null: none
  const splitlm::device::AgentOptions& options;
  splitlm::device::Agent& agent;
  splitlm::transport::Metrics& metrics;
  spdlog::logger& log;
};

// --prompt-ids, else --prompt through the tokenizer.
std::vector<int32_t> ReadPrompt(const Runtime& run) {
  const DeviceFlags& flags = run.flags;
  std::vector<int32_t> prompt;
  if (!flags.prompt_ids.empty()) {
    prompt = splitlm::partition::ParseTokenIds(flags.prompt_ids);
  } else if (!flags.prompt.empty()) {
    if (!run.tokenizer)
      throw Exception(
          Exception::kNotFound,
          flags.model_dir +
              " has no tokenizer (tokenizer.model, tokenizer.json or a GGUF vocabulary): pass "
              "--tokenizer FILE or use --prompt-ids");
    prompt = run.tokenizer->Encode(flags.prompt);
    if (run.tokenizer->add_bos()) prompt.insert(prompt.begin(), run.model.config().bos_token_id);
  } else {
    throw Exception(Exception::kInvalidArgument,
                    "give a prompt: --prompt TEXT or --prompt-ids \"1 2 3\"");
  }
  splitlm::partition::ValidatePrompt(prompt, run.model.config());
  return prompt;
}

void PrintIds(const std::vector<int32_t>& ids) {
  for (size_t i = 0; i < ids.size(); ++i) std::cout << (i ? " " : "") << ids[i];
}

void LogGenerateSummary(const Runtime& run, const splitlm::device::GenerateResult& result) {
  const splitlm::device::AgentOptions& options = run.options;
  run.log.info(
      "{} tokens: {} from the cloud, {} on the device; {} fallbacks, {} recoveries, {} cloud "
      "restarts",
      result.tokens.size(), result.cloud_steps, result.local_steps, result.fallbacks,
      result.recoveries, result.cloud_restarts);
  if (!options.clouds.empty()) {
    run.log.info("last served by {}; {} failovers to another worker",
                 result.worker.empty() ? "(none)" : result.worker, result.failovers);
  }
  if (options.drafter) {
    run.log.info(
        "speculative ({}): {} round trips to the cloud for {} tokens ({:.2f} per token); {} of {} "
        "drafts accepted ({:.0f}%, EWMA {:.2f})",
        options.drafter->name(), result.cloud_steps, result.tokens.size(),
        result.tokens.empty() ? 0.0
                              : static_cast<double>(result.cloud_steps) / result.tokens.size(),
        result.accepted, result.drafted,
        result.drafted ? 100.0 * result.accepted / result.drafted : 0.0, result.acceptance_ewma);
  }
  if (options.auto_cut.enabled) {
    run.log.info("auto cut {}: predicted {:.3f} ms/token, measured {:.3f} ms/token", result.cut,
                 result.predicted_tpot_ms, result.measured_tpot_ms);
  }
}

// `generate`: prints the text as it comes (or the ids at the end).
int RunGenerate(const Runtime& run) {
  const DeviceFlags& flags = run.flags;
  splitlm::device::GenerateRequest req;
  req.prompt = ReadPrompt(run);
  req.max_tokens = flags.max_tokens;
  req.sampling = flags.sampling;
  req.stop_at_eos = !flags.ignore_eos;
  if (flags.max_tokens == 0) {
    PrintIds(req.prompt);
    std::cout << std::endl;
    return 0;
  }
  std::vector<int32_t> generated;
  std::string printed;
  auto result = run.agent.Generate(req, [&](int32_t t) {
    generated.push_back(t);
    if (run.tokenizer && !flags.print_ids) {
      const std::string text = run.tokenizer->Decode(generated);
      std::cout << text.substr(std::min(printed.size(), text.size())) << std::flush;
      printed = text;
    }
    return true;
  });
  if (flags.print_ids || !run.tokenizer) {
    std::vector<int32_t> all = req.prompt;
    all.insert(all.end(), result.tokens.begin(), result.tokens.end());
    PrintIds(all);
  }
  std::cout << std::endl;
  LogGenerateSummary(run, result);
  return 0;
}

// `serve`: the OpenAI-compatible API until SIGINT or SIGTERM.
int Serve(const Runtime& run, std::shared_ptr<const splitlm::device::ChatTemplate> chat,
          const std::shared_ptr<spdlog::logger>& log) {
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnSignal);
  std::string name = run.flags.model_dir;
  while (name.size() > 1 && name.back() == '/') name.pop_back();
  name = name.substr(name.find_last_of('/') + 1);
  splitlm::device::ApiOptions api_options;
  api_options.model_name = name;
  api_options.chat_template = std::move(chat);
  if (run.tokenizer)
    api_options.eos_ids =
        run.tokenizer->eos_ids();  // Llama 3: <|eot_id|> as well as <|end_of_text|>
  splitlm::device::OpenAiApi api(run.agent, run.tokenizer, run.metrics, api_options);
  splitlm::transport::HttpServerOptions http_options;
  http_options.address = run.flags.http;
  http_options.allow_public = run.flags.http_public;
  http_options.log = log;
  splitlm::transport::HttpServer server(http_options,
                                        [&](const auto& r, auto& w) { api.Handle(r, w); });
  std::cout << "serving on http://" << server.address() << std::endl;
  log->info("OpenAI-compatible API on http://{}/v1 (model \"{}\")", server.address(), name);
  while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  log->info("shutting down");
  return 0;
}

// Builds the agent from the flags and runs the chosen sub-command.
int RunCommand(const DeviceFlags& flags, const Commands& commands,
               const std::shared_ptr<spdlog::logger>& log) {
  const bool serving = commands.serve->parsed();
  splitlm::device::AgentOptions options = BuildAgentOptions(flags, serving, log);
  // Before anything slow: a template that cannot be used ends start-up.
  std::shared_ptr<const splitlm::device::ChatTemplate> chat;
  if (serving) chat = ChooseChatTemplate(flags.model_dir, flags.chat_template, *log);
  auto model = splitlm::partition::Model::Open(
      flags.model_dir, flags.weights,
      splitlm::partition::kernels::Isa::Choose(std::getenv("SPLITLM_KERNELS"), "SPLITLM_KERNELS"));
  AddModelOptions(flags, *model, options);
  const std::unique_ptr<splitlm::partition::Tokenizer> tokenizer = OpenTokenizer(flags, *model);
  if (tokenizer) options.eos_ids = tokenizer->eos_ids();
  zmq::context_t context;
  splitlm::transport::Metrics metrics;
  splitlm::device::Agent agent(*model, options, context, metrics);
  LogPlacement(flags, options);
  const Runtime run{flags, *model, tokenizer.get(), options, agent, metrics, *log};
  if (commands.generate->parsed()) return RunGenerate(run);
  return Serve(run, std::move(chat), log);
}

// Everything but the last resort of main().
int Main(int argc, char** argv) {
  CLI::App app{"splitlm-device: runs layers [0, cut) here and the rest on a splitlm-cloud worker"};
  app.require_subcommand(1);
  app.fallthrough();
  DeviceFlags flags;
  AddFlags(app, flags);
  const Commands commands{AddGenerateCommand(app, flags), AddServeCommand(app, flags)};
  CLI11_PARSE(app, argc, argv);

  auto log = spdlog::stderr_color_mt("device");
  log->set_level(splitlm::scheduler::flags::ParseLogLevel(flags.level));
  log->set_pattern("[%H:%M:%S.%e] [device] [%^%l%$] %v");
  at::set_num_threads(flags.threads);
  if (!splitlm::partition::DetectBlas().openblas) {
    log->warn("*** LibTorch is using the reference BLAS: install libopenblas0-openmp ***");
  }
  try {
    if (!flags.config_file.empty()) {
      ApplyConfig(app, commands, flags);
      at::set_num_threads(flags.threads);
    }
    return RunCommand(flags, commands, log);
  } catch (const splitlm::device::DeviceError& e) {
    log->error("{}{}", e.what(), FlagHint(e.fault()));
    return splitlm::ExitCodeOf(e);
  } catch (const std::exception& e) {
    log->error("{}", splitlm::MessageOf(e));
    return splitlm::ExitCodeOf(e);
  }
}

}  // namespace

int main(int argc, char** argv) { return splitlm::RunMain("splitlm-device", Main, argc, argv); }
