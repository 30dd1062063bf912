// Mirrors ggml/src/gguf.cpp: gguf_write_to_buf (header, key-values, tensor
// infos, padding, data with per-tensor padding) and gguf-py's GGUFWriter
// (the same layout); the value encodings are those ParseGgufHeader reads.
#include "partition/gguf_writer.h"

#include <utility>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <set>

#include "transport/error.h"

namespace splitlm::partition {

namespace {

GgufValue OfType(GgufType type) {
  GgufValue v;
  v.type = type;
  return v;
}

}  // namespace

GgufValue GgufString(std::string text) {
  GgufValue v = OfType(GgufType::kString);
  v.text = std::move(text);
  return v;
}

GgufValue GgufU32(int64_t value) {
  GgufValue v = OfType(GgufType::kUint32);
  v.integer = value;
  return v;
}

GgufValue GgufF32(double value) {
  GgufValue v = OfType(GgufType::kFloat32);
  v.real = static_cast<double>(static_cast<float>(value));
  return v;
}

GgufValue GgufBool(bool value) {
  GgufValue v = OfType(GgufType::kBool);
  v.integer = value ? 1 : 0;
  return v;
}

GgufValue GgufArray(GgufType element) {
  GgufValue v = OfType(GgufType::kArray);
  v.element_type = element;
  return v;
}

namespace {

constexpr uint32_t kMagic = 0x46554747;  // "GGUF"
constexpr uint32_t kVersion = 3;

uint64_t PadTo(uint64_t n, uint64_t alignment) {
  return (n + alignment - 1) / alignment * alignment;
}

// Appends little-endian encodings to a byte string.
class Encoder {
 public:
  template <typename T>
  void Put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    out_.append(b, sizeof(T));
  }
  void Str(const std::string& s) {
    Put<uint64_t>(s.size());
    out_ += s;
  }
  void Scalar(GgufType t, int64_t integer, double real, const std::string& text) {
    switch (t) {
      case GgufType::kUint8:
      case GgufType::kBool: Put(static_cast<uint8_t>(integer)); return;
      case GgufType::kInt8: Put(static_cast<int8_t>(integer)); return;
      case GgufType::kUint16: Put(static_cast<uint16_t>(integer)); return;
      case GgufType::kInt16: Put(static_cast<int16_t>(integer)); return;
      case GgufType::kUint32: Put(static_cast<uint32_t>(integer)); return;
      case GgufType::kInt32: Put(static_cast<int32_t>(integer)); return;
      case GgufType::kUint64: Put(static_cast<uint64_t>(integer)); return;
      case GgufType::kInt64: Put(static_cast<int64_t>(integer)); return;
      case GgufType::kFloat32: Put(static_cast<float>(real)); return;
      case GgufType::kFloat64: Put(real); return;
      case GgufType::kString: Str(text); return;
      case GgufType::kArray: return;  // refused before encoding
    }
  }
  void Value(const GgufValue& v) {
    Put(static_cast<uint32_t>(v.type));
    if (v.type != GgufType::kArray) {
      Scalar(v.type, v.integer, v.real, v.text);
      return;
    }
    Put(static_cast<uint32_t>(v.element_type));
    if (v.element_type == GgufType::kString) {
      Put<uint64_t>(v.texts.size());
      for (const auto& s : v.texts) Str(s);
    } else if (v.element_type == GgufType::kFloat32 || v.element_type == GgufType::kFloat64) {
      Put<uint64_t>(v.reals.size());
      for (double r : v.reals) Scalar(v.element_type, 0, r, {});
    } else {
      Put<uint64_t>(v.integers.size());
      for (int64_t i : v.integers) Scalar(v.element_type, i, 0, {});
    }
  }
  const std::string& bytes() const { return out_; }

 private:
  std::string out_;
};

}  // namespace

GgufWriter::GgufWriter(std::string path) : path_(std::move(path)) {
  std::string pattern = path_ + ".partial-XXXXXX";
  const int fd = ::mkstemp(pattern.data());
  if (fd < 0) Fail(std::string("cannot create a file beside it: ") + std::strerror(errno));
  temp_path_ = pattern;
  (void)::fchmod(fd, 0644);  // mkstemp creates 0600; a model file is for others to read
  file_ = ::fdopen(fd, "wb");
  if (file_ == nullptr) {
    ::close(fd);
    ::unlink(temp_path_.c_str());
    Fail(std::string("cannot open: ") + std::strerror(errno));
  }
}

GgufWriter::~GgufWriter() {
  if (file_ != nullptr) std::fclose(file_);
  if (!committed_ && !temp_path_.empty()) ::unlink(temp_path_.c_str());
}

void GgufWriter::Fail(const std::string& what) const {
  throw Exception(Exception::kInvalidArgument, path_ + ": " + what);
}

void GgufWriter::AddKeyValue(const std::string& key, const GgufValue& value) {
  if (header_written_) Fail("metadata \"" + key + "\" added after the tensor data began");
  for (const auto& kv : metadata_) {
    if (kv.first == key) Fail("metadata key \"" + key + "\" added twice");
  }
  if (value.type == GgufType::kArray && value.element_type == GgufType::kArray) {
    Fail("metadata \"" + key + "\": arrays of arrays are not supported");
  }
  if (key == "general.alignment") {
    // gguf.cpp reads the alignment as a uint32 and refuses anything else.
    if (value.type != GgufType::kUint32 || value.integer <= 0 ||
        (value.integer & (value.integer - 1)) != 0) {
      Fail("\"general.alignment\" must be a uint32 power of two");
    }
    alignment_ = static_cast<uint64_t>(value.integer);
  }
  metadata_.emplace_back(key, value);
}

void GgufWriter::AddTensor(const std::string& name, const std::vector<int64_t>& dims,
                           uint32_t ggml_type) {
  if (header_written_) Fail("tensor \"" + name + "\" added after the tensor data began");
  for (const auto& t : tensors_) {
    if (t.name == name) Fail("tensor \"" + name + "\" added twice");
  }
  const auto block = GgmlBlockOf(ggml_type);
  if (!block) Fail("tensor \"" + name + "\": unknown type " + std::to_string(ggml_type));
  if (dims.empty() || dims.size() > 4)
    Fail("tensor \"" + name + "\": 1 to 4 dimensions are allowed");
  uint64_t elements = 1;
  for (int64_t d : dims) {
    if (d <= 0)
      Fail("tensor \"" + name + "\": dimension " + std::to_string(d) + " is not positive");
    elements *= static_cast<uint64_t>(d);
  }
  if (dims[0] % block->values != 0) {
    Fail("tensor \"" + name + "\": row length " + std::to_string(dims[0]) +
         " is not a multiple of the " + GgmlTypeName(ggml_type) + " block of " +
         std::to_string(block->values));
  }
  Tensor t{name, dims, ggml_type, elements / block->values * block->bytes, 0};
  if (!tensors_.empty())
    t.offset = PadTo(tensors_.back().offset + tensors_.back().bytes, alignment_);
  tensors_.push_back(std::move(t));
}

void GgufWriter::WriteHeader() {
  // Offsets were counted with the alignment known when each tensor was
  // added: recount now that every key is in.
  for (size_t i = 0; i < tensors_.size(); ++i) {
    tensors_[i].offset =
        i == 0 ? 0 : PadTo(tensors_[i - 1].offset + tensors_[i - 1].bytes, alignment_);
  }
  Encoder e;
  e.Put(kMagic);
  e.Put(kVersion);
  e.Put<uint64_t>(tensors_.size());
  e.Put<uint64_t>(metadata_.size());
  for (const auto& [key, value] : metadata_) {
    e.Str(key);
    e.Value(value);
  }
  for (const auto& t : tensors_) {
    e.Str(t.name);
    e.Put<uint32_t>(static_cast<uint32_t>(t.dims.size()));
    for (int64_t d : t.dims) e.Put<uint64_t>(static_cast<uint64_t>(d));
    e.Put<uint32_t>(t.type);
    e.Put<uint64_t>(t.offset);
  }
  Write(e.bytes().data(), e.bytes().size());
  WritePadding(e.bytes().size());
  header_written_ = true;
}

void GgufWriter::Write(const void* bytes, size_t n) {
  if (n != 0 && std::fwrite(bytes, 1, n, file_) != n)
    Fail(std::string("write failed: ") + std::strerror(errno));
}

void GgufWriter::WritePadding(uint64_t position) {
  static const char kZeros[64] = {};
  uint64_t pad = PadTo(position, alignment_) - position;
  while (pad > 0) {
    const size_t n = static_cast<size_t>(std::min<uint64_t>(pad, sizeof(kZeros)));
    Write(kZeros, n);
    pad -= n;
  }
}

void GgufWriter::WriteTensorData(const uint8_t* bytes, size_t n) {
  if (committed_) Fail("tensor data written after Commit");
  if (!header_written_) WriteHeader();
  while (n > 0) {
    if (current_ >= tensors_.size()) Fail("more tensor data than the tensors hold");
    const Tensor& t = tensors_[current_];
    const size_t take = static_cast<size_t>(std::min<uint64_t>(n, t.bytes - current_done_));
    Write(bytes, take);
    bytes += take;
    n -= take;
    current_done_ += take;
    if (current_done_ == t.bytes) {
      WritePadding(t.bytes);  // gguf.cpp pads every tensor, the last one too
      ++current_;
      current_done_ = 0;
    }
  }
}

void GgufWriter::Commit() {
  if (committed_) Fail("committed twice");
  if (!header_written_) WriteHeader();
  // Zero-byte tensors cannot exist (dimensions are positive), so a tensor
  // not reached has missing data.
  if (current_ < tensors_.size()) {
    Fail("tensor \"" + tensors_[current_].name + "\" got " + std::to_string(current_done_) +
         " of its " + std::to_string(tensors_[current_].bytes) + " bytes");
  }
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0) {
    Fail(std::string("write failed: ") + std::strerror(errno));
  }
  const int rc = std::fclose(file_);
  file_ = nullptr;
  if (rc != 0) Fail(std::string("write failed: ") + std::strerror(errno));
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    Fail(std::string("cannot rename ") + temp_path_ + " to it: " + std::strerror(errno));
  }
  committed_ = true;
}

}  // namespace splitlm::partition
