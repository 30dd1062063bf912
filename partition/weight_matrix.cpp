#include "partition/weight_matrix.h"

#include <algorithm>
#include <cstring>
#include <set>

#include "partition/error.h"
#include "partition/gguf.h"
#include "partition/kernels.h"
#include "partition/kernels_quant.h"
#include "partition/quant.h"
#include "partition/tensor_f32.h"
#include "transport/codec.h"

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

}  // namespace

const char* WeightFormats() { return "f32, f16, q8_0, q4_0, q4_k, q6_k (or empty: as stored)"; }

void CheckWeightFormat(const std::string& format) {
  if (format.empty()) return;
  for (const auto& f : kFormats) {
    if (format == f.name) return;
  }
  throw PartitionError("unknown weight format \"" + format + "\" (accepted: " + WeightFormats() + ")");
}

std::shared_ptr<const WeightMatrix> WeightMatrix::Load(const std::vector<TensorRef>& parts,
                                                       const std::string& format, const std::string& name) {
  CheckWeightFormat(format);
  auto w = std::make_shared<WeightMatrix>();
  w->cols_ = static_cast<int>(parts.at(0).shape.back());
  for (const TensorRef& t : parts) w->rows_ += static_cast<int>(RowsOf(t));
  const int k = w->cols_;

  uint32_t target = kF32;
  for (const auto& f : kFormats) {
    if (format == f.name) target = static_cast<uint32_t>(f.type);
  }
  const bool native = format.empty() && std::all_of(parts.begin(), parts.end(), [](const TensorRef& t) {
    return kernels::CanPackQuant(t.type);
  });
  const bool quantise = kernels::CanPackQuant(target) && k % kernels::QuantBlockValues(target) == 0;

  if (native) {
    // The stored blocks, each run of parts of one type a segment.
    int row0 = 0;
    for (size_t i = 0; i < parts.size();) {
      size_t e = i;
      int rows = 0;
      std::vector<const uint8_t*> ptrs;
      for (; e < parts.size() && parts[e].type == parts[i].type; ++e) {
        const TensorRef& t = parts[e];
        const GgmlBlock blk = *GgmlBlockOf(t.type);
        const size_t row_bytes = static_cast<size_t>(k / blk.values) * blk.bytes;
        for (int64_t r = 0; r < RowsOf(t); ++r) {
          ptrs.push_back(static_cast<const uint8_t*>(t.data) + StoredRow(t, r) * row_bytes);
        }
        rows += static_cast<int>(RowsOf(t));
      }
      Segment s;
      s.type = parts[i].type;
      s.row0 = row0;
      s.rows = rows;
      s.blocks.resize(kernels::QuantPackedBytes(s.type, rows, k));
      kernels::PackQuant(s.type, ptrs.data(), rows, k, s.blocks.data());
      w->segments_.push_back(std::move(s));
      row0 += rows;
      i = e;
    }
    return w;
  }

  // Through fp32: all parts stacked.
  std::vector<float> all;
  all.reserve(static_cast<size_t>(w->rows_) * k);
  for (const TensorRef& t : parts) {
    const std::vector<float> f = ToF32(t);
    all.insert(all.end(), f.begin(), f.end());
  }
  Segment s;
  s.rows = w->rows_;
  if (quantise) {
    const GgmlBlock blk = *GgmlBlockOf(target);
    const size_t row_bytes = static_cast<size_t>(k / blk.values) * blk.bytes;
    std::vector<uint8_t> rows(row_bytes * w->rows_);
    std::vector<const uint8_t*> ptrs(w->rows_);
    try {
      kernels::ParallelFor(w->rows_, 16, [&](int b, int e) {
        for (int r = b; r < e; ++r) {
          QuantizeRow(target, &all[static_cast<size_t>(r) * k], &rows[r * row_bytes], k);
        }
      });
    } catch (const PartitionError& e) {
      throw PartitionError(name + ": " + e.what());
    }
    for (int r = 0; r < w->rows_; ++r) ptrs[r] = &rows[r * row_bytes];
    s.type = target;
    s.blocks.resize(kernels::QuantPackedBytes(target, w->rows_, k));
    kernels::PackQuant(target, ptrs.data(), w->rows_, k, s.blocks.data());
  } else {
    if (target == static_cast<uint32_t>(GgmlType::kF16)) {
      for (float& v : all) v = transport::HalfToFloat(transport::FloatToHalf(v));
    }
    s.type = kF32;
    s.f32.resize(kernels::PackedSize(w->rows_, k));
    kernels::Pack(all.data(), w->rows_, k, s.f32.data());
  }
  w->segments_.push_back(std::move(s));
  return w;
}

void WeightMatrix::Apply(const float* x, int n, float* y, const float* bias) const {
  for (const Segment& s : segments_) {
    const float* b = bias != nullptr ? bias + s.row0 : nullptr;
    if (s.type == kF32) {
      kernels::MatMul(s.f32.data(), s.rows, cols_, x, n, y, b);  // one segment: y is [n, rows_]
    } else {
      kernels::QuantMatMul(s.type, s.blocks.data(), s.rows, cols_, x, n, y + s.row0, rows_, b);
    }
  }
}

void WeightMatrix::Row(int r, float* out) const {
  for (const Segment& s : segments_) {
    if (r < s.row0 || r >= s.row0 + s.rows) continue;
    if (s.type == kF32) {
      kernels::UnpackRow(s.f32.data(), cols_, r - s.row0, out);
    } else {
      kernels::QuantUnpackRow(s.type, s.blocks.data(), cols_, r - s.row0, out);
    }
    return;
  }
}

size_t WeightMatrix::bytes() const {
  size_t n = 0;
  for (const Segment& s : segments_) n += s.f32.size() * sizeof(float) + s.blocks.size();
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
