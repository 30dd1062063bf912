// The splitlm wire messages as plain C++ values, and their encoding into the
// Cap'n Proto header frame (schema: transport/splitlm.capnp). Users of the
// transport never see Cap'n Proto types.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "transport/codec.h"

namespace splitlm::transport {

inline constexpr uint16_t kProtocolMajor = 1;
inline constexpr uint16_t kProtocolMinor =
    5;  // 1: Hello.head_decode_us; 2: instance ids; 3: model identity; 4: speculative drafts; 5:
        // worker load and draining in Hello
// Most draft positions one Forward may carry (speculative decoding).
inline constexpr uint32_t kMaxDrafts = 16;

// Why a peer's request was refused: the code of an Error message, and of a
// Decoded or Validation that failed. Mirrors wire::ErrorCode, value for value
// (protocol.cpp checks it at compile time); kBadSampling stays last. This is
// not splitlm::Exception's code: wire errors are values, never thrown.
enum class ErrorCode : uint16_t {
  kNone = 0,
  kBadMessage = 1,
  kVersionMismatch = 2,
  kModelMismatch = 3,
  kUnknownSession = 4,
  kSessionEvicted = 5,
  kBadPosition = 6,
  kBadTensor = 7,
  kTooLarge = 8,
  kBusy = 9,
  kInternal = 10,
  kUnauthorized = 11,
  kBadCut = 12,
  kBadSampling = 13,
};
// The code's name for logs and messages ("bad_tensor"); "unknown" for a
// value outside the enum.
const char* ErrorCodeName(ErrorCode code);

struct Hello {
  uint16_t protocol_major = kProtocolMajor;
  uint16_t protocol_minor = kProtocolMinor;
  uint64_t model_fingerprint = 0;  // the weights as held, format included
  uint64_t model_identity = 0;     // the model whatever its format (0 = not given)
  std::string weight_formats;      // the held formats, for messages ("q4_k+q6_k+f32")
  uint32_t layer_begin = 0;        // layers the sender holds
  uint32_t layer_end = 0;
  std::vector<Codec> codecs;
  uint32_t hidden_size = 0;
  uint32_t num_layers = 0;
  uint32_t max_context = 0;
  std::vector<float> layer_decode_us;  // cloud: per held layer
  uint32_t queue_us = 0;
  float head_decode_us = 0;  // cloud: final norm + LM head, one token (0 = unknown)
  std::string agent;
  bool reply = false;        // helloReply rather than hello
  uint64_t instance_id = 0;  // worker: random per process start (0 = not given)
  // Protocol 1.5, a worker's load as it answers (placement among replicas).
  uint32_t active_sessions = 0;  // cloud: sessions open now
  uint64_t kv_free_bytes = 0;    // cloud: KV budget not yet allocated
  bool draining = false;         // cloud: shutting down, refuses new sessions
};

struct OpenSession {
  uint64_t session_id = 0;
  uint32_t cut = 0;
  Codec codec = Codec::kF32;
  bool ack = false;  // "opened" rather than "open"
};

struct CloseSession {
  uint64_t session_id = 0;
};

struct TensorDesc {
  Codec codec = Codec::kF32;
  uint32_t rows = 0;
  uint32_t cols = 0;
  uint64_t bytes = 0;
};

struct Sampling {
  float temperature = 0.0f;
  uint32_t top_k = 0;
  float top_p = 1.0f;
  uint64_t seed = 0;
};

struct Forward {
  uint64_t session_id = 0;
  uint64_t seq = 0;
  uint32_t first_position = 0;
  uint32_t count = 0;
  TensorDesc tensor;
  Sampling sampling;
  bool want_token = true;
  uint32_t top_logprobs = 0;
  // Speculative decoding (1.4): the last `draft_tokens.size()` rows are
  // drafts to verify (see splitlm.capnp). Empty: an ordinary step.
  std::vector<int32_t> draft_tokens;
};

struct TokenLogprob {
  int32_t token = 0;
  float logprob = 0.0f;
};

struct ForwardResult {
  uint64_t session_id = 0;
  uint64_t seq = 0;
  std::vector<int32_t> tokens;
  std::vector<TokenLogprob> logprobs;
  uint32_t compute_us = 0;
  uint32_t queue_us = 0;
  uint32_t accepted = 0;  // speculative: drafts accepted; tokens = those + the next token
};

struct Error {
  ErrorCode code = ErrorCode::kNone;
  std::string message;
  uint64_t session_id = 0;
  uint64_t seq = 0;
};

struct Ping {
  uint64_t seq = 0;
  uint32_t reply_bytes = 0;
};

struct Pong {
  uint64_t seq = 0;
};

struct Heartbeat {
  uint64_t instance_id = 0;  // from a worker: its instance, as in its Hello (0 = not given)
};

using Message = std::variant<Hello, OpenSession, CloseSession, Forward, ForwardResult, Error, Ping,
                             Pong, Heartbeat>;

// Name of the message's type, for logs ("forward", "hello", ...). Hello and
// OpenSession name the request and the reply alike.
const char* MessageName(const Message& message);

// Limits a receiver enforces on what a peer sends.
struct Limits {
  size_t max_header_bytes = 64 << 10;         // Cap'n Proto frame
  size_t max_payload_bytes = 64 << 20;        // a Forward's tensor frame
  uint64_t traversal_limit_words = 16 << 10;  // Cap'n Proto traversal limit
  uint32_t max_rows = 1 << 16;                // positions in one Forward
  uint32_t max_logprobs = 64;
  size_t max_text_bytes = 4096;        // each string field (agent, messages, formats)
  size_t max_probe_bytes = 256 << 10;  // Ping and Pong payloads (the device's probes: 64 KiB)
};

// Serialises `message` into a header frame (a whole number of 8-byte words).
// Never throws except std::bad_alloc.
std::string EncodeMessage(const Message& message);

// The outcome of decoding a frame: a message, or why there is none.
struct Decoded {
  std::optional<Message> message;
  ErrorCode error = ErrorCode::kNone;
  std::string reason;
};

// Decodes a header frame of `size` bytes. Never throws: anything a peer can
// send yields either a message or an error code with a reason. Copies the
// frame once if it is not 8-byte aligned.
Decoded DecodeMessage(const void* data, size_t size, const Limits& limits = {});

// What a cloud stage expects of a Forward, for validation.
struct ForwardExpectations {
  uint32_t hidden_size = 0;
  uint32_t next_position = 0;  // the session's KV length
  uint32_t max_context = 0;
  std::vector<Codec> codecs;  // accepted
  uint32_t vocab_size = 0;    // draft token ids must be below it (0: not checked)
};

// The outcome of checking a peer's message: kNone when it is acceptable.
struct Validation {
  ErrorCode code = ErrorCode::kNone;
  std::string reason;  // why it was refused, or (accepted) a warning to log
  bool ok() const { return code == ErrorCode::kNone; }
};
// Checks a Forward and its payload size: codec accepted, cols == hidden size,
// rows == count >= 1, bytes == EncodedSize == payload size, positions continue
// the session and fit the context, sampling sane; drafts (if any) fewer than
// the rows, at most kMaxDrafts, valid ids, with want_token. Never throws.
Validation ValidateForward(const Forward& forward, size_t payload_bytes,
                           const ForwardExpectations& expect, const Limits& limits = {});

// Checks a peer's Hello against ours: major version, model fingerprint,
// hidden size and layer count. Never throws.
//
// The same model in another weight format (equal identities and shapes,
// different fingerprints) is accepted with a warning in `reason`, since the
// split's tokens may then differ from a local run's; with `require_exact` it
// is refused as a model mismatch.
Validation ValidateHello(const Hello& ours, const Hello& theirs, bool require_exact = false);

}  // namespace splitlm::transport
