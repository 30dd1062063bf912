#include "partition/weight_matrix.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <set>

#include "partition/gguf.h"
#include "partition/kernels.h"
#include "partition/kernels_half.h"
#include "partition/kernels_quant.h"
#include "partition/quant.h"
#include "partition/quant_decode.h"
#include "partition/tensor_f32.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

constexpr uint32_t kF32 = static_cast<uint32_t>(GgmlType::kF32);

struct FormatName {
  const char* name;
  GgmlType type;
};
constexpr FormatName kFormats[] = {{"f32", GgmlType::kF32},   {"f16", GgmlType::kF16},
                                   {"q8_0", GgmlType::kQ8_0}, {"q4_0", GgmlType::kQ4_0},
                                   {"q4_k", GgmlType::kQ4_K}, {"q6_k", GgmlType::kQ6_K}};

std::string TypeLabel(uint32_t type) {
  for (const auto& f : kFormats) {
    if (static_cast<uint32_t>(f.type) == type) return f.name;
  }
  if (type == static_cast<uint32_t>(GgmlType::kBF16)) return "bf16";
  return GgmlTypeName(type);
}

int64_t RowsOf(const TensorRef& t) { return t.shape.size() == 2 ? t.shape[0] : 1; }

// Stored row of Hugging Face's row `r` of a tensor whose heads are in
// llama.cpp's RoPE order (see tensor_f32.cpp).
int64_t StoredRow(const TensorRef& t, int64_t r) {
  if (t.interleaved_heads <= 0) return r;
  const int64_t per_head = RowsOf(t) / t.interleaved_heads, half = per_head / 2;
  const int64_t h = r / per_head, i = (r % per_head) / half, j = r % half;
  return h * per_head + 2 * j + i;
}

std::vector<float> ToF32(const TensorRef& t) {
  std::vector<float> out(static_cast<size_t>(RowsOf(t) * t.shape.back()));
  TensorToF32(t, out.data());
  return out;
}

constexpr uint32_t T(GgmlType t) { return static_cast<uint32_t>(t); }

bool Contains(const std::string& s, const char* part) { return s.find(part) != std::string::npos; }

// The layer of "model.layers.N....", or -1.
int LayerOf(const std::string& name) {
  int layer = -1;
  if (std::sscanf(name.c_str(), "model.layers.%d.", &layer) != 1) return -1;
  return layer;
}

// llama.cpp's use_more_bits: the first and last eighth of the layers, and
// every third layer between.
bool UseMoreBits(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

uint32_t HeldType(const std::string& name, uint32_t stored, int64_t k, const std::string& format,
                  int num_layers) {
  uint32_t target = kF32;
  if (format.empty()) {
    // Q5_0, IQ4_NL and Q3_K are held as the Q8_0 or Q6_K blocks that hold
    // their values exactly (quant_decode.h); F16 and BF16 as themselves.
    target = ExactBlockForm(stored).value_or(stored);
  } else if (format == "q4_k_m") {
    target = T(GgmlType::kQ4_K);
    const int layer = LayerOf(name);
    const bool more_bits = layer >= 0 && UseMoreBits(layer, num_layers);
    if (name == "lm_head.weight" || name == "model.embed_tokens.weight")
      target = T(GgmlType::kQ6_K);
    if (more_bits && (Contains(name, "v_proj.weight") || Contains(name, "down_proj.weight"))) {
      target = T(GgmlType::kQ6_K);
    }
  } else {
    for (const auto& f : kFormats) {
      if (format == f.name) target = T(f.type);
    }
  }
  if (kernels::IsHalfType(target)) return target;
  if (!kernels::CanPackQuant(target) || k % kernels::QuantBlockValues(target) != 0) return kF32;
  return target;
}

// The parts [begin, end) as one 16-bit segment of `type` (F16 or BF16):
// stored rows copied, any other type widened and rounded to nearest even.
std::vector<uint16_t> HalfRows(const std::vector<WeightMatrix::Part>& parts, size_t begin,
                               size_t end, uint32_t type, int k) {
  std::vector<uint16_t> rows;
  for (size_t i = begin; i < end; ++i) {
    const TensorRef& t = parts[i].ref;
    const int64_t n = RowsOf(t);
    if (t.type == type) {
      const auto* src = static_cast<const uint16_t*>(t.data);
      for (int64_t r = 0; r < n; ++r) {
        const uint16_t* row = src + StoredRow(t, r) * k;
        rows.insert(rows.end(), row, row + k);
      }
    } else {
      const std::vector<float> f = ToF32(t);
      const size_t at = rows.size();
      rows.resize(at + f.size());
      QuantizeRow(type, f.data(), reinterpret_cast<uint8_t*>(rows.data() + at),
                  static_cast<int64_t>(f.size()));
    }
  }
  return rows;
}

}  // namespace

kernels::QuantActs ActsOf(uint32_t type) {
  return kernels::HasInt8Kernel(type) ? kernels::QuantActs::kInt8 : kernels::QuantActs::kF32;
}

const char* WeightFormats() {
  return "f32, f16, q8_0, q4_0, q4_k, q6_k, q4_k_m (or empty: as stored)";
}

void CheckWeightFormat(const std::string& format) {
  if (format.empty()) return;
  for (const auto& f : kFormats) {
    if (format == f.name) return;
  }
  if (format == "q4_k_m") return;
  throw Exception(Exception::kInvalidArgument,
                  "unknown weight format \"" + format + "\" (accepted: " + WeightFormats() + ")");
}

HeldLayout HeldMatrixLayout(const std::vector<PartLayout>& parts, const std::string& format,
                            int num_layers) {
  CheckWeightFormat(format);
  HeldLayout out;
  int64_t rows = 0;
  for (const PartLayout& p : parts) {
    out.types.push_back(HeldType(p.name, p.type, p.cols, format, num_layers));
    rows += p.rows;
  }
  if (parts.empty()) return out;
  const int k = static_cast<int>(parts[0].cols);
  if (std::any_of(out.types.begin(), out.types.end(), [](uint32_t t) { return t == kF32; })) {
    // As Load: one fp32 segment for all parts.
    std::fill(out.types.begin(), out.types.end(), kF32);
    out.bytes = kernels::PackedSize(static_cast<int>(rows), k) * sizeof(float);
    return out;
  }
  for (size_t i = 0; i < parts.size();) {  // a segment per run of one type
    const uint32_t type = out.types[i];
    int seg_rows = 0;
    for (; i < parts.size() && out.types[i] == type; ++i)
      seg_rows += static_cast<int>(parts[i].rows);
    out.bytes += kernels::IsHalfType(type)
                     ? kernels::HalfPackedSize(seg_rows, k) * sizeof(uint16_t)
                     : kernels::QuantPackedBytes(type, seg_rows, k, ActsOf(type));
  }
  return out;
}

namespace {

// The block rows of parts [begin, end) (all held in `type`): pointers to the
// stored rows, or to rows transcoded or quantised now into `made`.
std::vector<const uint8_t*> BlockRows(const std::vector<WeightMatrix::Part>& parts, size_t begin,
                                      size_t end, uint32_t type, int k,
                                      std::vector<std::vector<uint8_t>>& made) {
  const GgmlBlock blk = *GgmlBlockOf(type);
  const size_t row_bytes = static_cast<size_t>(k / blk.values) * blk.bytes;
  std::vector<const uint8_t*> ptrs;
  for (size_t i = begin; i < end; ++i) {
    const TensorRef& t = parts[i].ref;
    const int64_t rows = RowsOf(t);
    const auto* src = static_cast<const uint8_t*>(t.data);
    if (t.type == type) {
      for (int64_t r = 0; r < rows; ++r) ptrs.push_back(src + StoredRow(t, r) * row_bytes);
      continue;
    }
    made.emplace_back(row_bytes * rows);
    uint8_t* dst = made.back().data();
    if (ExactBlockForm(t.type) == type) {
      const GgmlBlock src_blk = *GgmlBlockOf(t.type);
      const size_t src_row_bytes = static_cast<size_t>(k / src_blk.values) * src_blk.bytes;
      for (int64_t r = 0; r < rows; ++r)
        TranscodeRow(t.type, src + StoredRow(t, r) * src_row_bytes, dst + r * row_bytes, k);
    } else {
      const std::vector<float> f = ToF32(t);
      try {
        kernels::ParallelFor(static_cast<int>(rows), 16, [&](int b, int e) {
          for (int r = b; r < e; ++r)
            QuantizeRow(type, &f[static_cast<size_t>(r) * k], dst + r * row_bytes, k);
        });
      } catch (const std::exception& e) {
        throw Exception(Exception::kInvalidArgument, parts[i].name + ": " + e.what());
      }
    }
    for (int64_t r = 0; r < rows; ++r) ptrs.push_back(dst + r * row_bytes);
  }
  return ptrs;
}

// The parts [begin, end), held in `type`, as one segment's packed rows.
void PackSegment(const std::vector<WeightMatrix::Part>& parts, size_t begin, size_t end, int k,
                 WeightMatrix::Segment& s) {
  for (size_t i = begin; i < end; ++i) s.rows += static_cast<int>(RowsOf(parts[i].ref));
  if (kernels::IsHalfType(s.type)) {
    const std::vector<uint16_t> rows = HalfRows(parts, begin, end, s.type, k);
    std::vector<const uint16_t*> ptrs;
    ptrs.reserve(s.rows);
    for (int r = 0; r < s.rows; ++r) ptrs.push_back(rows.data() + static_cast<size_t>(r) * k);
    s.half.resize(kernels::HalfPackedSize(s.rows, k));
    kernels::PackHalf(ptrs.data(), s.rows, k, s.half.data());
    return;
  }
  std::vector<std::vector<uint8_t>> made;
  const std::vector<const uint8_t*> ptrs = BlockRows(parts, begin, end, s.type, k, made);
  s.acts = ActsOf(s.type);
  s.blocks.resize(kernels::QuantPackedBytes(s.type, s.rows, k, s.acts));
  kernels::PackQuant(s.type, ptrs.data(), s.rows, k, s.blocks.data(), s.acts);
}

// All parts stacked in one fp32 segment of `rows` rows.
WeightMatrix::Segment F32Segment(const std::vector<WeightMatrix::Part>& parts, int rows, int k) {
  std::vector<float> all;
  all.reserve(static_cast<size_t>(rows) * k);
  for (const WeightMatrix::Part& p : parts) {
    const std::vector<float> f = ToF32(p.ref);
    all.insert(all.end(), f.begin(), f.end());
  }
  WeightMatrix::Segment s;
  s.rows = rows;
  s.type = kF32;
  s.f32.resize(kernels::PackedSize(rows, k));
  kernels::Pack(all.data(), rows, k, s.f32.data());
  return s;
}

}  // namespace

std::shared_ptr<const WeightMatrix> WeightMatrix::Load(const std::vector<Part>& parts,
                                                       const std::string& format, int num_layers,
                                                       kernels::Isa isa) {
  CheckWeightFormat(format);
  std::shared_ptr<WeightMatrix> w(new WeightMatrix(isa));
  w->cols_ = static_cast<int>(parts.at(0).ref.shape.back());
  for (const Part& p : parts) w->rows_ += static_cast<int>(RowsOf(p.ref));
  const int k = w->cols_;
  std::vector<uint32_t> held;
  held.reserve(parts.size());
  for (const Part& p : parts)
    held.push_back(HeldType(p.name, p.ref.type, p.ref.shape.back(), format, num_layers));
  if (std::any_of(held.begin(), held.end(), [](uint32_t t) { return t == kF32; })) {
    w->segments_.push_back(F32Segment(parts, w->rows_, k));
    return w;
  }
  // 16-bit or block rows: the stored ones, or the floats converted now; each
  // run of parts held in one type is a segment.
  int row0 = 0;
  for (size_t i = 0; i < parts.size();) {
    size_t end = i;
    while (end < parts.size() && held[end] == held[i]) ++end;
    Segment s;
    s.type = held[i];
    s.row0 = row0;
    PackSegment(parts, i, end, k, s);
    row0 += s.rows;
    w->segments_.push_back(std::move(s));
    i = end;
  }
  return w;
}

void WeightMatrix::Apply(const float* x, int n, float* y, const float* bias) const {
  for (const Segment& s : segments_) {
    const float* b = bias != nullptr ? bias + s.row0 : nullptr;
    if (s.type == kF32) {
      kernels::MatMul(isa_, s.f32.data(), s.rows, cols_, x, n, y,
                      b);  // one segment: y is [n, rows_]
    } else if (kernels::IsHalfType(s.type)) {
      kernels::HalfMatMul(isa_, s.type, s.half.data(), s.rows, cols_, x, n, y + s.row0, rows_, b);
    } else {
      kernels::QuantMatMul(isa_, s.type, s.blocks.data(), s.rows, cols_, x, n, y + s.row0, rows_, b,
                           s.acts);
    }
  }
}

void WeightMatrix::Row(int r, float* out) const {
  for (const Segment& s : segments_) {
    if (r < s.row0 || r >= s.row0 + s.rows) continue;
    if (s.type == kF32) {
      kernels::UnpackRow(s.f32.data(), cols_, r - s.row0, out);
    } else if (kernels::IsHalfType(s.type)) {
      kernels::HalfUnpackRow(s.type, s.half.data(), cols_, r - s.row0, out);
    } else {
      kernels::QuantUnpackRow(s.type, s.blocks.data(), cols_, r - s.row0, out, s.acts);
    }
    return;
  }
}

size_t WeightMatrix::bytes() const {
  size_t n = 0;
  for (const Segment& s : segments_)
    n += s.f32.size() * sizeof(float) + s.blocks.size() + s.half.size() * 2;
  return n;
}

std::string WeightMatrix::format() const {
  std::set<std::string> names;
  for (const Segment& s : segments_) names.insert(TypeLabel(s.type));
  std::string out;
  for (const std::string& n : names) out += (out.empty() ? "" : "/") + n;
  return out;
}

}  // namespace splitlm::partition
