#include "device/replicas.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>

#include "device/agent.h"
#include "transport/error.h"

namespace splitlm::device {
namespace {

bool StartsWith(const std::string& s, const std::string& p) {
  return s.compare(0, p.size(), p) == 0;
}

// NAME and PORT of "NAME:PORT" (NAME may be "[v6]"); throws on a bad one.
std::pair<std::string, std::string> HostPort(const std::string& entry, const std::string& rest) {
  const size_t colon = rest.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == rest.size()) {
    throw Exception(Exception::kInvalidArgument,
                    "cloud entry '" + entry + "': expected HOST:PORT after the scheme");
  }
  std::string host = rest.substr(0, colon), port = rest.substr(colon + 1);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const bool numeric =
      std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
  if (!numeric || port.size() > 5 || std::stoi(port) > 65535) {
    throw Exception(Exception::kInvalidArgument,
                    "cloud entry '" + entry + "': port '" + port + "' is not a number 0..65535");
  }
  return {host, port};
}

}  // namespace

std::vector<std::string> SystemResolve(const std::string& host) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) != 0) return {};
  std::vector<std::string> out;
  for (addrinfo* a = res; a; a = a->ai_next) {
    char buf[INET6_ADDRSTRLEN] = {};
    const void* addr =
        a->ai_family == AF_INET
            ? static_cast<const void*>(&reinterpret_cast<sockaddr_in*>(a->ai_addr)->sin_addr)
            : static_cast<const void*>(&reinterpret_cast<sockaddr_in6*>(a->ai_addr)->sin6_addr);
    if ((a->ai_family == AF_INET || a->ai_family == AF_INET6) &&
        inet_ntop(a->ai_family, addr, buf, sizeof buf)) {
      if (std::find(out.begin(), out.end(), buf) == out.end()) out.push_back(buf);
    }
  }
  freeaddrinfo(res);
  return out;
}

std::vector<std::string> ParseCloudList(const std::string& text) {
  std::vector<std::string> entries;
  size_t start = 0;
  while (true) {
    const size_t comma = text.find(',', start);
    std::string e =
        text.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
    e.erase(0, e.find_first_not_of(" \t"));
    e.erase(e.find_last_not_of(" \t") + 1);
    if (e.empty())
      throw Exception(Exception::kInvalidArgument,
                      "cloud list '" + text +
                          "': an empty entry (expected tcp://HOST:PORT[,...] or dns://NAME:PORT)");
    if (StartsWith(e, "tcp://")) {
      HostPort(e, e.substr(6));
    } else if (StartsWith(e, "dns://")) {
      HostPort(e, e.substr(6));
    } else if (!StartsWith(e, "ipc://") && !StartsWith(e, "inproc://")) {
      throw Exception(
          Exception::kInvalidArgument,
          "cloud entry '" + e + "': unknown scheme (expected tcp://, dns://, ipc:// or inproc://)");
    }
    entries.push_back(e);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return entries;
}

std::string TcpEndpoint(const std::string& address, const std::string& port) {
  return address.find(':') != std::string::npos ? "tcp://[" + address + "]:" + port
                                                : "tcp://" + address + ":" + port;
}

Replicas::Replicas(std::vector<std::string> entries, std::chrono::milliseconds resolve_interval,
                   Resolver resolver)
    : entries_(std::move(entries)), interval_(resolve_interval), resolver_(std::move(resolver)) {
  resolved_.resize(entries_.size());
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (StartsWith(entries_[i], "dns://")) {
      has_names_ = true;
    } else {
      resolved_[i] = {entries_[i]};
    }
  }
}

void Replicas::Resolve() {
  for (size_t i = 0; i < entries_.size(); ++i) {
    if (!StartsWith(entries_[i], "dns://")) continue;
    const auto [host, port] = HostPort(entries_[i], entries_[i].substr(6));
    std::vector<std::string> eps;
    for (const auto& a : resolver_(host)) eps.push_back(TcpEndpoint(a, port));
    if (!eps.empty()) resolved_[i] = std::move(eps);
  }
  endpoints_.clear();
  for (const auto& eps : resolved_) {
    for (const auto& e : eps) {
      if (std::find(endpoints_.begin(), endpoints_.end(), e) == endpoints_.end())
        endpoints_.push_back(e);
    }
  }
}

const std::vector<std::string>& Replicas::Endpoints(Clock::time_point now) {
  if (!resolved_once_ || (has_names_ && now >= next_resolve_)) {
    Resolve();
    resolved_once_ = true;
    next_resolve_ = now + interval_;
  }
  return endpoints_;
}

}  // namespace splitlm::device
