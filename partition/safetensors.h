// Read-only, memory-mapped access to .safetensors files, and a writer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

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

// One .safetensors file, mapped read-only. Mapping reads nothing: pages are
// faulted in only for the tensors a caller touches, so a stage that loads a
// few layers reads only those layers. The header is validated completely on
// Open (offsets inside the file, sizes matching shapes, no overlap with the
// header), so data() never points outside the mapping.
class SafetensorsFile {
 public:
  // Throws PartitionError naming `path` if the file is missing, unreadable or
  // malformed.
  static std::unique_ptr<SafetensorsFile> Open(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const std::map<std::string, TensorInfo>& tensors() const { return tensors_; }
  const std::string& header_json() const { return header_; }
  // Valid while this object lives.
  const uint8_t* data(const TensorInfo& info) const { return base_ + info.offset; }

 private:
  SafetensorsFile() = default;
  std::string path_;
  std::string header_;
  std::map<std::string, TensorInfo> tensors_;
  const uint8_t* base_ = nullptr;
  size_t size_ = 0;
};

// Writes a .safetensors file tensor by tensor without holding them all in
// memory: Add() every tensor first (header), then Write() streams the data in
// the same order through `fill`, which writes exactly info.bytes bytes.
class SafetensorsWriter {
 public:
  void Add(const std::string& name, StoredDType dtype, std::vector<int64_t> shape);
  // `fill(name, info, dst)` fills dst[0, info.bytes). Throws PartitionError if
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
  WriteImpl(path,
            [](void* ctx, const std::string& name, const TensorInfo& info, uint8_t* dst) {
              (*static_cast<Fill*>(ctx))(name, info, dst);
            },
            &fill);
}

}  // namespace splitlm::partition
