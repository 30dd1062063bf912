// Read-only access to GGUF files (the format of llama.cpp's converter and
// quantiser, version 2 and 3): metadata key-values and tensor descriptions,
// validated completely when opened, with the tensor data memory-mapped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "partition/mapped_file.h"

namespace splitlm::partition {

// ggml's tensor types, numbered as in the file (ggml.h `enum ggml_type`).
// All of ggml's types have their block size known, so a file holding any of
// them parses and a tensor of a type splitlm cannot compute with is an error
// naming it where the model loads it; a number not listed is an error of the
// parser. Which types load: tensor_f32.h CanConvertToF32.
enum class GgmlType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
};

// Values per block and bytes per block of `type` (1 and the element size for
// the float types); nullopt for a number splitlm does not know.
struct GgmlBlock {
  uint32_t values = 0;
  uint32_t bytes = 0;
};
std::optional<GgmlBlock> GgmlBlockOf(uint32_t type);
// "F32", "Q4_K", ...; "type N" for an unknown number.
std::string GgmlTypeName(uint32_t type);

// The value types of GGUF metadata.
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};

// One metadata value. Integers and booleans are held in `integer` (a uint64
// above INT64_MAX is refused when parsing), floats in `real`, strings in
// `text`; an array holds its elements, all of `element_type`, in `integers`,
// `reals` or `texts` (arrays of arrays are refused).
struct GgufValue {
  GgufType type = GgufType::kUint8;
  GgufType element_type = GgufType::kUint8;  // arrays only
  int64_t integer = 0;
  double real = 0;
  std::string text;
  std::vector<int64_t> integers;
  std::vector<double> reals;
  std::vector<std::string> texts;

  bool is_integer() const;  // any integer type (not bool)
  bool is_real() const { return type == GgufType::kFloat32 || type == GgufType::kFloat64; }
};

struct GgufTensor {
  std::string name;
  std::vector<int64_t> dims;  // innermost (contiguous) first, as GGUF stores them
  uint32_t type = 0;          // a GgmlType number
  uint64_t offset = 0;        // from the start of the file
  uint64_t bytes = 0;
};

struct GgufHeader {
  uint32_t version = 0;
  uint64_t alignment = 32;
  uint64_t data_start = 0;  // from the start of the file, aligned
  std::map<std::string, GgufValue> metadata;
  std::vector<std::string> key_order;  // the metadata keys in file order
  std::vector<GgufTensor> tensors;     // in file order
};

// Parses the GGUF file whose `size` bytes are at `file` and validates it: the
// magic and version, every key and value (types known, lengths inside the
// file), every tensor (a known type, at most 4 dimensions, a row length that
// is a multiple of its block, an aligned offset, its bytes inside the file,
// no two tensors overlapping, unique names). Throws Exception(kCorrupt) naming
// `path`, the key or tensor, and the problem. Reads only the header bytes;
// for any input it either returns or throws.
GgufHeader ParseGgufHeader(const uint8_t* file, size_t size, const std::string& path);

// A GGUF file, mapped read-only; the header is parsed on Open. Pages of the
// tensors are faulted in only when touched. Thread-safe for reading.
class GgufFile {
 public:
  // Throws Exception naming `path`: kNotFound if it is missing, kInvalidArgument
  // if not a regular file, kCorrupt if malformed. Reads the whole file once
  // to compute digest().
  static std::unique_ptr<GgufFile> Open(const std::string& path);
  ~GgufFile();
  GgufFile(const GgufFile&) = delete;
  GgufFile& operator=(const GgufFile&) = delete;

  const std::string& path() const { return file_->path(); }
  const GgufHeader& header() const { return header_; }
  // The value of `key`, or null when absent.
  const GgufValue* Find(const std::string& key) const;
  const GgufTensor* FindTensor(const std::string& name) const;
  // XXH3-64 of the whole file (header, metadata, tensor descriptions and
  // tensor data), read once on Open through the file descriptor.
  uint64_t digest() const { return digest_; }
  // Valid while this object lives.
  const uint8_t* data(const GgufTensor& tensor) const { return file_->data() + tensor.offset; }
  // MappedFile::ReleasePages.
  void ReleasePages() const { file_->ReleasePages(); }

 private:
  GgufFile() = default;
  std::unique_ptr<MappedFile> file_;
  GgufHeader header_;
  std::map<std::string, size_t> tensor_index_;
  uint64_t digest_ = 0;
};

}  // namespace splitlm::partition
