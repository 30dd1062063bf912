// The ZeroMQ link between a device agent (DEALER) and a cloud worker
// (ROUTER): multipart messages of a Cap'n Proto header frame and an optional
// payload frame sent and received without copies, CURVE security, and
// Paranoid-Pirate heartbeats so that a silent peer is noticed in bounded time.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <zmq.hpp>

#include <spdlog/logger.h>

#include "transport/null_logger.h"
#include "transport/peer_log.h"
#include "transport/protocol.h"
#include "transport/security.h"

namespace splitlm::transport {

using Millis = std::chrono::milliseconds;

struct Incoming {
  std::string peer;  // ROUTER identity (server side only)
  // Server side with CURVE: the client's Z85 public key (the ZAP user id the
  // message carries as "User-Id"); empty without CURVE.
  std::string user_id;
  Message message;
  zmq::message_t payload;  // empty when the message has none
};

struct ServerOptions {
  std::string bind = "tcp://127.0.0.1:5555";  // "tcp://127.0.0.1:*" picks a free port
  // CURVE: the server's key pair; empty secret_key means no encryption.
  KeyPair keys;
  std::set<std::string> allowed_clients;  // Z85 public keys admitted under CURVE
  // Binding a non-loopback address without CURVE is refused unless set.
  bool allow_insecure = false;
  // This server's instance, answered to every heartbeat (and put in the
  // worker's Hello): 0 draws a random non-zero one, different at every start.
  uint64_t instance_id = 0;
  // What peers may send. The largest frame accepted (ZMQ_MAXMSGSIZE) is the
  // largest of the header, payload and probe limits plus kFrameSlack: a
  // longer frame makes libzmq drop the connection before buffering it.
  Limits limits;
  // Messages libzmq queues per connection before it stops reading from it
  // (ZMQ_RCVHWM): bounds a connection's inbound memory to about this many
  // largest frames.
  int max_queued_messages = 16;
  // Receive() also returns heartbeats (already answered), so that the
  // caller can tell which peers are alive.
  bool deliver_heartbeats = false;
  PeerLogOptions peer_log;  // rate limit of log lines about peers
  std::shared_ptr<spdlog::logger> log =
      NullLogger();  // never null (null: replaced by NullLogger())
};

// Added to the largest legal frame for ZMQ_MAXMSGSIZE.
inline constexpr size_t kFrameSlack = 4096;

// The cloud side. One thread owns it (ZeroMQ sockets are not thread-safe).
class ServerChannel {
 public:
  // Binds. Throws Exception: kInvalidArgument if the bind is refused (beyond
  // loopback without CURVE or allow_insecure), kUnavailable if it fails.
  ServerChannel(zmq::context_t& context, ServerOptions options);
  ~ServerChannel();
  ServerChannel(const ServerChannel&) = delete;
  ServerChannel& operator=(const ServerChannel&) = delete;

  // The bound endpoint with the port resolved.
  std::string endpoint() const;

  // The next valid message within `timeout`. A malformed one is answered
  // with an Error naming the problem (and logged, rate-limited per peer);
  // heartbeats are answered here. Failed handshakes (a device without CURVE
  // keys or with the wrong server key, a key not on the allow-list) are
  // logged while waiting. Returns nullopt on timeout.
  std::optional<Incoming> Receive(Millis timeout);

  // Sends `message` to `peer`, with `payload` as a second frame if non-empty.
  // Never blocks and never throws: a message to a vanished peer is dropped,
  // and a failed send is logged.
  void Send(const std::string& peer, const Message& message, zmq::message_t payload = {});

  uint64_t rejected() const { return rejected_; }
  uint64_t instance_id() const { return options_.instance_id; }
  uint64_t denied_keys() const { return zap_ ? zap_->denied() : 0; }
  uint64_t failed_handshakes() const { return failed_handshakes_; }

  // Log lines about peers go through this (rate-limited per peer); texts a
  // peer chose must be passed through EscapeForLog first.
  PeerLog& peer_log() { return peer_log_; }

 private:
  std::optional<Incoming> ReadMessage();
  void ReadMonitorEvents();
  ServerOptions options_;
  std::unique_ptr<ZapHandler> zap_;
  zmq::socket_t socket_;
  zmq::socket_t monitor_;  // PAIR receiving socket_'s handshake failures
  PeerLog peer_log_;
  uint64_t rejected_ = 0;
  uint64_t failed_handshakes_ = 0;
};

struct ClientOptions {
  std::string endpoint = "tcp://127.0.0.1:5555";
  // CURVE: our key pair and the server's public key; empty means plain TCP.
  KeyPair keys;
  std::string server_public_key;
  Limits limits;
  // Paranoid Pirate: a heartbeat after this much idle time; the peer is dead
  // after `liveness` intervals without hearing from it.
  Millis heartbeat_interval{500};
  int liveness = 3;
  // Reconnect back-off: starts here, doubles up to the cap.
  Millis reconnect_initial{100};
  Millis reconnect_max{5000};
  std::shared_ptr<spdlog::logger> log =
      NullLogger();  // never null (null: replaced by NullLogger())
};

// What the client's socket monitor has seen of its connection to the server
// since the last (re)connect: why a silent server is silent.
enum class LinkState {
  kConnecting,       // no connection attempt has finished yet
  kRefused,          // connection attempts fail: nothing accepts connections there
  kHandshaking,      // connected; the ZeroMQ (CURVE) handshake is not done yet
  kHandshakeFailed,  // the handshake failed: CURVE keys refused, or only one side uses CURVE
  kUp,               // handshake done
  kLost,             // was up, then disconnected; reconnecting
};
const char* LinkStateName(LinkState state);

// The device side. One thread owns it.
class ClientChannel {
 public:
  ClientChannel(zmq::context_t& context, ClientOptions options);
  ~ClientChannel();
  ClientChannel(const ClientChannel&) = delete;
  ClientChannel& operator=(const ClientChannel&) = delete;

  // Queues `message` (and payload) without blocking. Returns false if it
  // could not be queued (the queue to the server is full: libzmq's send
  // high-water mark, 1000 messages, while the server does not read or is
  // gone) or the socket failed; the caller treats that as a failed step.
  // Never throws except std::bad_alloc.
  bool Send(const Message& message, zmq::message_t payload = {});

  // The next valid message within `timeout` (0 = only what has arrived),
  // heartbeating while it waits. Returns nullopt on timeout or when the peer
  // is declared dead (see peer_alive()). Malformed messages from the server
  // are logged and dropped. Heartbeats are consumed, except one announcing
  // a server instance other than the last one heard (in a heartbeat or a
  // Hello): that server restarted, and the Heartbeat is returned so that the
  // caller rebuilds what the old instance held.
  std::optional<Incoming> Receive(Millis timeout);

  // False once `liveness` heartbeat intervals passed without a word from the
  // server; true again when anything arrives or after Reconnect().
  bool peer_alive() const { return liveness_ > 0; }

  // Closes the socket (dropping anything queued) and connects a new one, so
  // a restarted server sees a fresh peer. Returns the back-off the caller
  // should wait before relying on the link; it doubles on each call up to the
  // cap and resets when a message arrives.
  Millis Reconnect();

  const std::string& endpoint() const { return options_.endpoint; }
  // The server instance last heard of (0: none yet, or an older server).
  uint64_t server_instance() const { return server_instance_; }

  // The connection's state as the socket monitor reports it now. A
  // handshake failure is kept until a handshake succeeds (ZeroMQ retries it).
  LinkState link_state();
  // Liveness x heartbeat interval: the silence after which the server is dead.
  Millis dead_after() const { return options_.heartbeat_interval * options_.liveness; }

 private:
  // Reads the monitor's pending events into link_state_.
  void ReadMonitor();
  // Ends the monitoring of socket_ and closes its receiving end.
  void StopMonitor();
  // Notes the instance a message carries; true if it replaces a known one.
  bool ServerRestarted(const Message& message);
  void Connect();
  zmq::context_t& context_;
  ClientOptions options_;
  std::unique_ptr<zmq::socket_t> socket_;
  std::unique_ptr<zmq::socket_t> monitor_;  // PAIR receiving socket_'s events
  int connects_ = 0;                        // names each monitor's inproc endpoint
  LinkState link_state_ = LinkState::kConnecting;
  bool handshake_failed_ = false;
  int retries_ = 0;  // connect retries since the last connection
  int liveness_;
  Millis backoff_;
  std::chrono::steady_clock::time_point last_heard_, last_sent_;
  uint64_t server_instance_ = 0;
};

}  // namespace splitlm::transport
