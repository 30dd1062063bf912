#include "partition/gguf.h"

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "partition/mapped_file.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian uint32
constexpr uint64_t kMaxStringBytes = uint64_t{1} << 24;
constexpr uint64_t kMaxTensors = uint64_t{1} << 20;
constexpr int kMaxDims = 4;

[[noreturn]] void Fail(const std::string& path, const std::string& what) {
  throw Exception(Exception::kCorrupt, path + ": " + what);
}

// Bounds-checked little-endian reads from the header; every failure names
// what was being read and where.
class Reader {
 public:
  Reader(const uint8_t* data, size_t size, const std::string& path)
      : data_(data), size_(size), path_(path) {}

  size_t position() const { return at_; }
  size_t remaining() const { return size_ - at_; }

  template <typename T>
  T Read(const std::string& what) {
    if (remaining() < sizeof(T)) Truncated(what);
    T v;
    std::memcpy(&v, data_ + at_, sizeof(T));  // GGUF is little-endian, as are x86 and aarch64
    at_ += sizeof(T);
    return v;
  }

  std::string ReadString(const std::string& what) {
    const uint64_t n = Read<uint64_t>(what + " (length)");
    if (n > kMaxStringBytes)
      Fail(path_, what + ": string length " + std::to_string(n) + " is over the limit");
    if (n > remaining()) Truncated(what);
    std::string s(reinterpret_cast<const char*>(data_ + at_), n);
    at_ += n;
    return s;
  }

  // A count of elements each at least `min_bytes` long: more than the rest of
  // the file could hold is corrupt (and must not size an allocation).
  uint64_t ReadCount(const std::string& what, uint64_t min_bytes) {
    const uint64_t n = Read<uint64_t>(what);
    if (n > remaining() / min_bytes) {
      Fail(path_, what + " " + std::to_string(n) + " is more than the rest of the file can hold");
    }
    return n;
  }

  [[noreturn]] void Truncated(const std::string& what) const {
    Fail(path_,
         "truncated: the file ends at byte " + std::to_string(size_) + " while reading " + what);
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t at_ = 0;
  const std::string& path_;
};

size_t ScalarBytes(GgufType t) {
  switch (t) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool: return 1;
    case GgufType::kUint16:
    case GgufType::kInt16: return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32: return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64: return 8;
    case GgufType::kString: return 8;  // at least its length
    case GgufType::kArray: return 12;  // at least its element type and count
  }
  return 0;
}

GgufType ReadValueType(Reader& r, const std::string& what, const std::string& path) {
  const uint32_t t = r.Read<uint32_t>(what);
  if (t > static_cast<uint32_t>(GgufType::kFloat64))
    Fail(path, what + ": unknown value type " + std::to_string(t));
  return static_cast<GgufType>(t);
}

// Reads one scalar of type `t` into `integer`, `real` or `text`.
void ReadScalar(Reader& r, GgufType t, const std::string& what, const std::string& path,
                int64_t* integer, double* real, std::string* text) {
  switch (t) {
    case GgufType::kUint8: *integer = r.Read<uint8_t>(what); return;
    // A GGUF int8 is signed by definition: sign extension is meant.
    // NOLINTNEXTLINE(bugprone-signed-char-misuse)
    case GgufType::kInt8: *integer = r.Read<int8_t>(what); return;
    case GgufType::kUint16: *integer = r.Read<uint16_t>(what); return;
    case GgufType::kInt16: *integer = r.Read<int16_t>(what); return;
    case GgufType::kUint32: *integer = r.Read<uint32_t>(what); return;
    case GgufType::kInt32: *integer = r.Read<int32_t>(what); return;
    case GgufType::kInt64: *integer = r.Read<int64_t>(what); return;
    case GgufType::kUint64: {
      const uint64_t v = r.Read<uint64_t>(what);
      if (v > static_cast<uint64_t>(INT64_MAX))
        Fail(path, what + ": uint64 " + std::to_string(v) + " is too large");
      *integer = static_cast<int64_t>(v);
      return;
    }
    case GgufType::kBool: {
      const uint8_t b = r.Read<uint8_t>(what);
      if (b > 1) Fail(path, what + ": a bool must be 0 or 1, not " + std::to_string(b));
      *integer = b;
      return;
    }
    case GgufType::kFloat32: *real = r.Read<float>(what); return;
    case GgufType::kFloat64: *real = r.Read<double>(what); return;
    case GgufType::kString: *text = r.ReadString(what); return;
    case GgufType::kArray: break;
  }
  Fail(path, what + ": not a scalar");
}

GgufValue ReadValue(Reader& r, const std::string& key, const std::string& path) {
  GgufValue v;
  const std::string what = "the value of \"" + key + "\"";
  v.type = ReadValueType(r, what + " (type)", path);
  if (v.type != GgufType::kArray) {
    ReadScalar(r, v.type, what, path, &v.integer, &v.real, &v.text);
    return v;
  }
  v.element_type = ReadValueType(r, what + " (element type)", path);
  if (v.element_type == GgufType::kArray) Fail(path, what + ": arrays of arrays are not supported");
  const uint64_t n = r.ReadCount(what + ": element count", ScalarBytes(v.element_type));
  int64_t integer = 0;
  double real = 0;
  std::string text;
  for (uint64_t i = 0; i < n; ++i) {
    ReadScalar(r, v.element_type, what, path, &integer, &real, &text);
    if (v.element_type == GgufType::kString) {
      v.texts.push_back(std::move(text));
    } else if (v.element_type == GgufType::kFloat32 || v.element_type == GgufType::kFloat64) {
      v.reals.push_back(real);
    } else {
      v.integers.push_back(integer);
    }
  }
  return v;
}

GgufTensor ReadTensorInfo(Reader& r, const std::string& path) {
  GgufTensor t;
  t.name = r.ReadString("a tensor name");
  const std::string where = "tensor \"" + t.name + "\"";
  const uint32_t n_dims = r.Read<uint32_t>(where + " (dimension count)");
  if (n_dims < 1 || n_dims > kMaxDims) {
    Fail(path, where + ": " + std::to_string(n_dims) + " dimensions (1 to 4 are allowed)");
  }
  uint64_t elements = 1;
  for (uint32_t i = 0; i < n_dims; ++i) {
    const uint64_t d = r.Read<uint64_t>(where + " (dimensions)");
    if (d == 0 || d > (uint64_t{1} << 40) || elements > (uint64_t{1} << 42) / d) {
      Fail(path, where + ": dimension " + std::to_string(d) + " is out of range");
    }
    elements *= d;
    t.dims.push_back(static_cast<int64_t>(d));
  }
  t.type = r.Read<uint32_t>(where + " (type)");
  const auto block = GgmlBlockOf(t.type);
  if (!block) Fail(path, where + ": unknown tensor type " + std::to_string(t.type));
  if (t.dims[0] % block->values != 0) {
    Fail(path, where + ": row length " + std::to_string(t.dims[0]) + " is not a multiple of the " +
                   GgmlTypeName(t.type) + " block of " + std::to_string(block->values));
  }
  t.bytes = elements / block->values * block->bytes;
  t.offset = r.Read<uint64_t>(where + " (offset)");
  return t;
}

// Places every tensor in the data section: aligned, inside the file, no overlap.
void PlaceTensors(GgufHeader& h, size_t size, const std::string& path) {
  std::vector<GgufTensor*> by_offset;
  for (auto& t : h.tensors) {
    const std::string where = "tensor \"" + t.name + "\"";
    if (t.offset % h.alignment != 0) {
      Fail(path, where + ": offset " + std::to_string(t.offset) +
                     " is not a multiple of the alignment " + std::to_string(h.alignment));
    }
    const uint64_t data_size = size - h.data_start;
    if (t.offset > data_size || t.bytes > data_size - t.offset) {
      Fail(path, where + ": its " + std::to_string(t.bytes) + " bytes at data offset " +
                     std::to_string(t.offset) +
                     " end past the end of the file (the data section has " +
                     std::to_string(data_size) + " bytes)");
    }
    t.offset += h.data_start;
    by_offset.push_back(&t);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](auto* a, auto* b) { return a->offset < b->offset; });
  for (size_t i = 1; i < by_offset.size(); ++i) {
    if (by_offset[i]->offset < by_offset[i - 1]->offset + by_offset[i - 1]->bytes) {
      Fail(path, "tensor \"" + by_offset[i]->name + "\" overlaps tensor \"" +
                     by_offset[i - 1]->name + "\"");
    }
  }
}

}  // namespace

std::optional<GgmlBlock> GgmlBlockOf(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32: return GgmlBlock{1, 4};
    case GgmlType::kF16: return GgmlBlock{1, 2};
    case GgmlType::kBF16: return GgmlBlock{1, 2};
    case GgmlType::kQ4_0: return GgmlBlock{32, 18};
    case GgmlType::kQ4_1: return GgmlBlock{32, 20};
    case GgmlType::kQ5_0: return GgmlBlock{32, 22};
    case GgmlType::kQ5_1: return GgmlBlock{32, 24};
    case GgmlType::kQ8_0: return GgmlBlock{32, 34};
    case GgmlType::kQ8_1: return GgmlBlock{32, 36};
    case GgmlType::kQ2_K: return GgmlBlock{256, 84};
    case GgmlType::kQ3_K: return GgmlBlock{256, 110};
    case GgmlType::kQ4_K: return GgmlBlock{256, 144};
    case GgmlType::kQ5_K: return GgmlBlock{256, 176};
    case GgmlType::kQ6_K: return GgmlBlock{256, 210};
    case GgmlType::kQ8_K: return GgmlBlock{256, 292};
    case GgmlType::kIQ2_XXS: return GgmlBlock{256, 66};
    case GgmlType::kIQ2_XS: return GgmlBlock{256, 74};
    case GgmlType::kIQ3_XXS: return GgmlBlock{256, 98};
    case GgmlType::kIQ1_S: return GgmlBlock{256, 50};
    case GgmlType::kIQ4_NL: return GgmlBlock{32, 18};
    case GgmlType::kIQ3_S: return GgmlBlock{256, 110};
    case GgmlType::kIQ2_S: return GgmlBlock{256, 82};
    case GgmlType::kIQ4_XS: return GgmlBlock{256, 136};
    case GgmlType::kI8: return GgmlBlock{1, 1};
    case GgmlType::kI16: return GgmlBlock{1, 2};
    case GgmlType::kI32: return GgmlBlock{1, 4};
    case GgmlType::kI64: return GgmlBlock{1, 8};
    case GgmlType::kF64: return GgmlBlock{1, 8};
    case GgmlType::kIQ1_M: return GgmlBlock{256, 56};
    case GgmlType::kTQ1_0: return GgmlBlock{256, 54};
    case GgmlType::kTQ2_0: return GgmlBlock{256, 66};
    case GgmlType::kMXFP4: return GgmlBlock{32, 17};
  }
  return std::nullopt;
}

std::string GgmlTypeName(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kF32: return "F32";
    case GgmlType::kF16: return "F16";
    case GgmlType::kBF16: return "BF16";
    case GgmlType::kQ4_0: return "Q4_0";
    case GgmlType::kQ4_1: return "Q4_1";
    case GgmlType::kQ5_0: return "Q5_0";
    case GgmlType::kQ5_1: return "Q5_1";
    case GgmlType::kQ8_0: return "Q8_0";
    case GgmlType::kQ8_1: return "Q8_1";
    case GgmlType::kQ2_K: return "Q2_K";
    case GgmlType::kQ3_K: return "Q3_K";
    case GgmlType::kQ4_K: return "Q4_K";
    case GgmlType::kQ5_K: return "Q5_K";
    case GgmlType::kQ6_K: return "Q6_K";
    case GgmlType::kQ8_K: return "Q8_K";
    case GgmlType::kIQ2_XXS: return "IQ2_XXS";
    case GgmlType::kIQ2_XS: return "IQ2_XS";
    case GgmlType::kIQ3_XXS: return "IQ3_XXS";
    case GgmlType::kIQ1_S: return "IQ1_S";
    case GgmlType::kIQ4_NL: return "IQ4_NL";
    case GgmlType::kIQ3_S: return "IQ3_S";
    case GgmlType::kIQ2_S: return "IQ2_S";
    case GgmlType::kIQ4_XS: return "IQ4_XS";
    case GgmlType::kI8: return "I8";
    case GgmlType::kI16: return "I16";
    case GgmlType::kI32: return "I32";
    case GgmlType::kI64: return "I64";
    case GgmlType::kF64: return "F64";
    case GgmlType::kIQ1_M: return "IQ1_M";
    case GgmlType::kTQ1_0: return "TQ1_0";
    case GgmlType::kTQ2_0: return "TQ2_0";
    case GgmlType::kMXFP4: return "MXFP4";
  }
  return "type " + std::to_string(type);
}

bool GgufValue::is_integer() const {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kUint16:
    case GgufType::kInt16:
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kUint64:
    case GgufType::kInt64: return true;
    default: return false;
  }
}

GgufHeader ParseGgufHeader(const uint8_t* file, size_t size, const std::string& path) {
  Reader r(file, size, path);
  if (r.Read<uint32_t>("the magic") != kMagic) Fail(path, "not a GGUF file (no \"GGUF\" magic)");
  GgufHeader h;
  h.version = r.Read<uint32_t>("the version");
  if (h.version != 2 && h.version != 3) {
    Fail(path, "GGUF version " + std::to_string(h.version) + " is not supported (2 and 3 are)");
  }
  const uint64_t n_tensors = r.ReadCount("the tensor count", 8 + 4 + 8 + 4 + 8);
  if (n_tensors > kMaxTensors)
    Fail(path, "tensor count " + std::to_string(n_tensors) + " is over the limit");
  const uint64_t n_kv = r.ReadCount("the metadata count", 8 + 4 + 1);
  for (uint64_t i = 0; i < n_kv; ++i) {
    std::string key = r.ReadString("metadata key " + std::to_string(i));
    GgufValue value = ReadValue(r, key, path);
    if (!h.metadata.emplace(key, std::move(value)).second)
      Fail(path, "metadata key \"" + key + "\" appears twice");
    h.key_order.push_back(std::move(key));
  }
  if (auto a = h.metadata.find("general.alignment"); a != h.metadata.end()) {
    const GgufValue& v = a->second;
    if (!v.is_integer() || v.integer <= 0 || v.integer > 65536 ||
        (v.integer & (v.integer - 1)) != 0) {
      Fail(path, "\"general.alignment\" must be an integer power of two up to 65536");
    }
    h.alignment = static_cast<uint64_t>(v.integer);
  }
  std::map<std::string, bool> names;
  for (uint64_t i = 0; i < n_tensors; ++i) {
    h.tensors.push_back(ReadTensorInfo(r, path));
    if (!names.emplace(h.tensors.back().name, true).second) {
      Fail(path, "tensor \"" + h.tensors.back().name + "\" appears twice");
    }
  }
  h.data_start = (r.position() + h.alignment - 1) / h.alignment * h.alignment;
  if (h.data_start > size) {
    if (!h.tensors.empty()) r.Truncated("the padding before the tensor data");
    h.data_start = size;
  }
  PlaceTensors(h, size, path);
  return h;
}

std::unique_ptr<GgufFile> GgufFile::Open(const std::string& path) {
  std::unique_ptr<GgufFile> f(new GgufFile());
  f->file_ = MappedFile::Open(path, 8, "GGUF");
  f->header_ = ParseGgufHeader(f->file_->data(), f->file_->size(), path);
  f->digest_ = f->file_->Digest(0, f->file_->size());
  for (size_t i = 0; i < f->header_.tensors.size(); ++i)
    f->tensor_index_[f->header_.tensors[i].name] = i;
  return f;
}

GgufFile::~GgufFile() = default;

const GgufValue* GgufFile::Find(const std::string& key) const {
  auto it = header_.metadata.find(key);
  return it == header_.metadata.end() ? nullptr : &it->second;
}

const GgufTensor* GgufFile::FindTensor(const std::string& name) const {
  auto it = tensor_index_.find(name);
  return it == tensor_index_.end() ? nullptr : &header_.tensors[it->second];
}

}  // namespace splitlm::partition
