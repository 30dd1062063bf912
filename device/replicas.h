// The cloud workers a device may use: a list of endpoints
// (`--cloud tcp://a:5555,tcp://b:5555`) and DNS names standing for several
// (`dns://workers.splitlm.svc:5555`, a Kubernetes headless service), each
// name resolved to all its addresses and re-resolved every interval.
#pragma once

#include <chrono>
#include <functional>
#include <string>
#include <vector>

namespace splitlm::device {

// Resolves `host` to its numeric addresses ("10.0.0.7", "::1"); empty when it
// does not resolve. The default asks getaddrinfo (TCP, IPv4 and IPv6).
using Resolver = std::function<std::vector<std::string>(const std::string& host)>;
std::vector<std::string> SystemResolve(const std::string& host);

// Splits a list of cloud endpoints (the device's --cloud) at commas into its entries, each
// `tcp://HOST:PORT`, `dns://NAME:PORT`, `ipc://PATH` or `inproc://NAME`. Throws
// Exception(kInvalidArgument) naming the entry and what is wrong (empty, unknown scheme, no port).
std::vector<std::string> ParseCloudList(const std::string& text);

// The ZeroMQ endpoint of `address`:`port` (IPv6 in brackets).
std::string TcpEndpoint(const std::string& address, const std::string& port);

// Not thread-safe: the agent's thread owns it.
class Replicas {
 public:
  using Clock = std::chrono::steady_clock;
  // `entries` as ParseCloudList returns them. dns:// names are resolved when
  // Endpoints() is first called and again once `resolve_interval` passed.
  Replicas(std::vector<std::string> entries, std::chrono::milliseconds resolve_interval,
           Resolver resolver = SystemResolve);

  // The workers' endpoints now, in the entries' order (a name's addresses in
  // the resolver's order), without duplicates. A name that does not resolve
  // this time keeps its last addresses.
  const std::vector<std::string>& Endpoints(Clock::time_point now);
  // True when the entries can stand for more than one worker (a list, or a
  // DNS name): the agent then places each session.
  bool several() const { return entries_.size() > 1 || has_names_; }

 private:
  void Resolve();
  std::vector<std::string> entries_;
  std::chrono::milliseconds interval_;
  Resolver resolver_;
  bool has_names_ = false;
  std::vector<std::vector<std::string>> resolved_;  // per entry: its endpoints
  std::vector<std::string> endpoints_;
  Clock::time_point next_resolve_{};
  bool resolved_once_ = false;
};

}  // namespace splitlm::device
