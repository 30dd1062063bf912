// A model file mapped read-only, with the content digest the model
// fingerprint is made of. Shared by the safetensors and GGUF readers.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace splitlm::partition {

// Opening refuses what is not a regular file without blocking on it (a FIFO,
// a device) and reads nothing: pages are faulted in only where the caller
// touches the mapping. Immutable once open; thread-safe for reading.
class MappedFile {
 public:
  // Throws Exception naming `path`: kNotFound if it is missing or
  // unreadable, kInvalidArgument if not a regular file, kUnavailable if it
  // cannot be mapped, kCorrupt if shorter than `min_bytes` ("too short for a
  // `kind` header (N bytes)").
  static std::unique_ptr<MappedFile> Open(const std::string& path, size_t min_bytes,
                                          const std::string& kind);
  ~MappedFile();  // unmaps and closes
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const std::string& path() const { return path_; }
  const uint8_t* data() const { return base_; }
  size_t size() const { return size_; }

  // XXH3-64 of bytes [begin, end), read with pread in large chunks through
  // the descriptor (into the page cache, not into this process's mapping, so
  // a stage's resident memory stays its own layers). Throws Exception(kUnavailable)
  // naming the path if a read fails or the file shrank.
  uint64_t Digest(uint64_t begin, uint64_t end) const;

  // Drops this process's page-table entries of the whole mapping
  // (madvise MADV_DONTNEED; the mapping is read-only, so nothing is lost: a
  // later read faults the page in again). Callers that have copied what they
  // need call it so that the pages stop counting in the process's resident
  // memory. Thread-safe.
  void ReleasePages() const;

 private:
  MappedFile() = default;
  std::string path_;
  int fd_ = -1;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
};

}  // namespace splitlm::partition
