// Rate-limited logging about peers: a hostile or broken peer cannot flood
// the log (10,000 malformed messages must not become 10,000 lines).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>

#include <spdlog/logger.h>

namespace splitlm::transport {

struct PeerLogOptions {
  int lines_per_peer = 10;            // per interval, for one peer
  int lines_total = 100;              // per interval, all peers together
  std::chrono::seconds interval{60};  // the window the counts apply to
};

// Within each interval, at most `lines_per_peer` lines about one peer and
// `lines_total` about all; the rest are counted, and when the interval ends
// one line per peer says "suppressed N messages from peer X" (beyond
// `lines_total` such lines, one more covers the rest). Lines below the
// logger's level are neither written nor counted. Peer names and texts must
// already be printable (EscapeForLog). Not thread-safe: one owner thread.
class PeerLog {
 public:
  using TimePoint = std::chrono::steady_clock::time_point;

  // `log` may be null (nothing is logged).
  PeerLog(std::shared_ptr<spdlog::logger> log, PeerLogOptions options);

  // Logs `text` at `level` about `peer` unless over a limit. Ends the
  // interval first if `now` is past it (see Flush).
  void Log(const std::string& peer, spdlog::level::level_enum level, const std::string& text,
           TimePoint now);

  // Ends the interval if `now` is past it: writes the suppressed counts and
  // starts a new one. Call it now and then so the counts of a flood that has
  // stopped are still reported.
  void Flush(TimePoint now);

  uint64_t suppressed_total() const { return suppressed_total_; }

 private:
  struct Counts {
    int logged = 0;
    uint64_t suppressed = 0;
  };
  std::shared_ptr<spdlog::logger> log_;
  PeerLogOptions options_;
  bool started_ = false;
  TimePoint window_start_{};
  int logged_ = 0;                       // this interval, all peers
  std::map<std::string, Counts> peers_;  // this interval; bounded
  uint64_t other_suppressed_ = 0;        // of peers beyond the map's bound
  uint64_t suppressed_total_ = 0;
};

}  // namespace splitlm::transport
