// The exception type of the transport library.
#pragma once

#include <stdexcept>
#include <string>

namespace splitlm::transport {

// Thrown for faults in encoding, decoding, validation and channel set-up.
// Peers' bad messages are not exceptions on the receive path: they are
// reported as a ValidationError value (see protocol.h).
class TransportError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace splitlm::transport
