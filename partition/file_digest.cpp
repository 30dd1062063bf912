#include "partition/file_digest.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <vector>

#include "partition/error.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace splitlm::partition {

uint64_t DigestFileRange(int fd, uint64_t begin, uint64_t end, const std::string& path) {
  XXH3_state_t* state = XXH3_createState();
  if (state == nullptr) throw std::bad_alloc();
  XXH3_64bits_reset(state);
  std::vector<uint8_t> buf(size_t{4} << 20);
  for (uint64_t at = begin; at < end;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), end - at));
    const ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      XXH3_freeState(state);
      throw PartitionError(path + ": read failed while hashing the weights: " +
                           (n < 0 ? std::strerror(errno) : "file shrank"));
    }
    XXH3_64bits_update(state, buf.data(), static_cast<size_t>(n));
    at += static_cast<uint64_t>(n);
  }
  const uint64_t digest = XXH3_64bits_digest(state);
  XXH3_freeState(state);
  return digest;
}

}  // namespace splitlm::partition
