# The splitlm wire protocol between a device agent (ZeroMQ DEALER) and a cloud
# worker (ROUTER). Every message is a multipart ZeroMQ message: one frame with
# a Message below, then, for Forward and Ping/Pong, one frame with the raw
# payload (the hidden-state tensor, or probe bytes), so that the large bytes
# are never copied into or out of Cap'n Proto.
#
# Rules: never renumber or reuse a field or enumerant; add new ones at the end
# and bump protocolMinor. A protocolMajor mismatch is refused at Hello.
@0xc4e8f3a1b2d5e607;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("splitlm::transport::wire");

enum Codec {
  f32 @0;
  f16 @1;
  bf16 @2;
  int8 @3;
}

enum ErrorCode {
  none @0;
  badMessage @1;        # undecodable frame or unknown message type
  versionMismatch @2;   # protocolMajor differs
  modelMismatch @3;     # model fingerprint or shape differs
  unknownSession @4;
  sessionEvicted @5;    # the worker dropped the session's KV cache: rebuild it
  badPosition @6;       # firstPosition does not continue the session
  badTensor @7;         # dtype/codec, shape or byte count inconsistent
  tooLarge @8;          # over a configured limit
  busy @9;
  internal @10;
  unauthorized @11;
  badCut @12;           # cut outside what the worker holds
  badSampling @13;
}

struct LayerRange {
  begin @0 :UInt32;
  end @1 :UInt32;
}

struct Hello {
  protocolMajor @0 :UInt16;
  protocolMinor @1 :UInt16;
  modelFingerprint @2 :UInt64;
  layers @3 :LayerRange;        # the layers the sender holds
  codecs @4 :List(Codec);       # codecs the sender accepts
  hiddenSize @5 :UInt32;
  numLayers @6 :UInt32;
  maxContext @7 :UInt32;
  layerDecodeUs @8 :List(Float32);  # cloud: measured decode time per layer it holds
  queueUs @9 :UInt32;               # cloud: current queue delay
  agent @10 :Text;                  # free-form software name and version
  headDecodeUs @11 :Float32;        # cloud: final norm + LM head, one token (0 = not measured)
  # Protocol 1.3. modelFingerprint hashes the weights exactly as the sender
  # holds them (format included); modelIdentity names the model whatever its
  # format (the source weights' hash, recorded by `splitlm quantize`, or the
  # GGUF metadata's), so the same model in two formats is recognised.
  # 0 = not given (older peers).
  modelIdentity @12 :UInt64;
  weightFormats @13 :Text;          # e.g. "q4_k+q6_k+f32" or "f32"
  # Protocol 1.5: a worker's load, for the device's choice among replicas
  # (placement). Counted when the Hello is answered: a session opened before
  # is included. 0 from older workers.
  activeSessions @14 :UInt32;       # cloud: sessions open now
  kvFreeBytes @15 :UInt64;          # cloud: KV budget not yet allocated
  draining @16 :Bool;               # cloud: shutting down, refuses new sessions
}

struct OpenSession {
  sessionId @0 :UInt64;
  cut @1 :UInt32;
  codec @2 :Codec;
}

struct CloseSession {
  sessionId @0 :UInt64;
}

struct TensorDesc {
  codec @0 :Codec;
  rows @1 :UInt32;      # positions
  cols @2 :UInt32;      # hidden size
  bytes @3 :UInt64;     # size of the payload frame
}

struct Sampling {
  temperature @0 :Float32;
  topK @1 :UInt32;
  topP @2 :Float32 = 1.0;
  seed @3 :UInt64;
}

struct Forward {
  sessionId @0 :UInt64;
  seq @1 :UInt64;             # request sequence number, echoed in the reply
  firstPosition @2 :UInt32;   # position of the payload's first row
  count @3 :UInt32;           # number of positions (rows)
  tensor @4 :TensorDesc;
  sampling @5 :Sampling;
  wantToken @6 :Bool = true;  # sample the next token after the last row
  topLogprobs @7 :UInt32;     # also return this many (token, logprob) pairs
  # Protocol 1.4: speculative decoding. The last `drafts` rows of the payload
  # are the device's draft tokens `draftTokens` (the row before them is the
  # last real token). The worker verifies: its own choice after each of the
  # last drafts+1 rows (the same sampling, position by position, as one
  # step at a time), keeps the longest prefix of drafts equal to its
  # choices, truncates its KV cache after it, and answers the accepted
  # drafts followed by its own next token. 0 = an ordinary step.
  drafts @8 :UInt32;
  draftTokens @9 :List(Int32);
}

struct TokenLogprob {
  token @0 :Int32;
  logprob @1 :Float32;
}

struct ForwardResult {
  sessionId @0 :UInt64;
  seq @1 :UInt64;
  tokens @2 :List(Int32);
  logprobs @3 :List(TokenLogprob);
  computeUs @4 :UInt32;       # cloud compute time for this request
  queueUs @5 :UInt32;         # time the request waited before compute
  # Protocol 1.4: drafts accepted (tokens holds them, then the worker's next
  # token); logprobs then holds topLogprobs entries for each token in turn.
  accepted @6 :UInt32;
}

struct Error {
  code @0 :ErrorCode;
  message @1 :Text;
  sessionId @2 :UInt64;
  seq @3 :UInt64;
}

struct Ping {
  seq @0 :UInt64;
  replyBytes @1 :UInt32;      # size of the Pong's payload frame (downlink probe)
}

struct Pong {
  seq @0 :UInt64;
}

struct Message {
  union {
    hello @0 :Hello;
    helloReply @1 :Hello;
    open @2 :OpenSession;
    opened @3 :OpenSession;
    close @4 :CloseSession;
    forward @5 :Forward;
    result @6 :ForwardResult;
    error @7 :Error;
    ping @8 :Ping;
    pong @9 :Pong;
    heartbeat @10 :Void;
  }
  # The sender's instance (protocol 1.2): a worker draws a random non-zero id
  # when it starts and sets it on its helloReply and heartbeat messages, so a
  # device notices at once a restarted worker, which answers heartbeats but
  # holds none of the sessions it had. 0 = not given (devices, older workers).
  instanceId @11 :UInt64;
}
