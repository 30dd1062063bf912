#include "partition/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <vector>

#include "transport/error.h"
#include "transport/text_file.h"

#define XXH_INLINE_ALL
#include <xxhash.h>

namespace splitlm::partition {

std::unique_ptr<MappedFile> MappedFile::Open(const std::string& path, size_t min_bytes,
                                             const std::string& kind) {
  if (auto problem = transport::ProblemWithFile(path))
    throw Exception(Exception::kNotFound, path + ": " + *problem);
  std::unique_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (f->fd_ < 0)
    throw Exception(Exception::kNotFound, path + ": cannot open: " + std::strerror(errno));
  struct stat st;
  if (::fstat(f->fd_, &st) != 0 || !S_ISREG(st.st_mode))
    throw Exception(Exception::kInvalidArgument, path + ": not a regular file");
  f->size_ = static_cast<size_t>(st.st_size);
  if (f->size_ < std::max<size_t>(min_bytes, 1)) {
    throw Exception(Exception::kCorrupt, path + ": too short for a " + kind + " header (" +
                                             std::to_string(f->size_) + " bytes)");
  }
  void* map = ::mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, f->fd_, 0);
  if (map == MAP_FAILED)
    throw Exception(Exception::kUnavailable, path + ": mmap failed: " + std::strerror(errno));
  f->base_ = static_cast<const uint8_t*>(map);
  return f;
}

void MappedFile::ReleasePages() const {
  if (base_ != nullptr) ::madvise(const_cast<uint8_t*>(base_), size_, MADV_DONTNEED);
}

MappedFile::~MappedFile() {
  if (base_ != nullptr) ::munmap(const_cast<uint8_t*>(base_), size_);
  if (fd_ >= 0) ::close(fd_);
}

uint64_t MappedFile::Digest(uint64_t begin, uint64_t end) const {
  XXH3_state_t* state = XXH3_createState();
  if (state == nullptr) throw std::bad_alloc();
  XXH3_64bits_reset(state);
  std::vector<uint8_t> buf(size_t{4} << 20);
  for (uint64_t at = begin; at < end;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), end - at));
    const ssize_t n = ::pread(fd_, buf.data(), want, static_cast<off_t>(at));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      XXH3_freeState(state);
      throw Exception(Exception::kUnavailable, path_ + ": read failed while hashing the weights: " +
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
