#include "sim/shaper.h"

#include <boost/asio.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <fstream>
#include <list>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "transport/error.h"
#include "transport/text_file.h"

namespace splitlm::sim {
namespace net = boost::asio;
using tcp = net::ip::tcp;
using Clock = transport::Clock;

std::vector<TracePoint> ReadTrace(const std::string& path) {
  std::istringstream in(transport::ReadTextFileOrThrow(path, transport::kMaxListBytes));
  std::vector<TracePoint> out;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    const auto b = line.find_first_not_of(" \t\r");
    if (b == std::string::npos || line[b] == '#') continue;
    if (line.find_first_of("0123456789") != b && out.empty()) continue;  // a header row
    std::replace(line.begin(), line.end(), ',', ' ');
    std::istringstream ss(line);
    TracePoint p;
    if (!(ss >> p.time_s >> p.up_mbit_s >> p.down_mbit_s >> p.rtt_ms) || p.time_s < 0 ||
        p.up_mbit_s < 0 || p.down_mbit_s < 0 || p.rtt_ms < 0) {
      throw Exception(Exception::kInvalidArgument,
                      path + ":" + std::to_string(n) +
                          ": expected time_s,up_mbit_s,down_mbit_s,rtt_ms[,state] (non-negative)");
    }
    std::string state, extra;
    if (ss >> state) {
      if (state == "stall") {
        p.state = TracePoint::State::kStall;
      } else if (state == "cut") {
        p.state = TracePoint::State::kCut;
      } else if (state != "up") {
        throw Exception(Exception::kInvalidArgument, path + ":" + std::to_string(n) + ": state \"" +
                                                         state + "\" is not one of up, stall, cut");
      }
      if (ss >> extra)
        throw Exception(Exception::kInvalidArgument,
                        path + ":" + std::to_string(n) + ": more than five columns");
    }
    if (!out.empty() && p.time_s < out.back().time_s) {
      throw Exception(Exception::kInvalidArgument,
                      path + ":" + std::to_string(n) + ": times must not decrease");
    }
    out.push_back(p);
  }
  if (out.empty()) throw Exception(Exception::kInvalidArgument, path + ": no rows");
  if (out.back().state != TracePoint::State::kUp) {
    throw Exception(Exception::kInvalidArgument,
                    path + ": the last row is an outage; add a later row where the link is up");
  }
  return out;
}

namespace {

// One direction of one connection: a reader stamps each chunk with the time
// it may arrive, a writer delivers it then.
struct Pipe {
  tcp::socket* from;
  tcp::socket* to;
  bool up;  // device -> cloud
  std::mutex mu;
  std::condition_variable cv;
  struct Chunk {
    std::vector<char> data;
    Clock::TimePoint arrive;
  };
  std::deque<Chunk> queue;
  bool closed = false;
  Clock::TimePoint free_at{};  // when the serialiser finishes the last chunk
  Clock::TimePoint last_arrival{};
};

// The port of `upstream` ("HOST:PORT"): 1 to 5 digits, at most 65535.
unsigned short UpstreamPort(const std::string& upstream, const std::string& port) {
  const bool digits =
      !port.empty() && port.size() <= 5 &&
      std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!digits || std::stoul(port) > 65535)
    throw Exception(Exception::kInvalidArgument, "shaper upstream \"" + upstream + "\": port \"" +
                                                     port + "\" is not a number 0..65535");
  return static_cast<unsigned short>(std::stoul(port));
}

}  // namespace

struct ShapingRelay::Impl {
  Impl(ShaperOptions options, const transport::Clock& schedule)
      : o(std::move(options)), clock(schedule) {}
  ShaperOptions o;
  // Trace and outage times (the simulation's virtual clock, or a test's).
  const transport::Clock& clock;
  // Bandwidth, delay and jitter: network time is never rescaled, so packets
  // are timed on the steady clock whatever `clock` is.
  const transport::Clock& wire = transport::SteadyClock();
  net::io_context io;
  tcp::acceptor acceptor{io};
  tcp::endpoint upstream;
  std::atomic<int64_t> start_ns{0};  // on `clock`; Restart() moves it
  std::atomic<bool> stop{false};
  mutable std::mutex mu;
  LinkConditions fixed;
  std::mt19937_64 rng;
  std::atomic<uint64_t> up_bytes{0}, down_bytes{0};
  std::thread accept_thread;
  struct Conn {
    tcp::socket device, cloud;
    Pipe up, down;
    std::vector<std::thread> threads;
    explicit Conn(net::io_context& io)
        : device(io), cloud(io), up{&device, &cloud, true}, down{&cloud, &device, false} {}
  };
  std::list<std::unique_ptr<Conn>> conns;

  // Trace and outage time, seconds since the start (or Restart).
  double Elapsed() const {
    const auto now =
        std::chrono::duration_cast<std::chrono::nanoseconds>(clock.Now().time_since_epoch())
            .count();
    return static_cast<double>(now - start_ns.load()) * 1e-9;
  }

  LinkConditions Now() const {
    std::lock_guard<std::mutex> lock(mu);
    if (o.trace.empty()) return fixed;
    const double t = Elapsed();
    const TracePoint* p = &o.trace.front();
    for (const auto& q : o.trace) {
      if (q.time_s <= t) p = &q;
    }
    return {p->up_mbit_s, p->down_mbit_s, p->rtt_ms / 2, fixed.jitter_ms};
  }

  // The outage in force at `t`, if any.
  const Outage* OutageAt(double t) const {
    for (const auto& w : o.outages) {
      if (t >= w.start_s && t < w.end_s) return &w;
    }
    return nullptr;
  }

  void Reader(Conn& c, Pipe& p) {
    std::vector<char> buf(64 << 10);
    boost::system::error_code ec;
    while (!stop) {
      const size_t n = p.from->read_some(net::buffer(buf), ec);
      if (ec || n == 0) break;
      const LinkConditions link = Now();
      const double mbit = p.up ? link.up_mbit_s : link.down_mbit_s;
      const auto now = wire.Now();
      std::lock_guard<std::mutex> lock(p.mu);
      // Serialisation at the link rate, then propagation delay and jitter;
      // arrivals never reorder.
      const auto begin = std::max(now, p.free_at);
      const auto tx = mbit > 0 ? std::chrono::duration_cast<Clock::Duration>(
                                     std::chrono::duration<double>(n * 8.0 / (mbit * 1e6)))
                               : Clock::Duration::zero();
      p.free_at = begin + tx;
      double extra_ms = link.delay_ms;
      if (link.jitter_ms > 0) {
        std::lock_guard<std::mutex> g(mu);
        extra_ms += std::uniform_real_distribution<double>(0, link.jitter_ms)(rng);
      }
      auto arrive = p.free_at + std::chrono::duration_cast<Clock::Duration>(
                                    std::chrono::duration<double, std::milli>(extra_ms));
      arrive = std::max(arrive, p.last_arrival);
      p.last_arrival = arrive;
      p.queue.push_back(
          {std::vector<char>(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(n)), arrive});
      p.cv.notify_one();
    }
    std::lock_guard<std::mutex> lock(p.mu);
    p.closed = true;
    p.cv.notify_one();
  }

  void Writer(Conn& c, Pipe& p) {
    boost::system::error_code ec;
    while (true) {
      Pipe::Chunk chunk;
      {
        std::unique_lock<std::mutex> lock(p.mu);
        p.cv.wait(lock, [&] { return !p.queue.empty() || p.closed || stop; });
        if (p.queue.empty()) break;
        chunk = std::move(p.queue.front());
        p.queue.pop_front();
      }
      wire.SleepUntil(chunk.arrive);
      // A stall holds delivery until the outage ends; a cut drops the link.
      while (!stop) {
        const Outage* w = OutageAt(Elapsed());
        if (!w) break;
        if (w->cut) {
          Close(c);
          return;
        }
        clock.SleepFor(std::chrono::milliseconds(1));
      }
      if (stop) break;
      net::write(*p.to, net::buffer(chunk.data), ec);
      if (ec) break;
      (p.up ? up_bytes : down_bytes) += chunk.data.size();
    }
    Close(c);
  }

  void Close(Conn& c) {
    boost::system::error_code ec;
    c.device.shutdown(tcp::socket::shutdown_both, ec);
    c.cloud.shutdown(tcp::socket::shutdown_both, ec);
    for (Pipe* p : {&c.up, &c.down}) {
      std::lock_guard<std::mutex> lock(p->mu);
      p->closed = true;
      p->cv.notify_all();
    }
  }

  void AcceptLoop() {
    while (!stop) {
      auto c = std::make_unique<Conn>(io);
      boost::system::error_code ec;
      acceptor.accept(c->device, ec);
      if (ec || stop) continue;
      // A cut link refuses new connections until it is back.
      if (const Outage* w = OutageAt(Elapsed()); w && w->cut) {
        c->device.close(ec);
        continue;
      }
      c->cloud.connect(upstream, ec);
      if (ec) {
        o.log->warn("shaper: cannot reach {}: {}", o.upstream, ec.message());
        c->device.close(ec);
        continue;
      }
      c->device.set_option(tcp::no_delay(true), ec);
      c->cloud.set_option(tcp::no_delay(true), ec);
      Conn& r = *c;
      r.threads.emplace_back([this, &r] { Reader(r, r.up); });
      r.threads.emplace_back([this, &r] { Reader(r, r.down); });
      r.threads.emplace_back([this, &r] { Writer(r, r.up); });
      r.threads.emplace_back([this, &r] { Writer(r, r.down); });
      std::lock_guard<std::mutex> lock(mu);
      conns.push_back(std::move(c));
    }
  }
};

ShapingRelay::ShapingRelay(ShaperOptions options, const transport::Clock& clock)
    : impl_(std::make_unique<Impl>(std::move(options), clock)) {
  impl_->o.log = transport::OrNullLogger(std::move(impl_->o.log));
  impl_->fixed = impl_->o.link;
  Restart();
  // Outage rows of the trace become outage windows.
  const auto& trace = impl_->o.trace;
  for (size_t i = 0; i + 1 < trace.size(); ++i) {
    if (trace[i].state == TracePoint::State::kUp) continue;
    impl_->o.outages.push_back(
        {trace[i].time_s, trace[i + 1].time_s, trace[i].state == TracePoint::State::kCut});
  }
  impl_->rng.seed(impl_->o.seed);
  const auto colon = impl_->o.upstream.rfind(':');
  boost::system::error_code ec;
  if (colon == std::string::npos)
    throw Exception(Exception::kInvalidArgument,
                    "shaper upstream \"" + impl_->o.upstream + "\" must be HOST:PORT");
  const auto ip = net::ip::make_address(impl_->o.upstream.substr(0, colon), ec);
  if (ec)
    throw Exception(Exception::kInvalidArgument,
                    "shaper upstream \"" + impl_->o.upstream + "\": bad host");
  impl_->upstream =
      tcp::endpoint(ip, UpstreamPort(impl_->o.upstream, impl_->o.upstream.substr(colon + 1)));
  tcp::endpoint ep(net::ip::make_address("127.0.0.1"), 0);
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec) throw Exception(Exception::kUnavailable, "shaper: cannot listen: " + ec.message());
  impl_->accept_thread = std::thread([this] { impl_->AcceptLoop(); });
}

// See the declaration: std::terminate if the threads cannot be stopped.
// NOLINTNEXTLINE(bugprone-exception-escape)
ShapingRelay::~ShapingRelay() {
  impl_->stop = true;
  boost::system::error_code ec;
  {
    net::io_context io;
    tcp::socket s(io);
    s.connect(impl_->acceptor.local_endpoint(ec), ec);
  }
  impl_->accept_thread.join();
  impl_->acceptor.close(ec);
  std::list<std::unique_ptr<Impl::Conn>> conns;
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    conns.swap(impl_->conns);
  }
  for (auto& c : conns) impl_->Close(*c);
  for (auto& c : conns) {
    for (auto& t : c->threads) t.join();
  }
}

std::string ShapingRelay::endpoint() const {
  boost::system::error_code ec;
  return "tcp://127.0.0.1:" + std::to_string(impl_->acceptor.local_endpoint(ec).port());
}

void ShapingRelay::SetConditions(const LinkConditions& link) {
  std::lock_guard<std::mutex> lock(impl_->mu);
  impl_->fixed = link;
}

LinkConditions ShapingRelay::Current() const { return impl_->Now(); }
void ShapingRelay::Restart() {
  impl_->start_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(impl_->clock.Now().time_since_epoch())
          .count();
}

double ShapingRelay::elapsed_s() const { return impl_->Elapsed(); }
uint64_t ShapingRelay::bytes_up() const { return impl_->up_bytes; }
uint64_t ShapingRelay::bytes_down() const { return impl_->down_bytes; }

}  // namespace splitlm::sim
