// libFuzzer target: arbitrary bytes into the header decoder, the Forward
// validation, and the activation decoders, as a hostile peer would send them.
// Build: cmake -DSPLITLM_BUILD_FUZZERS=ON with clang (see cmake/bootstrap.sh).
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "transport/codec.h"
#include "transport/error.h"
#include "transport/protocol.h"

using namespace splitlm::transport;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // The first two bytes split the input into a header frame and a payload
  // frame, as the channel receives them.
  if (size < 2) return 0;
  const size_t split = std::min<size_t>(size - 2, (size_t{data[0]} << 8 | data[1]));
  const uint8_t* header = data + 2;
  const uint8_t* payload = header + split;
  const size_t payload_size = size - 2 - split;

  Limits limits;
  limits.max_payload_bytes = 1 << 16;
  Decoded d = DecodeMessage(header, split, limits);
  if (!d.message) {
    if (d.error == ErrorCode::kNone) std::abort();  // a failure must say why
    return 0;
  }
  // Whatever decodes must re-encode and decode to the same type.
  const std::string again = EncodeMessage(*d.message);
  Decoded d2 = DecodeMessage(again.data(), again.size(), limits);
  if (!d2.message || d2.message->index() != d.message->index()) std::abort();

  if (auto* f = std::get_if<Forward>(&*d.message)) {
    ForwardExpectations x;
    x.hidden_size = f->tensor.cols % 4096;
    x.next_position = f->first_position;
    x.max_context = 1 << 20;
    x.codecs = {Codec::kF32, Codec::kF16, Codec::kBF16, Codec::kInt8};
    Validation v = ValidateForward(*f, payload_size, x, limits);
    if (v.ok()) {
      std::vector<float> out(static_cast<size_t>(f->tensor.rows) * f->tensor.cols);
      try {
        Decode(f->tensor.codec, payload, payload_size, f->tensor.rows, f->tensor.cols, out.data());
      } catch (const splitlm::Exception&) {
        // Rejected with an error: fine (e.g. a NaN int8 scale).
      }
    }
  }
  return 0;
}
