// The HTTP server on its own: bad requests get 400/413 with a JSON body,
// silent clients are dropped after the read timeout, streaming is chunked.
#include <gtest/gtest.h>

#include <boost/asio.hpp>

#include <chrono>

#include "transport/error.h"
#include "transport/http_server.h"

namespace splitlm::transport {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;

// Sends `request` raw and returns everything the server writes until it closes.
std::string Exchange(const std::string& address, const std::string& request) {
  net::io_context io;
  tcp::socket s(io);
  const auto colon = address.rfind(':');
  s.connect(tcp::endpoint(net::ip::make_address(address.substr(0, colon)),
                          std::stoi(address.substr(colon + 1))));
  if (!request.empty()) net::write(s, net::buffer(request));
  std::string out;
  boost::system::error_code ec;
  char buf[4096];
  while (true) {
    const size_t n = s.read_some(net::buffer(buf), ec);
    if (ec) break;
    out.append(buf, n);
  }
  return out;
}

std::unique_ptr<HttpServer> Serve(int read_timeout_ms = 30000, size_t max_body = 1 << 20) {
  HttpServerOptions o;
  o.address = "127.0.0.1:0";
  o.read_timeout_ms = read_timeout_ms;
  o.max_body_bytes = max_body;
  return std::make_unique<HttpServer>(o, [](const HttpRequest& r, HttpResponder& w) {
    if (r.target == "/stream") {
      w.Start(200, "text/event-stream");
      w.Write("data: 1\n\n");
      w.Write("data: 2\n\n");
      return;
    }
    w.Send(200, "text/plain", r.method + " " + r.target + " " + std::to_string(r.body.size()));
  });
}

TEST(HttpServerTest, AnswersAndStreams) {
  auto server = Serve();
  const std::string ok =
      Exchange(server->address(), "POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc");
  EXPECT_NE(std::string::npos, ok.find("200 OK")) << ok;
  EXPECT_NE(std::string::npos, ok.find("POST /x 3")) << ok;
  const std::string st = Exchange(server->address(), "GET /stream HTTP/1.1\r\nHost: a\r\n\r\n");
  EXPECT_NE(std::string::npos, st.find("Transfer-Encoding: chunked")) << st;
  EXPECT_NE(std::string::npos, st.find("data: 2")) << st;
}

TEST(HttpServerTest, MalformedAndOversizedRequestsAreRefused) {
  auto server = Serve(30000, 16);
  const std::string bad = Exchange(server->address(), "NOT HTTP AT ALL\r\n\r\n");
  EXPECT_NE(std::string::npos, bad.find("400 Bad Request")) << bad;
  EXPECT_NE(std::string::npos, bad.find("invalid_request_error")) << bad;
  const std::string big =
      Exchange(server->address(),
               "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n" + std::string(100, 'x'));
  EXPECT_NE(std::string::npos, big.find("413")) << big;
}

TEST(HttpServerTest, SilentClientsAreDropped) {
  auto server = Serve(/*read_timeout_ms=*/200);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string out = Exchange(server->address(), "");  // connect, say nothing
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(20));
  EXPECT_EQ(std::string::npos, out.find("200")) << out;
}

TEST(HttpServerTest, RefusesPublicAddressesWithoutTheFlag) {
  HttpServerOptions o;
  o.address = "0.0.0.0:0";
  EXPECT_THROW(HttpServer(o, [](const HttpRequest&, HttpResponder&) {}), Exception);
  o.address = "not-an-address";
  EXPECT_THROW(HttpServer(o, [](const HttpRequest&, HttpResponder&) {}), Exception);
}

}  // namespace
}  // namespace splitlm::transport
