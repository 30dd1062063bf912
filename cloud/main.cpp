// splitlm-cloud: the cloud worker. See README.md ("The deployable pair").
#include <ATen/Parallel.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <CLI/CLI.hpp>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <thread>

#include "cloud/worker.h"
#include "scheduler/flags.h"
#include "partition/blas_check.h"
#include "partition/model.h"
#include "scheduler/config.h"
#include "transport/error.h"
#include "transport/http_server.h"

namespace {
std::atomic<bool> g_stop{false}, g_drain{false};
void OnSignal(int) { g_stop = true; }
// SIGTERM drains (Kubernetes sends it before SIGKILL, after the grace
// period); a second one stops at once.
void OnTerm(int) {
  if (g_drain) g_stop = true;
  g_drain = true;
}

// Sets `field` (seconds) from the file's integer `key`, if present.
void FillSeconds(const splitlm::scheduler::Config& cfg, const std::string& key, std::chrono::seconds& field) {
  if (auto v = cfg.Int(key)) field = std::chrono::seconds(*v);
}
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"splitlm-cloud: serves layers [min-cut, L) and the head to splitlm devices"};
  std::string model_dir, level = "info", http, key_file, allow_file;
  int threads = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  splitlm::cloud::WorkerOptions o;
  double kv_budget_mb = 2048;
  std::string config_file;
  int batch_window_ms = 2;
  app.add_option("--config", config_file, "TOML configuration file (docs/config.md); flags override it")->check(CLI::ExistingFile);
  auto* f_model = app.add_option("--model", model_dir, "model directory or .gguf file");
  std::string weights;
  auto* f_weights = app.add_option("--weights", weights,
                                   "format the weight matrices are held in (model.weights): q8_0, q4_0, q4_k, q6_k, "
                                   "q4_k_m, f16, f32; default as stored")
                        ->check(splitlm::scheduler::flags::Schema("model.weights"));
  auto* f_bind = app.add_option("--bind", o.server.bind, "ZeroMQ endpoint; tcp://127.0.0.1:* picks a free port")->capture_default_str();
  using splitlm::scheduler::flags::Schema;
  auto* f_min = app.add_option("--min-cut", o.min_cut, "lowest cut served: layers [min-cut, L) are loaded")->check(Schema("cloud.min_cut"))->capture_default_str();
  auto* f_kv = app.add_option("--kv-budget-mb", kv_budget_mb, "KV cache budget for all sessions, MB")->check(Schema("cloud.kv_budget_mb"))->capture_default_str();
  auto* f_batch = app.add_option("--max-batch", o.max_batch, "requests batched through the layers")->check(Schema("cloud.max_batch"))->capture_default_str();
  auto* f_window = app.add_option("--batch-window-ms", batch_window_ms, "wait for the previous batch's sessions")->check(Schema("cloud.batch_window_ms"))->capture_default_str();
  auto* f_key = app.add_option("--key", key_file, "CURVE key pair file (from splitlm keygen): enables encryption");
  auto* f_allow = app.add_option("--allow", allow_file, "allow-list of device public keys (one per line)");
  auto* f_exact = app.add_flag("--require-exact", o.require_exact,
                               "refuse devices holding the same model in other weight formats (default: warn)");
  auto* f_insecure = app.add_flag("--insecure", o.server.allow_insecure, "allow binding beyond loopback without CURVE (warned)");
  auto* f_http = app.add_option("--http", http, "serve GET /metrics and /health on HOST:PORT");
  bool http_public = false;
  auto* f_http_public = app.add_flag("--http-public", http_public, "allow --http beyond loopback (warned)");
  auto* f_threads = app.add_option("--threads", threads, "compute threads")->check(Schema("model.threads"))->capture_default_str();
  splitlm::scheduler::flags::AddLogLevel(app, level);
  std::string layers_text, next_endpoint;
  auto* f_layers = app.add_option("--layers", layers_text,
                                  "pipeline of workers: hold layers K:M only (cuts K..M) and send the hidden states at M "
                                  "to --next, which serves cut M");
  app.add_option("--next", next_endpoint, "pipeline: the next worker's endpoint (it holds [M, ...) and answers for the chain)")
      ->needs(f_layers);
  f_layers->needs("--next");
  int drain_timeout_s = 30;
  auto* f_drain = app.add_option("--drain-timeout", drain_timeout_s,
                                 "on SIGTERM: refuse new sessions, give the open ones this many seconds to finish, then exit")
                      ->check(Schema("cloud.drain_timeout_s"))->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  auto log = spdlog::stderr_color_mt("cloud");
  log->set_level(splitlm::scheduler::flags::ParseLogLevel(level));
  log->set_pattern("[%H:%M:%S.%e] [cloud] [%^%l%$] %v");
  at::set_num_threads(threads);
  if (!splitlm::partition::DetectBlas().openblas) {
    log->warn("*** LibTorch is using the reference BLAS: install libopenblas0-openmp ***");
  }
  std::signal(SIGINT, OnSignal);
  std::signal(SIGTERM, OnTerm);
  try {
    if (!config_file.empty()) {
      using splitlm::scheduler::FillFromConfig;
      const auto cfg = splitlm::scheduler::Config::Load(config_file);
      FillFromConfig(cfg, "model.dir", f_model->count() > 0, model_dir);
      FillFromConfig(cfg, "model.weights", f_weights->count() > 0, weights);
      FillFromConfig(cfg, "model.threads", f_threads->count() > 0, threads);
      FillFromConfig(cfg, "cloud.bind", f_bind->count() > 0, o.server.bind);
      FillFromConfig(cfg, "cloud.min_cut", f_min->count() > 0, o.min_cut);
      FillFromConfig(cfg, "cloud.kv_budget_mb", f_kv->count() > 0, kv_budget_mb);
      FillFromConfig(cfg, "cloud.max_batch", f_batch->count() > 0, o.max_batch);
      FillFromConfig(cfg, "cloud.batch_window_ms", f_window->count() > 0, batch_window_ms);
      FillFromConfig(cfg, "cloud.key", f_key->count() > 0, key_file);
      FillFromConfig(cfg, "cloud.allow", f_allow->count() > 0, allow_file);
      FillFromConfig(cfg, "cloud.require_exact", f_exact->count() > 0, o.require_exact);
      FillFromConfig(cfg, "cloud.insecure", f_insecure->count() > 0, o.server.allow_insecure);
      FillFromConfig(cfg, "cloud.http", f_http->count() > 0, http);
      FillFromConfig(cfg, "cloud.http_public", f_http_public->count() > 0, http_public);
      FillFromConfig(cfg, "cloud.drain_timeout_s", f_drain->count() > 0, drain_timeout_s);
      FillFromConfig(cfg, "cloud.max_sessions", false, o.sessions.max_sessions);
      FillFromConfig(cfg, "cloud.max_sessions_per_connection", false, o.sessions.max_sessions_per_peer);
      FillSeconds(cfg, "cloud.session_idle_timeout_s", o.sessions.idle_timeout);
      FillSeconds(cfg, "cloud.peer_timeout_s", o.sessions.peer_timeout);
      FillFromConfig(cfg, "cloud.max_queued_messages", false, o.server.max_queued_messages);
      FillFromConfig(cfg, "cloud.log_lines_per_peer", false, o.server.peer_log.lines_per_peer);
      FillSeconds(cfg, "cloud.log_interval_s", o.server.peer_log.interval);
      at::set_num_threads(threads);
    }
    if (model_dir.empty())
      throw splitlm::Exception(splitlm::Exception::kInvalidArgument,
                               "no model: pass --model DIR or set model.dir in --config");
    if (!http.empty()) splitlm::scheduler::flags::CheckHttpExposure(http, http_public);
    o.batch_window = std::chrono::milliseconds(batch_window_ms);
    o.drain_timeout = std::chrono::seconds(drain_timeout_s);
    if (!layers_text.empty()) {
      const size_t colon = layers_text.find(':');
      try {
        size_t a = 0, b = 0;
        if (colon == std::string::npos) throw splitlm::Exception(splitlm::Exception::kInvalidArgument, "no colon");
        o.min_cut = std::stoi(layers_text.substr(0, colon), &a);
        o.layer_end = std::stoi(layers_text.substr(colon + 1), &b);
        if (a != colon || b != layers_text.size() - colon - 1)
          throw splitlm::Exception(splitlm::Exception::kInvalidArgument, "trailing text");
      } catch (const std::exception&) {
        throw splitlm::Exception(splitlm::Exception::kInvalidArgument,
                                 "--layers '" + layers_text + "': expected K:M, two layer numbers (e.g. 2:6)");
      }
      o.next.endpoint = next_endpoint;
      o.next.log = log;
      if (!key_file.empty()) {  // the next hop is a worker of the same deployment: the same key pair
        o.next.keys = splitlm::transport::ReadKeyFile(key_file);
        o.next.server_public_key = o.next.keys.public_key;
      }
    }
    o.kv_budget_bytes = static_cast<size_t>(kv_budget_mb * (1 << 20));
    o.log = log;
    o.server.log = log;
    if (!key_file.empty()) {
      if (auto w = splitlm::transport::SecretKeyFileWarning(key_file); !w.empty()) log->warn("{}", w);
      o.server.keys = splitlm::transport::ReadKeyFile(key_file);
      if (o.server.keys.secret_key.empty())
        throw splitlm::Exception(splitlm::Exception::kInvalidArgument,
                                 key_file + ": no secret key (use the .key file, not .pub)");
      if (allow_file.empty())
        throw splitlm::Exception(splitlm::Exception::kInvalidArgument,
                                 "--key needs --allow: an allow-list of device public keys");
      o.server.allowed_clients = splitlm::transport::ReadAllowList(allow_file);
    } else if (!allow_file.empty()) {
      throw splitlm::Exception(splitlm::Exception::kInvalidArgument,
                               "--allow needs --key: the allow-list applies to CURVE connections");
    }
    auto model = splitlm::partition::Model::Open(
        model_dir, weights, splitlm::partition::kernels::Isa::Choose(std::getenv("SPLITLM_KERNELS"), "SPLITLM_KERNELS"));
    zmq::context_t context;
    splitlm::transport::Metrics metrics;
    splitlm::cloud::Worker worker(*model, o, context, metrics);
    std::unique_ptr<splitlm::transport::HttpServer> http_server;
    if (!http.empty()) {
      splitlm::transport::HttpServerOptions ho;
      ho.address = http;
      ho.allow_public = http_public;
      ho.log = log;
      http_server = std::make_unique<splitlm::transport::HttpServer>(
          ho, [&](const splitlm::transport::HttpRequest& r, splitlm::transport::HttpResponder& w) {
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
              w.Send(404, "application/json", R"({"error":{"message":"not found","type":"invalid_request_error"}})");
            }
          });
      log->info("metrics on http://{}/metrics", http_server->address());
    }
    std::cout << "listening on " << worker.endpoint() << std::endl;
    if (o.layer_end) log->info("pipeline stage: layers [{}, {}) here, the rest on {}", o.min_cut, o.layer_end, o.next.endpoint);
    log->info("serving layers [{}, {}) + head of {} on {}{}", o.min_cut, model->config().num_layers, model_dir,
              worker.endpoint(), o.server.keys.secret_key.empty() ? "" : " (CURVE)");
    worker.Run(g_stop, &g_drain);
    log->info("shutting down");
  } catch (const std::exception& e) {
    log->error("{}", splitlm::MessageOf(e));
    return splitlm::ExitCodeOf(e);
  }
  return 0;
}
