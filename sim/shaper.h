// A shaping TCP relay for simulation mode: the real ZeroMQ traffic between a
// device and a cloud passes through it, and it imposes per-direction
// bandwidth, one-way delay, jitter and scheduled outages — in user space, as
// kernel network emulation (tc netem) is not available everywhere.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <spdlog/logger.h>

#include "transport/clock.h"
#include "transport/null_logger.h"

namespace splitlm::sim {

struct LinkConditions {
  double up_mbit_s = 0;    // device -> cloud; 0 = unlimited
  double down_mbit_s = 0;  // cloud -> device; 0 = unlimited
  double delay_ms = 0;     // one-way, each direction
  double jitter_ms = 0;    // uniform extra delay in [0, jitter], order kept
};

// A window of time (seconds since the relay started) when the link fails:
// `cut` closes every connection; otherwise traffic stalls and resumes.
struct Outage {
  double start_s = 0;
  double end_s = 0;
  bool cut = false;
};

// One row of a trace: conditions from `time_s` until the next row.
struct TracePoint {
  double time_s = 0;
  double up_mbit_s = 0;
  double down_mbit_s = 0;
  double rtt_ms = 0;  // delay each way = rtt / 2
  // The link is down from this row to the next: traffic stalls, or every
  // connection is cut (an optional fifth column: up, stall or cut).
  enum class State { kUp, kStall, kCut } state = State::kUp;
};

// Reads a trace CSV: "time_s,up_mbit_s,down_mbit_s,rtt_ms[,state]" rows
// (state: up, stall or cut; an outage row needs a later row to end it);
// '#' lines are comments (sources go there). Throws Exception(kInvalidArgument)
// naming the line.
std::vector<TracePoint> ReadTrace(const std::string& path);

struct ShaperOptions {
  std::string upstream = "127.0.0.1:5555";  // the cloud's TCP address (HOST:PORT)
  LinkConditions link;                      // used when `trace` is empty
  std::vector<TracePoint> trace;
  std::vector<Outage> outages;
  uint64_t seed = 1;  // jitter
  std::shared_ptr<spdlog::logger> log =
      transport::NullLogger();  // never null (null: replaced by NullLogger())
};

class ShapingRelay {
 public:
  // Listens on 127.0.0.1 (a free port). Throws Exception(kUnavailable).
  // The trace and the outages run on `clock` (the simulation's virtual
  // clock); bandwidth and delay on the steady clock, as network time is
  // never rescaled. `clock` must outlive the relay.
  explicit ShapingRelay(ShaperOptions options,
                        const transport::Clock& clock = transport::SteadyClock());
  // Only std::thread::join or asio running out of resources can throw here, and then the
  // threads cannot be stopped: std::terminate is the right end.
  // NOLINTNEXTLINE(bugprone-exception-escape): see above
  ~ShapingRelay();  // closes everything and joins its threads
  ShapingRelay(const ShapingRelay&) = delete;
  ShapingRelay& operator=(const ShapingRelay&) = delete;

  // "tcp://127.0.0.1:PORT": give this to the device instead of the cloud's.
  std::string endpoint() const;
  // Replaces the fixed conditions (ignored while a trace drives them).
  void SetConditions(const LinkConditions& link);
  // Conditions in force now.
  LinkConditions Current() const;
  double elapsed_s() const;
  // Starts the trace and the outage schedule again from time 0.
  void Restart();
  uint64_t bytes_up() const;
  uint64_t bytes_down() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace splitlm::sim
