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
#include "device/replicas.h"
#include "device/chat_template.h"
#include "device/openai_api.h"
#include "scheduler/flags.h"
#include "partition/blas_check.h"
#include "partition/model.h"
#include "partition/prompt.h"
#include "partition/tokenizer.h"
#include "scheduler/config.h"
#include "scheduler/cost_model.h"
#include "transport/error.h"

namespace {

std::atomic<bool> g_stop{false};
void OnSignal(int) { g_stop = true; }

// The flags that bear on a cloud fault (the agent's messages name none).
const char* FlagHint(splitlm::device::CloudFault fault) {
  using splitlm::device::CloudFault;
  switch (fault) {
    case CloudFault::kRefused:
      return "; is splitlm-cloud running at --cloud?";
    case CloudFault::kHandshakeRefused:
      return "; check --server-key (the worker's .pub file) and that the public key of --key is on the worker's "
             "--allow list, or that both sides use CURVE or neither";
    case CloudFault::kNoHeartbeat:
      return "; the worker is up but silent (3 missed --heartbeat-ms intervals)";
    case CloudFault::kStepTimeout:
      return "; --step-deadline-ms sets how long a step may take";
    default:
      return "";
  }
}

// The template /v1/chat/completions renders with: --chat-template, else the
// model's own, else none (the "role: content" transcript, warned).
std::shared_ptr<const splitlm::device::ChatTemplate> ChooseChatTemplate(const std::string& model, const std::string& flag,
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
    log.warn("{} has no chat template: /v1/chat/completions renders messages as \"role: content\" lines, which "
             "instruction-tuned models were not trained on; pass --chat-template NAME ({}) or FILE",
             model, fmt::join(BuiltinChatTemplateNames(), ", "));
    return nullptr;
  }
  auto t = std::make_shared<const ChatTemplate>(chosen);
  log.info("chat template: {}", chosen.origin);
  return t;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"splitlm-device: runs layers [0, cut) here and the rest on a splitlm-cloud worker"};
  app.require_subcommand(1);
  app.fallthrough();
  std::string model_dir, level = "info", fallback = "local", codec = "f32", tokenizer_path, key_file, server_key_file;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  int step_ms = 5000, wait_ms = 30000, retry_ms = 1000, heartbeat_ms = 500;
  splitlm::device::AgentOptions o;
  o.channel.endpoint = "tcp://127.0.0.1:5555";
  std::string config_file;
  o.cut = -1;
  app.add_option("--config", config_file, "TOML configuration file (docs/config.md); flags override it")->check(CLI::ExistingFile);
  auto* f_model = app.add_option("--model", model_dir, "model directory or .gguf file");
  std::string weights;
  auto* f_weights = app.add_option("--weights", weights,
                                   "format the weight matrices are held in (model.weights): q8_0, q4_0, q4_k, q6_k, "
                                   "q4_k_m, f16, f32; default as stored")
                        ->check(splitlm::scheduler::flags::Schema("model.weights"));
  auto* f_cloud = app.add_option("--cloud", o.channel.endpoint,
                                 "the worker's ZeroMQ endpoint; several, comma-separated, or dns://NAME:PORT for all "
                                 "of a name's addresses: each session goes to the least loaded, and fails over")
                      ->capture_default_str();
  int resolve_s = 30;
  auto* f_resolve = app.add_option("--resolve-interval-s", resolve_s, "dns:// names in --cloud are resolved again after this")
                        ->check(splitlm::scheduler::flags::Schema("device.resolve_interval_s"))->capture_default_str();
  std::string cut_text;
  using splitlm::scheduler::flags::Schema;
  const CLI::Validator cut_check = Schema("device.cut");
  auto* f_cut = app.add_option("--cut", cut_text, "layers [0, cut) run here (the layer count: everything here), or auto")
      ->check(CLI::Validator(
          [cut_check](std::string& s) {
            const std::string why = s == "auto" ? "" : cut_check(s);
            return why.empty() ? why : why + " (give a cut or auto)";
          },
          "a cut or auto", "CUT"));
  auto* f_fallback = app.add_option("--fallback", fallback, "when the cloud does not answer: local, wait or fail")
      ->check(Schema("device.fallback"))->capture_default_str();
  auto* f_codec = app.add_option("--codec", codec, "activation codec: f32 (exact), f16, bf16, int8")
      ->check(Schema("device.codec"))->capture_default_str();
  std::string speculate = "off";
  auto* f_spec = app.add_option("--speculate", speculate,
                                "speculative decoding in split mode: prompt-lookup[:K], early-exit[:K] or draft:PATH[:K] "
                                "(K = most drafts per step, 1..8; PATH a model of the same vocabulary), or off")
      ->capture_default_str();
  auto* f_tok = app.add_option("--tokenizer", tokenizer_path, "tokenizer.json, tokenizer.model, .gguf or a directory (default: the model's own)");
  auto* f_key = app.add_option("--key", key_file, "this device's CURVE key pair file (enables encryption)");
  auto* f_skey = app.add_option("--server-key", server_key_file, "the worker's public key file");
  auto* f_step = app.add_option("--step-deadline-ms", step_ms, "a step not answered by then fails over")->check(Schema("device.step_deadline_ms"))->capture_default_str();
  auto* f_wait = app.add_option("--wait-deadline-ms", wait_ms, "--fallback wait gives up after this")->check(Schema("device.wait_deadline_ms"))->capture_default_str();
  auto* f_retry = app.add_option("--retry-ms", retry_ms, "--fallback local tries the cloud again after this")->check(Schema("device.retry_ms"))->capture_default_str();
  auto* f_exact = app.add_flag("--require-exact", o.require_exact,
                               "refuse a cloud holding the same model in other weight formats (default: warn)");
  auto* f_hb = app.add_option("--heartbeat-ms", heartbeat_ms, "heartbeat interval (3 missed = cloud dead)")->check(Schema("device.heartbeat_ms"))->capture_default_str();
  auto* f_threads = app.add_option("--threads", threads, "compute threads")->check(Schema("model.threads"))->capture_default_str();
  splitlm::scheduler::flags::AddLogLevel(app, level);

  auto* gen = app.add_subcommand("generate", "generate once and print the result (as splitlm generate)");
  std::string prompt, prompt_ids;
  int max_tokens = 32;
  bool print_ids = false, ignore_eos = false;
  splitlm::partition::SamplingParams sampling;
  auto* p = gen->add_option("--prompt", prompt, "prompt text (needs a tokenizer)");
  gen->add_option("--prompt-ids", prompt_ids, "prompt token ids, e.g. \"1 2 3\"")->excludes(p);
  gen->add_option("--max-tokens", max_tokens, "tokens to generate")->check(CLI::Range(0, 1 << 20))->capture_default_str();
  gen->add_option("--temperature", sampling.temperature, "0 = greedy")->check(splitlm::scheduler::flags::Number(0.0, 100.0))->capture_default_str();
  gen->add_option("--top-k", sampling.top_k, "0 = no limit")->check(CLI::Range(0, 1 << 30))->capture_default_str();
  gen->add_option("--top-p", sampling.top_p, "nucleus mass in (0, 1]")->check(splitlm::scheduler::flags::Number(0.0, 1.0))->capture_default_str();
  gen->add_option("--seed", sampling.seed, "sampling seed")->capture_default_str();
  gen->add_flag("--print-ids", print_ids, "print prompt and generated ids on one line");
  gen->add_flag("--ignore-eos", ignore_eos, "keep generating after an end-of-sequence token");

  auto* serve = app.add_subcommand("serve", "serve the OpenAI-compatible HTTP API");
  std::string http = "127.0.0.1:8080";
  bool http_public = false;
  auto* f_http = serve->add_option("--http", http, "HOST:PORT to listen on (port 0 picks one)")->capture_default_str();
  auto* f_http_public = serve->add_flag("--http-public", http_public, "allow --http beyond loopback (warned)");
  std::string chat_template;
  auto* f_chat = serve->add_option("--chat-template", chat_template,
                                   "chat template: llama2, llama3, chatml, mistral, zephyr, or FILE (a template, "
                                   "tokenizer_config.json or .gguf); default: the model's own");
  CLI11_PARSE(app, argc, argv);

  auto log = spdlog::stderr_color_mt("device");
  log->set_level(splitlm::scheduler::flags::ParseLogLevel(level));
  log->set_pattern("[%H:%M:%S.%e] [device] [%^%l%$] %v");
  at::set_num_threads(threads);
  if (!splitlm::partition::DetectBlas().openblas) {
    log->warn("*** LibTorch is using the reference BLAS: install libopenblas0-openmp ***");
  }
  try {
    if (!config_file.empty()) {
      using splitlm::scheduler::FillFromConfig;
      const auto cfg = splitlm::scheduler::Config::Load(config_file);
      FillFromConfig(cfg, "model.dir", f_model->count() > 0, model_dir);
      FillFromConfig(cfg, "model.weights", f_weights->count() > 0, weights);
      FillFromConfig(cfg, "model.tokenizer", f_tok->count() > 0, tokenizer_path);
      FillFromConfig(cfg, "model.threads", f_threads->count() > 0, threads);
      FillFromConfig(cfg, "device.cloud", f_cloud->count() > 0, o.channel.endpoint);
      FillFromConfig(cfg, "device.resolve_interval_s", f_resolve->count() > 0, resolve_s);
      int config_cut = -1;
      bool config_auto = false;
      FillFromConfig(cfg, "device.cut", f_cut->count() > 0, config_cut);
      FillFromConfig(cfg, "device.auto_cut", f_cut->count() > 0, config_auto);
      if (f_cut->count() == 0) cut_text = config_auto ? "auto" : config_cut >= 0 ? std::to_string(config_cut) : "";
      splitlm::scheduler::ApplyPlanConfig(cfg, o.auto_cut.plan);
      FillFromConfig(cfg, "scheduler.device_profile", false, o.auto_cut.profile_path);
      FillFromConfig(cfg, "scheduler.margin", false, o.auto_cut.margin);
      FillFromConfig(cfg, "scheduler.follow_drift", false, o.auto_cut.follow_drift);
      FillFromConfig(cfg, "device.fallback", f_fallback->count() > 0, fallback);
      FillFromConfig(cfg, "device.codec", f_codec->count() > 0, codec);
      FillFromConfig(cfg, "device.speculate", f_spec->count() > 0, speculate);
      FillFromConfig(cfg, "device.step_deadline_ms", f_step->count() > 0, step_ms);
      FillFromConfig(cfg, "device.wait_deadline_ms", f_wait->count() > 0, wait_ms);
      FillFromConfig(cfg, "device.retry_ms", f_retry->count() > 0, retry_ms);
      FillFromConfig(cfg, "device.require_exact", f_exact->count() > 0, o.require_exact);
      FillFromConfig(cfg, "device.heartbeat_ms", f_hb->count() > 0, heartbeat_ms);
      FillFromConfig(cfg, "device.key", f_key->count() > 0, key_file);
      FillFromConfig(cfg, "device.server_key", f_skey->count() > 0, server_key_file);
      FillFromConfig(cfg, "device.http", f_http->count() > 0, http);
      FillFromConfig(cfg, "device.http_public", f_http_public->count() > 0, http_public);
      FillFromConfig(cfg, "device.chat_template", f_chat->count() > 0, chat_template);
      at::set_num_threads(threads);
    }
    if (model_dir.empty())
      throw splitlm::Exception(splitlm::Exception::kInvalidArgument,
                               "no model: pass --model DIR or set model.dir in --config");
    if (o.channel.endpoint.find(',') != std::string::npos || o.channel.endpoint.rfind("dns://", 0) == 0) {
      o.clouds = splitlm::device::ParseCloudList(o.channel.endpoint);
      o.resolve_interval = std::chrono::seconds(resolve_s);
    }
    if (cut_text.empty())
      throw splitlm::Exception(splitlm::Exception::kInvalidArgument,
                               "no cut: pass --cut K (or auto), or set device.cut in --config");
    if (serve->parsed()) splitlm::scheduler::flags::CheckHttpExposure(http, http_public);
    if (cut_text == "auto") {
      o.auto_cut.enabled = true;
      o.auto_cut.plan.device.threads = threads;
      o.cut = -2;  // set below, once the model's layer count is known
    } else {
      try {
        size_t used = 0;
        o.cut = std::stoi(cut_text, &used);
        if (used != cut_text.size()) throw splitlm::Exception(splitlm::Exception::kInvalidArgument, cut_text);
      } catch (const std::exception&) {
        throw splitlm::Exception(splitlm::Exception::kInvalidArgument,
                                 "--cut \"" + cut_text + "\" is neither a layer count nor auto");
      }
    }
    o.fallback = fallback == "local" ? splitlm::device::Fallback::kLocal
                 : fallback == "wait" ? splitlm::device::Fallback::kWait
                                      : splitlm::device::Fallback::kFail;
    o.codec = *splitlm::transport::ParseCodec(codec);
    std::string spec_why;
    const auto spec = splitlm::device::ParseSpeculate(speculate, &spec_why);
    if (!spec)
      throw splitlm::Exception(splitlm::Exception::kInvalidArgument, "--speculate / device.speculate: " + spec_why);
    o.max_drafts = spec->max_drafts;
    o.step_deadline = std::chrono::milliseconds(step_ms);
    o.wait_deadline = std::chrono::milliseconds(wait_ms);
    o.retry_interval = std::chrono::milliseconds(retry_ms);
    o.channel.heartbeat_interval = std::chrono::milliseconds(heartbeat_ms);
    o.log = log;
    if (!key_file.empty() || !server_key_file.empty()) {
      if (key_file.empty() || server_key_file.empty())
        throw splitlm::Exception(splitlm::Exception::kInvalidArgument, "CURVE needs both --key and --server-key");
      o.channel.keys = splitlm::transport::ReadKeyFile(key_file);
      if (o.channel.keys.secret_key.empty())
        throw splitlm::Exception(splitlm::Exception::kInvalidArgument,
                                 key_file + ": no secret key (use the .key file)");
      o.channel.server_public_key = splitlm::transport::ReadKeyFile(server_key_file).public_key;
    }
    // Before anything slow: a template that cannot be used ends start-up.
    std::shared_ptr<const splitlm::device::ChatTemplate> chat;
    if (serve->parsed()) chat = ChooseChatTemplate(model_dir, chat_template, *log);
    auto model = splitlm::partition::Model::Open(
        model_dir, weights, splitlm::partition::kernels::Isa::Choose(std::getenv("SPLITLM_KERNELS"), "SPLITLM_KERNELS"));
    if (o.cut == -2) o.cut = model->config().num_layers;  // auto starts all local
    try {
      o.drafter = splitlm::device::MakeDrafter(*spec, *model);
    } catch (const std::exception& e) {
      throw splitlm::Exception(splitlm::Exception::kInvalidArgument,
                               std::string("--speculate / device.speculate: ") + e.what());
    }
    if (o.drafter && o.drafter->bytes() > 0) {
      log->info("speculative drafter {}: {:.1f} MB of weights on the device beside the stage's", o.drafter->name(),
                o.drafter->bytes() / 1e6);
    }
    std::unique_ptr<splitlm::partition::Tokenizer> tok;
    if (tokenizer_path.empty() && model->tokenizer_path()) tokenizer_path = *model->tokenizer_path();
    splitlm::partition::TokenizerOptions tokenizer_options;
    if (const char* shim = std::getenv("SPLITLM_SPM_SHIM")) tokenizer_options.spm_shim = shim;
    if (!tokenizer_path.empty()) tok = splitlm::partition::Tokenizer::Open(tokenizer_path, tokenizer_options);
    if (tok) o.eos_ids = tok->eos_ids();
    zmq::context_t context;
    splitlm::transport::Metrics metrics;
    splitlm::device::Agent agent(*model, o, context, metrics);
    if (o.auto_cut.enabled) {
      log->info("cut auto: chosen per request by the cost model; cloud {}, fallback {}, codec {}", o.channel.endpoint, fallback, codec);
    } else {
      log->info("cut {}: device runs embedding + layers [0,{}), cloud {} runs the rest; fallback {}, codec {}", o.cut, o.cut,
                o.channel.endpoint, fallback, codec);
    }

    if (gen->parsed()) {
      splitlm::device::GenerateRequest req;
      if (!prompt_ids.empty()) {
        req.prompt = splitlm::partition::ParseTokenIds(prompt_ids);
      } else if (!prompt.empty()) {
        if (!tok)
          throw splitlm::Exception(splitlm::Exception::kNotFound,
                                   model_dir +
                                       " has no tokenizer (tokenizer.model, tokenizer.json or a GGUF vocabulary): pass "
                                       "--tokenizer FILE or use --prompt-ids");
        req.prompt = tok->Encode(prompt);
        if (tok->add_bos()) req.prompt.insert(req.prompt.begin(), model->config().bos_token_id);
      } else {
        throw splitlm::Exception(splitlm::Exception::kInvalidArgument,
                                 "give a prompt: --prompt TEXT or --prompt-ids \"1 2 3\"");
      }
      splitlm::partition::ValidatePrompt(req.prompt, model->config());
      req.max_tokens = max_tokens;
      req.sampling = sampling;
      req.stop_at_eos = !ignore_eos;
      if (max_tokens == 0) {
        for (size_t i = 0; i < req.prompt.size(); ++i) std::cout << (i ? " " : "") << req.prompt[i];
        std::cout << std::endl;
        return 0;
      }
      std::vector<int32_t> generated;
      std::string printed;
      auto result = agent.Generate(req, [&](int32_t t) {
        generated.push_back(t);
        if (tok && !print_ids) {
          const std::string text = tok->Decode(generated);
          std::cout << text.substr(std::min(printed.size(), text.size())) << std::flush;
          printed = text;
        }
        return true;
      });
      if (print_ids || !tok) {
        std::vector<int32_t> all = req.prompt;
        all.insert(all.end(), result.tokens.begin(), result.tokens.end());
        for (size_t i = 0; i < all.size(); ++i) std::cout << (i ? " " : "") << all[i];
      }
      std::cout << std::endl;
      log->info("{} tokens: {} from the cloud, {} on the device; {} fallbacks, {} recoveries, {} cloud restarts",
                result.tokens.size(), result.cloud_steps, result.local_steps, result.fallbacks, result.recoveries,
                result.cloud_restarts);
      if (!o.clouds.empty()) {
        log->info("last served by {}; {} failovers to another worker", result.worker.empty() ? "(none)" : result.worker,
                  result.failovers);
      }
      if (o.drafter) {
        log->info("speculative ({}): {} round trips to the cloud for {} tokens ({:.2f} per token); {} of {} drafts accepted ({:.0f}%, EWMA {:.2f})",
                  o.drafter->name(), result.cloud_steps, result.tokens.size(),
                  result.tokens.empty() ? 0.0 : static_cast<double>(result.cloud_steps) / result.tokens.size(),
                  result.accepted, result.drafted, result.drafted ? 100.0 * result.accepted / result.drafted : 0.0, result.acceptance_ewma);
      }
      if (o.auto_cut.enabled) {
        log->info("auto cut {}: predicted {:.3f} ms/token, measured {:.3f} ms/token", result.cut, result.predicted_tpot_ms,
                  result.measured_tpot_ms);
      }
      return 0;
    }

    std::signal(SIGINT, OnSignal);
    std::signal(SIGTERM, OnSignal);
    std::string name = model_dir;
    while (name.size() > 1 && name.back() == '/') name.pop_back();
    name = name.substr(name.find_last_of('/') + 1);
    splitlm::device::ApiOptions api_options;
    api_options.model_name = name;
    api_options.chat_template = chat;
    if (tok) api_options.eos_ids = tok->eos_ids();  // Llama 3: <|eot_id|> as well as <|end_of_text|>
    splitlm::device::OpenAiApi api(agent, tok.get(), metrics, api_options);
    splitlm::transport::HttpServerOptions ho;
    ho.address = http;
    ho.allow_public = http_public;
    ho.log = log;
    splitlm::transport::HttpServer server(ho, [&](const auto& r, auto& w) { api.Handle(r, w); });
    std::cout << "serving on http://" << server.address() << std::endl;
    log->info("OpenAI-compatible API on http://{}/v1 (model \"{}\")", server.address(), name);
    while (!g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    log->info("shutting down");
  } catch (const splitlm::device::DeviceError& e) {
    log->error("{}{}", e.what(), FlagHint(e.fault()));
    return splitlm::ExitCodeOf(e);
  } catch (const std::exception& e) {
    log->error("{}", splitlm::MessageOf(e));
    return splitlm::ExitCodeOf(e);
  }
  return 0;
}
