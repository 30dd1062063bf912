// Builds GGUF files byte by byte for tests of the reader and the model.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace splitlm::testing {

// Builds GGUF bytes field by field (little-endian).
class GgufBytes {
 public:
  template <typename T>
  GgufBytes& Put(T v) {
    char b[sizeof(T)];
    std::memcpy(b, &v, sizeof(T));
    bytes_.append(b, sizeof(T));
    return *this;
  }
  GgufBytes& Str(const std::string& s) {
    Put<uint64_t>(s.size());
    bytes_ += s;
    return *this;
  }
  GgufBytes& Header(uint64_t tensors, uint64_t kvs, uint32_t version = 3) {
    return Put<uint32_t>(0x46554747)
        .Put<uint32_t>(version)
        .Put<uint64_t>(tensors)
        .Put<uint64_t>(kvs);
  }
  GgufBytes& KvU32(const std::string& key, uint32_t v) {
    return Str(key).Put<uint32_t>(4).Put<uint32_t>(v);
  }
  GgufBytes& KvF32(const std::string& key, float v) {
    return Str(key).Put<uint32_t>(6).Put<float>(v);
  }
  GgufBytes& KvStr(const std::string& key, const std::string& v) {
    return Str(key).Put<uint32_t>(8).Str(v);
  }
  GgufBytes& Tensor(const std::string& name, std::vector<uint64_t> dims, uint32_t type,
                    uint64_t offset) {
    Str(name).Put<uint32_t>(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) Put<uint64_t>(d);
    return Put<uint32_t>(type).Put<uint64_t>(offset);
  }
  // Pads to `alignment` and appends `n` data bytes.
  GgufBytes& Data(size_t n, size_t alignment = 32) {
    while (bytes_.size() % alignment) bytes_.push_back('\0');
    bytes_.append(n, '\x11');
    return *this;
  }
  const std::string& str() const { return bytes_; }

 private:
  std::string bytes_;
};

}  // namespace splitlm::testing
