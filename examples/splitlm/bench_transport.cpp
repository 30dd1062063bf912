// splitlm bench-transport: the cost of the splitlm link on loopback next to
// bare ZeroMQ in the same run, and codec throughput next to memcpy.
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <future>
#include <iostream>
#include <thread>
#include <vector>

#include "examples/splitlm/cli.h"
#include "transport/channel.h"
#include "transport/codec.h"

namespace splitlm::cli {
namespace {

using Clock = std::chrono::steady_clock;

double Median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// Round trips of a `bytes`-byte request and a small reply through REQ/REP.
std::vector<double> BareReqRep(zmq::context_t& ctx, size_t bytes, int n) {
  std::promise<std::string> bound;
  std::thread server([&] {
    zmq::socket_t rep(ctx, zmq::socket_type::rep);
    rep.set(zmq::sockopt::linger, 0);
    rep.bind("tcp://127.0.0.1:*");
    bound.set_value(rep.get(zmq::sockopt::last_endpoint));
    for (int i = 0; i < n; ++i) {
      zmq::message_t m;
      (void)rep.recv(m);
      rep.send(zmq::str_buffer("tokn"), zmq::send_flags::none);
    }
  });
  zmq::socket_t req(ctx, zmq::socket_type::req);
  req.set(zmq::sockopt::linger, 0);
  req.connect(bound.get_future().get());
  std::vector<char> payload(bytes, 1);
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    req.send(zmq::buffer(payload), zmq::send_flags::none);
    zmq::message_t reply;
    (void)req.recv(reply);
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  server.join();
  return us;
}

// Round trips of a Forward carrying `cols` f32 values through the splitlm
// channel: encode, send, receive, validate, decode on the server, reply with
// a ForwardResult, decode it on the device.
std::vector<double> SplitlmForward(zmq::context_t& ctx, uint32_t cols, int n,
                                   size_t* header_bytes) {
  std::promise<std::string> bound;
  std::thread server([&] {
    transport::ServerOptions so;
    so.bind = "tcp://127.0.0.1:*";
    transport::ServerChannel ch(ctx, so);
    bound.set_value(ch.endpoint());
    transport::ForwardExpectations x{cols, 0, 1u << 30, {transport::Codec::kF32}};
    std::vector<float> hidden(cols);
    for (int i = 0; i < n;) {
      auto in = ch.Receive(std::chrono::milliseconds(10000));
      if (!in) break;
      const auto& f = std::get<transport::Forward>(in->message);
      x.next_position = f.first_position;
      if (!transport::ValidateForward(f, in->payload.size(), x).ok()) break;
      transport::Decode(f.tensor.codec, static_cast<const uint8_t*>(in->payload.data()),
                        in->payload.size(), 1, cols, hidden.data());
      transport::ForwardResult r;
      r.session_id = f.session_id;
      r.seq = f.seq;
      r.tokens = {static_cast<int32_t>(hidden[0])};
      ch.Send(in->peer, r);
      ++i;
    }
  });
  transport::ClientOptions co;
  co.endpoint = bound.get_future().get();
  transport::ClientChannel ch(ctx, co);
  std::vector<float> hidden(cols, 1.0f);
  std::vector<double> us;
  for (int i = 0; i < n; ++i) {
    const auto t0 = Clock::now();
    transport::Forward f;
    f.session_id = 1;
    f.seq = i;
    f.first_position = i;
    f.count = 1;
    f.tensor = {transport::Codec::kF32, 1, cols,
                transport::EncodedSize(transport::Codec::kF32, 1, cols)};
    zmq::message_t payload(f.tensor.bytes);
    transport::Encode(f.tensor.codec, hidden.data(), 1, cols,
                      static_cast<uint8_t*>(payload.data()));
    if (i == 0) *header_bytes = transport::EncodeMessage(f).size();
    ch.Send(f, std::move(payload));
    auto in = ch.Receive(std::chrono::milliseconds(10000));
    if (!in || !std::holds_alternative<transport::ForwardResult>(in->message)) break;
    us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
  }
  server.join();
  return us;
}

struct BenchTransportArgs {
  uint32_t hidden = 768;
  int iterations = 3000;
  bool json = false;
};

void AddBenchTransportFlags(CLI::App* cmd, BenchTransportArgs* args) {
  cmd->add_option("--hidden", args->hidden, "values per hidden vector")
      ->check(CLI::Range(1, 1 << 20))
      ->capture_default_str();
  cmd->add_option("--iterations", args->iterations, "round trips per measurement")
      ->check(CLI::Range(10, 1000000))
      ->capture_default_str();
  cmd->add_flag("--json", args->json, "one JSON line");
}

// Round trips (us, the first of each round dropped) of bare REQ/REP and of
// the splitlm Forward, interleaved in rounds so drift hits both alike.
struct LinkTimes {
  std::vector<double> bare, ours;
  size_t header = 0;  // bytes of the Forward's header frame
};

LinkTimes MeasureLink(zmq::context_t& zctx, uint32_t hidden, int iterations) {
  LinkTimes times;
  const size_t bytes = hidden * sizeof(float);
  for (int round = 0; round < 5; ++round) {
    auto b = BareReqRep(zctx, bytes, iterations / 5);
    auto o = SplitlmForward(zctx, hidden, iterations / 5, &times.header);
    times.bare.insert(times.bare.end(), b.begin() + 1, b.end());
    times.ours.insert(times.ours.end(), o.begin() + 1, o.end());
  }
  return times;
}

// The best of three runs of fn, in seconds.
template <typename Fn>
double BestOfThree(Fn&& fn) {
  double b = 1e30;
  for (int r = 0; r < 3; ++r) {
    const auto t0 = Clock::now();
    fn();
    b = std::min(b, std::chrono::duration<double>(Clock::now() - t0).count());
  }
  return b;
}

// Codec encode + decode throughput over a buffer larger than the caches,
// GB/s of fp32 through both, and memcpy there and back.
struct CodecThroughput {
  double memcpy_gbs = 0;
  nlohmann::json codecs = nlohmann::json::object();  // codec name: GB/s
};

CodecThroughput MeasureCodecs() {
  const size_t rows = 4096, cols = 4096;
  std::vector<float> src(rows * cols), dst(rows * cols);
  for (size_t i = 0; i < src.size(); ++i)
    src[i] = static_cast<float>((i * 2654435761u) % 1000) / 997.0f - 0.5f;
  std::vector<uint8_t> wire(rows * cols * 4 + rows * 4);
  const double gb = rows * cols * 4 / 1e9;
  CodecThroughput result;
  result.memcpy_gbs = 2 * gb / BestOfThree([&] {
                        std::memcpy(wire.data(), src.data(), rows * cols * 4);
                        std::memcpy(dst.data(), wire.data(), rows * cols * 4);
                      });
  for (transport::Codec c : transport::kAllCodecs) {
    const size_t n = transport::EncodedSize(c, rows, cols);
    result.codecs[transport::CodecName(c)] =
        2 * gb / BestOfThree([&] {
          transport::Encode(c, src.data(), rows, cols, wire.data());
          transport::Decode(c, wire.data(), n, rows, cols, dst.data());
        });
  }
  return result;
}

int RunBenchTransport(const BenchTransportArgs& args, const Context& ctx) {
  zmq::context_t zctx;
  const size_t bytes = args.hidden * sizeof(float);
  ctx.log->info("bench-transport: {} round trips of {} bytes each way, interleaved",
                args.iterations, bytes);
  const LinkTimes link = MeasureLink(zctx, args.hidden, args.iterations);
  const double bare_us = Median(link.bare), ours_us = Median(link.ours);
  const CodecThroughput codec = MeasureCodecs();
  if (args.json) {
    nlohmann::json j = {{"bare_reqrep_us", bare_us},
                        {"forward_us", ours_us},
                        {"forward_ratio", ours_us / bare_us},
                        {"header_bytes", link.header},
                        {"payload_bytes", bytes},
                        {"memcpy_gb_s", codec.memcpy_gbs},
                        {"codec_gb_s", codec.codecs}};
    std::cout << j.dump() << std::endl;
    return 0;
  }
  std::printf("round trip, %zu-byte hidden vector, median of %zu:\n", bytes, link.ours.size());
  std::printf("  bare ZeroMQ REQ/REP   %8.1f us\n", bare_us);
  std::printf(
      "  splitlm Forward       %8.1f us   ratio %.2f (limit 1.20)   header frame %zu bytes\n",
      ours_us, ours_us / bare_us, link.header);
  std::printf("codec encode+decode (GB/s of fp32 through both), memcpy there and back %.1f GB/s:\n",
              codec.memcpy_gbs);
  for (auto& [name, v] : codec.codecs.items()) {
    std::printf("  %-5s %6.2f GB/s   %.2f of memcpy\n", name.c_str(), v.get<double>(),
                v.get<double>() / codec.memcpy_gbs);
  }
  return 0;
}

}  // namespace

Runner AddBenchTransport(CLI::App& app) {
  auto* cmd = app.add_subcommand("bench-transport",
                                 "link round trip vs bare ZeroMQ, codec throughput vs memcpy");
  auto args = std::make_shared<BenchTransportArgs>();
  AddBenchTransportFlags(cmd, args.get());
  return [args](const Context& ctx) { return RunBenchTransport(*args, ctx); };
}

}  // namespace splitlm::cli
