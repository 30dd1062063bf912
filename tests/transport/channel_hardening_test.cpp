// What a worker reached by strangers must say and refuse: failed CURVE
// handshakes leave a log line naming the likely cause, an empty allow-list
// and a secret key others can read are warned about.
#include <gtest/gtest.h>

#include <spdlog/sinks/ringbuffer_sink.h>
#include <sys/stat.h>

#include "tests/common/test_util.h"
#include "transport/channel.h"

namespace splitlm::transport {
namespace {

struct Captured {
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink =
      std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000);
  std::shared_ptr<spdlog::logger> log = std::make_shared<spdlog::logger>("test", sink);
  Captured() { log->set_pattern("%v"); }
  bool Has(const std::string& text) const {
    for (const auto& line : sink->last_formatted()) {
      if (line.find(text) != std::string::npos) return true;
    }
    return false;
  }
};

ServerOptions CurveServer(const KeyPair& keys, const std::string& allowed,
                          std::shared_ptr<spdlog::logger> log) {
  ServerOptions o;
  o.bind = "tcp://127.0.0.1:*";
  o.keys = keys;
  if (!allowed.empty()) o.allowed_clients = {allowed};
  o.log = std::move(log);
  return o;
}

// Client options for `server` with the device's `keys` and the server
// public key it believes in.
ClientOptions CurveClient(const ServerChannel& server, const KeyPair& keys,
                          const std::string& server_key) {
  ClientOptions co;
  co.endpoint = server.endpoint();
  co.keys = keys;
  co.server_public_key = server_key;
  return co;
}

// Serves `server` until its log holds `text` (generous deadline: the
// device's handshake is asynchronous; no fixed wait).
bool ServeUntilLogged(ServerChannel& server, const Captured& captured, const std::string& text) {
  for (int i = 0; i < 400 && !captured.Has(text); ++i) (void)server.Receive(Millis(50));
  return captured.Has(text);
}

TEST(ChannelHardeningTest, DeviceWithoutKeysLeavesALogLine) {
  zmq::context_t ctx;
  Captured captured;
  const KeyPair server_keys = GenerateKeyPair(), device = GenerateKeyPair();
  ServerChannel server(ctx, CurveServer(server_keys, device.public_key, captured.log));
  ClientOptions co;
  co.endpoint = server.endpoint();
  ClientChannel plain(ctx, co);
  ASSERT_TRUE(plain.Send(Ping{1, 0}));
  EXPECT_TRUE(ServeUntilLogged(server, captured,
                               "security mechanism mismatch: a device without CURVE keys"));
  EXPECT_TRUE(captured.Has("refused connection from tcp://127.0.0.1:"));
  EXPECT_GE(server.failed_handshakes(), 1u);
}

TEST(ChannelHardeningTest, DeviceWithTheWrongServerKeyLeavesALogLine) {
  zmq::context_t ctx;
  Captured captured;
  const KeyPair server_keys = GenerateKeyPair(), device = GenerateKeyPair(),
                other = GenerateKeyPair();
  ServerChannel server(ctx, CurveServer(server_keys, device.public_key, captured.log));
  ClientChannel wrong(ctx, CurveClient(server, device, other.public_key));  // not the worker's
  ASSERT_TRUE(wrong.Send(Ping{1, 0}));
  EXPECT_TRUE(ServeUntilLogged(server, captured, "the device has the wrong server public key"));
}

TEST(ChannelHardeningTest, KeyNotOnTheAllowListLeavesALogLine) {
  zmq::context_t ctx;
  Captured captured;
  const KeyPair server_keys = GenerateKeyPair(), device = GenerateKeyPair(),
                stranger = GenerateKeyPair();
  ServerChannel server(ctx, CurveServer(server_keys, device.public_key, captured.log));
  ClientChannel refused(ctx, CurveClient(server, stranger, server_keys.public_key));
  ASSERT_TRUE(refused.Send(Ping{1, 0}));
  EXPECT_TRUE(ServeUntilLogged(server, captured, "refused client key=" + stranger.public_key));
}

TEST(ChannelHardeningTest, EmptyAllowListIsWarned) {
  zmq::context_t ctx;
  Captured captured;
  ServerChannel server(ctx, CurveServer(GenerateKeyPair(), "", captured.log));
  EXPECT_TRUE(captured.Has("the CURVE allow-list is empty: every device will be refused"));
}

TEST(ChannelHardeningTest, CurveMessagesCarryTheClientKeyAsUserId) {
  zmq::context_t ctx;
  Captured captured;
  const KeyPair server_keys = GenerateKeyPair(), device = GenerateKeyPair();
  ServerChannel server(ctx, CurveServer(server_keys, device.public_key, captured.log));
  ClientChannel client(ctx, CurveClient(server, device, server_keys.public_key));
  ASSERT_TRUE(client.Send(Ping{1, 0}));
  auto in = server.Receive(Millis(10000));
  ASSERT_TRUE(in.has_value());
  EXPECT_EQ(device.public_key, in->user_id);
}

TEST(ChannelHardeningTest, SecretKeyFileReadableByOthersIsWarned) {
  testing::TempDir dir;
  WriteKeyPair(GenerateKeyPair(), dir.Sub("cloud"));
  const std::string key = dir.Sub("cloud.key");
  EXPECT_EQ("", SecretKeyFileWarning(key));  // written 0600
  ASSERT_EQ(0, ::chmod(key.c_str(), 0644));
  EXPECT_EQ(key +
                ": the secret key file is accessible to other users (mode 0644): anyone who can "
                "read it can pose "
                "as its owner; run chmod 600 " +
                key,
            SecretKeyFileWarning(key));
}

}  // namespace
}  // namespace splitlm::transport
