#include "transport/peer_log.h"

#include <algorithm>

#include "transport/null_logger.h"

namespace splitlm::transport {

PeerLog::PeerLog(std::shared_ptr<spdlog::logger> log, PeerLogOptions options)
    : log_(OrNullLogger(std::move(log))), options_(options) {}

void PeerLog::Log(const std::string& peer, spdlog::level::level_enum level, const std::string& text,
                  TimePoint now) {
  if (!log_->should_log(level)) return;
  Flush(now);
  // Counts of at most a few times the total lines' worth of peers are kept;
  // a flood from more connections than that is counted as one.
  const size_t max_peers = static_cast<size_t>(std::max(options_.lines_total, 1)) * 4;
  auto it = peers_.find(peer);
  if (it == peers_.end() && peers_.size() < max_peers) it = peers_.emplace(peer, Counts{}).first;
  if (it != peers_.end() && it->second.logged < options_.lines_per_peer &&
      logged_ < options_.lines_total) {
    ++it->second.logged;
    ++logged_;
    log_->log(level, "{}", text);
    return;
  }
  ++suppressed_total_;
  if (it != peers_.end()) {
    ++it->second.suppressed;
  } else {
    ++other_suppressed_;
  }
}

void PeerLog::Flush(TimePoint now) {
  if (!started_) {
    started_ = true;
    window_start_ = now;
    return;
  }
  if (now - window_start_ < options_.interval) return;
  const auto seconds = std::chrono::duration_cast<std::chrono::seconds>(options_.interval).count();
  int lines = 0;
  uint64_t rest = other_suppressed_;
  for (const auto& [peer, counts] : peers_) {
    if (counts.suppressed == 0) continue;
    if (lines < options_.lines_total) {
      log_->warn("suppressed {} messages from peer {} in {} s", counts.suppressed, peer, seconds);
      ++lines;
    } else {
      rest += counts.suppressed;
    }
  }
  if (rest > 0) log_->warn("suppressed {} messages from other peers in {} s", rest, seconds);
  peers_.clear();
  logged_ = 0;
  other_suppressed_ = 0;
  window_start_ = now;
}

}  // namespace splitlm::transport
