#include "transport/protocol.h"

#include <capnp/message.h>
#include <capnp/serialize.h>
#include <kj/exception.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <iterator>
#include <type_traits>

#include "transport/log_escape.h"
#include "transport/splitlm.capnp.h"

namespace splitlm::transport {
namespace {

bool ValidCodec(uint16_t v) { return v <= static_cast<uint16_t>(Codec::kInt8); }

wire::Codec ToWire(Codec c) { return static_cast<wire::Codec>(static_cast<uint16_t>(c)); }

void WriteHello(wire::Hello::Builder b, const Hello& h) {
  b.setProtocolMajor(h.protocol_major);
  b.setProtocolMinor(h.protocol_minor);
  b.setModelFingerprint(h.model_fingerprint);
  auto layers = b.initLayers();
  layers.setBegin(h.layer_begin);
  layers.setEnd(h.layer_end);
  auto codecs = b.initCodecs(static_cast<unsigned>(h.codecs.size()));
  for (size_t i = 0; i < h.codecs.size(); ++i) codecs.set(i, ToWire(h.codecs[i]));
  b.setHiddenSize(h.hidden_size);
  b.setNumLayers(h.num_layers);
  b.setMaxContext(h.max_context);
  auto times = b.initLayerDecodeUs(static_cast<unsigned>(h.layer_decode_us.size()));
  for (size_t i = 0; i < h.layer_decode_us.size(); ++i) times.set(i, h.layer_decode_us[i]);
  b.setQueueUs(h.queue_us);
  b.setHeadDecodeUs(h.head_decode_us);
  b.setAgent(h.agent);
  b.setModelIdentity(h.model_identity);
  b.setWeightFormats(h.weight_formats);
  b.setActiveSessions(h.active_sessions);
  b.setKvFreeBytes(h.kv_free_bytes);
  b.setDraining(h.draining);
}

void WriteOpen(wire::OpenSession::Builder b, const OpenSession& o) {
  b.setSessionId(o.session_id);
  b.setCut(o.cut);
  b.setCodec(ToWire(o.codec));
}

// Thrown inside decoding for a semantic violation; caught in DecodeMessage.
struct Reject {
  ErrorCode code;
  std::string reason;
};

Codec ReadCodec(wire::Codec c) {
  const auto v = static_cast<uint16_t>(c);
  if (!ValidCodec(v)) throw Reject{ErrorCode::kBadTensor, "unknown codec " + std::to_string(v)};
  return static_cast<Codec>(v);
}

std::string ReadText(capnp::Text::Reader t, const Limits& limits, const char* field) {
  if (t.size() > limits.max_text_bytes) {
    throw Reject{ErrorCode::kTooLarge, std::string(field) + " longer than " +
                                           std::to_string(limits.max_text_bytes) + " bytes"};
  }
  return std::string(t.cStr(), t.size());
}

Hello ReadHello(wire::Hello::Reader r, const Limits& limits, bool reply) {
  Hello h;
  h.reply = reply;
  h.protocol_major = r.getProtocolMajor();
  h.protocol_minor = r.getProtocolMinor();
  h.model_fingerprint = r.getModelFingerprint();
  h.layer_begin = r.getLayers().getBegin();
  h.layer_end = r.getLayers().getEnd();
  auto codecs = r.getCodecs();
  if (codecs.size() > 16) throw Reject{ErrorCode::kTooLarge, "too many codecs"};
  for (auto c : codecs) {
    // Unknown codecs from a newer peer are skipped, not fatal.
    if (ValidCodec(static_cast<uint16_t>(c))) h.codecs.push_back(static_cast<Codec>(c));
  }
  h.hidden_size = r.getHiddenSize();
  h.num_layers = r.getNumLayers();
  h.max_context = r.getMaxContext();
  auto times = r.getLayerDecodeUs();
  if (times.size() > 4096) throw Reject{ErrorCode::kTooLarge, "too many layer times"};
  for (float t : times) {
    if (!std::isfinite(t) || t < 0) throw Reject{ErrorCode::kBadMessage, "bad layer time"};
    h.layer_decode_us.push_back(t);
  }
  h.queue_us = r.getQueueUs();
  h.head_decode_us = r.getHeadDecodeUs();
  h.model_identity = r.getModelIdentity();
  h.weight_formats = ReadText(r.getWeightFormats(), limits, "weight formats");
  if (!std::isfinite(h.head_decode_us) || h.head_decode_us < 0)
    throw Reject{ErrorCode::kBadMessage, "bad head time"};
  h.agent = ReadText(r.getAgent(), limits, "agent");
  h.active_sessions = r.getActiveSessions();
  h.kv_free_bytes = r.getKvFreeBytes();
  h.draining = r.getDraining();
  if (h.layer_begin > h.layer_end || h.layer_end > h.num_layers) {
    throw Reject{ErrorCode::kBadMessage, "hello layer range [" + std::to_string(h.layer_begin) +
                                             ", " + std::to_string(h.layer_end) + ") outside " +
                                             std::to_string(h.num_layers) + " layers"};
  }
  return h;
}

OpenSession ReadOpen(wire::OpenSession::Reader r, bool ack) {
  OpenSession o;
  o.session_id = r.getSessionId();
  o.cut = r.getCut();
  o.codec = ReadCodec(r.getCodec());
  o.ack = ack;
  return o;
}

Forward ReadForward(wire::Forward::Reader r, const Limits& limits) {
  Forward f;
  f.session_id = r.getSessionId();
  f.seq = r.getSeq();
  f.first_position = r.getFirstPosition();
  f.count = r.getCount();
  auto t = r.getTensor();
  f.tensor.codec = ReadCodec(t.getCodec());
  f.tensor.rows = t.getRows();
  f.tensor.cols = t.getCols();
  f.tensor.bytes = t.getBytes();
  auto s = r.getSampling();
  f.sampling.temperature = s.getTemperature();
  f.sampling.top_k = s.getTopK();
  f.sampling.top_p = s.getTopP();
  f.sampling.seed = s.getSeed();
  f.want_token = r.getWantToken();
  f.top_logprobs = r.getTopLogprobs();
  if (f.top_logprobs > limits.max_logprobs) {
    throw Reject{ErrorCode::kTooLarge, "topLogprobs " + std::to_string(f.top_logprobs) +
                                           " over the limit of " +
                                           std::to_string(limits.max_logprobs)};
  }
  const uint32_t drafts = r.getDrafts();
  auto draft_tokens = r.getDraftTokens();
  if (drafts > kMaxDrafts || draft_tokens.size() > kMaxDrafts) {
    throw Reject{ErrorCode::kTooLarge,
                 "drafts " + std::to_string(std::max<uint32_t>(drafts, draft_tokens.size())) +
                     " over the limit of " + std::to_string(kMaxDrafts)};
  }
  if (draft_tokens.size() != drafts) {
    throw Reject{ErrorCode::kBadMessage, "drafts " + std::to_string(drafts) + " with " +
                                             std::to_string(draft_tokens.size()) + " draft tokens"};
  }
  for (int32_t t : draft_tokens) {
    if (t < 0) throw Reject{ErrorCode::kBadMessage, "negative draft token id " + std::to_string(t)};
    f.draft_tokens.push_back(t);
  }
  return f;
}

ForwardResult ReadResult(wire::ForwardResult::Reader r, const Limits& limits) {
  ForwardResult f;
  f.session_id = r.getSessionId();
  f.seq = r.getSeq();
  auto tokens = r.getTokens();
  if (tokens.size() > limits.max_rows) throw Reject{ErrorCode::kTooLarge, "too many tokens"};
  for (int32_t t : tokens) {
    if (t < 0) throw Reject{ErrorCode::kBadMessage, "negative token id " + std::to_string(t)};
    f.tokens.push_back(t);
  }
  auto lp = r.getLogprobs();
  // A speculative answer carries topLogprobs entries for each of its tokens.
  if (lp.size() > static_cast<size_t>(limits.max_logprobs) * (kMaxDrafts + 1)) {
    throw Reject{ErrorCode::kTooLarge, "too many logprobs"};
  }
  for (auto e : lp) f.logprobs.push_back({e.getToken(), e.getLogprob()});
  f.compute_us = r.getComputeUs();
  f.queue_us = r.getQueueUs();
  f.accepted = r.getAccepted();
  if (f.accepted > 0 && f.accepted >= f.tokens.size()) {
    throw Reject{ErrorCode::kBadMessage, "accepted " + std::to_string(f.accepted) + " drafts but " +
                                             std::to_string(f.tokens.size()) +
                                             " tokens (the next token missing)"};
  }
  return f;
}

}  // namespace

namespace {

// One row per ErrorCode, in value order: the C++ code, the wire's, the name.
struct ErrorCodeRow {
  ErrorCode code;
  wire::ErrorCode wire;
  const char* name;
};
constexpr ErrorCodeRow kErrorCodes[] = {
    {ErrorCode::kNone, wire::ErrorCode::NONE, "none"},
    {ErrorCode::kBadMessage, wire::ErrorCode::BAD_MESSAGE, "bad_message"},
    {ErrorCode::kVersionMismatch, wire::ErrorCode::VERSION_MISMATCH, "version_mismatch"},
    {ErrorCode::kModelMismatch, wire::ErrorCode::MODEL_MISMATCH, "model_mismatch"},
    {ErrorCode::kUnknownSession, wire::ErrorCode::UNKNOWN_SESSION, "unknown_session"},
    {ErrorCode::kSessionEvicted, wire::ErrorCode::SESSION_EVICTED, "session_evicted"},
    {ErrorCode::kBadPosition, wire::ErrorCode::BAD_POSITION, "bad_position"},
    {ErrorCode::kBadTensor, wire::ErrorCode::BAD_TENSOR, "bad_tensor"},
    {ErrorCode::kTooLarge, wire::ErrorCode::TOO_LARGE, "too_large"},
    {ErrorCode::kBusy, wire::ErrorCode::BUSY, "busy"},
    {ErrorCode::kInternal, wire::ErrorCode::INTERNAL, "internal"},
    {ErrorCode::kUnauthorized, wire::ErrorCode::UNAUTHORIZED, "unauthorized"},
    {ErrorCode::kBadCut, wire::ErrorCode::BAD_CUT, "bad_cut"},
    {ErrorCode::kBadSampling, wire::ErrorCode::BAD_SAMPLING, "bad_sampling"},
};

constexpr bool ErrorCodeTableMatches() {
  for (size_t i = 0; i < std::size(kErrorCodes); ++i) {
    if (static_cast<size_t>(kErrorCodes[i].code) != i) return false;
    if (static_cast<uint16_t>(kErrorCodes[i].wire) != static_cast<uint16_t>(kErrorCodes[i].code))
      return false;
  }
  return true;
}
static_assert(ErrorCodeTableMatches(),
              "kErrorCodes: row i holds ErrorCode i and the wire's enumerant of that value");
static_assert(
    static_cast<size_t>(ErrorCode::kBadSampling) + 1 == std::size(kErrorCodes),
    "a row per ErrorCode: add new codes after kBadSampling, to the table and to splitlm.capnp");

// Indexed by Message::index().
constexpr const char* kMessageNames[] = {"hello", "open", "close", "forward",  "result",
                                         "error", "ping", "pong",  "heartbeat"};
static_assert(std::size(kMessageNames) == std::variant_size_v<Message>,
              "a name per Message alternative");
// Row i of kMessageNames names alternative i: a reordered or inserted
// alternative fails here, not in a log line.
static_assert(std::is_same_v<Message, std::variant<Hello, OpenSession, CloseSession, Forward,
                                                   ForwardResult, Error, Ping, Pong, Heartbeat>>,
              "kMessageNames follows the order of Message's alternatives");

}  // namespace

const char* ErrorCodeName(ErrorCode code) {
  const auto i = static_cast<size_t>(code);
  return i < std::size(kErrorCodes) ? kErrorCodes[i].name : "unknown";
}

const char* MessageName(const Message& m) { return kMessageNames[m.index()]; }

namespace {

void WriteForward(wire::Forward::Builder b, const Forward& f) {
  b.setSessionId(f.session_id);
  b.setSeq(f.seq);
  b.setFirstPosition(f.first_position);
  b.setCount(f.count);
  auto t = b.initTensor();
  t.setCodec(ToWire(f.tensor.codec));
  t.setRows(f.tensor.rows);
  t.setCols(f.tensor.cols);
  t.setBytes(f.tensor.bytes);
  auto s = b.initSampling();
  s.setTemperature(f.sampling.temperature);
  s.setTopK(f.sampling.top_k);
  s.setTopP(f.sampling.top_p);
  s.setSeed(f.sampling.seed);
  b.setWantToken(f.want_token);
  b.setTopLogprobs(f.top_logprobs);
  b.setDrafts(static_cast<uint32_t>(f.draft_tokens.size()));
  auto drafts = b.initDraftTokens(static_cast<unsigned>(f.draft_tokens.size()));
  for (size_t i = 0; i < f.draft_tokens.size(); ++i) drafts.set(i, f.draft_tokens[i]);
}

void WriteResult(wire::ForwardResult::Builder b, const ForwardResult& r) {
  b.setSessionId(r.session_id);
  b.setSeq(r.seq);
  auto tokens = b.initTokens(static_cast<unsigned>(r.tokens.size()));
  for (size_t i = 0; i < r.tokens.size(); ++i) tokens.set(i, r.tokens[i]);
  auto lp = b.initLogprobs(static_cast<unsigned>(r.logprobs.size()));
  for (size_t i = 0; i < r.logprobs.size(); ++i) {
    lp[i].setToken(r.logprobs[i].token);
    lp[i].setLogprob(r.logprobs[i].logprob);
  }
  b.setComputeUs(r.compute_us);
  b.setQueueUs(r.queue_us);
  b.setAccepted(r.accepted);
}

void WriteError(wire::Error::Builder b, const Error& e) {
  b.setCode(static_cast<wire::ErrorCode>(static_cast<uint16_t>(e.code)));
  b.setMessage(e.message);
  b.setSessionId(e.session_id);
  b.setSeq(e.seq);
}

// Each alternative of Message into the root's union.
struct MessageWriter {
  wire::Message::Builder root;
  void operator()(const Hello& h) {
    WriteHello(h.reply ? root.initHelloReply() : root.initHello(), h);
    root.setInstanceId(h.instance_id);
  }
  void operator()(const OpenSession& o) {
    WriteOpen(o.ack ? root.initOpened() : root.initOpen(), o);
  }
  void operator()(const CloseSession& c) { root.initClose().setSessionId(c.session_id); }
  void operator()(const Forward& f) { WriteForward(root.initForward(), f); }
  void operator()(const ForwardResult& r) { WriteResult(root.initResult(), r); }
  void operator()(const Error& e) { WriteError(root.initError(), e); }
  void operator()(const Ping& p) {
    auto b = root.initPing();
    b.setSeq(p.seq);
    b.setReplyBytes(p.reply_bytes);
  }
  void operator()(const Pong& p) { root.initPong().setSeq(p.seq); }
  void operator()(const Heartbeat& h) {
    root.setHeartbeat();
    root.setInstanceId(h.instance_id);
  }
};

}  // namespace

std::string EncodeMessage(const Message& message) {
  capnp::MallocMessageBuilder builder(512 / sizeof(capnp::word));
  std::visit(MessageWriter{builder.initRoot<wire::Message>()}, message);
  auto words = capnp::messageToFlatArray(builder);
  auto bytes = words.asBytes();
  return std::string(reinterpret_cast<const char*>(bytes.begin()), bytes.size());
}

namespace {

Error ReadError(wire::Error::Reader e, const Limits& limits) {
  const auto code = static_cast<uint16_t>(e.getCode());
  Error err;
  err.code = code <= static_cast<uint16_t>(ErrorCode::kBadSampling) ? static_cast<ErrorCode>(code)
                                                                    : ErrorCode::kInternal;
  err.message = ReadText(e.getMessage(), limits, "error message");
  err.session_id = e.getSessionId();
  err.seq = e.getSeq();
  return err;
}

Ping ReadPing(wire::Ping::Reader p, const Limits& limits) {
  if (p.getReplyBytes() > limits.max_probe_bytes) {
    throw Reject{ErrorCode::kTooLarge,
                 "ping asks for a reply of " + std::to_string(p.getReplyBytes()) +
                     " bytes, over the probe limit of " + std::to_string(limits.max_probe_bytes)};
  }
  return Ping{p.getSeq(), p.getReplyBytes()};
}

Message ReadMessage(wire::Message::Reader m, const Limits& limits) {
  switch (m.which()) {
    case wire::Message::HELLO: {
      Hello h = ReadHello(m.getHello(), limits, false);
      h.instance_id = m.getInstanceId();
      return h;
    }
    case wire::Message::HELLO_REPLY: {
      Hello h = ReadHello(m.getHelloReply(), limits, true);
      h.instance_id = m.getInstanceId();
      return h;
    }
    case wire::Message::OPEN: return ReadOpen(m.getOpen(), false);
    case wire::Message::OPENED: return ReadOpen(m.getOpened(), true);
    case wire::Message::CLOSE: return CloseSession{m.getClose().getSessionId()};
    case wire::Message::FORWARD: return ReadForward(m.getForward(), limits);
    case wire::Message::RESULT: return ReadResult(m.getResult(), limits);
    case wire::Message::ERROR: return ReadError(m.getError(), limits);
    case wire::Message::PING: return ReadPing(m.getPing(), limits);
    case wire::Message::PONG: return Pong{m.getPong().getSeq()};
    case wire::Message::HEARTBEAT: return Heartbeat{m.getInstanceId()};
    default: throw Reject{ErrorCode::kBadMessage, "unknown message type (newer peer?)"};
  }
}

}  // namespace

Decoded DecodeMessage(const void* data, size_t size, const Limits& limits) {
  Decoded out;
  auto fail = [&](ErrorCode code, std::string reason) {
    out.message.reset();
    out.error = code;
    out.reason = std::move(reason);
    return out;
  };
  if (size == 0 || size % sizeof(capnp::word) != 0) {
    return fail(ErrorCode::kBadMessage, "header frame of " + std::to_string(size) +
                                            " bytes is not a whole number of 8-byte words");
  }
  if (size > limits.max_header_bytes) {
    return fail(ErrorCode::kTooLarge, "header frame of " + std::to_string(size) +
                                          " bytes over the limit of " +
                                          std::to_string(limits.max_header_bytes));
  }
  // ZeroMQ frames are not guaranteed 8-byte aligned: copy once if needed.
  kj::Array<capnp::word> aligned;
  const capnp::word* words = static_cast<const capnp::word*>(data);
  if (reinterpret_cast<uintptr_t>(data) % alignof(capnp::word) != 0) {
    aligned = kj::heapArray<capnp::word>(size / sizeof(capnp::word));
    std::memcpy(aligned.begin(), data, size);
    words = aligned.begin();
  }
  try {
    capnp::ReaderOptions options;
    options.traversalLimitInWords = limits.traversal_limit_words;
    options.nestingLimit = 16;
    capnp::FlatArrayMessageReader reader(kj::arrayPtr(words, size / sizeof(capnp::word)), options);
    out.message = ReadMessage(reader.getRoot<wire::Message>(), limits);
  } catch (const Reject& r) {
    return fail(r.code, r.reason);
  } catch (const kj::Exception& e) {
    return fail(ErrorCode::kBadMessage,
                std::string("undecodable header frame: ") + e.getDescription().cStr());
  } catch (const std::exception& e) {
    return fail(ErrorCode::kBadMessage, std::string("undecodable header frame: ") + e.what());
  }
  return out;
}

namespace {

// Speculative steps (1.4): the drafts must leave the row that predicts the
// first of them, fit the limit, be token ids, and ask for the next token.
Validation ValidateDrafts(const Forward& f, const ForwardExpectations& x) {
  const size_t n = f.draft_tokens.size();
  if (n == 0) return {};
  if (n > kMaxDrafts) {
    return {ErrorCode::kTooLarge,
            std::to_string(n) + " drafts over the limit of " + std::to_string(kMaxDrafts)};
  }
  if (n >= f.count) {
    return {ErrorCode::kBadMessage,
            std::to_string(n) + " drafts in " + std::to_string(f.count) +
                " positions: the row before the first draft must be sent too"};
  }
  if (!f.want_token)
    return {ErrorCode::kBadMessage, "drafts without wantToken: nothing to verify them with"};
  for (int32_t t : f.draft_tokens) {
    if (t < 0 || (x.vocab_size > 0 && static_cast<uint32_t>(t) >= x.vocab_size)) {
      return {ErrorCode::kBadMessage, "draft token id " + std::to_string(t) +
                                          " outside the vocabulary of " +
                                          std::to_string(x.vocab_size)};
    }
  }
  return {};
}

}  // namespace

Validation ValidateForward(const Forward& f, size_t payload_bytes, const ForwardExpectations& x,
                           const Limits& limits) {
  auto bad = [](ErrorCode c, std::string r) { return Validation{c, std::move(r)}; };
  const TensorDesc& t = f.tensor;
  if (std::find(x.codecs.begin(), x.codecs.end(), t.codec) == x.codecs.end()) {
    return bad(ErrorCode::kBadTensor, std::string("codec ") + CodecName(t.codec) + " not accepted");
  }
  if (f.count == 0 || t.rows != f.count) {
    return bad(ErrorCode::kBadTensor, "tensor has " + std::to_string(t.rows) + " rows for " +
                                          std::to_string(f.count) + " positions");
  }
  if (f.count > limits.max_rows) {
    return bad(ErrorCode::kTooLarge, std::to_string(f.count) + " positions over the limit of " +
                                         std::to_string(limits.max_rows));
  }
  if (t.cols != x.hidden_size) {
    return bad(ErrorCode::kBadTensor, "tensor has " + std::to_string(t.cols) +
                                          " columns, the hidden size is " +
                                          std::to_string(x.hidden_size));
  }
  if (payload_bytes > limits.max_payload_bytes) {
    return bad(ErrorCode::kTooLarge, "payload of " + std::to_string(payload_bytes) +
                                         " bytes over the limit of " +
                                         std::to_string(limits.max_payload_bytes));
  }
  const size_t expected = EncodedSize(t.codec, t.rows, t.cols);
  if (t.bytes != expected || payload_bytes != expected) {
    return bad(ErrorCode::kBadTensor, "payload of " + std::to_string(payload_bytes) +
                                          " bytes (declared " + std::to_string(t.bytes) + ") for " +
                                          std::to_string(t.rows) + "x" + std::to_string(t.cols) +
                                          " " + CodecName(t.codec) + " (" +
                                          std::to_string(expected) + " expected)");
  }
  if (f.first_position != x.next_position) {
    return bad(ErrorCode::kBadPosition, "first position " + std::to_string(f.first_position) +
                                            " does not continue the session at " +
                                            std::to_string(x.next_position));
  }
  if (static_cast<uint64_t>(f.first_position) + f.count > x.max_context) {
    return bad(ErrorCode::kTooLarge, "positions up to " +
                                         std::to_string(uint64_t{f.first_position} + f.count) +
                                         " exceed the context of " + std::to_string(x.max_context));
  }
  const Sampling& s = f.sampling;
  if (!std::isfinite(s.temperature) || s.temperature < 0 || !(s.top_p > 0 && s.top_p <= 1)) {
    return bad(ErrorCode::kBadSampling, "temperature must be >= 0 and top_p in (0, 1]");
  }
  return ValidateDrafts(f, x);
}

namespace {

// A peer's formats as text for a message (peer-supplied: escaped, bounded).
std::string FormatsOrUnknown(const Hello& h) {
  return h.weight_formats.empty() ? std::string("format not given")
                                  : EscapeForLog(h.weight_formats, 64);
}

}  // namespace

Validation ValidateHello(const Hello& ours, const Hello& theirs, bool require_exact) {
  if (theirs.protocol_major != ours.protocol_major) {
    return {ErrorCode::kVersionMismatch,
            "protocol " + std::to_string(theirs.protocol_major) + "." +
                std::to_string(theirs.protocol_minor) + " is incompatible with " +
                std::to_string(ours.protocol_major) + "." + std::to_string(ours.protocol_minor)};
  }
  const bool same_shapes =
      theirs.hidden_size == ours.hidden_size && theirs.num_layers == ours.num_layers;
  if (same_shapes && theirs.model_fingerprint == ours.model_fingerprint) return {};
  const bool same_model =
      same_shapes && ours.model_identity != 0 && theirs.model_identity == ours.model_identity;
  if (same_model) {
    std::string what = "the same model in other weights (theirs " + FormatsOrUnknown(theirs) +
                       ", ours " + FormatsOrUnknown(ours) + ")";
    if (require_exact)
      return {ErrorCode::kModelMismatch,
              what + ": refused, exact weights are required (require_exact)"};
    return {ErrorCode::kNone, what + ": tokens may differ from a local run"};
  }
  char buf[160];
  std::snprintf(buf, sizeof buf,
                "model %016llx (hidden %u, %u layers) differs from %016llx (hidden %u, %u layers)",
                static_cast<unsigned long long>(theirs.model_fingerprint), theirs.hidden_size,
                theirs.num_layers, static_cast<unsigned long long>(ours.model_fingerprint),
                ours.hidden_size, ours.num_layers);
  std::string what = buf;
  if (same_shapes) {
    what +=
        ": same shapes, other weights or configuration (both sides must load the same model files)";
  }
  return {ErrorCode::kModelMismatch, what};
  return {};
}

}  // namespace splitlm::transport
