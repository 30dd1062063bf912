#include "cloud/worker.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <vector>

#include "cloud/speculation.h"
#include "partition/bench.h"
#include "partition/model.h"
#include "partition/sampler.h"
#include "partition/stage.h"
#include "transport/clock.h"
#include "transport/error.h"
#include "transport/log_escape.h"

namespace splitlm::cloud {
namespace {

using Clock = transport::Clock;
using transport::ErrorCode;

uint32_t Micros(Clock::Duration d) {
  return static_cast<uint32_t>(std::chrono::duration_cast<std::chrono::microseconds>(d).count());
}

// One Forward waiting for the batch it will run in.
struct Pending {
  Session* session;
  transport::Forward forward;
  std::vector<float> hidden;
  Clock::TimePoint received;
};

void TopLogprobs(const float* logits, int vocab, uint32_t k,
                 std::vector<transport::TokenLogprob>& out) {
  float mx = *std::max_element(logits, logits + vocab);
  double sum = 0;
  for (int i = 0; i < vocab; ++i) sum += std::exp(static_cast<double>(logits[i]) - mx);
  const double lse = mx + std::log(sum);
  std::vector<int> ids(static_cast<size_t>(vocab));
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<int>(i);
  k = std::min<uint32_t>(k, static_cast<uint32_t>(ids.size()));
  std::partial_sort(ids.begin(), ids.begin() + k, ids.end(), [&](int a, int b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  });
  for (uint32_t i = 0; i < k; ++i)
    out.push_back({ids[i], static_cast<float>(logits[ids[i]] - lse)});
}

// Every worker series, described once (the HELP lines of /metrics): a table.
void DescribeCloudMetrics(transport::Metrics& metrics) {
  using K = transport::Metrics::Kind;
  metrics.Describe("splitlm_cloud_forwards_total", K::kCounter, "Forward requests answered");
  metrics.Describe("splitlm_cloud_tokens_total", K::kCounter, "tokens sampled");
  metrics.Describe("splitlm_cloud_positions_total", K::kCounter,
                   "positions run through the layers");
  metrics.Describe("splitlm_cloud_batches_total", K::kCounter, "batches run");
  metrics.Describe("splitlm_cloud_drafts_total", K::kCounter, "speculative draft tokens verified");
  metrics.Describe("splitlm_cloud_drafts_accepted_total", K::kCounter,
                   "speculative draft tokens accepted");
  metrics.Describe("splitlm_cloud_compute_seconds_total", K::kCounter, "time computing batches");
  metrics.Describe("splitlm_cloud_queue_seconds_total", K::kCounter,
                   "time requests waited before compute");
  metrics.Describe("splitlm_cloud_bytes_received_total", K::kCounter,
                   "hidden-state payload bytes received");
  metrics.Describe("splitlm_cloud_errors_total", K::kCounter, "requests answered with an error");
  metrics.Describe("splitlm_cloud_hellos_total", K::kCounter,
                   "hellos accepted (devices connecting or probing)");
  metrics.Describe("splitlm_cloud_evictions_total", K::kCounter,
                   "sessions evicted for the KV budget");
  metrics.Describe("splitlm_cloud_sessions_refused_total", K::kCounter,
                   "session opens refused (caps, another connection's id)");
  metrics.Describe("splitlm_cloud_sessions_expired_total", K::kCounter,
                   "sessions closed after the idle timeout");
  metrics.Describe("splitlm_cloud_sessions_dropped_total", K::kCounter,
                   "sessions closed because their connection fell silent");
  metrics.Describe("splitlm_cloud_active_sessions", K::kGauge, "open sessions");
  metrics.Describe("splitlm_cloud_kv_bytes", K::kGauge, "KV cache bytes allocated");
  metrics.Describe("splitlm_cloud_min_cut", K::kGauge, "lowest cut served");
  metrics.Describe("splitlm_cloud_draining", K::kGauge,
                   "1 while draining (refusing new sessions before exit)");
  metrics.Describe("splitlm_cloud_queue_delay_seconds", K::kGauge,
                   "recent queue delay of a step before compute (mean weighted to the latest); the "
                   "autoscaling signal");
}

// The options with the limits no larger than this model can use: a Forward
// holds at most max_context rows of hidden_size values in the widest codec.
// libzmq then drops a connection that announces a longer frame before
// buffering it (ZMQ_MAXMSGSIZE, see transport::ServerOptions).
WorkerOptions WithModelLimits(WorkerOptions options, const partition::ModelConfig& c) {
  auto& limits = options.server.limits;
  size_t widest = 0;
  for (auto codec : transport::kAllCodecs) {
    widest = std::max(widest, transport::EncodedSize(codec, static_cast<size_t>(c.max_context),
                                                     static_cast<size_t>(c.hidden_size)));
  }
  limits.max_rows = std::min<uint32_t>(limits.max_rows, static_cast<uint32_t>(c.max_context));
  limits.max_payload_bytes = std::min(limits.max_payload_bytes, widest);
  options.server.deliver_heartbeats = true;  // peer liveness
  return options;
}

OwnerRef OwnerOf(const transport::Incoming& in) { return OwnerRef{in.peer, in.user_id}; }

// The series updated at every Forward, made once (no name built or looked up
// per step).
struct ForwardMetrics {
  explicit ForwardMetrics(transport::Metrics& m)
      : tokens(m.CounterOf("splitlm_cloud_tokens_total")),
        drafts(m.CounterOf("splitlm_cloud_drafts_total")),
        drafts_accepted(m.CounterOf("splitlm_cloud_drafts_accepted_total")),
        positions(m.CounterOf("splitlm_cloud_positions_total")),
        forwards(m.CounterOf("splitlm_cloud_forwards_total")),
        batches(m.CounterOf("splitlm_cloud_batches_total")),
        bytes_received(m.CounterOf("splitlm_cloud_bytes_received_total")),
        compute_s(m.CounterOf("splitlm_cloud_compute_seconds_total")),
        queue_s(m.CounterOf("splitlm_cloud_queue_seconds_total")),
        queue_delay_s(m.GaugeOf("splitlm_cloud_queue_delay_seconds")),
        kv_bytes(m.GaugeOf("splitlm_cloud_kv_bytes")),
        active_sessions(m.GaugeOf("splitlm_cloud_active_sessions")),
        errors(m.CounterOf("splitlm_cloud_errors_total")),
        evictions(m.CounterOf("splitlm_cloud_evictions_total")),
        hellos(m.CounterOf("splitlm_cloud_hellos_total")),
        sessions_refused(m.CounterOf("splitlm_cloud_sessions_refused_total")),
        sessions_expired(m.GaugeOf("splitlm_cloud_sessions_expired_total")),
        sessions_dropped(m.GaugeOf("splitlm_cloud_sessions_dropped_total")),
        min_cut(m.GaugeOf("splitlm_cloud_min_cut")),
        draining(m.GaugeOf("splitlm_cloud_draining")) {}
  transport::Metrics::Counter tokens, drafts, drafts_accepted, positions, forwards, batches,
      bytes_received;
  transport::Metrics::Counter compute_s, queue_s;
  transport::Metrics::Gauge queue_delay_s, kv_bytes, active_sessions;
  transport::Metrics::Counter errors, evictions, hellos, sessions_refused;
  // Totals kept by the session table, copied in (set, not added to).
  transport::Metrics::Gauge sessions_expired, sessions_dropped, min_cut, draining;
};

}  // namespace

struct Worker::Impl {
  const partition::Model& model;
  WorkerOptions options;
  transport::Metrics& metrics;
  ForwardMetrics forward_metrics{metrics};
  const transport::Clock& clock;  // sessions' times, queue and compute times, deadlines
  transport::ServerChannel server;
  std::shared_ptr<const partition::StageWeights> weights;                // [min_cut, L)
  std::map<int, std::shared_ptr<const partition::StageWeights>> by_cut;  // slices
  SessionTable sessions;
  transport::Hello hello;
  uint64_t forwards = 0;
  uint64_t forwards_at_sweep = 0;  // at the last sweep: was there a step since?
  Clock::TimePoint next_sweep{};
  Clock::TimePoint Now() const { return clock.Now(); }

  // Pipeline: the channel to the next hop (null: this worker has the head).
  std::unique_ptr<transport::ClientChannel> next;
  bool next_greeted = false;
  uint64_t next_seq = 0;
  bool Pipelined() const { return next != nullptr; }
  // The stage spec of cut `cut` here: [cut, L) + head, or [cut, layer_end).
  partition::StageSpec SpecFor(int cut) const {
    if (!options.layer_end) return partition::StageSpec::Cloud(model.config(), cut);
    auto spec = partition::StageSpec::Range(model.config(), cut, options.layer_end);
    spec.embedding = false;
    return spec;
  }

  Impl(const partition::Model& m, WorkerOptions opts, zmq::context_t& ctx, transport::Metrics& met,
       const transport::Clock& clk)
      : model(m),
        options(WithModelLimits(std::move(opts), m.config())),
        metrics(met),
        clock(clk),
        server(ctx, options.server),
        sessions(options.sessions) {
    options.log = transport::OrNullLogger(std::move(options.log));
    if (options.layer_end) next = std::make_unique<transport::ClientChannel>(ctx, options.next);
    weights = partition::StageWeights::Load(model, SpecFor(options.min_cut));
    FillHello();
    DescribeCloudMetrics(metrics);
    forward_metrics.min_cut.Set(options.min_cut);
  }

  // Our Hello: the model, the layers and codecs served, this instance, and
  // the per-layer times devices plan with (measured unless given).
  void FillHello() {
    const auto& c = model.config();
    hello.model_fingerprint = model.fingerprint();
    hello.model_identity = model.identity();
    hello.weight_formats = model.weight_formats();
    hello.layer_begin = options.min_cut;
    hello.layer_end = c.num_layers;
    hello.codecs.assign(std::begin(transport::kAllCodecs), std::end(transport::kAllCodecs));
    hello.hidden_size = c.hidden_size;
    hello.num_layers = c.num_layers;
    hello.max_context = c.max_context;
    hello.agent = "splitlm-cloud 0.1";
    hello.reply = true;
    hello.instance_id = server.instance_id();
    if (!options.report_layer_decode_us.empty()) {
      if (static_cast<int>(options.report_layer_decode_us.size()) !=
          c.num_layers - options.min_cut) {
        throw Exception(Exception::kInvalidArgument,
                        "report_layer_decode_us must hold one time per layer served");
      }
      hello.layer_decode_us = options.report_layer_decode_us;
      hello.head_decode_us = options.report_head_decode_us;
    } else if (!Pipelined()) {
      hello.layer_decode_us = MeasureLayers();
    }  // pipelined: no figures (the chain's are not this worker's)
  }

  // Decode time of each layer this worker holds (context 16, 8 steps, median
  // of 5, timed inside whole-stage runs), reported in Hello so devices can
  // plan their cut with the cloud's speed.
  std::vector<float> MeasureLayers() {
    const auto& c = model.config();
    const int held = c.num_layers - options.min_cut, kSteps = 8, kContext = 16;
    std::vector<float> hidden(static_cast<size_t>(c.hidden_size) * (kContext + kSteps)),
        logits(c.vocab_size);
    for (size_t i = 0; i < hidden.size(); ++i)
      hidden[i] = static_cast<float>((i * 2654435761u) % 1000) / 1000.0f - 0.5f;
    partition::Stage stage(weights);
    std::vector<std::vector<double>> runs(held + 2);
    std::vector<double> parts;
    for (int r = 0; r < 5; ++r) {
      stage.Truncate(0);
      stage.Forward({nullptr, hidden.data(), kContext}, logits.data());
      parts.assign(held + 2, 0.0);
      stage.SetPartTimer(&parts);
      for (int s = 0; s < kSteps; ++s) {
        stage.Forward({nullptr, &hidden[static_cast<size_t>(kContext + s) * c.hidden_size], 1},
                      logits.data());
      }
      stage.SetPartTimer(nullptr);
      for (size_t i = 0; i < parts.size(); ++i) runs[i].push_back(parts[i] / kSteps);
    }
    const auto best = partition::MedianOfEach(std::move(runs));
    hello.head_decode_us = static_cast<float>(best[held + 1]);
    return std::vector<float>(best.begin() + 1, best.begin() + 1 + held);
  }

  const std::shared_ptr<const partition::StageWeights>& WeightsFor(int cut) {
    auto& w = by_cut[cut];
    if (!w) w = weights->Slice(SpecFor(cut));
    return w;
  }

  // Logs `text` about `peer`, rate-limited per peer.
  void LogPeer(const std::string& peer, spdlog::level::level_enum level, const std::string& text) {
    // The channel's peer log keeps its own rate on the steady clock (the
    // channel reads it too), not on the worker's.
    server.peer_log().Log(transport::PeerName(peer), level, text, transport::SteadyClock().Now());
  }

  void Reply(const std::string& peer, transport::Error e) {
    forward_metrics.errors.Add(1);
    LogPeer(peer, spdlog::level::debug,
            "error to peer=" + transport::PeerName(peer) + ": " + transport::ErrorCodeName(e.code) +
                " " + transport::EscapeForLog(e.message));
    server.Send(peer, std::move(e));
  }

  size_t KvBytes() const {
    size_t n = 0;
    for (const auto& [id, s] : sessions.sessions()) n += s.stage->kv_bytes();
    return n;
  }

  void UpdateSessionMetrics() {
    forward_metrics.active_sessions.Set(static_cast<double>(sessions.size()));
    forward_metrics.sessions_expired.Set(static_cast<double>(sessions.expired_total()));
    forward_metrics.sessions_dropped.Set(static_cast<double>(sessions.dropped_total()));
  }

  // Closes idle sessions and those of silent connections, at most once a
  // second; only when nothing is queued (see SessionTable::Sweep).
  void Sweep() {
    const auto now = Now();
    if (now < next_sweep) return;
    next_sweep = now + std::chrono::seconds(1);
    // No step for a second: nothing is queueing (the autoscaling signal
    // must fall when the load does).
    if (forwards == forwards_at_sweep) {
      hello.queue_us = 0;
      forward_metrics.queue_delay_s.Set(0);
    }
    forwards_at_sweep = forwards;
    const auto swept = sessions.Sweep(now);
    if (swept.expired + swept.dropped == 0) return;
    UpdateSessionMetrics();
    forward_metrics.kv_bytes.Set(static_cast<double>(KvBytes()));
    options.log->info("closed {} idle sessions and {} of silent connections; {} open",
                      swept.expired, swept.dropped, sessions.size());
  }

  // Evicts least recently used sessions not in `busy` until under budget.
  void EnforceBudget(const std::set<uint64_t>& busy) {
    size_t total = KvBytes();
    while (total > options.kv_budget_bytes) {
      Session* lru = nullptr;
      for (auto& [id, s] : sessions.sessions()) {
        if (busy.count(id) || s.stage->kv_bytes() == 0) continue;  // evicting frees nothing
        if (!lru || s.last_used < lru->last_used) lru = &s;
      }
      if (!lru) break;
      total -= lru->stage->kv_bytes();
      options.log->info("evicted session {} (cut {}, {} positions) for the KV budget", lru->id,
                        lru->cut, lru->stage->position());
      sessions.Evict(lru->id);
      forward_metrics.evictions.Add(1);
    }
  }

  void Handle(transport::Incoming& in, std::vector<Pending>& batch) {
    using namespace transport;
    // The sender counts as heard first. With no step queued a sweep is safe,
    // and sweeping before answering means that once a peer has its answer,
    // every sweep due by then is done (tests advance a virtual clock and
    // then look). This holds for a message taken while a batch is being
    // gathered too: there it is the batch that is empty or not.
    sessions.Heard(in.peer, Now());
    if (batch.empty()) Sweep();
    if (std::holds_alternative<Heartbeat>(in.message)) return;  // answered by the channel
    if (auto* h = std::get_if<Hello>(&in.message)) {
      Validation v = ValidateHello(hello, *h, options.require_exact);
      if (!v.ok()) {
        LogPeer(in.peer, spdlog::level::warn,
                "refused hello from peer=" + transport::PeerName(in.peer) +
                    " agent=" + EscapeForLog(h->agent) + ": " + EscapeForLog(v.reason));
        return Reply(in.peer, Error{v.code, v.reason, 0, 0});
      }
      if (!v.reason.empty()) {
        LogPeer(in.peer, spdlog::level::warn,
                "hello from peer=" + transport::PeerName(in.peer) +
                    " agent=" + EscapeForLog(h->agent) + ": " + v.reason);
      }
      forward_metrics.hellos.Add(1);
      // The load as of now (placement): an open processed before counts.
      hello.active_sessions = static_cast<uint32_t>(sessions.size());
      const size_t kv = KvBytes();
      hello.kv_free_bytes = kv < options.kv_budget_bytes ? options.kv_budget_bytes - kv : 0;
      return server.Send(in.peer, hello);
    }
    // Opening or closing a session replaces or frees state a queued step may
    // point to: run what is queued first.
    if (std::holds_alternative<OpenSession>(in.message) ||
        std::holds_alternative<CloseSession>(in.message)) {
      RunBatch(batch);
    }
    if (auto* o = std::get_if<OpenSession>(&in.message)) return Open(in, *o);
    if (auto* c = std::get_if<CloseSession>(&in.message)) {
      if (auto e = sessions.Close(c->session_id, OwnerOf(in))) return Reply(in.peer, std::move(*e));
      if (Pipelined()) next->Send(*c);
      forward_metrics.active_sessions.Set(static_cast<double>(sessions.size()));
      return;
    }
    if (auto* p = std::get_if<Ping>(&in.message)) {
      return server.Send(in.peer, Pong{p->seq}, zmq::message_t(p->reply_bytes));
    }
    if (auto* f = std::get_if<Forward>(&in.message)) return Queue(in, *f, batch);
    Reply(in.peer, Error{ErrorCode::kBadMessage,
                         std::string("unexpected ") + MessageName(in.message), 0, 0});
  }

  void Open(const transport::Incoming& in, const transport::OpenSession& request) {
    using transport::ErrorCode;
    const int layers = model.config().num_layers;
    const int top = Pipelined() ? options.layer_end : layers;
    if (static_cast<int>(request.cut) < options.min_cut || static_cast<int>(request.cut) > top) {
      return Reply(in.peer,
                   transport::Error{ErrorCode::kBadCut,
                                    "cut " + std::to_string(request.cut) + " outside the " +
                                        std::to_string(options.min_cut) + ".." +
                                        std::to_string(layers) + " this worker serves",
                                    request.session_id, 0});
    }
    if (hello.draining) {
      forward_metrics.sessions_refused.Add(1);
      return Reply(
          in.peer,
          transport::Error{ErrorCode::kBusy,
                           "this worker is draining (shutting down): open the session on another",
                           request.session_id, 0});
    }
    if (auto refused = sessions.CheckOpen(request.session_id, OwnerOf(in))) {
      forward_metrics.sessions_refused.Add(1);
      LogPeer(in.peer, spdlog::level::warn,
              "refused to open session " + std::to_string(request.session_id) +
                  " for peer=" + transport::PeerName(in.peer) + ": " + refused->message);
      return Reply(in.peer, std::move(*refused));
    }
    Session s;
    s.id = request.session_id;
    s.owner = Owner{in.peer, in.user_id};
    s.cut = static_cast<int>(request.cut);
    s.codec = request.codec;
    s.stage = std::make_unique<partition::Stage>(WeightsFor(s.cut));
    s.stage->SetComputeHook(options.compute_hook);
    sessions.Insert(std::move(s), Now());
    if (Pipelined()) OpenNext(request);
    forward_metrics.active_sessions.Set(static_cast<double>(sessions.size()));
    transport::OpenSession ack = request;
    ack.ack = true;
    server.Send(in.peer, ack);
  }

  // Validates and decodes a step and queues it for the next batch.
  void Queue(transport::Incoming& in, const transport::Forward& f, std::vector<Pending>& batch) {
    using namespace transport;
    auto found = sessions.Find(f.session_id, OwnerOf(in), f.seq, Now());
    if (!found.session) {
      UpdateSessionMetrics();  // it may have expired just now
      return Reply(in.peer, std::move(*found.error));
    }
    Session& s = *found.session;
    for (const Pending& p : batch) {
      if (p.session == &s) {
        return Reply(in.peer, Error{ErrorCode::kBusy, "a step of this session is already queued",
                                    f.session_id, f.seq});
      }
    }
    ForwardExpectations x;
    x.hidden_size = hello.hidden_size;
    x.next_position = static_cast<uint32_t>(s.stage->position());
    x.max_context = static_cast<uint32_t>(s.stage->max_context());
    x.codecs = {s.codec};
    x.vocab_size = static_cast<uint32_t>(model.config().vocab_size);
    Validation v = ValidateForward(f, in.payload.size(), x, options.server.limits);
    if (!v.ok()) return Reply(in.peer, Error{v.code, v.reason, f.session_id, f.seq});
    Pending p{&s, f, std::vector<float>(static_cast<size_t>(f.count) * hello.hidden_size), Now()};
    try {
      Decode(f.tensor.codec, static_cast<const uint8_t*>(in.payload.data()), in.payload.size(),
             f.count, hello.hidden_size, p.hidden.data());
    } catch (const std::exception& e) {
      return Reply(in.peer, Error{ErrorCode::kBadTensor, e.what(), f.session_id, f.seq});
    }
    forward_metrics.bytes_received.Add(static_cast<double>(in.payload.size()));
    s.last_used = Now();
    batch.push_back(std::move(p));
  }

  // Speculative step: keeps the drafts the session's own choices agree with,
  // answers them and the next token, and forgets the rejected rows.
  void Verify(const Pending& p, const std::vector<float>& logits, transport::ForwardResult& r) {
    const transport::Forward& f = p.forward;
    const int vocab = model.config().vocab_size;
    const int drafts = static_cast<int>(f.draft_tokens.size());
    const int real_end =
        static_cast<int>(f.first_position + f.count) - drafts;  // positions before the drafts
    const float* window = logits.data() + static_cast<size_t>(f.count - drafts - 1) * vocab;
    partition::SamplingParams sp{f.sampling.temperature, static_cast<int>(f.sampling.top_k),
                                 f.sampling.top_p, f.sampling.seed};
    Verdict v = VerifyDrafts(window, vocab, f.draft_tokens, sp, real_end);
    p.session->stage->Truncate(real_end + static_cast<int>(v.accepted));
    r.accepted = v.accepted;
    r.tokens = std::move(v.tokens);
    if (f.top_logprobs > 0) {
      for (size_t j = 0; j < r.tokens.size(); ++j)
        TopLogprobs(window + j * vocab, vocab, f.top_logprobs, r.logprobs);
    }
    forward_metrics.tokens.Add(static_cast<double>(r.tokens.size()));
    forward_metrics.drafts.Add(drafts);
    forward_metrics.drafts_accepted.Add(v.accepted);
  }

  // Pipeline: opens the session on the next hop too, at cut layer_end (its
  // answer, like the device's, is not waited for).
  void OpenNext(const transport::OpenSession& request) {
    if (!next_greeted) {
      next->Send(hello_for_next());
      next_greeted = true;
    }
    next->Send(transport::OpenSession{request.session_id, static_cast<uint32_t>(options.layer_end),
                                      transport::Codec::kF32, false});
  }
  transport::Hello hello_for_next() const {
    transport::Hello h = hello;
    h.reply = false;
    h.layer_begin = 0;
    h.layer_end = static_cast<uint32_t>(options.layer_end);
    h.layer_decode_us.clear();
    h.agent = "splitlm-cloud 0.1 (pipeline stage)";
    return h;
  }

  // Pipeline: sends the group's hidden states at layer_end on to the next
  // hop and relays its answers (tokens, accepted drafts, its errors) to the
  // devices, with this worker's compute time added. A step the next hop
  // does not answer in time is answered with an internal error and its
  // session dropped here (the device rebuilds or fails over).
  void Relay(const std::vector<Pending*>& group, std::vector<std::vector<float>>& hidden,
             Clock::TimePoint start, Clock::TimePoint end) {
    std::map<uint64_t, Pending*> out = SendToNext(group, hidden);  // next-hop seq -> step
    const auto deadline = Now() + options.next_step_deadline;
    while (!out.empty()) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Now());
      auto in = left.count() > 0 ? next->Receive(left) : std::nullopt;
      if (!in) break;
      if (auto* r = std::get_if<transport::ForwardResult>(&in->message)) {
        auto it = out.find(r->seq);
        if (it == out.end()) continue;
        RelayResult(*it->second, *r, start, end);
        out.erase(it);
      } else if (auto* e = std::get_if<transport::Error>(&in->message)) {
        auto it = std::find_if(out.begin(), out.end(), [&](const auto& kv) {
          return kv.second->forward.session_id == e->session_id;
        });
        if (it == out.end()) continue;
        RelayError(*it->second, *e);
        out.erase(it);
      } else if (std::holds_alternative<transport::Heartbeat>(in->message)) {
        next_greeted = false;  // the next hop restarted: its sessions are gone (errors follow)
      }
    }
    DropUnanswered(out);
  }

  // Pipeline: the group's hidden states at layer_end, sent on to the next
  // hop as f32; the steps sent, by their next-hop seq.
  std::map<uint64_t, Pending*> SendToNext(const std::vector<Pending*>& group,
                                          std::vector<std::vector<float>>& hidden) {
    std::map<uint64_t, Pending*> out;
    const uint32_t h = hello.hidden_size;
    for (size_t i = 0; i < group.size(); ++i) {
      const transport::Forward& f = group[i]->forward;
      transport::Forward onward = f;
      onward.seq = ++next_seq;
      onward.tensor = {transport::Codec::kF32, f.count, h,
                       transport::EncodedSize(transport::Codec::kF32, f.count, h)};
      zmq::message_t payload(onward.tensor.bytes);
      transport::Encode(transport::Codec::kF32, hidden[i].data(), f.count, h,
                        static_cast<uint8_t*>(payload.data()));
      if (next->Send(onward, std::move(payload))) out[onward.seq] = group[i];
    }
    return out;
  }

  // Pipeline: the next hop's answer `r` to `p`, passed to the device with
  // this worker's compute and queue times added.
  void RelayResult(Pending& p, const transport::ForwardResult& r, Clock::TimePoint start,
                   Clock::TimePoint end) {
    transport::ForwardResult back = r;
    back.session_id = p.forward.session_id;
    back.seq = p.forward.seq;
    back.compute_us += Micros(end - start);
    back.queue_us += Micros(start - p.received);
    if (!p.forward.draft_tokens.empty()) {  // forget the rejected drafts' rows, as the next hop did
      const int real_end = static_cast<int>(p.forward.first_position + p.forward.count -
                                            p.forward.draft_tokens.size());
      p.session->stage->Truncate(
          real_end + static_cast<int>(std::min<size_t>(r.accepted, p.forward.draft_tokens.size())));
    }
    forward_metrics.positions.Add(p.forward.count);
    server.Send(p.session->owner.routing_id, back);
  }

  // Pipeline: the next hop refused `p` with `e`; the device hears it (a lost
  // session there is an evicted one here) and the session is dropped.
  void RelayError(Pending& p, const transport::Error& e) {
    const bool lost = e.code == ErrorCode::kSessionEvicted || e.code == ErrorCode::kUnknownSession;
    Reply(p.session->owner.routing_id,
          transport::Error{lost ? ErrorCode::kSessionEvicted : e.code, "next hop: " + e.message,
                           p.forward.session_id, p.forward.seq});
    sessions.Evict(p.forward.session_id);
  }

  // Pipeline: the steps the next hop did not answer in time fail with an
  // internal error, their sessions dropped; the next hop gets a new socket.
  void DropUnanswered(const std::map<uint64_t, Pending*>& out) {
    for (auto& [seq, p] : out) {
      Reply(p->session->owner.routing_id,
            transport::Error{ErrorCode::kInternal,
                             "next hop " + next->endpoint() + " did not answer the step",
                             p->forward.session_id, p->forward.seq});
      sessions.Evict(p->forward.session_id);
      options.log->warn("next hop {} did not answer session {}: dropped", next->endpoint(),
                        p->forward.session_id);
    }
    if (!out.empty()) {
      next->Reconnect();
      next_greeted = false;
    }
  }

  // Draining (see Worker::Run): true when Run should return.
  bool Drained(const std::atomic<bool>* drain, Clock::TimePoint& until);

  // Runs a batch of steps, one batch through the layers per cut, and
  // answers each; then the KV budget is enforced (the batch's sessions kept).
  void RunBatch(std::vector<Pending>& batch) {
    if (batch.empty()) return;
    if (options.hook) options.hook->BeforeBatch(forwards, batch.size());
    // Sessions of one cut share weights and run as one batch.
    std::map<int, std::vector<Pending*>> groups;
    for (Pending& p : batch) groups[p.session->cut].push_back(&p);
    std::set<uint64_t> busy;
    for (const Pending& p : batch) busy.insert(p.session->id);
    for (auto& [cut, group] : groups) RunGroup(group);
    forwards += batch.size();
    forward_metrics.forwards.Add(static_cast<double>(batch.size()));
    batch.clear();
    EnforceBudget(busy);
    forward_metrics.kv_bytes.Set(static_cast<double>(KvBytes()));
    forward_metrics.active_sessions.Set(static_cast<double>(sessions.size()));
  }

  // The steps of one cut through the layers as one batch; each answered (or
  // relayed to the next hop, pipelined).
  void RunGroup(const std::vector<Pending*>& group) {
    const int vocab = model.config().vocab_size;
    const auto start = Now();
    std::vector<partition::Stage*> stages;
    std::vector<partition::StageInput> inputs;
    std::vector<std::vector<float>> logits(group.size());
    std::vector<float*> outs;
    for (size_t i = 0; i < group.size(); ++i) {
      const auto& f = group[i]->forward;
      const bool verify = !f.draft_tokens.empty();  // speculative: the logits of every row
      logits[i].resize(Pipelined() ? group[i]->session->stage->OutputSize(static_cast<int>(f.count))
                                   : static_cast<size_t>(verify ? f.count : 1) * vocab);
      stages.push_back(group[i]->session->stage.get());
      inputs.push_back(
          {nullptr, group[i]->hidden.data(), static_cast<int>(f.count), verify && !Pipelined()});
      outs.push_back(logits[i].data());
    }
    try {
      partition::Stage::ForwardBatch(stages, inputs, outs);
    } catch (const std::exception& e) {
      for (Pending* p : group)
        Reply(p->session->owner.routing_id,
              transport::Error{ErrorCode::kInternal, e.what(), p->session->id, p->forward.seq});
      return;
    }
    const auto end = Now();
    forward_metrics.batches.Add(1);
    forward_metrics.compute_s.Add(std::chrono::duration<double>(end - start).count());
    if (Pipelined()) {
      Relay(group, logits, start, end);
      return;
    }
    for (size_t i = 0; i < group.size(); ++i) Answer(*group[i], logits[i], start, end);
  }

  // Sends `p` its result from its rows' `logits` (the batch ran from `start`
  // to `end`): the verified drafts and the token, or the sampled token, and
  // the times; updates the queue delay reported in Hello.
  void Answer(const Pending& p, const std::vector<float>& logits, Clock::TimePoint start,
              Clock::TimePoint end) {
    const int vocab = model.config().vocab_size;
    const transport::Forward& f = p.forward;
    transport::ForwardResult r;
    r.session_id = f.session_id;
    r.seq = f.seq;
    if (!f.draft_tokens.empty()) {
      Verify(p, logits, r);
    } else if (f.want_token) {
      partition::SamplingParams sp{f.sampling.temperature, static_cast<int>(f.sampling.top_k),
                                   f.sampling.top_p, f.sampling.seed};
      r.tokens.push_back(partition::SampleToken(logits.data(), vocab, sp,
                                                static_cast<int>(f.first_position + f.count)));
      forward_metrics.tokens.Add(1);
    }
    if (f.top_logprobs > 0 && f.draft_tokens.empty())
      TopLogprobs(logits.data(), vocab, f.top_logprobs, r.logprobs);
    r.compute_us = Micros(end - start);
    r.queue_us = Micros(start - p.received);
    forward_metrics.queue_s.Add(std::chrono::duration<double>(start - p.received).count());
    // The queue delay reported in Hello: an exponentially weighted mean.
    hello.queue_us = static_cast<uint32_t>(0.8 * hello.queue_us + 0.2 * Micros(start - p.received));
    forward_metrics.queue_delay_s.Set(hello.queue_us / 1e6);
    forward_metrics.positions.Add(f.count);
    server.Send(p.session->owner.routing_id, r);
  }
};

Worker::Worker(const partition::Model& model, WorkerOptions options, zmq::context_t& context,
               transport::Metrics& metrics, const transport::Clock& clock) {
  if (options.layer_end != 0 &&
      (options.layer_end <= options.min_cut || options.layer_end >= model.config().num_layers)) {
    throw Exception(Exception::kInvalidArgument,
                    "pipeline layer range [min_cut, layer_end) = [" +
                        std::to_string(options.min_cut) + ", " + std::to_string(options.layer_end) +
                        ")" + ": the end must be above the start and below the model's " +
                        std::to_string(model.config().num_layers) +
                        " layers (the next hop holds the rest and the head)");
  }
  if (options.min_cut < 0 || options.min_cut > model.config().num_layers) {
    throw Exception(Exception::kInvalidArgument, "min_cut " + std::to_string(options.min_cut) +
                                                     " is outside 0.." +
                                                     std::to_string(model.config().num_layers));
  }
  impl_ = std::make_unique<Impl>(model, std::move(options), context, metrics, clock);
}

Worker::~Worker() = default;

std::string Worker::endpoint() const { return impl_->server.endpoint(); }

bool Worker::Impl::Drained(const std::atomic<bool>* drain, Clock::TimePoint& until) {
  if (!drain || !*drain) return false;
  const auto now = Now();
  if (!hello.draining) {
    hello.draining = true;
    until = now + options.drain_timeout;
    forward_metrics.draining.Set(1);
    options.log->info("draining: refusing new sessions, {} open get up to {} ms to finish",
                      sessions.size(), options.drain_timeout.count());
  }
  if (sessions.size() == 0) {
    options.log->info("drained: no session open");
    return true;
  }
  if (now >= until) {
    options.log->warn("drain timeout: stopping with {} sessions open (their devices fail over)",
                      sessions.size());
    return true;
  }
  return false;
}

void Worker::Run(const std::atomic<bool>& stop, const std::atomic<bool>* drain) {
  std::vector<Pending> batch;
  size_t expected = 1;  // size of the previous batch
  Clock::TimePoint drain_until{};
  while (!stop && !impl_->Drained(drain, drain_until)) {
    auto in = impl_->server.Receive(impl_->options.poll);
    if (!in) {
      impl_->Sweep();  // nothing waiting: every heartbeat has been read
      continue;
    }
    impl_->Handle(*in, batch);  // sweeps first (the batch is empty here)
    // Take whatever else is waiting, and give the sessions of the previous
    // batch a moment to arrive, so concurrent decode steps share one pass
    // over the weights.
    const auto window_end = impl_->Now() + impl_->options.batch_window;
    while (static_cast<int>(batch.size()) < impl_->options.max_batch) {
      const bool wait = !batch.empty() && batch.size() < expected && impl_->Now() < window_end;
      auto more = impl_->server.Receive(std::chrono::milliseconds(wait ? 1 : 0));
      if (!more) {
        if (wait) continue;
        break;
      }
      impl_->Handle(*more, batch);
    }
    if (!batch.empty()) expected = batch.size();
    impl_->RunBatch(batch);
    impl_->Sweep();
  }
}

}  // namespace splitlm::cloud
