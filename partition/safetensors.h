// Read-only, memory-mapped access to .safetensors files, and a writer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "partition/mapped_file.h"

namespace splitlm::partition {

// Element types splitlm can load; weights are computed in fp32 whatever they
// are stored as.
enum class StoredDType { kF32, kF16, kBF16 };

const char* StoredDTypeName(StoredDType dtype);  // "F32", "F16", "BF16"
size_t StoredDTypeSize(StoredDType dtype);

struct TensorInfo {
  StoredDType dtype = StoredDType::kF32;
  std::vector<int64_t> shape;
  uint64_t offset = 0;  // from the start of the file
  uint64_t bytes = 0;
};

// The validated header of a safetensors file: its JSON text and its tensors.
struct SafetensorsHeader {
  std::string json;
  std::map<std::string, TensorInfo> tensors;
};

// Parses the header of the safetensors file whose `size` bytes are `file`
// and checks every entry: a known dtype, a shape whose bytes equal its
// data_offsets' span, offsets inside the data section, and no two tensors'
// bytes overlapping (overlapping tensors would silently share weights).
// Throws Exception(kCorrupt) naming `path`, the tensor and the problem. Reads
// only the header bytes; for any input it either returns or throws.
SafetensorsHeader ParseSafetensorsHeader(const uint8_t* file, size_t size, const std::string& path);

// One .safetensors file, mapped read-only. The header is validated completely
// on Open (see ParseSafetensorsHeader), so data() never points outside the
// mapping. Pages of the mapping are faulted in only for the tensors a caller
// touches, so a stage that loads a few layers keeps only those resident. The
// content digest is computed on Open by reading the data section through the
// file descriptor (into the page cache, not into this process's mapping).
class SafetensorsFile {
 public:
  // Throws Exception naming `path`: kNotFound if the file is missing or
  // unreadable, kInvalidArgument if not a regular file, kCorrupt if
  // malformed.
  static std::unique_ptr<SafetensorsFile> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return file_->path(); }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::string& header_json() const { return header_; }
  // XXH3-64 of the data section (every tensor's bytes, in file order): two
  // files with equal headers hold the same weights iff these match (up to
  // the hash's collision odds).
  uint64_t data_digest() const { return data_digest_; }
  // Valid while this object lives.
  const uint8_t* data(const TensorInfo& info) const { return file_->data() + info.offset; }
  // MappedFile::ReleasePages.
  void ReleasePages() const;

 private:
  SafetensorsFile() = default;
  std::unique_ptr<MappedFile> file_;
  std::string header_;
  std::map<std::string, TensorInfo> tensors_;
  uint64_t data_digest_ = 0;
};

// Writes a .safetensors file tensor by tensor without holding them all in
// memory: Add() every tensor first (header), then Write() streams the data in
// the same order through `fill`, which writes exactly info.bytes bytes.
class SafetensorsWriter {
 public:
  void Add(const std::string& name, StoredDType dtype, std::vector<int64_t> shape);
  // `fill(name, info, dst)` fills dst[0, info.bytes). Throws Exception(kCorrupt) if
  // the file cannot be written.
  template <typename Fill>
  void Write(const std::string& path, Fill&& fill) const;

  const std::vector<std::pair<std::string, TensorInfo>>& entries() const { return entries_; }

 private:
  void WriteImpl(const std::string& path,
                 void (*fill)(void* ctx, const std::string&, const TensorInfo&, uint8_t*),
                 void* ctx) const;
  std::vector<std::pair<std::string, TensorInfo>> entries_;
  uint64_t data_bytes_ = 0;
};

template <typename Fill>
void SafetensorsWriter::Write(const std::string& path, Fill&& fill) const {
  WriteImpl(
      path,
      [](void* ctx, const std::string& name, const TensorInfo& info, uint8_t* dst) {
        (*static_cast<Fill*>(ctx))(name, info, dst);
      },
      &fill);
}

}  // namespace splitlm::partition
