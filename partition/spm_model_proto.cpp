// Protocol buffers wire format: each field is a varint key (field number << 3
// | wire type) followed by a varint (0), 8 bytes (1), a varint length and
// that many bytes (2), or 4 bytes (5). Unknown fields are skipped, as every
// protobuf reader does.
#include "partition/spm_model_proto.h"

#include <cstring>
#include <fstream>
#include <sstream>

#include "transport/error.h"

namespace splitlm::partition {
namespace {

class Reader {
 public:
  Reader(const char* begin, const char* end, const std::string& path, const char* what)
      : p_(begin), end_(end), path_(path), what_(what) {}

  bool Done() const { return p_ == end_; }

  uint64_t Varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (p_ == end_) Fail("truncated varint");
      const auto byte = static_cast<uint8_t>(*p_++);
      v |= uint64_t{byte & 0x7fu} << shift;
      if ((byte & 0x80u) == 0) return v;
    }
    Fail("varint longer than 10 bytes");
  }

  // The next field's number and wire type.
  void Key(uint32_t& field, uint32_t& wire) {
    const uint64_t key = Varint();
    field = static_cast<uint32_t>(key >> 3);
    wire = static_cast<uint32_t>(key & 7);
    if (field == 0) Fail("field number 0");
  }

  Reader Sub(const char* what) {
    const uint64_t n = Varint();
    if (n > static_cast<uint64_t>(end_ - p_))
      Fail(std::string("length of ") + what + " past the end of the file");
    Reader r(p_, p_ + n, path_, what);
    p_ += n;
    return r;
  }

  std::string Bytes() {
    Reader r = Sub("a string");
    return std::string(r.p_, r.end_);
  }

  float Fixed32Float() {
    if (end_ - p_ < 4) Fail("truncated 32-bit value");
    float f;
    std::memcpy(&f, p_, 4);
    p_ += 4;
    return f;
  }

  void Skip(uint32_t wire) {
    switch (wire) {
      case 0: Varint(); return;
      case 1: Advance(8); return;
      case 2: Sub("a field"); return;
      case 5: Advance(4); return;
      default: Fail("unsupported wire type " + std::to_string(wire));
    }
  }

  void Expect(uint32_t wire, uint32_t want, uint32_t field) {
    if (wire != want)
      Fail("field " + std::to_string(field) + " has wire type " + std::to_string(wire));
  }

  [[noreturn]] void Fail(const std::string& what) const {
    throw Exception(Exception::kCorrupt,
                    path_ + ": not a SentencePiece model (" + what_ + ": " + what + ")");
  }

 private:
  void Advance(size_t n) {
    if (static_cast<size_t>(end_ - p_) < n) Fail("truncated field");
    p_ += n;
  }

  const char* p_;
  const char* end_;
  const std::string& path_;
  std::string what_;
};

// An int32 field (negative values are 10-byte varints).
int32_t Int32(Reader& r) { return static_cast<int32_t>(static_cast<uint32_t>(r.Varint())); }

void ReadPiece(Reader r, SpmModelProto& m) {
  std::string piece;
  float score = 0;
  int32_t type = 1;  // NORMAL, the proto default
  uint32_t field = 0, wire = 0;
  while (!r.Done()) {
    r.Key(field, wire);
    if (field == 1) {
      r.Expect(wire, 2, field);
      piece = r.Bytes();
    } else if (field == 2) {
      r.Expect(wire, 5, field);
      score = r.Fixed32Float();
    } else if (field == 3) {
      r.Expect(wire, 0, field);
      type = Int32(r);
      if (type < 1 || type > 6)
        r.Fail("piece " + std::to_string(m.pieces.size()) + " has type " + std::to_string(type));
    } else {
      r.Skip(wire);
    }
  }
  m.pieces.push_back(std::move(piece));
  m.scores.push_back(score);
  m.types.push_back(type);
}

void ReadTrainerSpec(Reader r, SpmModelProto& m) {
  uint32_t field = 0, wire = 0;
  auto id = [&](std::optional<int32_t>& out) {
    r.Expect(wire, 0, field);
    const int32_t v = Int32(r);
    out = v >= 0 ? std::optional<int32_t>(v) : std::nullopt;
  };
  while (!r.Done()) {
    r.Key(field, wire);
    if (field == 3) {
      r.Expect(wire, 0, field);
      m.model_type = Int32(r);
    } else if (field == 40) {
      id(m.unk_id);
    } else if (field == 41) {
      id(m.bos_id);
    } else if (field == 42) {
      id(m.eos_id);
    } else if (field == 43) {
      id(m.pad_id);
    } else {
      r.Skip(wire);
    }
  }
}

void ReadNormalizerSpec(Reader r, SpmModelProto& m) {
  uint32_t field = 0, wire = 0;
  while (!r.Done()) {
    r.Key(field, wire);
    if (field == 3) {
      r.Expect(wire, 0, field);
      m.add_dummy_prefix = r.Varint() != 0;
    } else {
      r.Skip(wire);
    }
  }
}

}  // namespace

SpmModelProto ParseSpmModelProto(const std::string& bytes, const std::string& path) {
  SpmModelProto m;
  // The proto defaults, which a file leaves out.
  m.unk_id = 0, m.bos_id = 1, m.eos_id = 2;
  Reader r(bytes.data(), bytes.data() + bytes.size(), path, "ModelProto");
  uint32_t field = 0, wire = 0;
  while (!r.Done()) {
    r.Key(field, wire);
    if (field == 1 || field == 2 || field == 3) {
      r.Expect(wire, 2, field);
      if (field == 1) ReadPiece(r.Sub("a piece"), m);
      if (field == 2) ReadTrainerSpec(r.Sub("trainer_spec"), m);
      if (field == 3) ReadNormalizerSpec(r.Sub("normalizer_spec"), m);
    } else {
      r.Skip(wire);
    }
  }
  if (m.pieces.empty()) r.Fail("no pieces");
  const auto n = static_cast<int64_t>(m.pieces.size());
  for (auto* id : {&m.unk_id, &m.bos_id, &m.eos_id, &m.pad_id}) {
    if (id->has_value() && **id >= n) *id = std::nullopt;
  }
  return m;
}

SpmModelProto ReadSpmModelProto(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Exception(Exception::kNotFound, path + ": cannot read the file");
  std::stringstream ss;
  ss << in.rdbuf();
  return ParseSpmModelProto(ss.str(), path);
}

}  // namespace splitlm::partition
