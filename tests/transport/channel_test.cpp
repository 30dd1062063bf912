// The ZeroMQ channel on loopback: bound endpoints read back, no fixed ports,
// no sleeps. CURVE admits allow-listed keys only; a silent server is
// declared dead within the liveness window; bad frames get Error replies.
#include <gtest/gtest.h>

#include <cstring>
#include <fstream>

#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include "tests/common/test_util.h"
#include "transport/channel.h"
#include "transport/error.h"

namespace splitlm::transport {
namespace {

std::shared_ptr<spdlog::logger> NullLog() {
  return std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::null_sink_mt>());
}

ServerOptions Server(std::string bind = "tcp://127.0.0.1:*") {
  ServerOptions o;
  o.bind = std::move(bind);
  o.log = NullLog();
  return o;
}

ClientOptions Client(const std::string& endpoint) {
  ClientOptions o;
  o.endpoint = endpoint;
  o.log = NullLog();
  return o;
}

zmq::message_t Payload(size_t n, char fill) {
  zmq::message_t m(n);
  std::memset(m.data(), fill, n);
  return m;
}

TEST(ChannelTest, ForwardAndResultWithPayloadFrame) {
  zmq::context_t ctx;
  ServerChannel server(ctx, Server());
  ClientChannel client(ctx, Client(server.endpoint()));
  Forward f;
  f.session_id = 5;
  f.count = 1;
  f.tensor = {Codec::kF32, 1, 768, 3072};
  ASSERT_TRUE(client.Send(f, Payload(3072, 7)));
  auto in = server.Receive(Millis(5000));
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(5u, std::get<Forward>(in->message).session_id);
  ASSERT_EQ(3072u, in->payload.size());
  EXPECT_EQ(7, static_cast<const char*>(in->payload.data())[3071]);
  ForwardResult r;
  r.session_id = 5;
  r.tokens = {42};
  server.Send(in->peer, r);
  auto back = client.Receive(Millis(5000));
  ASSERT_TRUE(back.has_value());
  EXPECT_EQ(std::vector<int32_t>{42}, std::get<ForwardResult>(back->message).tokens);
  EXPECT_EQ(0u, back->payload.size());
}

// Nothing listens at the endpoint, so nothing drains the client's queue:
// once libzmq's high-water mark is reached a send would block, and Send
// says so instead of pretending the message went out.
TEST(ChannelTest, SendReturnsFalseWhenTheMessageCannotBeQueued) {
  zmq::context_t ctx;
  testing::TempDir dir;
  ClientChannel client(ctx, Client("ipc://" + dir.Sub("nobody")));
  int queued = 0;
  while (queued < 100000 && client.Send(Heartbeat{})) ++queued;
  EXPECT_GT(queued, 0);       // the first ones are queued for the connection to come
  EXPECT_LT(queued, 100000);  // then the queue is full
  EXPECT_FALSE(client.Send(Forward{}, Payload(64, 1)));
}

// Options whose logger is null get the null logger: every path that logs
// (bad frames, reconnects) runs without one.
TEST(ChannelTest, WorksWithoutALogger) {
  zmq::context_t ctx;
  ServerOptions so = Server();
  so.log = nullptr;
  ServerChannel server(ctx, so);
  ClientOptions co = Client(server.endpoint());
  co.log = nullptr;
  ClientChannel client(ctx, co);
  ASSERT_TRUE(client.Send(Ping{1, 0}));
  auto in = server.Receive(Millis(5000));
  ASSERT_TRUE(in.has_value());
  server.Send(in->peer, Pong{1});
  ASSERT_TRUE(client.Receive(Millis(5000)).has_value());
  zmq::socket_t raw(ctx, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.connect(server.endpoint());
  raw.send(zmq::str_buffer("not a capnp frame"), zmq::send_flags::none);  // refused, logged nowhere
  const std::string ok = EncodeMessage(Ping{2, 0});
  raw.send(zmq::buffer(ok), zmq::send_flags::none);
  in = server.Receive(Millis(5000));
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(2u, std::get<Ping>(in->message).seq);
  EXPECT_EQ(1u, server.rejected());
  client.Reconnect();  // logs its back-off
  EXPECT_TRUE(NullLogger() != nullptr);
  EXPECT_FALSE(NullLogger()->should_log(spdlog::level::critical));
}

TEST(ChannelTest, MalformedFramesGetAnErrorReply) {
  zmq::context_t ctx;
  ServerChannel server(ctx, Server());
  zmq::socket_t raw(ctx, zmq::socket_type::dealer);
  raw.set(zmq::sockopt::linger, 0);
  raw.connect(server.endpoint());
  raw.send(zmq::str_buffer("not capnp"), zmq::send_flags::none);
  const std::string ok = EncodeMessage(Ping{1, 0});
  raw.send(zmq::buffer(ok), zmq::send_flags::sndmore);
  raw.send(zmq::str_buffer("a"), zmq::send_flags::sndmore);
  raw.send(zmq::str_buffer("b"), zmq::send_flags::none);  // three frames
  raw.send(zmq::buffer(ok), zmq::send_flags::none);       // then a good one
  auto in = server.Receive(Millis(5000));
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(1u, std::get<Ping>(in->message).seq);
  EXPECT_EQ(2u, server.rejected());
  for (int i = 0; i < 2; ++i) {
    zmq::message_t reply;
    ASSERT_TRUE(raw.recv(reply));
    Decoded d = DecodeMessage(reply.data(), reply.size());
    ASSERT_TRUE(d.message.has_value());
    EXPECT_EQ(ErrorCode::kBadMessage, std::get<Error>(*d.message).code);
  }
}

TEST(ChannelTest, CurveAdmitsOnlyAllowListedKeys) {
  zmq::context_t ctx;
  const KeyPair server_keys = GenerateKeyPair(), good = GenerateKeyPair(), bad = GenerateKeyPair();
  ServerOptions so = Server();
  so.keys = server_keys;
  so.allowed_clients = {good.public_key};
  ServerChannel server(ctx, so);

  ClientOptions co = Client(server.endpoint());
  co.server_public_key = server_keys.public_key;
  co.keys = good;
  ClientChannel allowed(ctx, co);
  co.keys = bad;
  ClientChannel refused(ctx, co);
  ASSERT_TRUE(refused.Send(Ping{2, 0}));
  ASSERT_TRUE(allowed.Send(Ping{1, 0}));
  auto in = server.Receive(Millis(5000));
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(1u, std::get<Ping>(in->message).seq);
  // The refused client's handshake is answered by the ZAP handler: wait for
  // its verdict rather than for time.
  for (int i = 0; i < 100 && server.denied_keys() == 0; ++i) (void)server.Receive(Millis(50));
  EXPECT_GE(server.denied_keys(), 1u);
  EXPECT_FALSE(server.Receive(Millis(100)).has_value()) << "the refused client got through";
}

TEST(ChannelTest, PlainClientCannotReachCurveServer) {
  zmq::context_t ctx;
  ServerOptions so = Server();
  so.keys = GenerateKeyPair();
  ServerChannel server(ctx, so);
  ClientChannel plain(ctx, Client(server.endpoint()));
  ASSERT_TRUE(plain.Send(Ping{1, 0}));
  EXPECT_FALSE(server.Receive(Millis(300)).has_value());
}

TEST(ChannelTest, SilentServerIsDeclaredDeadWithinTheLivenessWindow) {
  zmq::context_t ctx;
  auto server = std::make_unique<ServerChannel>(ctx, Server());
  ClientOptions co = Client(server->endpoint());
  co.heartbeat_interval = Millis(40);
  co.liveness = 3;
  ClientChannel client(ctx, co);
  // While the server answers heartbeats the peer stays alive.
  ASSERT_TRUE(client.Send(Ping{1, 0}));
  auto in = server->Receive(Millis(5000));
  ASSERT_TRUE(in.has_value());
  server->Send(in->peer, Pong{1});
  ASSERT_TRUE(client.Receive(Millis(5000)).has_value());
  EXPECT_TRUE(client.peer_alive());
  server.reset();  // the cloud goes away
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_FALSE(client.Receive(Millis(10000)).has_value());
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_FALSE(client.peer_alive());
  EXPECT_LT(waited, Millis(5000)) << "liveness window is 3 x 40 ms";
  // Reconnect backs off, doubling up to the cap.
  const Millis a = client.Reconnect(), b = client.Reconnect();
  EXPECT_EQ(2 * a, b);
  EXPECT_TRUE(client.peer_alive());
}

TEST(ChannelTest, AHeartbeatFromAnotherServerInstanceIsReturnedOthersAreConsumed) {
  zmq::context_t ctx;
  zmq::socket_t router(ctx, zmq::socket_type::router);  // a server under the test's control
  router.set(zmq::sockopt::linger, 0);
  router.bind("tcp://127.0.0.1:*");
  ClientChannel client(ctx, Client(router.get(zmq::sockopt::last_endpoint)));
  ASSERT_TRUE(client.Send(Hello{}));
  zmq::message_t peer, frame;
  ASSERT_TRUE(router.recv(peer));
  ASSERT_TRUE(router.recv(frame));
  auto send = [&](const Message& m) {
    router.send(zmq::buffer(peer.to_string()), zmq::send_flags::sndmore);
    router.send(zmq::buffer(EncodeMessage(m)), zmq::send_flags::none);
  };
  Hello reply;
  reply.reply = true;
  reply.instance_id = 1;
  send(reply);
  auto in = client.Receive(Millis(5000));
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(1u, std::get<Hello>(in->message).instance_id);
  EXPECT_EQ(1u, client.server_instance());
  send(Heartbeat{1});  // the same instance: consumed
  send(Pong{5});
  in = client.Receive(Millis(5000));
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(5u, std::get<Pong>(in->message).seq);
  send(Heartbeat{2});  // a restarted server: returned once
  send(Heartbeat{2});
  send(Pong{6});
  in = client.Receive(Millis(5000));
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(2u, std::get<Heartbeat>(in->message).instance_id);
  EXPECT_EQ(2u, client.server_instance());
  in = client.Receive(Millis(5000));
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(6u, std::get<Pong>(in->message).seq);
  EXPECT_EQ(LinkState::kUp, client.link_state());
}

TEST(ChannelTest, RefusesPublicBindWithoutCurve) {
  zmq::context_t ctx;
  try {
    ServerChannel s(ctx, Server("tcp://0.0.0.0:*"));
    FAIL() << "expected a refusal";
  } catch (const Exception& e) {
    EXPECT_NE(std::string(e.what()).find("without CURVE"), std::string::npos) << e.what();
    EXPECT_EQ(Exception::kInvalidArgument, e.code());
  }
  ServerOptions o = Server("tcp://0.0.0.0:*");
  o.allow_insecure = true;
  ServerChannel s(ctx, o);  // allowed, with a loud warning
  EXPECT_FALSE(s.endpoint().empty());
}

TEST(SecurityTest, KeyFilesRoundTripAndBadOnesAreNamed) {
  testing::TempDir dir;
  const KeyPair k = GenerateKeyPair();
  WriteKeyPair(k, dir.Sub("device"));
  const KeyPair back = ReadKeyFile(dir.Sub("device.key"));
  EXPECT_EQ(k.public_key, back.public_key);
  EXPECT_EQ(k.secret_key, back.secret_key);
  EXPECT_EQ(k.public_key, ReadKeyFile(dir.Sub("device.pub")).public_key);
  EXPECT_TRUE(ReadKeyFile(dir.Sub("device.pub")).secret_key.empty());
  EXPECT_EQ(1u, ReadAllowList(dir.Sub("device.pub")).count(k.public_key));
  std::ofstream(dir.Sub("bad.key")) << "public = short\n";
  try {
    ReadKeyFile(dir.Sub("bad.key"));
    FAIL();
  } catch (const Exception& e) {
    EXPECT_NE(std::string(e.what()).find("bad.key:1: not a 40-character Z85 key"),
              std::string::npos)
        << e.what();
  }
  EXPECT_THROW(ReadKeyFile(dir.Sub("missing.key")), Exception);
}

TEST(SecurityTest, KeysWithHashAndEqualsCharactersSurvive) {
  // Z85's alphabet includes '#' and '='; generate until both appear.
  testing::TempDir dir;
  for (int i = 0; i < 2000; ++i) {
    const KeyPair k = GenerateKeyPair();
    if (k.public_key.find('#') == std::string::npos && k.public_key.find('=') == std::string::npos)
      continue;
    WriteKeyPair(k, dir.Sub("k"));
    EXPECT_EQ(k.public_key, ReadKeyFile(dir.Sub("k.key")).public_key);
    EXPECT_EQ(k.secret_key, ReadKeyFile(dir.Sub("k.key")).secret_key);
    std::ofstream(dir.Sub("allow.txt")) << "# devices\n" << k.public_key << "\n";
    EXPECT_EQ(1u, ReadAllowList(dir.Sub("allow.txt")).count(k.public_key));
  }
}

TEST(SecurityTest, LoopbackEndpoints) {
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://127.0.0.1:5555"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://127.0.0.1:*"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://localhost:80"));
  EXPECT_TRUE(IsLoopbackEndpoint("tcp://[::1]:5555"));
  EXPECT_TRUE(IsLoopbackEndpoint("ipc:///tmp/x"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://0.0.0.0:5555"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://10.0.0.1:5555"));
  EXPECT_FALSE(IsLoopbackEndpoint("tcp://*:5555"));
}

}  // namespace
}  // namespace splitlm::transport
