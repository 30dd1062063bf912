#include "transport/security.h"

#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>

#include "transport/error.h"
#include "transport/log_escape.h"
#include "transport/null_logger.h"
#include "transport/text_file.h"

namespace splitlm::transport {

KeyPair GenerateKeyPair() {
  char pub[41], sec[41];
  if (zmq_curve_keypair(pub, sec) != 0) {
    throw Exception(Exception::kUnavailable,
                    "zmq_curve_keypair failed: libzmq built without CURVE support?");
  }
  return {pub, sec};
}

void WriteKeyPair(const KeyPair& keys, const std::string& prefix) {
  {
    const std::string path = prefix + ".key";
    std::ofstream out(path, std::ios::trunc);
    if (!out) throw Exception(Exception::kUnavailable, path + ": cannot create");
    ::chmod(path.c_str(), 0600);
    out << "# splitlm CURVE key pair: keep this file secret\n"
        << "public = " << keys.public_key << "\nsecret = " << keys.secret_key << "\n";
    if (!out) throw Exception(Exception::kUnavailable, path + ": write failed");
  }
  const std::string path = prefix + ".pub";
  std::ofstream out(path, std::ios::trunc);
  if (!out) throw Exception(Exception::kUnavailable, path + ": cannot create");
  out << "# splitlm CURVE public key\npublic = " << keys.public_key << "\n";
  if (!out) throw Exception(Exception::kUnavailable, path + ": write failed");
}

namespace {

bool ValidZ85Key(const std::string& k) {
  uint8_t bin[32];
  return k.size() == 40 && zmq_z85_decode(bin, k.c_str()) != nullptr;
}

std::string Trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r") - b + 1);
}

// Z85 keys may contain '#' and '=': a comment is a whole line starting with
// '#', and only the first '=' separates a name from its key.
bool Skip(const std::string& line) { return line.empty() || line[0] == '#'; }

}  // namespace

KeyPair ReadKeyFile(const std::string& path) {
  std::istringstream in(ReadTextFileOrThrow(path, kMaxKeyFileBytes));
  KeyPair k;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    line = Trim(line);
    if (Skip(line)) continue;
    const auto eq = line.find('=');
    if (eq == std::string::npos)
      throw Exception(Exception::kInvalidArgument,
                      path + ":" + std::to_string(n) + ": expected KEY = VALUE");
    const std::string key = Trim(line.substr(0, eq)), value = Trim(line.substr(eq + 1));
    if (!ValidZ85Key(value))
      throw Exception(Exception::kInvalidArgument,
                      path + ":" + std::to_string(n) + ": not a 40-character Z85 key");
    if (key == "public")
      k.public_key = value;
    else if (key == "secret")
      k.secret_key = value;
    else
      throw Exception(Exception::kInvalidArgument,
                      path + ":" + std::to_string(n) + ": unknown key \"" + key + "\"");
  }
  if (k.public_key.empty()) throw Exception(Exception::kInvalidArgument, path + ": no public key");
  return k;
}

std::set<std::string> ReadAllowList(const std::string& path) {
  std::istringstream in(ReadTextFileOrThrow(path, kMaxKeyFileBytes));
  std::set<std::string> keys;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    line = Trim(line);
    if (Skip(line)) continue;
    if (line.rfind("public", 0) == 0) line = Trim(line.substr(line.find('=') + 1));
    if (!ValidZ85Key(line))
      throw Exception(Exception::kInvalidArgument,
                      path + ":" + std::to_string(n) + ": not a 40-character Z85 public key");
    keys.insert(line);
  }
  return keys;
}

ZapHandler::ZapHandler(zmq::context_t& context, std::set<std::string> allowed,
                       std::shared_ptr<spdlog::logger> log, PeerLogOptions log_limits)
    : socket_(context, zmq::socket_type::rep),
      allowed_(std::move(allowed)),
      log_(OrNullLogger(std::move(log))),
      peer_log_(log_, log_limits) {
  socket_.bind("inproc://zeromq.zap.01");
  socket_.set(zmq::sockopt::rcvtimeo, 100);
  thread_ = std::thread([this] { Run(); });
}

ZapHandler::~ZapHandler() {
  stop_ = true;
  thread_.join();
}

void ZapHandler::Run() {
  // ZAP request: version, request id, domain, address, identity, mechanism,
  // credentials...; reply: version, request id, status, text, user, metadata.
  while (!stop_) {
    peer_log_.Flush(std::chrono::steady_clock::now());  // counts of refused floods
    std::vector<zmq::message_t> parts;
    try {
      zmq::message_t part;
      if (!socket_.recv(part)) continue;  // timeout: check stop_
      parts.push_back(std::move(part));
      while (parts.back().more()) {
        zmq::message_t more;
        (void)socket_.recv(more);
        parts.push_back(std::move(more));
      }
    } catch (const zmq::error_t&) {
      return;  // context terminated
    }
    std::string status = "400", text = "denied";
    std::string mechanism = parts.size() > 5 ? parts[5].to_string() : "";
    std::string key_z85 = "?";
    if (mechanism == "CURVE" && parts.size() > 6 && parts[6].size() == 32) {
      char z85[41];
      zmq_z85_encode(z85, static_cast<const uint8_t*>(parts[6].data()), 32);
      key_z85 = z85;
      if (allowed_.count(key_z85)) status = "200", text = "OK";
    }
    const std::string address = parts.size() > 3 ? parts[3].to_string() : "?";
    if (status != "200") {
      ++denied_;
      peer_log_.Log(EscapeForLog(address), spdlog::level::warn,
                    "refused client key=" + key_z85 + " address=" + EscapeForLog(address) +
                        " mechanism=" + EscapeForLog(mechanism) + ": not on the allow-list",
                    std::chrono::steady_clock::now());
    }
    const std::string version = parts.size() > 0 ? parts[0].to_string() : "1.0";
    const std::string request = parts.size() > 1 ? parts[1].to_string() : "";
    try {
      socket_.send(zmq::buffer(version), zmq::send_flags::sndmore);
      socket_.send(zmq::buffer(request), zmq::send_flags::sndmore);
      socket_.send(zmq::buffer(status), zmq::send_flags::sndmore);
      socket_.send(zmq::buffer(text), zmq::send_flags::sndmore);
      socket_.send(zmq::buffer(status == "200" ? key_z85 : std::string()),
                   zmq::send_flags::sndmore);
      socket_.send(zmq::str_buffer(""), zmq::send_flags::none);
    } catch (const zmq::error_t&) {
      return;
    }
  }
}

std::string SecretKeyFileWarning(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || (st.st_mode & 077) == 0) return "";
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  return path + ": the secret key file is accessible to other users (mode " + mode +
         "): anyone who can read it can pose as its owner; run chmod 600 " + path;
}

bool IsLoopbackEndpoint(const std::string& endpoint) {
  if (endpoint.rfind("ipc://", 0) == 0 || endpoint.rfind("inproc://", 0) == 0) return true;
  if (endpoint.rfind("tcp://", 0) != 0) return false;
  std::string host = endpoint.substr(6);
  if (!host.empty() && host[0] == '[') return host.rfind("[::1]", 0) == 0;
  host = host.substr(0, host.rfind(':'));
  return host == "localhost" || host.rfind("127.", 0) == 0;
}

}  // namespace splitlm::transport
