// A minimal HTTP/1.1 server (Boost.Beast) for /metrics, /health and the
// device's OpenAI-compatible API: a thread per connection, bounded bodies,
// streaming responses (chunked, for server-sent events).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include <spdlog/logger.h>

#include "transport/null_logger.h"

namespace splitlm::transport {

struct HttpRequest {
  std::string method;                          // "GET", "POST", ...
  std::string target;                          // path and query
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

// Handed to the handler to answer one request: either Send once, or Start a
// stream, Write chunks, and let it end when the handler returns.
class HttpResponder {
 public:
  virtual ~HttpResponder() = default;
  virtual void Send(int status, const std::string& content_type, const std::string& body) = 0;
  virtual void Start(int status, const std::string& content_type) = 0;
  // Returns false once the client has gone (stop producing).
  virtual bool Write(const std::string& chunk) = 0;
};

using HttpHandler = std::function<void(const HttpRequest&, HttpResponder&)>;

struct HttpServerOptions {
  std::string address = "127.0.0.1:8080";  // host:port; port 0 picks a free one
  size_t max_body_bytes = 1 << 20;
  int read_timeout_ms = 30000;  // a client that sends nothing for this long is dropped
  bool allow_public = false;    // serving beyond loopback is refused unless set (then warned)
  std::shared_ptr<spdlog::logger> log =
      NullLogger();  // never null (null: replaced by NullLogger())
};

// True when `address` (HOST:PORT) names an IP address beyond loopback; false
// for loopback and for anything malformed (HttpServer reports those).
bool IsPublicHttpAddress(const std::string& address);

class HttpServer {
 public:
  // Binds and starts serving on its own threads. Throws Exception:
  // kInvalidArgument if the address is malformed or refused (beyond loopback
  // without allow_public), kUnavailable if it cannot be bound (in use).
  HttpServer(HttpServerOptions options, HttpHandler handler);
  // Only std::thread::join or asio running out of resources can throw here, and then the
  // threads cannot be stopped: std::terminate is the right end.
  // NOLINTNEXTLINE(bugprone-exception-escape): see above
  ~HttpServer();  // stops accepting and joins every connection
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // "127.0.0.1:PORT" with the port resolved.
  std::string address() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace splitlm::transport
