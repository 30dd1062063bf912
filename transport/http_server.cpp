#include "transport/http_server.h"

#include <boost/asio.hpp>
#include <boost/beast.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <list>
#include <map>
#include <mutex>
#include <thread>

#include "transport/error.h"
#include "transport/log_escape.h"

namespace splitlm::transport {
namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = net::ip::tcp;

namespace {

class Responder : public HttpResponder {
 public:
  Responder(tcp::socket& socket, unsigned version) : socket_(socket), version_(version) {}

  void Send(int status, const std::string& content_type, const std::string& body) override {
    if (started_) return;
    started_ = true;
    http::response<http::string_body> res{static_cast<http::status>(status), version_};
    res.set(http::field::server, "splitlm");
    res.set(http::field::content_type, content_type);
    res.keep_alive(false);
    res.body() = body;
    res.prepare_payload();
    beast::error_code ec;
    http::write(socket_, res, ec);
    ok_ = !ec;
  }

  void Start(int status, const std::string& content_type) override {
    if (started_) return;
    started_ = true;
    streaming_ = true;
    http::response<http::empty_body> res{static_cast<http::status>(status), version_};
    res.set(http::field::server, "splitlm");
    res.set(http::field::content_type, content_type);
    res.set(http::field::cache_control, "no-cache");
    res.keep_alive(false);
    res.chunked(true);
    http::response_serializer<http::empty_body> sr{res};
    beast::error_code ec;
    http::write_header(socket_, sr, ec);
    ok_ = !ec;
  }

  bool Write(const std::string& chunk) override {
    if (!streaming_ || !ok_) return false;
    beast::error_code ec;
    net::write(socket_, http::make_chunk(net::buffer(chunk)), ec);
    ok_ = !ec;
    return ok_;
  }

  void Finish() {
    if (!started_)
      Send(500, "application/json", R"({"error":{"message":"no response","type":"server_error"}})");
    if (streaming_ && ok_) {
      beast::error_code ec;
      net::write(socket_, http::make_chunk_last(), ec);
    }
  }

 private:
  tcp::socket& socket_;
  unsigned version_;
  bool started_ = false, streaming_ = false, ok_ = true;
};

}  // namespace

struct HttpServer::Impl {
  HttpServerOptions options;
  HttpHandler handler;
  net::io_context io;
  tcp::acceptor acceptor{io};
  std::atomic<bool> stop{false};
  std::thread accept_thread;
  std::mutex mu;
  struct Connection {
    std::thread thread;
    std::atomic<bool> done{false};
  };
  std::list<Connection> connections;  // finished ones are joined as new ones arrive
  std::list<tcp::socket*> open_sockets;
  // Sockets still reading their request, since when. A reaper shuts down
  // those past the read timeout, so a silent or trickling client cannot hold
  // a thread forever (Asio's blocking reads have no timeout of their own).
  std::map<tcp::socket*, std::chrono::steady_clock::time_point> reading;
  std::condition_variable reaper_cv;
  std::thread reaper;

  void Reap() {
    std::unique_lock<std::mutex> lock(mu);
    while (!stop) {
      reaper_cv.wait_for(lock, std::chrono::milliseconds(50));
      const auto now = std::chrono::steady_clock::now();
      for (auto& [sock, since] : reading) {
        if (now - since > std::chrono::milliseconds(options.read_timeout_ms)) {
          beast::error_code ec;
          sock->shutdown(tcp::socket::shutdown_both, ec);
          since = now + std::chrono::hours(24);  // once
        }
      }
    }
  }

  void Serve(tcp::socket socket) {
    {
      std::lock_guard<std::mutex> lock(mu);
      open_sockets.push_back(&socket);
      reading[&socket] = std::chrono::steady_clock::now();
    }
    beast::flat_buffer buffer;
    http::request_parser<http::string_body> parser;
    parser.body_limit(options.max_body_bytes);
    parser.header_limit(16 << 10);
    beast::error_code ec;
    socket.set_option(tcp::no_delay(true), ec);
    http::read(socket, buffer, parser, ec);
    {
      std::lock_guard<std::mutex> lock(mu);
      reading.erase(&socket);  // the reaper leaves it alone from now on
    }
    Responder responder(socket, 11);
    if (ec) {
      if (ec != http::error::end_of_stream) {
        const bool too_big = ec == http::error::body_limit || ec == http::error::header_limit;
        responder.Send(too_big ? 413 : 400, "application/json",
                       std::string(R"({"error":{"message":"malformed HTTP request: )") +
                           ec.message() + R"(","type":"invalid_request_error"}})");
      }
    } else {
      auto& req = parser.get();
      HttpRequest r;
      r.method = std::string(req.method_string());
      r.target = std::string(req.target());
      for (const auto& f : req) {
        std::string name(f.name_string());
        for (char& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
        r.headers[name] = std::string(f.value());
      }
      r.body = std::move(req.body());
      try {
        handler(r, responder);
      } catch (const std::exception& e) {
        options.log->error("http {} {} failed: {}", EscapeForLog(r.method), EscapeForLog(r.target),
                           EscapeForLog(e.what()));
        responder.Send(500, "application/json",
                       R"({"error":{"message":"internal error","type":"server_error"}})");
      }
      responder.Finish();
    }
    socket.shutdown(tcp::socket::shutdown_both, ec);
    std::lock_guard<std::mutex> lock(mu);
    open_sockets.remove(&socket);
  }

  void AcceptLoop() {
    while (!stop) {
      beast::error_code ec;
      tcp::socket socket(io);
      acceptor.accept(socket, ec);
      if (ec || stop) continue;
      std::lock_guard<std::mutex> lock(mu);
      for (auto it = connections.begin(); it != connections.end();) {
        if (it->done) {
          it->thread.join();
          it = connections.erase(it);
        } else {
          ++it;
        }
      }
      Connection& c = connections.emplace_back();
      c.thread = std::thread([this, &c, s = std::move(socket)]() mutable {
        Serve(std::move(s));
        c.done = true;
      });
    }
  }
};

bool IsPublicHttpAddress(const std::string& address) {
  const auto colon = address.rfind(':');
  if (colon == std::string::npos) return false;
  beast::error_code ec;
  const auto ip = net::ip::make_address(address.substr(0, colon), ec);
  return !ec && !ip.is_loopback();
}

HttpServer::HttpServer(HttpServerOptions options, HttpHandler handler)
    : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  impl_->options.log = OrNullLogger(std::move(impl_->options.log));
  impl_->handler = std::move(handler);
  const std::string& a = impl_->options.address;
  const auto colon = a.rfind(':');
  if (colon == std::string::npos)
    throw Exception(Exception::kInvalidArgument, "HTTP address \"" + a + "\" must be HOST:PORT");
  beast::error_code ec;
  const auto ip = net::ip::make_address(a.substr(0, colon), ec);
  if (ec)
    throw Exception(Exception::kInvalidArgument,
                    "HTTP address \"" + a + "\": bad host (use an IP address, e.g. 127.0.0.1)");
  unsigned long port = 0;
  try {
    port = std::stoul(a.substr(colon + 1));
  } catch (const std::exception&) {
    port = 70000;
  }
  if (port > 65535)
    throw Exception(Exception::kInvalidArgument, "HTTP address \"" + a + "\": bad port");
  if (!ip.is_loopback()) {
    if (!impl_->options.allow_public) {
      throw Exception(Exception::kInvalidArgument,
                      "refusing to serve HTTP on " + a +
                          " beyond loopback (neither encrypted nor authenticated) unless allowed");
    }
    impl_->options.log->warn("*** HTTP API on {} is reachable from other machines ***", a);
  }
  tcp::endpoint ep(ip, static_cast<unsigned short>(port));
  impl_->acceptor.open(ep.protocol(), ec);
  if (!ec) impl_->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  if (!ec) impl_->acceptor.bind(ep, ec);
  if (!ec) impl_->acceptor.listen(net::socket_base::max_listen_connections, ec);
  if (ec)
    throw Exception(Exception::kUnavailable, "cannot serve HTTP on " + a + ": " + ec.message());
  impl_->accept_thread = std::thread([this] { impl_->AcceptLoop(); });
  impl_->reaper = std::thread([this] { impl_->Reap(); });
}

// See the declaration: std::terminate if the threads cannot be stopped.
// NOLINTNEXTLINE(bugprone-exception-escape)
HttpServer::~HttpServer() {
  impl_->stop = true;
  beast::error_code ec;
  // Wake the blocking accept with a connection to ourselves, then close.
  {
    net::io_context io;
    tcp::socket s(io);
    s.connect(impl_->acceptor.local_endpoint(ec), ec);
  }
  impl_->accept_thread.join();
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    impl_->reaper_cv.notify_all();
  }
  impl_->reaper.join();
  impl_->acceptor.close(ec);
  {
    std::lock_guard<std::mutex> lock(impl_->mu);
    for (tcp::socket* s : impl_->open_sockets) s->shutdown(tcp::socket::shutdown_both, ec);
  }
  for (auto& c : impl_->connections) c.thread.join();
}

std::string HttpServer::address() const {
  beast::error_code ec;
  auto ep = impl_->acceptor.local_endpoint(ec);
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

}  // namespace splitlm::transport
