#include "cloud/sessions.h"

#include <algorithm>
#include <vector>

#include "partition/stage.h"

namespace splitlm::cloud {

using transport::Error;
using transport::ErrorCode;

Session::Session() = default;
Session::Session(Session&&) noexcept = default;
Session& Session::operator=(Session&&) noexcept = default;
Session::~Session() = default;

namespace {

long long Seconds(std::chrono::seconds s) { return static_cast<long long>(s.count()); }

}  // namespace

SessionTable::SessionTable(SessionLimits limits) : limits_(limits) {}

std::optional<Error> SessionTable::CheckOpen(uint64_t id, OwnerRef owner) const {
  auto it = sessions_.find(id);
  if (it != sessions_.end()) {
    if (it->second.owner.Is(owner)) return std::nullopt;  // re-open: replaced
    return Error{ErrorCode::kUnauthorized,
                 "session " + std::to_string(id) + " belongs to another connection", id, 0};
  }
  auto peer = peers_.find(std::string(owner.routing_id));
  if (peer != peers_.end() && peer->second.sessions >= limits_.max_sessions_per_peer) {
    return Error{ErrorCode::kBusy,
                 "this connection holds its maximum of " +
                     std::to_string(limits_.max_sessions_per_peer) +
                     " sessions: close one before opening another",
                 id, 0};
  }
  if (sessions_.size() >= limits_.max_sessions) {
    return Error{ErrorCode::kBusy,
                 "the worker holds its maximum of " + std::to_string(limits_.max_sessions) +
                     " sessions: try again later",
                 id, 0};
  }
  return std::nullopt;
}

Session& SessionTable::Insert(Session session, TimePoint now) {
  const uint64_t id = session.id;
  auto it = sessions_.find(id);
  if (it != sessions_.end()) Forget(it, "");
  Peer& peer = peers_[session.owner.routing_id];
  ++peer.sessions;
  peer.last_heard = now;
  session.last_used = now;
  gone_.erase(id);
  return sessions_.emplace(id, std::move(session)).first->second;
}

SessionTable::Found SessionTable::Find(uint64_t id, OwnerRef owner, uint64_t seq, TimePoint now) {
  auto it = sessions_.find(id);
  if (it != sessions_.end() && !it->second.owner.Is(owner)) {
    return {nullptr,
            Error{ErrorCode::kUnauthorized,
                  "session " + std::to_string(id) + " belongs to another connection", id, seq}};
  }
  if (it != sessions_.end() && now - it->second.last_used > limits_.idle_timeout) {
    Forget(it, "session closed after " + std::to_string(Seconds(limits_.idle_timeout)) + " s idle");
    ++expired_total_;
    it = sessions_.end();
  }
  if (it != sessions_.end()) return {&it->second, std::nullopt};
  auto gone = gone_.find(id);
  if (gone != gone_.end() && gone->second.owner.Is(owner)) {
    return {nullptr, Error{ErrorCode::kSessionEvicted,
                           gone->second.why + ": open it again and resend its history", id, seq}};
  }
  return {nullptr, Error{ErrorCode::kUnknownSession, "unknown session", id, seq}};
}

std::optional<Error> SessionTable::Close(uint64_t id, OwnerRef owner) {
  auto it = sessions_.find(id);
  if (it == sessions_.end()) return std::nullopt;
  if (!it->second.owner.Is(owner)) {
    return Error{ErrorCode::kUnauthorized,
                 "session " + std::to_string(id) + " belongs to another connection", id, 0};
  }
  Forget(it, "");
  return std::nullopt;
}

void SessionTable::Heard(const std::string& routing_id, TimePoint now) {
  auto it = peers_.find(routing_id);
  if (it != peers_.end()) it->second.last_heard = std::max(it->second.last_heard, now);
}

SessionTable::Swept SessionTable::Sweep(TimePoint now) {
  Swept swept;
  const std::string silent = "session closed: its connection was silent for over " +
                             std::to_string(Seconds(limits_.peer_timeout)) + " s";
  const std::string idle =
      "session closed after " + std::to_string(Seconds(limits_.idle_timeout)) + " s idle";
  for (auto it = sessions_.begin(); it != sessions_.end();) {
    auto next = std::next(it);
    const Peer& peer = peers_.at(it->second.owner.routing_id);
    if (now - peer.last_heard > limits_.peer_timeout) {
      Forget(it, silent);
      ++swept.dropped;
    } else if (now - it->second.last_used > limits_.idle_timeout) {
      Forget(it, idle);
      ++swept.expired;
    }
    it = next;
  }
  expired_total_ += swept.expired;
  dropped_total_ += swept.dropped;
  return swept;
}

void SessionTable::Evict(uint64_t id) {
  auto it = sessions_.find(id);
  if (it != sessions_.end()) Forget(it, "session evicted for the KV budget");
}

// Erases the session; a non-empty `why` is remembered for its owner.
void SessionTable::Forget(Map::iterator it, std::string why) {
  auto peer = peers_.find(it->second.owner.routing_id);
  if (peer != peers_.end() && --peer->second.sessions == 0) peers_.erase(peer);
  if (!why.empty()) Remember(it->first, Gone{it->second.owner, std::move(why)});
  sessions_.erase(it);
}

// Remembers at most four times the session cap (at least 1024) of closed
// sessions, oldest forgotten first.
void SessionTable::Remember(uint64_t id, Gone gone) {
  const size_t cap = std::max<size_t>(1024, limits_.max_sessions * 4);
  gone.serial = ++gone_serial_;
  gone_order_.emplace_back(id, gone.serial);
  gone_[id] = std::move(gone);
  while (gone_order_.size() > cap) {
    const auto [oldest, serial] = gone_order_.front();
    gone_order_.pop_front();
    // The id may have been remembered again since: only its last entry counts.
    auto it = gone_.find(oldest);
    if (it != gone_.end() && it->second.serial == serial) gone_.erase(it);
  }
}

}  // namespace splitlm::cloud
