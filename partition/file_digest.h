// Content digests of model files: what the model fingerprint is made of.
#pragma once

#include <cstdint>
#include <string>

namespace splitlm::partition {

// XXH3-64 of bytes [begin, end) of the open file `fd`, read with pread in
// large chunks (into the page cache, not into any mapping of the caller).
// Throws PartitionError naming `path` if a read fails or the file is shorter
// than `end`.
uint64_t DigestFileRange(int fd, uint64_t begin, uint64_t end, const std::string& path);

}  // namespace splitlm::partition
