// Writes GGUF version 3 files as llama.cpp's ggml/src/gguf.cpp
// (gguf_write_to_buf) lays them out, so that llama.cpp and ParseGgufHeader
// read them: the header, the metadata in the order added, the tensor
// descriptions in the order added with data offsets counted from the start of
// the data section, zero padding up to the alignment, then each tensor's data
// followed by zero padding up to the alignment. The alignment is 32 unless a
// "general.alignment" key (a uint32 power of two, as gguf.cpp requires) says
// otherwise.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "partition/gguf.h"

namespace splitlm::partition {

// Metadata values of the common types, for AddKeyValue.
GgufValue GgufString(std::string text);
GgufValue GgufU32(int64_t value);
GgufValue GgufF32(double value);  // rounded to float, as the file holds it
GgufValue GgufBool(bool value);
// An empty array of `element` values: fill its texts, integers or reals.
GgufValue GgufArray(GgufType element);

// Usage: AddKeyValue and AddTensor in file order, then WriteTensorData for
// every tensor in the order added (in as many pieces as convenient), then
// Commit. The file appears at `path` only on Commit: until then the bytes go
// to a temporary file beside it, removed by the destructor if Commit was not
// reached (so a failure never leaves a half-written file at `path`). Every
// method throws Exception(kInvalidArgument) naming the path, key or tensor
// at fault (a write that fails included). Not
// thread-safe.
class GgufWriter {
 public:
  explicit GgufWriter(std::string path);
  ~GgufWriter();
  GgufWriter(const GgufWriter&) = delete;
  GgufWriter& operator=(const GgufWriter&) = delete;

  // Before the first WriteTensorData. Keys must be unique; arrays of arrays
  // are refused (ParseGgufHeader cannot read them either).
  void AddKeyValue(const std::string& key, const GgufValue& value);
  // `dims` innermost first (1 to 4, each > 0); the row length must be a
  // multiple of the block of `ggml_type` (a GgmlType number).
  void AddTensor(const std::string& name, const std::vector<int64_t>& dims, uint32_t ggml_type);

  // Bytes of the tensors' data, in AddTensor order; the first call writes
  // the header. More bytes than the tensors hold is an error.
  void WriteTensorData(const uint8_t* bytes, size_t n);

  // Checks every tensor got all its bytes, flushes, and renames the file to
  // `path`.
  void Commit();

 private:
  void WriteHeader();
  void Write(const void* bytes, size_t n);
  void WritePadding(uint64_t position);
  [[noreturn]] void Fail(const std::string& what) const;

  struct Tensor {
    std::string name;
    std::vector<int64_t> dims;
    uint32_t type = 0;
    uint64_t bytes = 0;
    uint64_t offset = 0;  // in the data section
  };
  std::string path_;
  std::string temp_path_;
  std::FILE* file_ = nullptr;
  std::vector<std::pair<std::string, GgufValue>> metadata_;
  std::vector<Tensor> tensors_;
  uint64_t alignment_ = 32;
  bool header_written_ = false;
  bool committed_ = false;
  size_t current_ = 0;         // the tensor receiving data
  uint64_t current_done_ = 0;  // its bytes written so far
};

}  // namespace splitlm::partition
