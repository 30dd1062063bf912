#include "partition/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>

#include "partition/mapped_file.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

constexpr uint64_t kMaxHeaderBytes = 100 << 20;

[[noreturn]] void Fail(const std::string& path, const std::string& what) {
  throw Exception(Exception::kCorrupt, path + ": " + what);
}

bool ParseDType(const std::string& s, StoredDType* out) {
  if (s == "F32")
    *out = StoredDType::kF32;
  else if (s == "F16")
    *out = StoredDType::kF16;
  else if (s == "BF16")
    *out = StoredDType::kBF16;
  else
    return false;
  return true;
}

}  // namespace

const char* StoredDTypeName(StoredDType dtype) {
  switch (dtype) {
    case StoredDType::kF32: return "F32";
    case StoredDType::kF16: return "F16";
    case StoredDType::kBF16: return "BF16";
  }
  return "?";
}

size_t StoredDTypeSize(StoredDType dtype) { return dtype == StoredDType::kF32 ? 4 : 2; }

namespace {

// One entry of the header: `e` is the JSON value of tensor `name`.
TensorInfo ParseEntry(const nlohmann::json& e, const std::string& name, uint64_t data_start,
                      uint64_t data_size, const std::string& path) {
  const std::string where = "tensor \"" + name + "\"";
  if (!e.is_object() || !e.contains("dtype") || !e.contains("shape") ||
      !e.contains("data_offsets") || !e["dtype"].is_string() || !e["shape"].is_array() ||
      !e["data_offsets"].is_array() || e["data_offsets"].size() != 2) {
    Fail(path, where + ": malformed header entry (needs dtype, shape and two data_offsets)");
  }
  TensorInfo info;
  if (!ParseDType(e["dtype"].get<std::string>(), &info.dtype)) {
    Fail(path, where + ": unsupported dtype " + e["dtype"].get<std::string>() +
                   " (supported: F32, F16, BF16)");
  }
  uint64_t elements = 1;
  for (const auto& d : e["shape"]) {
    if (!d.is_number_unsigned() || d.get<uint64_t>() > (uint64_t{1} << 40)) {
      Fail(path, where + ": bad dimension in shape");
    }
    info.shape.push_back(d.get<int64_t>());
    elements *= d.get<uint64_t>();
    if (elements > (uint64_t{1} << 40)) Fail(path, where + ": shape too large");
  }
  const auto& off = e["data_offsets"];
  if (!off[0].is_number_unsigned() || !off[1].is_number_unsigned()) {
    Fail(path, where + ": data_offsets must be non-negative integers");
  }
  const uint64_t b = off[0].get<uint64_t>(), end = off[1].get<uint64_t>();
  if (b > end || end > data_size) {
    Fail(path, where + ": data_offsets [" + std::to_string(b) + ", " + std::to_string(end) +
                   ") outside the " + std::to_string(data_size) + "-byte data section");
  }
  info.bytes = end - b;
  if (info.bytes != elements * StoredDTypeSize(info.dtype)) {
    Fail(path, where + ": data_offsets span " + std::to_string(info.bytes) +
                   " bytes, its shape needs " +
                   std::to_string(elements * StoredDTypeSize(info.dtype)));
  }
  info.offset = data_start + b;
  return info;
}

// Throws if the byte ranges of two tensors overlap.
void CheckNoOverlap(const std::map<std::string, TensorInfo>& tensors, uint64_t data_start,
                    const std::string& path) {
  std::vector<std::pair<const std::string*, const TensorInfo*>> by_offset;
  for (const auto& [name, info] : tensors) {
    if (info.bytes > 0) by_offset.emplace_back(&name, &info);
  }
  std::sort(by_offset.begin(), by_offset.end(),
            [](const auto& a, const auto& b) { return a.second->offset < b.second->offset; });
  auto range = [&](const TensorInfo& t) {
    return "[" + std::to_string(t.offset - data_start) + ", " +
           std::to_string(t.offset - data_start + t.bytes) + ")";
  };
  for (size_t i = 1; i < by_offset.size(); ++i) {
    const TensorInfo& prev = *by_offset[i - 1].second;
    const TensorInfo& next = *by_offset[i].second;
    if (next.offset < prev.offset + prev.bytes) {
      Fail(path, "tensor \"" + *by_offset[i].first + "\": data_offsets " + range(next) +
                     " overlap those of tensor \"" + *by_offset[i - 1].first + "\" " + range(prev));
    }
  }
}

}  // namespace

SafetensorsHeader ParseSafetensorsHeader(const uint8_t* file, size_t size,
                                         const std::string& path) {
  if (size < 8) {
    Fail(path, "too short for a safetensors header (" + std::to_string(size) + " bytes)");
  }
  uint64_t n = 0;
  for (int i = 7; i >= 0; --i) n = (n << 8) | file[i];  // little-endian
  if (n > kMaxHeaderBytes) {
    Fail(path, "header length " + std::to_string(n) + " is over the " +
                   std::to_string(kMaxHeaderBytes) + "-byte limit");
  }
  if (n > size - 8) {
    Fail(path, "header length " + std::to_string(n) + " needs a file of at least " +
                   std::to_string(n + 8) + " bytes, the file has " + std::to_string(size));
  }
  SafetensorsHeader header;
  header.json.assign(reinterpret_cast<const char*>(file + 8), n);
  nlohmann::json h = nlohmann::json::parse(header.json, nullptr, false);
  if (h.is_discarded() || !h.is_object()) Fail(path, "header is not a JSON object");
  const uint64_t data_start = 8 + n;
  for (auto it = h.begin(); it != h.end(); ++it) {
    if (it.key() == "__metadata__") continue;
    header.tensors.emplace(it.key(),
                           ParseEntry(it.value(), it.key(), data_start, size - data_start, path));
  }
  CheckNoOverlap(header.tensors, data_start, path);
  return header;
}

std::unique_ptr<SafetensorsFile> SafetensorsFile::Open(const std::string& path) {
  std::unique_ptr<SafetensorsFile> f(new SafetensorsFile());
  f->file_ = MappedFile::Open(path, 8, "safetensors");
  SafetensorsHeader header = ParseSafetensorsHeader(f->file_->data(), f->file_->size(), path);
  f->header_ = std::move(header.json);
  f->tensors_ = std::move(header.tensors);
  f->data_digest_ = f->file_->Digest(8 + f->header_.size(), f->file_->size());
  return f;
}

SafetensorsFile::~SafetensorsFile() = default;

void SafetensorsFile::ReleasePages() const { file_->ReleasePages(); }

void SafetensorsWriter::Add(const std::string& name, StoredDType dtype,
                            std::vector<int64_t> shape) {
  TensorInfo info;
  info.dtype = dtype;
  uint64_t elements = 1;
  for (int64_t d : shape) elements *= static_cast<uint64_t>(d);
  info.shape = std::move(shape);
  info.offset = data_bytes_;
  info.bytes = elements * StoredDTypeSize(dtype);
  data_bytes_ += info.bytes;
  entries_.emplace_back(name, std::move(info));
}

void SafetensorsWriter::WriteImpl(const std::string& path,
                                  void (*fill)(void*, const std::string&, const TensorInfo&,
                                               uint8_t*),
                                  void* ctx) const {
  nlohmann::json h = nlohmann::json::object();
  h["__metadata__"] = {{"format", "pt"}};
  for (const auto& [name, info] : entries_) {
    h[name] = {{"dtype", StoredDTypeName(info.dtype)},
               {"shape", info.shape},
               {"data_offsets", {info.offset, info.offset + info.bytes}}};
  }
  std::string header = h.dump();
  while ((header.size() + 8) % 8 != 0) header.push_back(' ');  // keep data 8-aligned

  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) Fail(path, std::string("cannot create: ") + std::strerror(errno));
  uint8_t len[8];
  uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) len[i] = static_cast<uint8_t>(n >> (8 * i));
  out.write(reinterpret_cast<const char*>(len), 8);
  out.write(header.data(), static_cast<std::streamsize>(header.size()));
  std::vector<uint8_t> buf;
  for (const auto& [name, info] : entries_) {
    buf.resize(info.bytes);
    fill(ctx, name, info, buf.data());
    out.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(buf.size()));
  }
  out.close();
  if (!out) Fail(path, "write failed (disk full?)");
}

}  // namespace splitlm::partition
