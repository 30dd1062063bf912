// The worker's sessions: each bound to the connection that opened it, capped
// per connection and in all, closed when idle too long or when its
// connection falls silent, and remembered for a while after it is gone so
// that its owner learns why on its next step.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "transport/codec.h"
#include "transport/protocol.h"

namespace splitlm::partition {
class Stage;
}

namespace splitlm::cloud {

struct SessionLimits {
  size_t max_sessions = 4096;         // open sessions, all connections together
  size_t max_sessions_per_peer = 64;  // open sessions of one connection
  // A session without a step for this long is closed (its KV freed).
  std::chrono::seconds idle_timeout{300};
  // A connection that sent nothing (not even a heartbeat) for this long is
  // taken as gone and its sessions are closed. Devices heartbeat every
  // 500 ms while they wait (device.heartbeat_ms): keep this well above it.
  std::chrono::seconds peer_timeout{60};
};

// Who opened a session: the ROUTER routing id of its connection and, under
// CURVE, the client's Z85 public key. Only the same owner may use it.
// OwnerRef borrows the two strings from a received message, so that the
// per-step lookup copies nothing.
struct OwnerRef {
  std::string_view routing_id;
  std::string_view user_id;
};
struct Owner {
  std::string routing_id;
  std::string user_id;
  bool Is(OwnerRef o) const { return routing_id == o.routing_id && user_id == o.user_id; }
};

struct Session {
  using TimePoint = std::chrono::steady_clock::time_point;
  Session();
  Session(Session&&) noexcept;
  Session& operator=(Session&&) noexcept;
  ~Session();

  uint64_t id = 0;
  Owner owner;
  int cut = 0;
  transport::Codec codec = transport::Codec::kF32;
  std::unique_ptr<partition::Stage> stage;
  TimePoint last_used;
};

// Not thread-safe: the worker's loop owns it. Times are the worker's clock.
class SessionTable {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;
  using Map = std::map<uint64_t, Session>;

  explicit SessionTable(SessionLimits limits);

  // Why `owner` may not open session `id`: kUnauthorized if another
  // connection holds that id, kBusy past a cap (re-opening one's own
  // session replaces it and is always allowed). nullopt if it may.
  std::optional<transport::Error> CheckOpen(uint64_t id, OwnerRef owner) const;
  // Adds `session` (replacing its owner's session of the same id). Call only
  // after CheckOpen allowed it.
  Session& Insert(Session session, TimePoint now);

  // `owner`'s session `id` for a step, or the Error to answer (session id
  // and seq filled in): kUnauthorized (another connection's),
  // kSessionEvicted (evicted, expired or dropped, saying which; only to its
  // owner), kUnknownSession. A session idle past the timeout expires here.
  struct Found {
    Session* session = nullptr;
    std::optional<transport::Error> error;
  };
  Found Find(uint64_t id, OwnerRef owner, uint64_t seq, TimePoint now);

  // Closes `owner`'s session `id`: kUnauthorized if it is another's;
  // nothing (nullopt) if it is unknown.
  std::optional<transport::Error> Close(uint64_t id, OwnerRef owner);

  // `routing_id` was heard from (any message, heartbeats too).
  void Heard(const std::string& routing_id, TimePoint now);

  // Closes the sessions idle past idle_timeout and those of connections
  // silent past peer_timeout. Call only when no step of any session is
  // queued and nothing is waiting on the socket (heartbeats read first).
  struct Swept {
    size_t expired = 0;  // idle
    size_t dropped = 0;  // connection silent
  };
  Swept Sweep(TimePoint now);

  // Closes session `id` for the KV budget; its owner is told on its next step.
  void Evict(uint64_t id);

  // Sessions closed so far after the idle timeout, and for silent connections.
  uint64_t expired_total() const { return expired_total_; }
  uint64_t dropped_total() const { return dropped_total_; }

  const Map& sessions() const { return sessions_; }
  Map& sessions() { return sessions_; }
  size_t size() const { return sessions_.size(); }
  const SessionLimits& limits() const { return limits_; }

 private:
  struct Peer {
    TimePoint last_heard;
    size_t sessions = 0;
  };
  struct Gone {
    Owner owner;
    std::string why;
    uint64_t serial = 0;  // which entry of gone_order_ is this one's
  };
  void Forget(Map::iterator it, std::string why);
  void Remember(uint64_t id, Gone gone);

  SessionLimits limits_;
  Map sessions_;
  std::map<std::string, Peer> peers_;                     // routing ids holding sessions
  std::map<uint64_t, Gone> gone_;                         // recently closed by the worker; bounded
  std::deque<std::pair<uint64_t, uint64_t>> gone_order_;  // (id, serial), oldest first
  uint64_t gone_serial_ = 0;
  uint64_t expired_total_ = 0;
  uint64_t dropped_total_ = 0;
};

}  // namespace splitlm::cloud
