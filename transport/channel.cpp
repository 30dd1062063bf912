#include "transport/channel.h"

#include <atomic>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

#include "transport/error.h"
#include "transport/log_escape.h"

namespace splitlm::transport {
namespace {

using Clock = std::chrono::steady_clock;

// Receives the rest of a multipart message after `first`; at most `max`
// frames in all, the rest drained. Returns false if there were too many.
bool RecvRest(zmq::socket_t& s, std::vector<zmq::message_t>& frames, size_t max) {
  bool ok = true;
  while (frames.back().more()) {
    zmq::message_t f;
    (void)s.recv(f, zmq::recv_flags::none);
    if (frames.size() < max) {
      frames.push_back(std::move(f));
    } else {
      ok = false;
      if (!f.more()) break;
    }
  }
  return ok;
}

// Sends the frames without blocking. False when the socket would block (its
// queue to the peer is full, or there is no peer to queue for): cppzmq
// returns an empty send_result_t then instead of throwing. libzmq queues a
// multipart message whole or not at all, and only its first frame can be
// refused, so nothing partial is left behind. Throws zmq::error_t for other
// failures.
bool SendFrames(zmq::socket_t& s, const std::string* peer, const Message& m,
                zmq::message_t payload) {
  const std::string header = EncodeMessage(m);
  const bool has_payload = payload.size() > 0;
  if (peer && !s.send(zmq::buffer(*peer), zmq::send_flags::sndmore | zmq::send_flags::dontwait))
    return false;
  if (!s.send(zmq::buffer(header),
              (has_payload ? zmq::send_flags::sndmore : zmq::send_flags::none) |
                  zmq::send_flags::dontwait)) {
    return false;
  }
  return !has_payload || s.send(payload, zmq::send_flags::dontwait).has_value();
}

// `options` with a logger: NullLogger() for a null one.
template <typename Options>
Options WithLogger(Options options) {
  options.log = OrNullLogger(std::move(options.log));
  return options;
}

// zmq::poll, with a signal (EINTR) read as "nothing yet": the loop owner
// checks its stop flag and calls again.
int PollOnce(zmq::pollitem_t* items, size_t count, Millis timeout) {
  try {
    return zmq::poll(items, count, timeout);
  } catch (const zmq::error_t& e) {
    if (e.num() == EINTR) return 0;
    throw;
  }
}

// The largest frame a peer may send under `limits`.
int64_t MaxFrameBytes(const Limits& limits, bool server) {
  size_t largest = std::max(limits.max_header_bytes, limits.max_probe_bytes);
  if (server) largest = std::max(largest, limits.max_payload_bytes);
  return static_cast<int64_t>(largest + kFrameSlack);
}

// What a failed handshake most likely means, for the log line.
std::string HandshakeFailure(uint16_t event, uint32_t value) {
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH) {
    return "refused by the allow-list (ZAP status " + std::to_string(value) + ")";
  }
  if (event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) {
    return std::string("handshake failed: ") + zmq_strerror(static_cast<int>(value));
  }
  switch (value) {
    case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
      return "security mechanism mismatch: a device without CURVE keys, or with keys against a "
             "worker without them";
    case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
      return "CURVE handshake could not be decrypted: the device has the wrong server public key";
    default: {
      char hex[16];
      std::snprintf(hex, sizeof hex, "0x%08x", value);
      return std::string("handshake protocol error ") + hex;
    }
  }
}

// "tcp://1.2.3.4:5678" -> "tcp://1.2.3.4": a reconnecting device keeps its
// address but not its port, and log limits apply per address.
std::string HostOf(const std::string& endpoint) {
  const auto colon = endpoint.rfind(':');
  return colon == std::string::npos || colon < 6 ? endpoint : endpoint.substr(0, colon);
}

}  // namespace

ServerChannel::ServerChannel(zmq::context_t& context, ServerOptions options)
    : options_(WithLogger(std::move(options))),
      socket_(context, zmq::socket_type::router),
      monitor_(context, zmq::socket_type::pair),
      peer_log_(options_.log, options_.peer_log) {
  std::random_device seed;
  std::mt19937_64 draw((uint64_t{seed()} << 32) ^ seed());
  while (options_.instance_id == 0) options_.instance_id = draw();
  const bool curve = !options_.keys.secret_key.empty();
  if (!IsLoopbackEndpoint(options_.bind)) {
    if (!curve && !options_.allow_insecure) {
      throw Exception(Exception::kInvalidArgument,
                      "refusing to bind " + options_.bind +
                          " without CURVE: give the server a key pair and an allow-list, "
                          "or pass the explicit insecure flag");
    }
    if (!curve) {
      options_.log->warn(
          "*** INSECURE: {} is reachable from other machines and traffic is NOT "
          "encrypted or authenticated ***",
          options_.bind);
    } else {
      options_.log->info("binding {} beyond loopback, CURVE on ({} allowed keys)", options_.bind,
                         options_.allowed_clients.size());
    }
  }
  if (curve && options_.allowed_clients.empty()) {
    options_.log->warn("the CURVE allow-list is empty: every device will be refused");
  }
  if (curve) {
    zap_ = std::make_unique<ZapHandler>(context, options_.allowed_clients, options_.log,
                                        options_.peer_log);
    socket_.set(zmq::sockopt::curve_server, 1);
    socket_.set(zmq::sockopt::curve_secretkey, options_.keys.secret_key);
    socket_.set(zmq::sockopt::zap_domain, "splitlm");
  }
  socket_.set(zmq::sockopt::router_mandatory, 0);  // drop messages to vanished peers
  socket_.set(zmq::sockopt::linger, 0);
  socket_.set(zmq::sockopt::maxmsgsize, MaxFrameBytes(options_.limits, true));
  socket_.set(zmq::sockopt::rcvhwm, std::max(1, options_.max_queued_messages));
  // A name no other socket of the context uses (a closed monitor's name may
  // stay bound for a moment after its channel is gone): 64 random bits.
  std::random_device random;
  const std::string monitor =
      "inproc://splitlm-monitor-" + std::to_string(random()) + "-" + std::to_string(random());
  if (zmq_socket_monitor(
          socket_.handle(), monitor.c_str(),
          ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL) != 0) {
    throw Exception(Exception::kUnavailable,
                    std::string("cannot monitor the server socket: ") + zmq_strerror(zmq_errno()));
  }
  monitor_.set(zmq::sockopt::linger, 0);
  monitor_.connect(monitor);
  try {
    socket_.bind(options_.bind);
  } catch (const zmq::error_t& e) {
    throw Exception(Exception::kUnavailable, "cannot bind " + options_.bind + ": " + e.what());
  }
}

ServerChannel::~ServerChannel() { zmq_socket_monitor(socket_.handle(), nullptr, 0); }

std::string ServerChannel::endpoint() const { return socket_.get(zmq::sockopt::last_endpoint); }

std::optional<Incoming> ServerChannel::Receive(Millis timeout) {
  const auto deadline = Clock::now() + timeout;
  while (true) {
    peer_log_.Flush(Clock::now());
    const auto left = std::chrono::duration_cast<Millis>(deadline - Clock::now());
    zmq::pollitem_t items[2] = {{static_cast<void*>(socket_), 0, ZMQ_POLLIN, 0},
                                {static_cast<void*>(monitor_), 0, ZMQ_POLLIN, 0}};
    if (PollOnce(items, 2, std::max(left, Millis(0))) == 0) return std::nullopt;
    if (items[1].revents & ZMQ_POLLIN) ReadMonitorEvents();
    if (items[0].revents & ZMQ_POLLIN) {
      if (auto in = ReadMessage()) return in;
    }
    if (Clock::now() >= deadline) return std::nullopt;
  }
}

// One message from the socket: nullopt if there was none, or it was
// malformed (answered with an Error) or a heartbeat not to be delivered.
std::optional<Incoming> ServerChannel::ReadMessage() {
  std::vector<zmq::message_t> frames(1);
  if (!socket_.recv(frames[0], zmq::recv_flags::dontwait)) return std::nullopt;
  const bool fits = RecvRest(socket_, frames, 3);
  std::string peer = frames[0].to_string();
  auto reject = [&](ErrorCode code, const std::string& reason) {
    ++rejected_;
    peer_log_.Log(PeerName(peer), spdlog::level::warn,
                  "rejected message from peer=" + PeerName(peer) + " code=" + ErrorCodeName(code) +
                      " reason=" + EscapeForLog(reason),
                  Clock::now());
    Send(peer, Error{code, reason, 0, 0});
  };
  if (frames.size() < 2 || !fits) {
    reject(ErrorCode::kBadMessage, "expected a header frame and at most one payload frame");
    return std::nullopt;
  }
  Decoded d = DecodeMessage(frames[1].data(), frames[1].size(), options_.limits);
  if (!d.message) {
    reject(d.error, d.reason);
    return std::nullopt;
  }
  const bool heartbeat = std::holds_alternative<Heartbeat>(*d.message);
  if (heartbeat) Send(peer, Heartbeat{options_.instance_id});
  if (heartbeat && !options_.deliver_heartbeats) return std::nullopt;
  Incoming in{std::move(peer), "", std::move(*d.message), {}};
  if (const char* user = zmq_msg_gets(frames[1].handle(), "User-Id")) in.user_id = user;
  if (frames.size() == 3) in.payload = std::move(frames[2]);
  return in;
}

// Logs the handshake failures socket_'s monitor reported (rate-limited per
// address: a refused device reconnects every 100 ms). Keys refused by the
// allow-list are logged by the ZAP handler, which knows the key.
void ServerChannel::ReadMonitorEvents() {
  while (true) {
    zmq::message_t event, address;
    if (!monitor_.recv(event, zmq::recv_flags::dontwait)) return;
    if (!event.more() || !monitor_.recv(address, zmq::recv_flags::none)) continue;
    if (event.size() < 6) continue;
    uint16_t id;
    uint32_t value;
    std::memcpy(&id, event.data(), sizeof id);
    std::memcpy(&value, static_cast<const char*>(event.data()) + 2, sizeof value);
    ++failed_handshakes_;
    const std::string from = EscapeForLog(address.to_string());
    peer_log_.Log(HostOf(from), spdlog::level::warn,
                  "refused connection from " + from + ": " + HandshakeFailure(id, value),
                  Clock::now());
  }
}

void ServerChannel::Send(const std::string& peer, const Message& message, zmq::message_t payload) {
  try {
    // A ROUTER without router_mandatory drops what it cannot route and
    // never blocks: nothing to report for a vanished peer.
    (void)SendFrames(socket_, &peer, message, std::move(payload));
  } catch (const zmq::error_t& e) {
    options_.log->warn("send {} failed: {}", MessageName(message), e.what());
  }
}

ClientChannel::ClientChannel(zmq::context_t& context, ClientOptions options)
    : context_(context),
      options_(WithLogger(std::move(options))),
      liveness_(options_.liveness),
      backoff_(options_.reconnect_initial) {
  if (options_.keys.secret_key.empty() != options_.server_public_key.empty()) {
    throw Exception(Exception::kInvalidArgument,
                    "CURVE needs both the client's key pair and the server's public key");
  }
  Connect();
}

ClientChannel::~ClientChannel() { StopMonitor(); }

void ClientChannel::StopMonitor() {
  // libzmq's I/O thread sends monitor events blocking: stop them before the
  // receiving end closes, or the thread (and every socket of the context)
  // would wait forever for a reader.
  if (socket_) zmq_socket_monitor(socket_->handle(), nullptr, 0);
  monitor_.reset();
}

void ClientChannel::Connect() {
  StopMonitor();
  socket_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::dealer);
  // Unique in the process: a channel created where a closed one was (same
  // address) must not reuse a name whose unbinding may still be under way.
  static std::atomic<uint64_t> monitors{0};
  const std::string monitor_endpoint =
      "inproc://splitlm-link-" + std::to_string(reinterpret_cast<uintptr_t>(this)) + "-" +
      std::to_string(++connects_) + "-" + std::to_string(++monitors);
  constexpr int kEvents = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_CONNECT_RETRIED | ZMQ_EVENT_DISCONNECTED |
                          ZMQ_EVENT_HANDSHAKE_SUCCEEDED | ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL |
                          ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL | ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
  if (zmq_socket_monitor(socket_->handle(), monitor_endpoint.c_str(), kEvents) != 0) {
    throw Exception(
        Exception::kUnavailable,
        "cannot monitor the connection to " + options_.endpoint + ": " + zmq_strerror(zmq_errno()));
  }
  monitor_ = std::make_unique<zmq::socket_t>(context_, zmq::socket_type::pair);
  monitor_->set(zmq::sockopt::linger, 0);
  // No high-water mark: a full queue would block libzmq's I/O thread. Events
  // come at most every reconnect interval (100 ms doubling to 2 s, below)
  // and are read at every Send and Receive.
  monitor_->set(zmq::sockopt::rcvhwm, 0);
  monitor_->connect(monitor_endpoint);
  link_state_ = LinkState::kConnecting;
  handshake_failed_ = false;
  retries_ = 0;
  socket_->set(zmq::sockopt::linger, 0);
  // libzmq retries a lost connection every 100 ms, and each retry is a
  // monitor event queued until the next Send or Receive: an idle agent
  // whose worker is down would queue ten a second for as long as it idles.
  // Doubling the interval up to 2 s keeps that to one event per 2 s.
  socket_->set(zmq::sockopt::reconnect_ivl_max, 2000);
  // The worker sends header frames and Pong payloads: nothing larger.
  socket_->set(zmq::sockopt::maxmsgsize, MaxFrameBytes(options_.limits, false));
  // A worker's address may be IPv6 (a DNS name resolved to "tcp://[::1]:5555").
  socket_->set(zmq::sockopt::ipv6, 1);
  if (!options_.keys.secret_key.empty()) {
    socket_->set(zmq::sockopt::curve_serverkey, options_.server_public_key);
    socket_->set(zmq::sockopt::curve_publickey, options_.keys.public_key);
    socket_->set(zmq::sockopt::curve_secretkey, options_.keys.secret_key);
  }
  try {
    socket_->connect(options_.endpoint);
  } catch (const zmq::error_t& e) {
    throw Exception(Exception::kInvalidArgument,
                    "cannot connect to " + options_.endpoint + ": " + e.what());
  }
  last_heard_ = last_sent_ = Clock::now();
}

Millis ClientChannel::Reconnect() {
  Connect();
  liveness_ = options_.liveness;
  const Millis wait = backoff_;
  backoff_ = std::min(backoff_ * 2, options_.reconnect_max);
  options_.log->info("reconnecting to {} (back-off {} ms)", options_.endpoint, wait.count());
  return wait;
}

bool ClientChannel::Send(const Message& message, zmq::message_t payload) {
  ReadMonitor();
  try {
    if (!SendFrames(*socket_, nullptr, message, std::move(payload))) {
      options_.log->debug("send {} to {}: the queue is full", MessageName(message),
                          options_.endpoint);
      return false;
    }
  } catch (const zmq::error_t& e) {
    options_.log->warn("send {} to {} failed: {}", MessageName(message), options_.endpoint,
                       e.what());
    return false;
  }
  last_sent_ = Clock::now();
  return true;
}

std::optional<Incoming> ClientChannel::Receive(Millis timeout) {
  ReadMonitor();  // keeps the monitor's queue short during long waits
  const auto deadline = Clock::now() + timeout;
  bool first = true;  // a zero timeout still looks once
  while (true) {
    const auto now = Clock::now();
    if (now >= deadline && !first) return std::nullopt;
    first = false;
    // Wake at the deadline or the next heartbeat, whichever is first.
    const auto next_beat = std::max(last_sent_, last_heard_) + options_.heartbeat_interval;
    const auto wake = std::min(deadline, next_beat);
    zmq::pollitem_t item{static_cast<void*>(*socket_), 0, ZMQ_POLLIN, 0};
    const auto wait =
        wake > now ? std::chrono::duration_cast<Millis>(wake - now) + Millis(1) : Millis(0);
    if (PollOnce(&item, 1, wait) == 0) {
      if (Clock::now() >= deadline) return std::nullopt;
      if (Clock::now() >= next_beat) {
        // A whole interval of silence from the server costs one liveness.
        if (Clock::now() - last_heard_ >= options_.heartbeat_interval) {
          if (liveness_ > 0 && --liveness_ == 0) {
            // Said once per death; Reconnect() or a message revives it.
            options_.log->warn("server {} silent for {} heartbeats: declared dead",
                               options_.endpoint, options_.liveness);
          }
          if (liveness_ <= 0) return std::nullopt;
        }
        Send(Heartbeat{});
      }
      continue;
    }
    std::vector<zmq::message_t> frames(1);
    if (!socket_->recv(frames[0], zmq::recv_flags::dontwait)) continue;
    const bool fits = RecvRest(*socket_, frames, 2);
    last_heard_ = Clock::now();
    liveness_ = options_.liveness;
    backoff_ = options_.reconnect_initial;
    if (!fits) {
      options_.log->warn("dropped a message of too many frames from {}", options_.endpoint);
      continue;
    }
    Decoded d = DecodeMessage(frames[0].data(), frames[0].size(), options_.limits);
    if (!d.message) {
      options_.log->warn("dropped a bad message from {}: {} ({})", options_.endpoint,
                         EscapeForLog(d.reason), ErrorCodeName(d.error));
      continue;
    }
    const bool restarted = ServerRestarted(*d.message);
    if (std::holds_alternative<Heartbeat>(*d.message) && !restarted) continue;
    Incoming in{"", "", std::move(*d.message), {}};
    if (frames.size() == 2) in.payload = std::move(frames[1]);
    return in;
  }
}

LinkState ClientChannel::link_state() {
  ReadMonitor();
  return handshake_failed_ ? LinkState::kHandshakeFailed : link_state_;
}

void ClientChannel::ReadMonitor() {
  zmq::message_t event, address;
  while (monitor_->recv(event, zmq::recv_flags::dontwait)) {
    if (event.more()) (void)monitor_->recv(address, zmq::recv_flags::none);
    if (event.size() < sizeof(uint16_t)) continue;
    uint16_t id = 0;
    std::memcpy(&id, event.data(), sizeof id);
    switch (id) {
      case ZMQ_EVENT_CONNECTED:
        link_state_ = LinkState::kHandshaking;
        retries_ = 0;
        break;
      case ZMQ_EVENT_CONNECT_RETRIED:
        // The first retry after a disconnect is only scheduled; one more
        // means an attempt failed.
        if (++retries_ >= (link_state_ == LinkState::kLost ? 2 : 1))
          link_state_ = LinkState::kRefused;
        break;
      case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
        link_state_ = LinkState::kUp;
        handshake_failed_ = false;
        break;
      case ZMQ_EVENT_DISCONNECTED:
        // Dropped mid-handshake: a CURVE server drops a client whose key
        // for it is wrong without a word.
        if (link_state_ == LinkState::kHandshaking) handshake_failed_ = true;
        link_state_ = LinkState::kLost;
        retries_ = 0;
        break;
      default:  // the three HANDSHAKE_FAILED events
        handshake_failed_ = true;
        break;
    }
  }
}

const char* LinkStateName(LinkState state) {
  switch (state) {
    case LinkState::kConnecting: return "connecting";
    case LinkState::kRefused: return "refused";
    case LinkState::kHandshaking: return "handshaking";
    case LinkState::kHandshakeFailed: return "handshake failed";
    case LinkState::kUp: return "up";
    case LinkState::kLost: return "lost";
  }
  return "?";
}

bool ClientChannel::ServerRestarted(const Message& message) {
  uint64_t id = 0;
  if (auto* h = std::get_if<Hello>(&message)) id = h->instance_id;
  if (auto* b = std::get_if<Heartbeat>(&message)) id = b->instance_id;
  if (id == 0 || id == server_instance_) return false;
  const bool replaced = server_instance_ != 0;
  if (replaced) {
    options_.log->warn("server {} restarted: instance {:016x} is now {:016x}", options_.endpoint,
                       server_instance_, id);
  }
  server_instance_ = id;
  return replaced;
}

}  // namespace splitlm::transport
