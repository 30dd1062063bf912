// The exception type of the partition library.
#pragma once

#include <stdexcept>
#include <string>

namespace splitlm::partition {

// Thrown for every fault the partition library detects: a missing or malformed
// model file, a tensor of the wrong shape, a cut out of range, a prompt that
// does not fit the context. The message names the file or value at fault.
class PartitionError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

}  // namespace splitlm::partition
