// Streaming text: deltas never split a UTF-8 character, and text that may
// begin a stop string is held until decided.
#include <gtest/gtest.h>

#include "device/text_stream.h"

namespace splitlm::device {
namespace {

// A byte-level decoder: id i is the i-th byte of `text` (as a byte-level BPE
// vocabulary spells a character over several tokens).
TextStream::Decoder Bytes(const std::string& text) {
  return [text](const std::vector<int32_t>& ids) {
    std::string s;
    for (int32_t id : ids) s += text[static_cast<size_t>(id)];
    return s;
  };
}

// Streams `text` one byte-token at a time; returns the deltas (Finish's last).
std::vector<std::string> StreamBytes(const std::string& text, std::vector<std::string> stops = {},
                                     TextStream* out = nullptr) {
  TextStream s(Bytes(text), std::move(stops));
  std::vector<std::string> deltas;
  for (size_t i = 0; i < text.size() && !s.stopped(); ++i)
    deltas.push_back(s.Push(static_cast<int32_t>(i)));
  deltas.push_back(s.Finish());
  if (out) *out = s;
  return deltas;
}

bool ValidUtf8(const std::string& s) {
  return Utf8Lossy(s) == s && Utf8CompleteLength(s) == s.size();
}

TEST(TextStream, MultiByteTextSplitIntoByteTokensComesOutInWholeCharacters) {
  const std::string text = "Ab 你好，世界 😀👨‍👩‍👧 é ñ";
  std::string joined;
  for (const auto& d : StreamBytes(text)) {
    EXPECT_TRUE(ValidUtf8(d)) << "delta splits a character: " << testing::PrintToString(d);
    joined += d;
  }
  EXPECT_EQ(text, joined);
}

TEST(TextStream, ACharacterIsSentWhenItsLastByteArrives) {
  const std::string text = "\xE4\xBD\xA0";  // 你
  EXPECT_EQ((std::vector<std::string>{"", "", text, ""}), StreamBytes(text));
  const std::string emoji = "\xF0\x9F\x98\x80";  // 😀
  EXPECT_EQ((std::vector<std::string>{"", "", "", emoji, ""}), StreamBytes(emoji));
}

TEST(TextStream, AnUnfinishedCharacterAtTheEndBecomesReplacementCharacter) {
  TextStream s(Bytes("a\xE4\xBD"), {});
  EXPECT_EQ("a", s.Push(0));
  EXPECT_EQ("", s.Push(1));
  EXPECT_EQ("", s.Push(2));
  EXPECT_EQ("\xEF\xBF\xBD\xEF\xBF\xBD",
            s.Finish());  // as Hugging Face's lossy decode: one U+FFFD per bad byte
}

TEST(TextStream, InvalidBytesInsideTheTextAreReplaced) {
  EXPECT_EQ(
      "a\xEF\xBF\xBD"
      "b",
      Utf8Lossy("a\xFF"
                "b"));
  EXPECT_EQ("\xEF\xBF\xBD\xEF\xBF\xBD", Utf8Lossy("\xC0\xAF"));                  // overlong '/'
  EXPECT_EQ("\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD", Utf8Lossy("\xED\xA0\x80"));  // a surrogate
}

TEST(TextStream, TextEndsBeforeAStopStringSplitAcrossTokens) {
  TextStream s(nullptr, {});
  const auto deltas = StreamBytes("Hello. END more", {"END"}, &s);
  std::string joined;
  for (const auto& d : deltas) joined += d;
  EXPECT_EQ("Hello. ", joined);
  EXPECT_TRUE(s.stopped());
  EXPECT_EQ("Hello. ", s.text());
  // "E" and "EN" were held, not sent and taken back.
  for (const auto& d : deltas) EXPECT_EQ(std::string::npos, d.find('E')) << d;
}

TEST(TextStream, AHeldStopPrefixIsReleasedWhenItDoesNotComplete) {
  TextStream s(nullptr, {});
  std::string joined;
  for (const auto& d : StreamBytes("a EN! b EX", {"END", "EXIT"}, &s)) joined += d;
  EXPECT_EQ("a EN! b EX", joined);
  EXPECT_FALSE(s.stopped());
}

TEST(TextStream, TheEarliestOfSeveralStopStringsWins) {
  TextStream s(nullptr, {});
  std::string joined;
  for (const auto& d : StreamBytes("x <b> y <a>", {"<a>", "<b>"}, &s)) joined += d;
  EXPECT_EQ("x ", joined);
}

TEST(TextStream, AMultiByteStopString) {
  TextStream s(nullptr, {});
  std::string joined;
  for (const auto& d : StreamBytes("答案：42。结束了", {"结束"}, &s)) joined += d;
  EXPECT_EQ("答案：42。", joined);
  EXPECT_TRUE(s.stopped());
}

TEST(TextStream, DecodesTheWholeSequenceSoNeighbourDependentPiecesComeOutRight) {
  // A SentencePiece-like decoder: "▁" is a space except at the very start.
  TextStream s(
      [](const std::vector<int32_t>& ids) {
        std::string t;
        for (int32_t id : ids) t += (t.empty() ? "" : " ") + std::string(id == 0 ? "Hi" : "there");
        return t;
      },
      {});
  EXPECT_EQ("Hi", s.Push(0));
  EXPECT_EQ(" there", s.Push(1));
  EXPECT_EQ("Hi there", s.text());
}

}  // namespace
}  // namespace splitlm::device
