// Log lines about peers: peer-chosen text is escaped, and a flood of lines
// about one peer (or many) is cut to a bounded number plus a count.
#include <gtest/gtest.h>

#include <spdlog/sinks/ringbuffer_sink.h>

#include "transport/log_escape.h"
#include "transport/peer_log.h"

namespace splitlm::transport {
namespace {

using std::chrono::seconds;

struct Captured {
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> sink =
      std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(10000);
  std::shared_ptr<spdlog::logger> log = std::make_shared<spdlog::logger>("test", sink);
  Captured() { log->set_pattern("%v"); }
  std::vector<std::string> Lines() { return sink->last_formatted(); }
};

TEST(LogEscapeTest, ControlCharactersAndBackslashesAreEscaped) {
  EXPECT_EQ("agent\\n[12:00:00] [cloud] [info] forged",
            EscapeForLog("agent\n[12:00:00] [cloud] [info] forged"));
  EXPECT_EQ("a\\r\\tb\\\\n\\x1b[31m\\x00\\x7f\\xc3\\xa9",
            EscapeForLog(std::string("a\r\tb\\n\x1b[31m\0\x7f\xc3\xa9", 15)));
  EXPECT_EQ("plain text: 1 + 2 = 3", EscapeForLog("plain text: 1 + 2 = 3"));
}

TEST(LogEscapeTest, LongTextIsCut) {
  EXPECT_EQ("abc...(10 bytes)", EscapeForLog("abcdefghij", 3));
  EXPECT_EQ(256u + 17u, EscapeForLog(std::string(100000, 'x')).size());  // "...(100000 bytes)"
}

TEST(LogEscapeTest, PeerNamesAreHex) {
  EXPECT_EQ("00a1ff", PeerName(std::string("\0\xa1\xff", 3)));
}

TEST(PeerLogTest, AtMostNLinesPerPeerPerIntervalThenOneCountLine) {
  Captured c;
  PeerLog limiter(c.log, PeerLogOptions{3, 100, seconds(10)});
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 1000; ++i)
    limiter.Log("aa", spdlog::level::warn, "bad message " + std::to_string(i), t0 + seconds(i % 5));
  EXPECT_EQ((std::vector<std::string>{"bad message 0\n", "bad message 1\n", "bad message 2\n"}),
            c.Lines());
  limiter.Flush(t0 + seconds(9));  // the interval is not over
  EXPECT_EQ(3u, c.Lines().size());
  limiter.Flush(t0 + seconds(10));
  ASSERT_EQ(4u, c.Lines().size());
  EXPECT_EQ("suppressed 997 messages from peer aa in 10 s\n", c.Lines().back());
  EXPECT_EQ(997u, limiter.suppressed_total());
  // A new interval: the peer may speak again.
  limiter.Log("aa", spdlog::level::warn, "again", t0 + seconds(11));
  EXPECT_EQ("again\n", c.Lines().back());
}

TEST(PeerLogTest, ManyPeersTogetherAreBoundedByTheTotal) {
  Captured c;
  PeerLog limiter(c.log, PeerLogOptions{2, 5, seconds(10)});
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 10000; ++i)
    limiter.Log("peer" + std::to_string(i), spdlog::level::warn, "bad", t0);
  EXPECT_EQ(5u, c.Lines().size());
  limiter.Flush(t0 + seconds(10));
  // At most `lines_total` count lines, and one for the rest.
  const auto lines = c.Lines();
  ASSERT_EQ(11u, lines.size());
  EXPECT_EQ("suppressed 1 messages from peer peer10 in 10 s\n", lines[5]);
  EXPECT_EQ("suppressed 9990 messages from other peers in 10 s\n", lines.back());
}

TEST(PeerLogTest, LinesBelowTheLevelAreNotCounted) {
  Captured c;
  c.log->set_level(spdlog::level::info);
  PeerLog limiter(c.log, PeerLogOptions{1, 100, seconds(10)});
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 10; ++i) limiter.Log("aa", spdlog::level::debug, "chatter", t0);
  limiter.Log("aa", spdlog::level::warn, "matters", t0);
  EXPECT_EQ(std::vector<std::string>{"matters\n"}, c.Lines());
}

}  // namespace
}  // namespace splitlm::transport
