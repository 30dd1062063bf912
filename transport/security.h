// CurveZMQ keys and the server's allow-list (a ZAP handler).
#pragma once

#include <atomic>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <zmq.hpp>

#include <spdlog/logger.h>

#include "transport/peer_log.h"

namespace splitlm::transport {

// A CURVE key pair, each key Z85-encoded (40 characters).
struct KeyPair {
  std::string public_key;
  std::string secret_key;
};

KeyPair GenerateKeyPair();

// Writes `prefix`.key (public and secret, mode 0600) and `prefix`.pub
// (public only, to hand to the other side). Throws Exception(kUnavailable).
void WriteKeyPair(const KeyPair& keys, const std::string& prefix);
// Reads a .key file (both keys) or a .pub file (public_key only). Throws
// Exception(kInvalidArgument) naming the file and line if malformed.
KeyPair ReadKeyFile(const std::string& path);
// Reads an allow-list: one Z85 public key per line, or "public = KEY" lines
// as in .pub files; lines starting with '#' are comments (Z85 keys may hold
// '#' and '=', so there are no trailing comments). Throws Exception(kInvalidArgument).
std::set<std::string> ReadAllowList(const std::string& path);

// Answers ZeroMQ's ZAP requests for every CURVE server socket of `context`:
// a client whose public key is on the allow-list is admitted (its key
// becomes the user id its messages carry as "User-Id"), any other gets no
// session and leaves a log line (rate-limited per address by `log_limits`).
// Create it before binding the server.
class ZapHandler {
 public:
  ZapHandler(zmq::context_t& context, std::set<std::string> allowed_z85,
             std::shared_ptr<spdlog::logger> log, PeerLogOptions log_limits = {});
  ~ZapHandler();
  ZapHandler(const ZapHandler&) = delete;
  ZapHandler& operator=(const ZapHandler&) = delete;

  uint64_t denied() const { return denied_.load(); }

 private:
  void Run();
  zmq::socket_t socket_;
  std::set<std::string> allowed_;
  std::shared_ptr<spdlog::logger> log_;
  PeerLog peer_log_;  // used by the handler's thread only
  std::atomic<bool> stop_{false};
  std::atomic<uint64_t> denied_{0};
  std::thread thread_;
};

// A warning if the secret key file `path` may be read or written by anyone
// but its owner (mode & 077), naming the file, its mode and the fix; empty
// if it is private or cannot be examined (reading it reports that).
std::string SecretKeyFileWarning(const std::string& path);

// True for endpoints reachable only from this machine (127.0.0.0/8,
// localhost, [::1], ipc://, inproc://).
bool IsLoopbackEndpoint(const std::string& endpoint);

}  // namespace splitlm::transport
