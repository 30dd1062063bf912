// The worker against hostile or careless peers: sessions belong to the
// connection that opened it, are capped, expire when idle or when their
// connection falls silent (on the worker's injected clock: no sleeping),
// oversized frames are dropped without being buffered, and peer text in
// the log is escaped and rate-limited.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <functional>
#include <thread>

#include "cloud/worker.h"
#include "device/agent.h"
#include "partition/model.h"
#include "tests/common/test_util.h"
#include "transport/clock.h"

namespace splitlm {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using transport::ErrorCode;

std::shared_ptr<spdlog::logger> NullLog() {
  return std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::null_sink_mt>());
}

// One raw connection to the worker, speaking the protocol message by message.
class Conn {
 public:
  // `heartbeat`: the channel's idle heartbeat interval (transport::ClientOptions).
  Conn(zmq::context_t& ctx, const std::string& endpoint, milliseconds heartbeat = milliseconds(500))
      : channel_(ctx, Options(endpoint, heartbeat)) {}
  void Send(const transport::Message& m, zmq::message_t payload = {}) {
    ASSERT_TRUE(channel_.Send(m, std::move(payload)));
  }
  // The next message (generous deadline; nullopt fails the test).
  transport::Message Next() {
    auto in = channel_.Receive(milliseconds(20000));
    EXPECT_TRUE(in.has_value()) << "no answer from the worker";
    return in ? std::move(in->message) : transport::Message{transport::Heartbeat{}};
  }
  transport::Error NextError() {
    auto m = Next();
    auto* e = std::get_if<transport::Error>(&m);
    EXPECT_NE(nullptr, e) << "expected an error, got " << transport::MessageName(m);
    return e ? *e : transport::Error{};
  }
  void Open(uint64_t id, uint32_t cut) {
    Send(transport::OpenSession{id, cut, transport::Codec::kF32, false});
    auto m = Next();
    auto* ack = std::get_if<transport::OpenSession>(&m);
    ASSERT_NE(nullptr, ack) << transport::MessageName(m);
    EXPECT_TRUE(ack->ack);
  }
  void Ping() {
    Send(transport::Ping{++seq_, 0});
    auto m = Next();
    ASSERT_TRUE(std::holds_alternative<transport::Pong>(m)) << transport::MessageName(m);
  }

 private:
  static transport::ClientOptions Options(const std::string& endpoint, milliseconds heartbeat) {
    transport::ClientOptions o;
    o.endpoint = endpoint;
    o.heartbeat_interval = heartbeat;
    o.log = NullLog();
    return o;
  }
  transport::ClientChannel channel_;
  uint64_t seq_ = 0;
};

class WorkerHardeningTest : public ::testing::Test {
 protected:
  void SetUp() override { model_ = partition::Model::Open(testing::MakeModel(dir_.Sub("tiny"))); }
  void Start(const std::function<void(cloud::WorkerOptions&)>& tweak = {}) {
    cloud::WorkerOptions o;
    o.server.bind = "tcp://127.0.0.1:*";
    o.server.log = log_;
    o.log = log_;
    if (tweak) tweak(o);
    worker_ = std::make_unique<cloud::Worker>(*model_, o, ctx_, metrics_, clock_);
    thread_ = std::thread([this] { worker_->Run(stop_); });
  }
  void TearDown() override {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  int hidden() const { return model_->config().hidden_size; }
  // A Forward of `rows` positions from `first`, f32, with its payload.
  std::pair<transport::Forward, zmq::message_t> Step(uint64_t session, uint32_t first,
                                                     uint32_t rows, float salt) {
    transport::Forward f;
    f.session_id = session;
    f.seq = ++seq_;
    f.first_position = first;
    f.count = rows;
    f.tensor = {transport::Codec::kF32, rows, static_cast<uint32_t>(hidden()),
                static_cast<uint64_t>(rows) * hidden() * 4};
    zmq::message_t payload(f.tensor.bytes);
    auto* v = static_cast<float*>(payload.data());
    for (size_t i = 0; i < static_cast<size_t>(rows) * hidden(); ++i)
      v[i] = std::sin(0.37f * (i + first * hidden()) + salt);
    return {f, std::move(payload)};
  }
  // Runs a step on `conn` and returns its token (-1 if it was refused).
  int32_t Token(Conn& conn, uint64_t session, uint32_t first, uint32_t rows) {
    auto [f, payload] = Step(session, first, rows, 1.0f);
    conn.Send(f, std::move(payload));
    auto m = conn.Next();
    auto* r = std::get_if<transport::ForwardResult>(&m);
    EXPECT_NE(nullptr, r) << transport::MessageName(m);
    return r && r->tokens.size() == 1 ? r->tokens[0] : -1;
  }
  double Metric(const std::string& name) const { return metrics_.Get(name); }

  std::shared_ptr<spdlog::logger> log_ = NullLog();
  testing::TempDir dir_;
  std::unique_ptr<partition::Model> model_;
  transport::VirtualClock clock_;
  zmq::context_t ctx_;
  transport::Metrics metrics_;
  std::unique_ptr<cloud::Worker> worker_;
  std::atomic<bool> stop_{false};
  std::thread thread_;
  uint64_t seq_ = 0;
};

TEST_F(WorkerHardeningTest, AnotherConnectionCannotUseOrCloseASession) {
  Start();
  Conn owner(ctx_, worker_->endpoint()), intruder(ctx_, worker_->endpoint());
  owner.Open(77, 2);
  owner.Open(78, 2);  // the same steps undisturbed, for reference
  std::vector<int32_t> got, want;
  uint32_t position = 0;
  for (uint32_t rows : {3u, 1u, 1u, 1u}) {
    got.push_back(Token(owner, 77, position, rows));
    want.push_back(Token(owner, 78, position, rows));
    position += rows;
    // The intruder knows the id and the next position.
    auto [f, payload] = Step(77, position, 1, 9.0f);
    intruder.Send(f, std::move(payload));
    auto e = intruder.NextError();
    EXPECT_EQ(ErrorCode::kUnauthorized, e.code) << e.message;
    EXPECT_EQ("session 77 belongs to another connection", e.message);
    intruder.Send(transport::CloseSession{77});
    EXPECT_EQ(ErrorCode::kUnauthorized, intruder.NextError().code);
    intruder.Send(transport::OpenSession{77, 3, transport::Codec::kF32, false});
    EXPECT_EQ(ErrorCode::kUnauthorized, intruder.NextError().code);
  }
  EXPECT_EQ(want, got);
  EXPECT_EQ(2, Metric("splitlm_cloud_active_sessions"));
  // The owner can still close its own session.
  owner.Send(transport::CloseSession{77});
  owner.Ping();
  EXPECT_EQ(1, Metric("splitlm_cloud_active_sessions"));
}

TEST_F(WorkerHardeningTest, SessionsAreCappedPerConnectionAndInTotal) {
  Start([](cloud::WorkerOptions& o) {
    o.sessions.max_sessions_per_peer = 4;
    o.sessions.max_sessions = 6;
  });
  Conn a(ctx_, worker_->endpoint()), b(ctx_, worker_->endpoint());
  for (uint64_t id = 1; id <= 4; ++id) a.Open(id, 0);
  a.Send(transport::OpenSession{5, 0, transport::Codec::kF32, false});
  auto e = a.NextError();
  EXPECT_EQ(ErrorCode::kBusy, e.code);
  EXPECT_EQ("this connection holds its maximum of 4 sessions: close one before opening another",
            e.message);
  EXPECT_EQ(5u, e.session_id);
  a.Open(4, 1);  // re-opening one's own session is no new session
  b.Open(11, 0);
  b.Open(12, 0);
  b.Send(transport::OpenSession{13, 0, transport::Codec::kF32, false});
  e = b.NextError();
  EXPECT_EQ(ErrorCode::kBusy, e.code);
  EXPECT_EQ("the worker holds its maximum of 6 sessions: try again later", e.message);
  EXPECT_EQ(6, Metric("splitlm_cloud_active_sessions"));
  EXPECT_EQ(2, Metric("splitlm_cloud_sessions_refused_total"));
  a.Send(transport::CloseSession{1});
  a.Ping();       // the close is done (connections are not ordered with each other)
  b.Open(13, 0);  // room again
  EXPECT_EQ(6, Metric("splitlm_cloud_active_sessions"));
}

TEST_F(WorkerHardeningTest, IdleSessionsExpireOnTheWorkersClock) {
  Start([](cloud::WorkerOptions& o) {
    o.sessions.idle_timeout = seconds(60);
    o.sessions.peer_timeout = seconds(3600);
  });
  Conn c(ctx_, worker_->endpoint());
  c.Open(1, 2);
  c.Open(2, 2);
  EXPECT_GE(Token(c, 1, 0, 3), 0);
  clock_.Advance(seconds(61));
  // A step after the timeout finds its session gone, and is told why.
  auto [f, payload] = Step(1, 3, 1, 1.0f);
  c.Send(f, std::move(payload));
  auto e = c.NextError();
  EXPECT_EQ(ErrorCode::kSessionEvicted, e.code);
  EXPECT_EQ("session closed after 60 s idle: open it again and resend its history", e.message);
  // The session nobody asks for is closed by the sweep that follows any
  // message (two round trips: the first one's sweep is done by the second).
  c.Ping();
  c.Ping();
  EXPECT_EQ(0, Metric("splitlm_cloud_active_sessions"));
  EXPECT_EQ(2, Metric("splitlm_cloud_sessions_expired_total"));
  // Open again: served as new.
  c.Open(1, 2);
  EXPECT_GE(Token(c, 1, 0, 4), 0);
}

TEST_F(WorkerHardeningTest, ASilentConnectionLosesItsSessions) {
  Start([](cloud::WorkerOptions& o) {
    o.sessions.idle_timeout = seconds(3600);
    o.sessions.peer_timeout = seconds(30);
  });
  // No heartbeat from the connection that goes: one sent while a loaded
  // machine was slow could still be in flight when the clock moves, and
  // count as heard after the jump.
  auto gone = std::make_unique<Conn>(ctx_, worker_->endpoint(), std::chrono::hours(1));
  Conn alive(ctx_, worker_->endpoint());
  for (uint64_t id = 1; id <= 3; ++id) gone->Open(id, 2);
  alive.Open(9, 2);
  const int32_t first = Token(alive, 9, 0, 3);
  gone.reset();  // the device vanished without closing anything
  // The worker sweeps whenever it is idle: time moves in two jumps so that
  // no sweep can find the live connection silent for 30 s.
  clock_.Advance(seconds(20));
  alive.Ping();
  clock_.Advance(seconds(11));
  alive.Ping();  // the worker sweeps before it answers
  EXPECT_EQ(1, Metric("splitlm_cloud_active_sessions"));
  EXPECT_EQ(3, Metric("splitlm_cloud_sessions_dropped_total"));
  EXPECT_GE(first, 0);
  EXPECT_GE(Token(alive, 9, 3, 1), 0) << "the live connection's session must survive";
}

// Resident memory of this process (the worker runs in it), bytes.
size_t ResidentBytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6)) * 1024;
  }
  return 0;
}

// A raw TCP connection speaking just enough ZMTP 3.0 (NULL mechanism, as a
// DEALER) to announce one frame of `announced` bytes and send up to `send`
// of them, as an attacker would; its own memory stays one 64 KiB buffer.
class RawZmtp {
 public:
  explicit RawZmtp(const std::string& endpoint) {
    const auto colon = endpoint.rfind(':');
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(std::stoi(endpoint.substr(colon + 1))));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    timeval tv{20, 0};  // nothing below may hang the suite
    ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    EXPECT_EQ(0, ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr));
  }
  ~RawZmtp() { ::close(fd_); }
  // The greeting and READY of a DEALER (ZMTP 3.0, NULL mechanism), and the
  // worker's: like libzmq, nothing else is sent before the handshake is done.
  bool Handshake() {
    std::string hello(64, '\0');
    hello[0] = '\xff';
    hello[9] = '\x7f';
    hello[10] = 3;  // ZMTP 3.0
    hello.replace(12, 4, "NULL");
    const std::string body = std::string("\x05") + "READY" + "\x0b" + "Socket-Type" +
                             std::string("\0\0\0\x06", 4) + "DEALER";
    if (!Write(hello + '\x04' + static_cast<char>(body.size()) + body)) return false;
    const std::string greeting = Read(64), command = Read(2);
    if (greeting.size() != 64 || command.size() != 2 || command[0] != '\x04') return false;
    return Read(static_cast<uint8_t>(command[1])).rfind("\x05READY", 0) == 0;
  }
  // A one-frame message with its header, as a DEALER sends it.
  bool SendMessage(const std::string& frame) {
    std::string out = "\x02";
    for (int i = 7; i >= 0; --i)
      out.push_back(static_cast<char>((uint64_t{frame.size()} >> (8 * i)) & 0xff));
    return Write(out + frame);
  }
  // The worker's next message (one short frame).
  std::string ReadMessage() {
    const std::string head = Read(2);
    if (head.size() != 2 || (head[0] & 0x06) != 0) return "";  // short, not a command
    return Read(static_cast<uint8_t>(head[1]));
  }
  // Announces a frame of `announced` bytes and sends up to `send` of them,
  // until the worker closes the connection.
  void SendOversizedFrame(uint64_t announced, size_t send) {
    std::string head = "\x02";
    for (int i = 7; i >= 0; --i) head.push_back(static_cast<char>((announced >> (8 * i)) & 0xff));
    if (!Write(head)) return;
    const std::string chunk(64 << 10, 'x');
    for (size_t sent = 0; sent < send; sent += chunk.size()) {
      if (!Write(chunk)) return;
    }
  }
  // True once the worker has closed the connection (EOF or reset).
  bool ClosedByPeer() {
    char buf[4096];
    while (true) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET || errno == EPIPE;
    }
  }

 private:
  bool Write(const std::string& bytes) {
    const char* data = bytes.data();
    size_t n = bytes.size();
    while (n > 0) {
      const ssize_t w = ::send(fd_, data, n, MSG_NOSIGNAL);
      if (w <= 0) return false;
      data += w;
      n -= static_cast<size_t>(w);
    }
    return true;
  }
  std::string Read(size_t n) {
    std::string out(n, '\0');
    size_t got = 0;
    while (got < n) {
      const ssize_t r = ::recv(fd_, &out[got], n - got, 0);
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    out.resize(got);
    return out;
  }
  int fd_ = -1;
};

TEST_F(WorkerHardeningTest, OversizedFramesAreDroppedWithoutBeingBuffered) {
  Start();
  // The tiny model's largest legal frame is a probe (256 KiB) or a Forward
  // of 256 positions x 64 values x 4 bytes (64 KiB): far below 60 MiB.
  constexpr int kConnections = 8;
  constexpr size_t kSent = size_t{48} << 20;
  {
    // The raw handshake is right: a legal Ping through it gets its Pong.
    RawZmtp raw(worker_->endpoint());
    ASSERT_TRUE(raw.Handshake());
    ASSERT_TRUE(raw.SendMessage(transport::EncodeMessage(transport::Ping{7, 0})));
    const std::string reply = raw.ReadMessage();
    auto d = transport::DecodeMessage(reply.data(), reply.size());
    ASSERT_TRUE(d.message && std::holds_alternative<transport::Pong>(*d.message))
        << "raw ZMTP handshake refused";
  }
  const size_t before = ResidentBytes();
  std::vector<std::unique_ptr<RawZmtp>> attackers;
  for (int i = 0; i < kConnections; ++i) {
    attackers.push_back(std::make_unique<RawZmtp>(worker_->endpoint()));
    ASSERT_TRUE(attackers.back()->Handshake());
    attackers.back()->SendOversizedFrame(uint64_t{60} << 20, kSent);
  }
  const size_t after = ResidentBytes();
  std::printf("resident memory before %.1f MiB, after %d x %zu MiB of 60 MiB frames %.1f MiB\n",
              before / 1048576.0, kConnections, kSent >> 20, after / 1048576.0);
  // Unbounded, the worker would hold 8 x 48 MiB = 384 MiB here.
  EXPECT_LT(after, before + (size_t{16} << 20))
      << "resident memory grew from " << (before >> 20) << " MiB to " << (after >> 20) << " MiB";
  for (auto& a : attackers)
    EXPECT_TRUE(a->ClosedByPeer())
        << "libzmq should drop a connection announcing an oversized frame";
  attackers.clear();
  // And the worker serves its devices as before, with the exact tokens.
  device::AgentOptions o;
  o.cut = 2;
  o.fallback = device::Fallback::kFail;
  o.channel.endpoint = worker_->endpoint();
  o.log = NullLog();
  transport::Metrics m1, m2;
  device::Agent split(*model_, o, ctx_, m1);
  o.cut = model_->config().num_layers;
  device::Agent local(*model_, o, ctx_, m2);
  const std::vector<int32_t> prompt = {1, 5, 9};
  EXPECT_EQ(local.Generate({prompt, 20, {}, false}).tokens,
            split.Generate({prompt, 20, {}, false}).tokens);
}

class WorkerLogTest : public WorkerHardeningTest {
 protected:
  WorkerLogTest() {
    log_ = std::make_shared<spdlog::logger>("test", sink_);
    log_->set_pattern("%v");
    log_->set_level(spdlog::level::debug);
  }
  std::vector<std::string> Lines() const { return sink_->last_formatted(); }
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink_ =
      std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(100000);
};

TEST_F(WorkerLogTest, ANewlineInAPeerStringComesOutEscaped) {
  Start();
  Conn c(ctx_, worker_->endpoint());
  transport::Hello h;
  h.model_fingerprint = model_->fingerprint() + 1;
  h.hidden_size = model_->config().hidden_size;
  h.num_layers = model_->config().num_layers;
  h.agent = "evil\n[12:00:00] [cloud] [info] forged line\x1b[2J";
  c.Send(h);
  EXPECT_EQ(ErrorCode::kModelMismatch, c.NextError().code);
  bool found = false;
  for (const auto& line : Lines()) {
    EXPECT_EQ(line.size() - 1, line.find('\n')) << "a peer's text broke a log line: " << line;
    found = found || line.find("agent=evil\\n[12:00:00] [cloud] [info] forged line\\x1b[2J") !=
                         std::string::npos;
  }
  EXPECT_TRUE(found) << "the refused hello was not logged with its agent escaped";
}

TEST_F(WorkerLogTest, TenThousandMalformedMessagesMakeABoundedNumberOfLines) {
  Start([](cloud::WorkerOptions& o) {
    o.server.peer_log.lines_per_peer = 10;
    o.server.peer_log.interval = std::chrono::hours(1);  // the whole test is one interval
  });
  zmq::socket_t raw(ctx_, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.set(zmq::sockopt::rcvtimeo, 20000);
  raw.connect(worker_->endpoint());
  int errors = 0;
  for (int batch = 0; batch < 100;
       ++batch) {  // 100 at a time, so no reply is dropped at a high-water mark
    for (int i = 0; i < 100; ++i)
      raw.send(zmq::str_buffer("definitely not a capnp message"), zmq::send_flags::none);
    for (int i = 0; i < 100; ++i) {
      zmq::message_t reply;
      ASSERT_TRUE(raw.recv(reply)) << "the worker stopped answering after " << errors;
      auto d = transport::DecodeMessage(reply.data(), reply.size());
      ASSERT_TRUE(d.message && std::holds_alternative<transport::Error>(*d.message));
      ++errors;
    }
  }
  EXPECT_EQ(10000, errors);
  int rejected = 0;
  for (const auto& line : Lines())
    rejected += line.find("rejected message from peer=") != std::string::npos;
  EXPECT_EQ(10, rejected);
  EXPECT_LE(Lines().size(), 12u);
}

TEST(CloudBinaryTest, WarnsAboutAReadableSecretKeyAndAnEmptyAllowList) {
  testing::TempDir dir;
  const std::string model = testing::MakeModel(dir.Sub("tiny"));
  transport::WriteKeyPair(transport::GenerateKeyPair(), dir.Sub("cloud"));
  ASSERT_EQ(0, ::chmod(dir.Sub("cloud.key").c_str(), 0644));
  std::ofstream(dir.Sub("allow.txt")) << "# nobody yet\n";
  testing::Process p(testing::BinPath("splitlm-cloud") + " --threads 1 --model " + model +
                     " --bind tcp://127.0.0.1:*" + " --key " + dir.Sub("cloud.key") + " --allow " +
                     dir.Sub("allow.txt"));
  ASSERT_TRUE(p.WaitFor("listening on", 120000).has_value()) << p.Stderr();
  p.Signal(SIGTERM);
  EXPECT_EQ(0, p.Wait());
  const std::string err = p.Stderr();
  EXPECT_NE(std::string::npos,
            err.find("cloud.key: the secret key file is accessible to other users (mode 0644)"))
      << err;
  EXPECT_NE(std::string::npos,
            err.find("the CURVE allow-list is empty: every device will be refused"))
      << err;
}

}  // namespace
}  // namespace splitlm
