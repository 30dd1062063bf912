// splitlm-cloud: the cloud worker. See README.md ("The deployable pair").
#include <ATen/Parallel.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "cloud/worker.h"
#include "partition/blas_check.h"
#include "partition/model.h"
#include "scheduler/config.h"
#include "scheduler/flags.h"
#include "transport/error.h"
#include "transport/http_server.h"

namespace {

using splitlm::Exception;
using splitlm::scheduler::flags::Schema;

std::atomic<bool> g_stop{false}, g_drain{false};
void OnSignal(int) { g_stop = true; }
// SIGTERM drains (Kubernetes sends it before SIGKILL, after the grace
// period); a second one stops at once.
void OnTerm(int) {
  if (g_drain) g_stop = true;
  g_drain = true;
}

// Sets `field` (seconds) from the file's integer `key`, if present.
void FillSeconds(const splitlm::scheduler::Config& cfg, const std::string& key,
                 std::chrono::seconds& field) {
  if (auto v = cfg.Int(key)) field = std::chrono::seconds(*v);
}

// The values of every flag, defaults as --help shows them; --config fills
// those not given on the command line.
struct CloudFlags {
  std::string config_file;
  std::string model_dir;
  std::string weights;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  std::string level = "info";
  // The worker options that flags and config keys set as they are (bind,
  // min cut, batch, require-exact, insecure, and the config-only limits).
  splitlm::cloud::WorkerOptions worker;
  double kv_budget_mb = 2048;
  int batch_window_ms = 2;
  std::string key_file;
  std::string allow_file;
  std::string http;
  bool http_public = false;
  std::string layers_text;  // pipeline: "K:M"
  std::string next_endpoint;
  int drain_timeout_s = 30;
};

// Registers every flag (a table; the order is --help's).
void AddFlags(CLI::App& app, CloudFlags& flags) {
  splitlm::cloud::WorkerOptions& worker = flags.worker;
  app.add_option("--config", flags.config_file,
                 "TOML configuration file (docs/config.md); flags override it")
      ->check(CLI::ExistingFile);
  app.add_option("--model", flags.model_dir, "model directory or .gguf file");
  app.add_option("--weights", flags.weights,
                 "format the weight matrices are held in (model.weights): q8_0, q4_0, q4_k, q6_k, "
                 "q4_k_m, f16, f32; default as stored")
      ->check(Schema("model.weights"));
  app.add_option("--bind", worker.server.bind,
                 "ZeroMQ endpoint; tcp://127.0.0.1:* picks a free port")
      ->capture_default_str();
  app.add_option("--min-cut", worker.min_cut, "lowest cut served: layers [min-cut, L) are loaded")
      ->check(Schema("cloud.min_cut"))
      ->capture_default_str();
  app.add_option("--kv-budget-mb", flags.kv_budget_mb, "KV cache budget for all sessions, MB")
      ->check(Schema("cloud.kv_budget_mb"))
      ->capture_default_str();
  app.add_option("--max-batch", worker.max_batch, "requests batched through the layers")
      ->check(Schema("cloud.max_batch"))
      ->capture_default_str();
  app.add_option("--batch-window-ms", flags.batch_window_ms,
                 "wait for the previous batch's sessions")
      ->check(Schema("cloud.batch_window_ms"))
      ->capture_default_str();
  app.add_option("--key", flags.key_file,
                 "CURVE key pair file (from splitlm keygen): enables encryption");
  app.add_option("--allow", flags.allow_file, "allow-list of device public keys (one per line)");
  app.add_flag("--require-exact", worker.require_exact,
               "refuse devices holding the same model in other weight formats (default: warn)");
  app.add_flag("--insecure", worker.server.allow_insecure,
               "allow binding beyond loopback without CURVE (warned)");
  app.add_option("--http", flags.http, "serve GET /metrics and /health on HOST:PORT");
  app.add_flag("--http-public", flags.http_public, "allow --http beyond loopback (warned)");
  app.add_option("--threads", flags.threads, "compute threads")
      ->check(Schema("model.threads"))
      ->capture_default_str();
  splitlm::scheduler::flags::AddLogLevel(app, flags.level);
  auto* layers = app.add_option(
      "--layers", flags.layers_text,
      "pipeline of workers: hold layers K:M only (cuts K..M) and send the hidden states at M "
      "to --next, which serves cut M");
  app.add_option(
         "--next", flags.next_endpoint,
         "pipeline: the next worker's endpoint (it holds [M, ...) and answers for the chain)")
      ->needs(layers);
  layers->needs("--next");
  app.add_option("--drain-timeout", flags.drain_timeout_s,
                 "on SIGTERM: refuse new sessions, give the open ones this many seconds to finish, "
                 "then exit")
      ->check(Schema("cloud.drain_timeout_s"))
      ->capture_default_str();
}

// Fills from the --config file every value whose flag was not given.
void ApplyConfig(const CLI::App& app, CloudFlags& flags) {
  using splitlm::scheduler::FillFromConfig;
  const auto given = [&app](const char* flag) { return app.count(flag) > 0; };
  splitlm::cloud::WorkerOptions& worker = flags.worker;
  const auto cfg = splitlm::scheduler::Config::Load(flags.config_file);
  FillFromConfig(cfg, "model.dir", given("--model"), flags.model_dir);
  FillFromConfig(cfg, "model.weights", given("--weights"), flags.weights);
  FillFromConfig(cfg, "model.threads", given("--threads"), flags.threads);
  FillFromConfig(cfg, "cloud.bind", given("--bind"), worker.server.bind);
  FillFromConfig(cfg, "cloud.min_cut", given("--min-cut"), worker.min_cut);
  FillFromConfig(cfg, "cloud.kv_budget_mb", given("--kv-budget-mb"), flags.kv_budget_mb);
  FillFromConfig(cfg, "cloud.max_batch", given("--max-batch"), worker.max_batch);
  FillFromConfig(cfg, "cloud.batch_window_ms", given("--batch-window-ms"), flags.batch_window_ms);
  FillFromConfig(cfg, "cloud.key", given("--key"), flags.key_file);
  FillFromConfig(cfg, "cloud.allow", given("--allow"), flags.allow_file);
  FillFromConfig(cfg, "cloud.require_exact", given("--require-exact"), worker.require_exact);
  FillFromConfig(cfg, "cloud.insecure", given("--insecure"), worker.server.allow_insecure);
  FillFromConfig(cfg, "cloud.http", given("--http"), flags.http);
  FillFromConfig(cfg, "cloud.http_public", given("--http-public"), flags.http_public);
  FillFromConfig(cfg, "cloud.drain_timeout_s", given("--drain-timeout"), flags.drain_timeout_s);
  FillFromConfig(cfg, "cloud.max_sessions", false, worker.sessions.max_sessions);
  FillFromConfig(cfg, "cloud.max_sessions_per_connection", false,
                 worker.sessions.max_sessions_per_peer);
  FillSeconds(cfg, "cloud.session_idle_timeout_s", worker.sessions.idle_timeout);
  FillSeconds(cfg, "cloud.peer_timeout_s", worker.sessions.peer_timeout);
  FillFromConfig(cfg, "cloud.max_queued_messages", false, worker.server.max_queued_messages);
  FillFromConfig(cfg, "cloud.log_lines_per_peer", false, worker.server.peer_log.lines_per_peer);
  FillSeconds(cfg, "cloud.log_interval_s", worker.server.peer_log.interval);
}

// --layers K:M and --next: this worker is one stage of a pipeline.
void SetPipeline(const CloudFlags& flags, const std::shared_ptr<spdlog::logger>& log,
                 splitlm::cloud::WorkerOptions& options) {
  const std::string& text = flags.layers_text;
  const size_t colon = text.find(':');
  try {
    size_t a = 0, b = 0;
    if (colon == std::string::npos) throw Exception(Exception::kInvalidArgument, "no colon");
    options.min_cut = std::stoi(text.substr(0, colon), &a);
    options.layer_end = std::stoi(text.substr(colon + 1), &b);
    if (a != colon || b != text.size() - colon - 1)
      throw Exception(Exception::kInvalidArgument, "trailing text");
  } catch (const std::exception&) {
    throw Exception(Exception::kInvalidArgument,
                    "--layers '" + text + "': expected K:M, two layer numbers (e.g. 2:6)");
  }
  options.next.endpoint = flags.next_endpoint;
  options.next.log = log;
  if (!flags.key_file
           .empty()) {  // the next hop is a worker of the same deployment: the same key pair
    options.next.keys = splitlm::transport::ReadKeyFile(flags.key_file);
    options.next.server_public_key = options.next.keys.public_key;
  }
}

// --key and --allow: both or neither.
void SetCurveKeys(const CloudFlags& flags, spdlog::logger& log,
                  splitlm::transport::ServerOptions& server) {
  if (!flags.key_file.empty()) {
    if (auto w = splitlm::transport::SecretKeyFileWarning(flags.key_file); !w.empty())
      log.warn("{}", w);
    server.keys = splitlm::transport::ReadKeyFile(flags.key_file);
    if (server.keys.secret_key.empty())
      throw Exception(Exception::kInvalidArgument,
                      flags.key_file + ": no secret key (use the .key file, not .pub)");
    if (flags.allow_file.empty())
      throw Exception(Exception::kInvalidArgument,
                      "--key needs --allow: an allow-list of device public keys");
    server.allowed_clients = splitlm::transport::ReadAllowList(flags.allow_file);
  } else if (!flags.allow_file.empty()) {
    throw Exception(Exception::kInvalidArgument,
                    "--allow needs --key: the allow-list applies to CURVE connections");
  }
}

// The worker's options from the flags. Throws on a bad flag.
splitlm::cloud::WorkerOptions BuildWorkerOptions(const CloudFlags& flags,
                                                 const std::shared_ptr<spdlog::logger>& log) {
  if (flags.model_dir.empty())
    throw Exception(Exception::kInvalidArgument,
                    "no model: pass --model DIR or set model.dir in --config");
  if (!flags.http.empty())
    splitlm::scheduler::flags::CheckHttpExposure(flags.http, flags.http_public);
  splitlm::cloud::WorkerOptions options = flags.worker;
  options.batch_window = std::chrono::milliseconds(flags.batch_window_ms);
  options.drain_timeout = std::chrono::seconds(flags.drain_timeout_s);
  if (!flags.layers_text.empty()) SetPipeline(flags, log, options);
  options.kv_budget_bytes = static_cast<size_t>(flags.kv_budget_mb * (1 << 20));
  options.log = log;
  options.server.log = log;
  SetCurveKeys(flags, *log, options.server);
  return options;
}

// GET /metrics, /health (ready) and /health/live.
void HandleHttp(const splitlm::transport::Metrics& metrics,
                const splitlm::transport::HttpRequest& r, splitlm::transport::HttpResponder& w) {
  if (r.method == "GET" && r.target == "/metrics") {
    w.Send(200, "text/plain; version=0.0.4", metrics.Render());
  } else if (r.method == "GET" && r.target == "/health") {
    // Ready: weights loaded (this server starts after) and accepting sessions.
    if (g_drain) {
      w.Send(503, "application/json", R"({"status":"draining"})");
    } else {
      w.Send(200, "application/json", R"({"status":"ok"})");
    }
  } else if (r.method == "GET" && r.target == "/health/live") {
    w.Send(200, "application/json", g_drain ? R"({"status":"draining"})" : R"({"status":"ok"})");
  } else {
    w.Send(404, "application/json",
           R"({"error":{"message":"not found","type":"invalid_request_error"}})");
  }
}

// Loads the model and serves until SIGINT, or SIGTERM and the drain.
void Serve(const CloudFlags& flags, const splitlm::cloud::WorkerOptions& options,
           const std::shared_ptr<spdlog::logger>& log) {
  auto model = splitlm::partition::Model::Open(
      flags.model_dir, flags.weights,
      splitlm::partition::kernels::Isa::Choose(std::getenv("SPLITLM_KERNELS"), "SPLITLM_KERNELS"));
  zmq::context_t context;
  splitlm::transport::Metrics metrics;
  splitlm::cloud::Worker worker(*model, options, context, metrics);
  std::unique_ptr<splitlm::transport::HttpServer> http_server;
  if (!flags.http.empty()) {
    splitlm::transport::HttpServerOptions http_options;
    http_options.address = flags.http;
    http_options.allow_public = flags.http_public;
    http_options.log = log;
    http_server = std::make_unique<splitlm::transport::HttpServer>(
        http_options,
        [&metrics](const splitlm::transport::HttpRequest& r, splitlm::transport::HttpResponder& w) {
          HandleHttp(metrics, r, w);
        });
    log->info("metrics on http://{}/metrics", http_server->address());
  }
  std::cout << "listening on " << worker.endpoint() << std::endl;
  if (options.layer_end)
    log->info("pipeline stage: layers [{}, {}) here, the rest on {}", options.min_cut,
              options.layer_end, options.next.endpoint);
  log->info("serving layers [{}, {}) + head of {} on {}{}", options.min_cut,
            model->config().num_layers, flags.model_dir, worker.endpoint(),
            options.server.keys.secret_key.empty() ? "" : " (CURVE)");
  worker.Run(g_stop, &g_drain);
  log->info("shutting down");
}

// Everything but the last resort of main().
int Main(int argc, char** argv) {
  CLI::App app{"splitlm-cloud: serves layers [min-cut, L) and the head to splitlm devices"};
  CloudFlags flags;
  AddFlags(app, flags);
  CLI11_PARSE(app, argc, argv);

  auto log = spdlog::stderr_color_mt("cloud");
  log->set_level(splitlm::scheduler::flags::ParseLogLevel(flags.level));
  log->set_pattern("[%H:%M:%S.%e] [cloud] [%^%l%$] %v");
  at::set_num_threads(flags.threads);
  if (!splitlm::partition::DetectBlas().openblas) {
    log->warn("*** LibTorch is using the reference BLAS: install libopenblas0-openmp ***");
  }
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnTerm);
  try {
    if (!flags.config_file.empty()) {
      ApplyConfig(app, flags);
      at::set_num_threads(flags.threads);
    }
    const splitlm::cloud::WorkerOptions options = BuildWorkerOptions(flags, log);
    Serve(flags, options, log);
  } catch (const std::exception& e) {
    log->error("{}", splitlm::MessageOf(e));
    return splitlm::ExitCodeOf(e);
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) { return splitlm::RunMain("splitlm-cloud", Main, argc, argv); }
