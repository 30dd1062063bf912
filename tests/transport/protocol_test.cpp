// Wire messages: every type round-trips; every validation rule refuses a
// violating message with its own error code; garbage never crashes.
#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "transport/protocol.h"

#include <capnp/message.h>
#include <capnp/schema.h>
#include <capnp/serialize.h>

#include "transport/splitlm.capnp.h"

namespace splitlm::transport {
namespace {

Message RoundTrip(const Message& m) {
  const std::string bytes = EncodeMessage(m);
  EXPECT_EQ(0u, bytes.size() % 8);
  Decoded d = DecodeMessage(bytes.data(), bytes.size());
  EXPECT_TRUE(d.message.has_value()) << d.reason;
  return d.message.value_or(Heartbeat{});
}

TEST(ProtocolTest, HelloRoundTrips) {
  Hello h;
  h.model_fingerprint = 0x1234567890abcdefull;
  h.layer_begin = 3;
  h.layer_end = 12;
  h.codecs = {Codec::kF32, Codec::kInt8};
  h.hidden_size = 768;
  h.num_layers = 12;
  h.max_context = 1024;
  h.layer_decode_us = {10.5f, 11.25f};
  h.queue_us = 77;
  h.agent = "splitlm-cloud 0.1";
  h.reply = true;
  h.model_identity = 0xfeedull;
  h.weight_formats = "q4_k+q6_k+f32";
  auto back = std::get<Hello>(RoundTrip(h));
  EXPECT_EQ(h.model_fingerprint, back.model_fingerprint);
  EXPECT_EQ(h.model_identity, back.model_identity);
  EXPECT_EQ(h.weight_formats, back.weight_formats);
  EXPECT_EQ(h.layer_begin, back.layer_begin);
  EXPECT_EQ(h.layer_end, back.layer_end);
  EXPECT_EQ(h.codecs, back.codecs);
  EXPECT_EQ(h.hidden_size, back.hidden_size);
  EXPECT_EQ(h.num_layers, back.num_layers);
  EXPECT_EQ(h.max_context, back.max_context);
  EXPECT_EQ(h.layer_decode_us, back.layer_decode_us);
  EXPECT_EQ(h.queue_us, back.queue_us);
  EXPECT_EQ(h.agent, back.agent);
  EXPECT_TRUE(back.reply);
  EXPECT_EQ(kProtocolMajor, back.protocol_major);
}

TEST(ProtocolTest, ForwardRoundTripsAndItsHeaderIsSmall) {
  Forward f;
  f.session_id = 42;
  f.seq = 7;
  f.first_position = 100;
  f.count = 1;
  f.tensor = {Codec::kBF16, 1, 768, 1536};
  f.sampling = {0.8f, 40, 0.95f, 99};
  f.want_token = true;
  f.top_logprobs = 5;
  const std::string bytes = EncodeMessage(f);
  EXPECT_LE(bytes.size(), 160u) << "the header frame should stay small";
  auto back = std::get<Forward>(RoundTrip(f));
  EXPECT_EQ(42u, back.session_id);
  EXPECT_EQ(7u, back.seq);
  EXPECT_EQ(100u, back.first_position);
  EXPECT_EQ(1u, back.count);
  EXPECT_EQ(Codec::kBF16, back.tensor.codec);
  EXPECT_EQ(768u, back.tensor.cols);
  EXPECT_EQ(1536u, back.tensor.bytes);
  EXPECT_FLOAT_EQ(0.8f, back.sampling.temperature);
  EXPECT_EQ(40u, back.sampling.top_k);
  EXPECT_FLOAT_EQ(0.95f, back.sampling.top_p);
  EXPECT_EQ(99u, back.sampling.seed);
  EXPECT_EQ(5u, back.top_logprobs);
}

TEST(ProtocolTest, OtherMessagesRoundTrip) {
  ForwardResult r;
  r.session_id = 1;
  r.seq = 2;
  r.tokens = {5, 6};
  r.logprobs = {{5, -0.1f}, {9, -2.5f}};
  r.compute_us = 1234;
  r.queue_us = 56;
  auto rb = std::get<ForwardResult>(RoundTrip(r));
  EXPECT_EQ(r.tokens, rb.tokens);
  ASSERT_EQ(2u, rb.logprobs.size());
  EXPECT_EQ(9, rb.logprobs[1].token);
  EXPECT_FLOAT_EQ(-2.5f, rb.logprobs[1].logprob);
  EXPECT_EQ(1234u, rb.compute_us);
  EXPECT_EQ(56u, rb.queue_us);

  auto o = std::get<OpenSession>(RoundTrip(OpenSession{9, 4, Codec::kF16, true}));
  EXPECT_EQ(9u, o.session_id);
  EXPECT_EQ(4u, o.cut);
  EXPECT_EQ(Codec::kF16, o.codec);
  EXPECT_TRUE(o.ack);
  EXPECT_EQ(3u, std::get<CloseSession>(RoundTrip(CloseSession{3})).session_id);
  auto e = std::get<Error>(RoundTrip(Error{ErrorCode::kSessionEvicted, "evicted", 4, 5}));
  EXPECT_EQ(ErrorCode::kSessionEvicted, e.code);
  EXPECT_EQ("evicted", e.message);
  EXPECT_EQ(4u, e.session_id);
  EXPECT_EQ(5u, e.seq);
  auto p = std::get<Ping>(RoundTrip(Ping{11, 4096}));
  EXPECT_EQ(11u, p.seq);
  EXPECT_EQ(4096u, p.reply_bytes);
  EXPECT_EQ(12u, std::get<Pong>(RoundTrip(Pong{12})).seq);
  EXPECT_TRUE(std::holds_alternative<Heartbeat>(RoundTrip(Heartbeat{})));
}

TEST(ProtocolTest, WorkerInstanceIdsRoundTripInHelloAndHeartbeat) {
  EXPECT_EQ(0xfedcba9876543210u,
            std::get<Heartbeat>(RoundTrip(Heartbeat{0xfedcba9876543210u})).instance_id);
  EXPECT_EQ(0u, std::get<Heartbeat>(RoundTrip(Heartbeat{})).instance_id);
  Hello h;
  h.reply = true;
  h.instance_id = 77;
  EXPECT_EQ(77u, std::get<Hello>(RoundTrip(h)).instance_id);
  EXPECT_GE(kProtocolMinor, 2) << "instance ids came with protocol 1.2";
}

TEST(ProtocolTest, WorkerLoadAndDrainingRoundTripInHello) {
  Hello h;
  h.reply = true;
  h.active_sessions = 7;
  h.kv_free_bytes = 3ull << 33;
  h.draining = true;
  const Hello back = std::get<Hello>(RoundTrip(h));
  EXPECT_EQ(7u, back.active_sessions);
  EXPECT_EQ(3ull << 33, back.kv_free_bytes);
  EXPECT_TRUE(back.draining);
  EXPECT_FALSE(std::get<Hello>(RoundTrip(Hello{})).draining);
  EXPECT_GE(kProtocolMinor, 5) << "worker load and draining came with protocol 1.5";
}

// The C++ ErrorCode mirrors the schema's enum: a name for every enumerant
// the schema declares (protocol.cpp checks values and the table's size at
// compile time; this catches an enumerant added to the schema alone).
TEST(ProtocolTest, EveryWireErrorCodeHasANameAndTheSameValue) {
  const auto enumerants = capnp::Schema::from<wire::ErrorCode>().getEnumerants();
  for (auto e : enumerants) {
    const auto code = static_cast<ErrorCode>(e.getOrdinal());
    std::string camel;  // bad_message -> badMessage, as the schema spells it
    bool upper = false;
    for (const char* c = ErrorCodeName(code); *c; ++c) {
      if (*c == '_') {
        upper = true;
      } else {
        camel += upper ? static_cast<char>(*c - 'a' + 'A') : *c;
        upper = false;
      }
    }
    EXPECT_EQ(std::string(e.getProto().getName().cStr()), camel);
  }
  EXPECT_STREQ("unknown", ErrorCodeName(static_cast<ErrorCode>(enumerants.size())));
}

TEST(ProtocolTest, DecodesFromUnalignedFrames) {
  const std::string bytes = EncodeMessage(Ping{77, 8});
  std::vector<char> buf(bytes.size() + 1);
  std::memcpy(buf.data() + 1, bytes.data(), bytes.size());
  Decoded d = DecodeMessage(buf.data() + 1, bytes.size());
  ASSERT_TRUE(d.message.has_value()) << d.reason;
  EXPECT_EQ(77u, std::get<Ping>(*d.message).seq);
}

TEST(ProtocolTest, GarbageIsRefusedNotFatal) {
  std::mt19937 rng(1);
  for (int i = 0; i < 2000; ++i) {
    std::vector<uint64_t> words(1 + rng() % 16);
    for (auto& w : words) w = (uint64_t{rng()} << 32) | rng();
    Decoded d = DecodeMessage(words.data(), words.size() * 8);
    if (!d.message) {
      EXPECT_NE(ErrorCode::kNone, d.error);
    }
  }
  EXPECT_EQ(ErrorCode::kBadMessage, DecodeMessage("abc", 3).error);
  EXPECT_EQ(ErrorCode::kBadMessage, DecodeMessage("", 0).error);
  std::string big(Limits{}.max_header_bytes + 8, '\0');
  EXPECT_EQ(ErrorCode::kTooLarge, DecodeMessage(big.data(), big.size()).error);
  // A segment table that claims more words than the frame holds.
  uint32_t table[2] = {0, 1000};
  EXPECT_EQ(ErrorCode::kBadMessage, DecodeMessage(table, sizeof table).error);
}

TEST(ProtocolTest, TraversalLimitIsEnforced) {
  ForwardResult r;
  r.tokens.assign(60000, 1);
  const std::string bytes = EncodeMessage(r);
  Limits tight;
  tight.max_header_bytes = 1 << 20;
  tight.traversal_limit_words = 1000;
  tight.max_rows = 1 << 20;
  EXPECT_EQ(ErrorCode::kBadMessage, DecodeMessage(bytes.data(), bytes.size(), tight).error);
  Limits rows = tight;
  rows.traversal_limit_words = 1 << 20;
  rows.max_rows = 100;
  EXPECT_EQ(ErrorCode::kTooLarge, DecodeMessage(bytes.data(), bytes.size(), rows).error);
}

class ForwardValidation : public ::testing::Test {
 protected:
  ForwardValidation() {
    f.session_id = 1;
    f.first_position = 10;
    f.count = 2;
    f.tensor = {Codec::kF32, 2, 64, 2 * 64 * 4};
    x.hidden_size = 64;
    x.next_position = 10;
    x.max_context = 16;
    x.codecs = {Codec::kF32, Codec::kInt8};
  }
  ErrorCode Check(size_t payload = 2 * 64 * 4) { return ValidateForward(f, payload, x).code; }
  Forward f;
  ForwardExpectations x;
};

TEST_F(ForwardValidation, AcceptsAConsistentForward) { EXPECT_EQ(ErrorCode::kNone, Check()); }

TEST_F(ForwardValidation, EachRuleHasItsCode) {
  f.tensor.codec = Codec::kF16;
  EXPECT_EQ(ErrorCode::kBadTensor, Check());  // codec not accepted
  f.tensor.codec = Codec::kF32;
  f.tensor.rows = 3;
  EXPECT_EQ(ErrorCode::kBadTensor, Check());  // rows != count
  f.tensor.rows = 2;
  f.tensor.cols = 65;
  EXPECT_EQ(ErrorCode::kBadTensor, Check());  // shape
  f.tensor.cols = 64;
  EXPECT_EQ(ErrorCode::kBadTensor, Check(2 * 64 * 4 - 1));  // payload size
  f.tensor.bytes = 100;
  EXPECT_EQ(ErrorCode::kBadTensor, Check());  // declared size
  f.tensor.bytes = 2 * 64 * 4;
  f.first_position = 9;
  EXPECT_EQ(ErrorCode::kBadPosition, Check());
  f.first_position = 10;
  x.max_context = 11;
  EXPECT_EQ(ErrorCode::kTooLarge, Check());  // context overflow
  x.max_context = 16;
  EXPECT_EQ(ErrorCode::kTooLarge, ValidateForward(f, 2 * 64 * 4, x, Limits{64 << 10, 100}).code);
  f.sampling.top_p = 0;
  EXPECT_EQ(ErrorCode::kBadSampling, Check());
  f.sampling.top_p = 1;
  f.sampling.temperature = NAN;
  EXPECT_EQ(ErrorCode::kBadSampling, Check());
  f.sampling.temperature = 0;
  f.count = 0;
  f.tensor.rows = 0;
  EXPECT_EQ(ErrorCode::kBadTensor, Check(0));
  f.count = f.tensor.rows = 100000;
  EXPECT_EQ(ErrorCode::kTooLarge, Check());
}

TEST_F(ForwardValidation, DraftsNeedTheRowBeforeThemTokenIdsAndWantToken) {
  f.draft_tokens = {5};
  x.vocab_size = 256;
  EXPECT_EQ(ErrorCode::kNone, Check());
  f.draft_tokens = {5, 6};
  EXPECT_EQ(ErrorCode::kBadMessage, Check());  // no row before the first draft
  f.draft_tokens = {256};
  EXPECT_EQ(ErrorCode::kBadMessage, Check());  // outside the vocabulary
  f.draft_tokens = {-1};
  EXPECT_EQ(ErrorCode::kBadMessage, Check());
  f.draft_tokens = {5};
  f.want_token = false;
  EXPECT_EQ(ErrorCode::kBadMessage, Check());
  f.want_token = true;
  f.draft_tokens.assign(kMaxDrafts + 1, 1);
  f.count = f.tensor.rows = kMaxDrafts + 2;
  f.tensor.bytes = EncodedSize(Codec::kF32, f.count, 64);
  x.max_context = 100;
  EXPECT_EQ(ErrorCode::kTooLarge, Check(f.tensor.bytes));
}

TEST(ProtocolTest, SpeculativeFieldsRoundTrip) {
  Forward f;
  f.count = 4;
  f.draft_tokens = {7, 0, 255};
  EXPECT_EQ(f.draft_tokens, std::get<Forward>(RoundTrip(f)).draft_tokens);
  EXPECT_TRUE(std::get<Forward>(RoundTrip(Forward{})).draft_tokens.empty());  // an ordinary step
  ForwardResult r;
  r.tokens = {7, 0, 9};
  r.accepted = 2;
  r.logprobs.assign(3 * 64, {1, -0.5f});  // 64 per token: over one position's limit, within three's
  auto back = std::get<ForwardResult>(RoundTrip(r));
  EXPECT_EQ(2u, back.accepted);
  EXPECT_EQ(r.tokens, back.tokens);
  EXPECT_EQ(r.logprobs.size(), back.logprobs.size());
}

// A header frame built field by field, to send what EncodeMessage never does.
std::string RawForward(uint32_t drafts, const std::vector<int32_t>& tokens) {
  capnp::MallocMessageBuilder builder;
  auto fw = builder.initRoot<wire::Message>().initForward();
  fw.setCount(4);
  fw.setDrafts(drafts);
  auto list = fw.initDraftTokens(static_cast<unsigned>(tokens.size()));
  for (size_t i = 0; i < tokens.size(); ++i) list.set(i, tokens[i]);
  auto words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

TEST(ProtocolTest, BadDraftFieldsAreRefusedWithTheirReason) {
  auto decode = [](const std::string& b) { return DecodeMessage(b.data(), b.size()); };
  EXPECT_TRUE(decode(RawForward(2, {1, 2})).message);
  auto mismatch = decode(RawForward(3, {1, 2}));
  EXPECT_EQ(ErrorCode::kBadMessage, mismatch.error);
  EXPECT_EQ("drafts 3 with 2 draft tokens", mismatch.reason);
  EXPECT_EQ(ErrorCode::kBadMessage, decode(RawForward(1, {-4})).error);
  auto many = decode(RawForward(kMaxDrafts + 1, std::vector<int32_t>(kMaxDrafts + 1, 1)));
  EXPECT_EQ(ErrorCode::kTooLarge, many.error);
  EXPECT_NE(std::string::npos, many.reason.find("over the limit")) << many.reason;
  // A result accepting as many drafts as it has tokens lacks the next token.
  ForwardResult r;
  r.tokens = {3, 4};
  r.accepted = 2;
  const std::string bytes = EncodeMessage(r);
  auto d = DecodeMessage(bytes.data(), bytes.size());
  EXPECT_EQ(ErrorCode::kBadMessage, d.error);
  EXPECT_NE(std::string::npos, d.reason.find("next token missing")) << d.reason;
}

TEST(ProtocolTest, HelloChecksVersionAndModel) {
  Hello a;
  a.model_fingerprint = 1;
  a.hidden_size = 64;
  a.num_layers = 4;
  Hello b = a;
  EXPECT_TRUE(ValidateHello(a, b).ok());
  b.protocol_major = 2;
  EXPECT_EQ(ErrorCode::kVersionMismatch, ValidateHello(a, b).code);
  b = a;
  b.model_fingerprint = 2;
  EXPECT_EQ(ErrorCode::kModelMismatch, ValidateHello(a, b).code);
  b = a;
  b.layer_begin = 3;
  b.layer_end = 9;
  const std::string bytes = EncodeMessage(b);
  EXPECT_EQ(ErrorCode::kBadMessage, DecodeMessage(bytes.data(), bytes.size()).error);
}

TEST(ProtocolTest, TheSameModelInOtherFormatsIsAcceptedWithAWarningUnlessExactnessIsRequired) {
  Hello a;
  a.model_fingerprint = 1;
  a.model_identity = 9;
  a.weight_formats = "f32";
  a.hidden_size = 64;
  a.num_layers = 4;
  Hello b = a;
  Validation same = ValidateHello(a, b, true);
  EXPECT_TRUE(same.ok());
  EXPECT_EQ("", same.reason) << "identical weights: nothing to warn about";

  b.model_fingerprint = 2;
  b.weight_formats = "q4_k+q6_k+f32";
  Validation other = ValidateHello(a, b);
  EXPECT_TRUE(other.ok()) << other.reason;
  EXPECT_NE(std::string::npos, other.reason.find("theirs q4_k+q6_k+f32, ours f32")) << other.reason;
  EXPECT_NE(std::string::npos, other.reason.find("may differ from a local run")) << other.reason;
  Validation exact = ValidateHello(a, b, true);
  EXPECT_EQ(ErrorCode::kModelMismatch, exact.code);
  EXPECT_NE(std::string::npos, exact.reason.find("exact weights are required (require_exact)"))
      << exact.reason;

  // Another identity, or none (a peer older than protocol 1.3), or other
  // shapes: another model, refused whatever the policy.
  for (auto change :
       {+[](Hello& h) { h.model_identity = 8; }, +[](Hello& h) { h.model_identity = 0; },
        +[](Hello& h) { h.num_layers = 5; }}) {
    Hello c = b;
    change(c);
    EXPECT_EQ(ErrorCode::kModelMismatch, ValidateHello(a, c).code);
  }
  Hello none = a;
  none.model_identity = 0;
  Hello none_other = b;
  none_other.model_identity = 0;
  EXPECT_EQ(ErrorCode::kModelMismatch, ValidateHello(none, none_other).code) << "0 never matches";

  // A peer's formats text is escaped and bounded in the message.
  b.weight_formats = std::string(500, 'x') + "\n\x1b[31m";
  EXPECT_LT(ValidateHello(a, b).reason.size(), 300u);
}

}  // namespace
}  // namespace splitlm::transport
