// The quantised kernels (partition/kernels_quant.h). With fp32 activations:
// for every block format, on random and adversarial blocks, the product
// equals dequantise-then-MatMul bit for bit, on every instruction set, for
// any batch composition and thread count. With 8-bit activations (Q8_0,
// Q4_0): every instruction set equals the documented integer-sum formula
// (computed here from the GGUF blocks) bit for bit, the result is within the
// documented bound of dequantise-then-MatMul, and a batch row equals the row
// alone on 1 and 2 threads. WeightMatrix: stacked parts of mixed formats and
// formats chosen at load.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "partition/gguf.h"
#include "partition/kernels.h"
#include "partition/kernels_quant.h"
#include "partition/quant.h"
#include "partition/weight_matrix.h"
#include "transport/codec.h"

namespace splitlm::partition {
namespace {

constexpr uint32_t T(GgmlType t) { return static_cast<uint32_t>(t); }
const uint32_t kTypes[] = {T(GgmlType::kQ8_0), T(GgmlType::kQ4_0), T(GgmlType::kQ4_K),
                           T(GgmlType::kQ6_K)};

struct Matrix {
  uint32_t type;
  int m, k;
  size_t row_bytes;
  std::vector<uint8_t> rows;  // GGUF blocks, row after row
};

size_t RowBytes(uint32_t type, int k) {
  const GgmlBlock b = *GgmlBlockOf(type);
  return static_cast<size_t>(k / b.values) * b.bytes;
}

// Random weights quantised with QuantizeRow.
Matrix Quantised(uint32_t type, int m, int k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> normal(0.0f, 0.05f);
  Matrix w{type, m, k, RowBytes(type, k), {}};
  w.rows.resize(w.row_bytes * m);
  std::vector<float> row(k);
  for (int r = 0; r < m; ++r) {
    for (float& v : row) v = normal(rng) * (r % 3 == 0 ? 100.0f : 1.0f);
    if (r % 5 == 1) std::fill(row.begin(), row.begin() + std::min(k, 64), 0.0f);  // zero blocks
    QuantizeRow(type, row.data(), &w.rows[r * w.row_bytes], k);
  }
  return w;
}

// Offsets of the fp16 scales inside a block.
std::vector<int> HalfOffsets(uint32_t type) {
  switch (static_cast<GgmlType>(type)) {
    case GgmlType::kQ8_0:
    case GgmlType::kQ4_0: return {0};
    case GgmlType::kQ4_K: return {0, 2};
    default: return {208};
  }
}

// Random code bytes with fp16 scales from an adversarial set: zero, negative
// zero, subnormal, negative, the largest finite.
Matrix Adversarial(uint32_t type, int m, int k, uint32_t seed) {
  static const uint16_t kHalves[] = {0x0000, 0x8000, 0x0001, 0x03FF, 0x8001, 0x7BFF,
                                     0xFBFF, 0x3C00, 0xBC00, 0x1400, 0x9400};
  std::mt19937 rng(seed);
  Matrix w{type, m, k, RowBytes(type, k), {}};
  w.rows.resize(w.row_bytes * m);
  for (auto& b : w.rows) b = static_cast<uint8_t>(rng());
  const GgmlBlock blk = *GgmlBlockOf(type);
  for (size_t b = 0; b < w.rows.size() / blk.bytes; ++b) {
    for (int off : HalfOffsets(type)) {
      const uint16_t h = kHalves[rng() % (sizeof kHalves / sizeof kHalves[0])];
      std::memcpy(&w.rows[b * blk.bytes + off], &h, 2);
    }
    if (b % 7 == 3) std::memset(&w.rows[b * blk.bytes], 0, blk.bytes);  // an all-zero block
  }
  return w;
}

using kernels::QuantActs;

std::vector<uint8_t> Packed(const Matrix& w, QuantActs acts = QuantActs::kF32) {
  std::vector<const uint8_t*> ptrs(w.m);
  for (int r = 0; r < w.m; ++r) ptrs[r] = &w.rows[r * w.row_bytes];
  std::vector<uint8_t> out(kernels::QuantPackedBytes(w.type, w.m, w.k, acts));
  kernels::PackQuant(w.type, ptrs.data(), w.m, w.k, out.data(), acts);
  return out;
}

std::vector<float> Inputs(int n, int k, uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::vector<float> x(static_cast<size_t>(n) * k);
  for (float& v : x) v = u(rng);
  return x;
}

std::vector<float> Bias(int m) {
  std::vector<float> b(m);
  for (int r = 0; r < m; ++r) b[r] = 0.25f * static_cast<float>(r % 7) - 0.5f;
  return b;
}

// Dequantise every row, pack as fp32, MatMul.
std::vector<float> Reference(const Matrix& w, const std::vector<float>& x, int n, const float* bias,
                             kernels::Isa isa = kernels::Isa::Best()) {
  std::vector<float> deq(static_cast<size_t>(w.m) * w.k);
  for (int r = 0; r < w.m; ++r)
    DequantizeRow(w.type, &w.rows[r * w.row_bytes], &deq[static_cast<size_t>(r) * w.k], w.k);
  std::vector<float> packed(kernels::PackedSize(w.m, w.k));
  kernels::Pack(deq.data(), w.m, w.k, packed.data());
  std::vector<float> y(static_cast<size_t>(n) * w.m);
  kernels::MatMul(isa, packed.data(), w.m, w.k, x.data(), n, y.data(), bias);
  return y;
}

std::vector<float> Quant(const Matrix& w, const std::vector<uint8_t>& packed,
                         const std::vector<float>& x, int n, const float* bias,
                         QuantActs acts = QuantActs::kF32,
                         kernels::Isa isa = kernels::Isa::Best()) {
  std::vector<float> y(static_cast<size_t>(n) * w.m);
  kernels::QuantMatMul(isa, w.type, packed.data(), w.m, w.k, x.data(), n, y.data(), w.m, bias,
                       acts);
  return y;
}

// From the GGUF blocks (ggml-common.h): the integer code of column j of row
// r (Q8_0: the int8; Q4_0: nibble - 8; Q4_K: the nibble; Q6_K: 6 bits - 32),
// the 32- or 16-value sub-block's scale and min (K formats; 1 and 0 else)
// and the fp16 scale(s) of the block.
const uint8_t* BlockOf(const Matrix& w, int r, int j) {
  const GgmlBlock b = *GgmlBlockOf(w.type);
  return &w.rows[r * w.row_bytes + (j / b.values) * b.bytes];
}
int Code(const Matrix& w, int r, int j) {
  const uint8_t* b = BlockOf(w, r, j);
  switch (static_cast<GgmlType>(w.type)) {
    case GgmlType::kQ8_0: return static_cast<int8_t>(b[2 + j % 32]);
    case GgmlType::kQ4_0: {
      const int c = j % 32;
      return (c < 16 ? b[2 + c] & 0x0F : b[2 + c - 16] >> 4) - 8;
    }
    case GgmlType::kQ4_K: {
      const int c = j % 256, g = c / 64, i = c % 64;
      return i < 32 ? b[16 + 32 * g + i] & 0x0F : b[16 + 32 * g + i - 32] >> 4;
    }
    default: {
      const int c = j % 256, h = c / 128, t = (c % 128) / 32, i = c % 32;
      const uint8_t lo = b[64 * h + i + 32 * (t & 1)];
      return ((t < 2 ? lo & 0x0F : lo >> 4) | (((b[128 + 32 * h + i] >> (2 * t)) & 3) << 4)) - 32;
    }
  }
}
int SubScale(const Matrix& w, int r, int j, bool min) {
  const uint8_t* b = BlockOf(w, r, j);
  if (w.type == T(GgmlType::kQ6_K)) return min ? 0 : static_cast<int8_t>(b[192 + (j % 256) / 16]);
  if (w.type != T(GgmlType::kQ4_K)) return min ? 0 : 1;
  const int s = (j % 256) / 32;
  const uint8_t* q = b + 4;
  if (s < 4) return min ? q[s + 4] & 63 : q[s] & 63;
  return min ? (q[s + 4] >> 4) | ((q[s] >> 6) << 4) : (q[s + 4] & 0xF) | ((q[s - 4] >> 6) << 4);
}
float Half(const Matrix& w, int r, int j, int offset) {
  uint16_t h;
  std::memcpy(&h, BlockOf(w, r, j) + offset, 2);
  return transport::HalfToFloat(h);
}

// The int8 product as kernels_quant.h documents it, one scalar loop: per
// block, total = sum over sub-blocks of scale * (sum of code * q), mins =
// sum over sub-blocks of min * (sum of q); acc = fma(float(total), d * dx,
// acc) and for Q4_K acc = fma(0 - float(mins), dmin * dx, acc).
std::vector<float> Int8Formula(const Matrix& w, const std::vector<float>& x, int n,
                               const float* bias) {
  const int block = GgmlBlockOf(w.type)->values;
  const int sub = w.type == T(GgmlType::kQ6_K) ? 16 : 32;
  const int d_off = w.type == T(GgmlType::kQ6_K) ? 208 : 0;
  std::vector<float> y(static_cast<size_t>(n) * w.m);
  std::vector<int8_t> q(w.k);
  std::vector<float> d(w.k / block);
  std::vector<int32_t> s16(w.k / 16);
  for (int i = 0; i < n; ++i) {
    kernels::QuantizeActivations(&x[static_cast<size_t>(i) * w.k], w.k, block, q.data(), d.data(),
                                 s16.data());
    for (int r = 0; r < w.m; ++r) {
      float acc = 0.0f;
      for (int b = 0; b < w.k / block; ++b) {
        int64_t total = 0, mins = 0;
        for (int j0 = block * b; j0 < block * (b + 1); j0 += sub) {
          int64_t s = 0, qs = 0;
          for (int j = j0; j < j0 + sub; ++j) {
            s += Code(w, r, j) * q[j];
            qs += q[j];
          }
          total += SubScale(w, r, j0, false) * s;
          mins += SubScale(w, r, j0, true) * qs;
        }
        acc = std::fma(static_cast<float>(total), Half(w, r, block * b, d_off) * d[b], acc);
        if (w.type == T(GgmlType::kQ4_K)) {
          acc = std::fma(0.0f - static_cast<float>(mins), Half(w, r, block * b, 2) * d[b], acc);
        }
      }
      y[static_cast<size_t>(i) * w.m + r] = bias != nullptr ? acc + bias[r] : acc;
    }
  }
  return y;
}

// Bitwise equality (also for -0 and subnormals); the first difference.
::testing::AssertionResult SameBits(const std::vector<float>& a, const std::vector<float>& b) {
  if (a.size() != b.size())
    return ::testing::AssertionFailure() << "sizes " << a.size() << " vs " << b.size();
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::memcmp(&a[i], &b[i], sizeof(float)) != 0) {
      return ::testing::AssertionFailure() << "element " << i << ": " << a[i] << " vs " << b[i];
    }
  }
  return ::testing::AssertionSuccess();
}

// Shapes: m not a multiple of 16 (nor of the tiles), k of one and several
// blocks; 597 rows (38 panels) give one input's kernels their 8- (AVX-512),
// 4- and 1-panel tiles, on one thread and on several.
struct Shape {
  int m, k;
};
std::vector<Shape> Shapes(uint32_t type) {
  if (kernels::QuantBlockValues(type) == 256) return {{1, 256}, {37, 512}, {70, 256}, {597, 256}};
  return {{1, 32}, {37, 96}, {70, 256}, {597, 64}};
}

class QuantKernels : public ::testing::Test {};

TEST_F(QuantKernels, EqualDequantiseThenMatMulOnEveryIsa) {
  for (uint32_t type : kTypes) {
    for (const Shape& s : Shapes(type)) {
      for (int adversarial = 0; adversarial < 2; ++adversarial) {
        const Matrix w =
            adversarial ? Adversarial(type, s.m, s.k, 7 + s.m) : Quantised(type, s.m, s.k, 3 + s.m);
        const std::vector<uint8_t> packed = Packed(w);
        const std::vector<float> bias = Bias(s.m);
        for (int n : {1, 3, 13}) {
          const std::vector<float> x = Inputs(n, s.k, 11 * n);
          const kernels::Isa portable = kernels::Isa::Portable();
          const std::vector<float> ref = Reference(w, x, n, bias.data(), portable);
          SCOPED_TRACE(GgmlTypeName(type) + " m=" + std::to_string(s.m) +
                       " k=" + std::to_string(s.k) + " n=" + std::to_string(n) +
                       (adversarial ? " adversarial" : " random"));
          for (kernels::Isa isa : kernels::Isa::Available()) {  // portable first
            EXPECT_TRUE(SameBits(Quant(w, packed, x, n, bias.data(), QuantActs::kF32, isa), ref))
                << isa.name();
            EXPECT_TRUE(SameBits(Reference(w, x, n, bias.data(), isa), ref))
                << isa.name() << " (fp32 path)";
          }
        }
      }
    }
  }
}

TEST_F(QuantKernels, UnpackedRowsEqualDequantizeRow) {
  for (uint32_t type : kTypes) {
    for (int adversarial = 0; adversarial < 2; ++adversarial) {
      const Matrix w = adversarial ? Adversarial(type, 21, 512, 5) : Quantised(type, 21, 512, 6);
      const std::vector<uint8_t> packed = Packed(w);
      std::vector<float> got(w.k), want(w.k);
      for (int r = 0; r < w.m; ++r) {
        kernels::QuantUnpackRow(type, packed.data(), w.k, r, got.data());
        DequantizeRow(type, &w.rows[r * w.row_bytes], want.data(), w.k);
        ASSERT_TRUE(SameBits(got, want)) << GgmlTypeName(type) << " row " << r;
      }
    }
  }
}

TEST_F(QuantKernels, BatchRowEqualsTheRowAloneAndThreadsAgree) {
  for (uint32_t type : kTypes) {
    for (QuantActs acts : {QuantActs::kF32, QuantActs::kInt8}) {
      if (acts == QuantActs::kInt8 && !kernels::HasInt8Kernel(type)) continue;
      const Matrix w = Quantised(type, 213, 512, 9);  // 14 panels: tiles of 8, 4, 1 on one thread
      const std::vector<uint8_t> packed = Packed(w, acts);
      const int n = 8;
      const std::vector<float> x = Inputs(n, w.k, 13);
      const std::vector<float> batch = Quant(w, packed, x, n, nullptr, acts);
      for (int i = 0; i < n; ++i) {
        const std::vector<float> xi(x.begin() + static_cast<size_t>(i) * w.k,
                                    x.begin() + static_cast<size_t>(i + 1) * w.k);
        const std::vector<float> alone = Quant(w, packed, xi, 1, nullptr, acts);
        EXPECT_TRUE(
            SameBits(alone, std::vector<float>(batch.begin() + static_cast<size_t>(i) * w.m,
                                               batch.begin() + static_cast<size_t>(i + 1) * w.m)))
            << GgmlTypeName(type) << " row " << i;
      }
      const int threads = at::get_num_threads();
      at::set_num_threads(1);
      const std::vector<float> one = Quant(w, packed, x, n, nullptr, acts);
      at::set_num_threads(2);
      const std::vector<float> two = Quant(w, packed, x, n, nullptr, acts);
      at::set_num_threads(threads);
      EXPECT_TRUE(SameBits(one, batch)) << GgmlTypeName(type);
      EXPECT_TRUE(SameBits(two, batch)) << GgmlTypeName(type);
    }
  }
}

const uint32_t (&kInt8Types)[4] = kTypes;

// Inputs with adversarial blocks: all zero, tiny (below 2^-96: quantised to
// zero), huge, a single large value among small ones, exact ties.
std::vector<float> AdversarialInputs(int n, int k, uint32_t seed) {
  std::vector<float> x = Inputs(n, k, seed);
  for (int i = 0; i < n; ++i) {
    float* row = &x[static_cast<size_t>(i) * k];
    for (int b = 0; b < k / 32; ++b) {
      float* blk = row + 32 * b;
      switch ((b + i) % 6) {
        case 0: std::fill(blk, blk + 32, 0.0f); break;
        case 1:
          for (int j = 0; j < 32; ++j) blk[j] *= 1e-30f;
          break;
        case 2:
          for (int j = 0; j < 32; ++j) blk[j] *= 1e30f;
          break;
        case 3: blk[5] = 1000.0f; break;
        case 4:
          for (int j = 0; j < 32; ++j) blk[j] = static_cast<float>(j - 16) + 0.5f;
          break;
        default: break;
      }
    }
  }
  return x;
}

TEST_F(QuantKernels, Int8ActivationsEqualTheFormulaOnEveryIsa) {
  for (uint32_t type : kInt8Types) {
    for (const Shape& s : Shapes(type)) {
      for (int adversarial = 0; adversarial < 2; ++adversarial) {
        const Matrix w =
            adversarial ? Adversarial(type, s.m, s.k, 7 + s.m) : Quantised(type, s.m, s.k, 3 + s.m);
        const std::vector<uint8_t> packed = Packed(w, QuantActs::kInt8);
        const std::vector<float> bias = Bias(s.m);
        for (int n : {1, 3, 13}) {
          const std::vector<float> x =
              adversarial ? AdversarialInputs(n, s.k, 5 * n) : Inputs(n, s.k, 11 * n);
          const std::vector<float> want = Int8Formula(w, x, n, bias.data());
          SCOPED_TRACE(GgmlTypeName(type) + " m=" + std::to_string(s.m) +
                       " k=" + std::to_string(s.k) + " n=" + std::to_string(n) +
                       (adversarial ? " adversarial" : " random"));
          for (kernels::Isa isa : kernels::Isa::Available()) {  // portable first
            EXPECT_TRUE(SameBits(Quant(w, packed, x, n, bias.data(), QuantActs::kInt8, isa), want))
                << isa.name();
          }
        }
      }
    }
  }
}

// The documented bound against dequantise-then-MatMul: the activation error
// is at most d_x / 2 per value, so
// |y - y_f32| <= sum_b d_x[b] / 2 * sum_{j in b} |w_j| + 2^-12 * sum_j |w_j x_j|
// (the second term covers the fp32 roundings of both sides, k <= 4096).
TEST_F(QuantKernels, Int8ActivationsStayWithinTheBoundOfFp32) {
  for (uint32_t type : kInt8Types) {
    const Matrix w = Quantised(type, 40, 512, 21);
    const std::vector<uint8_t> packed = Packed(w, QuantActs::kInt8);
    const int n = 6;
    const std::vector<float> x = Inputs(n, w.k, 8);
    const std::vector<float> got = Quant(w, packed, x, n, nullptr, QuantActs::kInt8);
    const std::vector<float> ref = Reference(w, x, n, nullptr);
    const int block = kernels::QuantBlockValues(type);
    std::vector<float> deq(w.k);
    std::vector<int8_t> q(w.k);
    std::vector<float> d(w.k / block);
    std::vector<int32_t> s16(w.k / 16);
    double worst = 0.0;
    for (int i = 0; i < n; ++i) {
      const float* xi = &x[static_cast<size_t>(i) * w.k];
      kernels::QuantizeActivations(xi, w.k, block, q.data(), d.data(), s16.data());
      for (int r = 0; r < w.m; ++r) {
        DequantizeRow(type, &w.rows[r * w.row_bytes], deq.data(), w.k);
        double bound = 0.0, mag = 0.0;
        for (int j = 0; j < w.k; ++j) {
          bound += d[j / block] / 2.0 * std::fabs(deq[j]);
          mag += std::fabs(static_cast<double>(deq[j]) * xi[j]);
        }
        bound += mag / 4096.0;
        const double err = std::fabs(static_cast<double>(got[static_cast<size_t>(i) * w.m + r]) -
                                     ref[static_cast<size_t>(i) * w.m + r]);
        EXPECT_LE(err, bound) << GgmlTypeName(type) << " input " << i << " row " << r;
        worst = std::max(worst, err / bound);
      }
    }
    EXPECT_GT(worst, 0.0) << "int8 activations change the result (else the test measures nothing)";
  }
}

// The rule of QuantizeActivations on values whose codes follow from it by
// hand: amax 127 gives d = 1, ties round to even, sums of 16.
TEST_F(QuantKernels, ActivationQuantisationFollowsItsRule) {
  std::vector<float> x(64, 0.0f);
  const float first[] = {127.0f, 0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -127.0f, 3.4f};
  std::copy(std::begin(first), std::end(first), x.begin());
  x[16] = 2.0f;
  x[32] = 1e-30f;  // the second block: below 2^-96, all zero
  std::vector<int8_t> q(64);
  std::vector<float> d(2);
  std::vector<int32_t> s16(4);
  kernels::QuantizeActivations(x.data(), 64, 32, q.data(), d.data(), s16.data());
  EXPECT_EQ(d[0], 1.0f);
  const int want[] = {127, 0, 2, 2, 0, -2, -127, 3};
  for (int j = 0; j < 8; ++j) EXPECT_EQ(q[j], want[j]) << "value " << j;
  EXPECT_EQ(q[16], 2);
  EXPECT_EQ(s16[0], 127 + 2 + 2 - 2 - 127 + 3);
  EXPECT_EQ(s16[1], 2);
  EXPECT_EQ(d[1], 0.0f);
  for (int j = 32; j < 64; ++j) EXPECT_EQ(q[j], 0);
  // A value that is not finite makes the block's scale NaN (and its codes 0):
  // the NaN reaches every output that reads the block, as in fp32.
  x[40] = std::numeric_limits<float>::infinity();
  kernels::QuantizeActivations(x.data(), 64, 32, q.data(), d.data(), s16.data());
  EXPECT_TRUE(std::isnan(d[1]));
  EXPECT_EQ(s16[2], 0);
  const Matrix w = Quantised(T(GgmlType::kQ8_0), 3, 64, 2);
  const std::vector<uint8_t> packed = Packed(w, QuantActs::kInt8);
  for (float v : Quant(w, packed, x, 1, nullptr, QuantActs::kInt8)) EXPECT_TRUE(std::isnan(v));
}

// Every instruction set's quantisation (the vector ones QuantMatMul runs)
// gives the reference's codes, scales and sums bit for bit: random blocks of
// every magnitude, ties, all-zero, tiny (below 2^-96 and just above),
// subnormal, largest-finite, infinite and NaN values, both block sizes.
TEST_F(QuantKernels, EveryInstructionSetQuantisesActivationsAsTheReference) {
  std::mt19937 rng(11);
  const int k = 2048;
  std::vector<float> x(k);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  std::uniform_int_distribution<int> exponent(-140, 120), kind(0, 9);
  for (int trial = 0; trial < 64; ++trial) {
    for (int b = 0; b < k / 32; ++b) {
      const float scale = std::ldexp(1.0f, exponent(rng));
      const int what = kind(rng);
      for (int j = 0; j < 32; ++j) {
        float v = u(rng) * scale;
        if (what == 0) v = 0.0f;
        if (what == 1) v = std::round(u(rng) * 8.0f) * 0.5f;  // ties at amax 127 / 4
        if (what == 2 && j == 3) v = std::numeric_limits<float>::max();
        if (what == 3 && j == 7) v = -std::numeric_limits<float>::infinity();
        if (what == 4 && j == 30) v = std::numeric_limits<float>::quiet_NaN();
        if (what == 5) v = u(rng) * 0x1p-96f;                        // below the all-zero bound
        if (what == 6) v = (j == 0 ? 0x1p-96f : u(rng) * 0x1p-97f);  // at it
        if (what == 7) v = u(rng) * std::numeric_limits<float>::denorm_min() * 64;
        x[static_cast<size_t>(b) * 32 + j] = v;
      }
    }
    for (int block : {32, 256}) {
      std::vector<int8_t> q0(k), q1(k);
      std::vector<float> d0(k / block), d1(k / block);
      std::vector<int32_t> s0(k / 16), s1(k / 16);
      kernels::QuantizeActivations(x.data(), k, block, q0.data(), d0.data(), s0.data());
      for (kernels::Isa isa : kernels::Isa::Available()) {
        kernels::QuantizeActivations(isa, x.data(), k, block, q1.data(), d1.data(), s1.data());
        EXPECT_EQ(q0, q1) << isa.name() << " block " << block << " trial " << trial;
        EXPECT_EQ(s0, s1) << isa.name() << " block " << block << " trial " << trial;
        EXPECT_EQ(0, std::memcmp(d0.data(), d1.data(), d0.size() * sizeof(float)))
            << isa.name() << " block " << block << " trial " << trial;
      }
    }
  }
}

TEST_F(QuantKernels, Int8UnpackedRowsEqualDequantizeRow) {
  for (uint32_t type : kInt8Types) {
    const Matrix w = Adversarial(type, 21, 2 * kernels::QuantBlockValues(type), 5);
    const std::vector<uint8_t> packed = Packed(w, QuantActs::kInt8);
    std::vector<float> got(w.k), want(w.k);
    for (int r = 0; r < w.m; ++r) {
      kernels::QuantUnpackRow(type, packed.data(), w.k, r, got.data(), QuantActs::kInt8);
      DequantizeRow(type, &w.rows[r * w.row_bytes], want.data(), w.k);
      ASSERT_TRUE(SameBits(got, want)) << GgmlTypeName(type) << " row " << r;
    }
  }
}

TEST_F(QuantKernels, PackingRejectsRowsOfPartialBlocks) {
  std::vector<uint8_t> row(1000), out(100000);
  const uint8_t* ptr = row.data();
  EXPECT_THROW(kernels::PackQuant(T(GgmlType::kQ4_K), &ptr, 1, 288, out.data()), std::exception);
  EXPECT_THROW(kernels::QuantPackedBytes(T(GgmlType::kQ5_0), 1, 32), std::exception);
}

TensorRef Ref(const Matrix& w) { return TensorRef{w.rows.data(), w.type, {w.m, w.k}, 0}; }

TEST_F(QuantKernels, WeightMatrixStacksPartsOfMixedFormats) {
  // Q4_K_M stacks Q4_K q/k with a Q6_K v.
  const Matrix a = Quantised(T(GgmlType::kQ4_K), 19, 256, 1),
               b = Quantised(T(GgmlType::kQ4_K), 5, 256, 2),
               c = Quantised(T(GgmlType::kQ6_K), 22, 256, 3);
  const auto wm = WeightMatrix::Load({{"q", Ref(a)}, {"k", Ref(b)}, {"v", Ref(c)}}, "");
  EXPECT_EQ(wm->rows(), 46);
  EXPECT_EQ(wm->format(), "q4_k/q6_k");
  const auto f32 = WeightMatrix::Load({{"q", Ref(a)}, {"k", Ref(b)}, {"v", Ref(c)}}, "f32");
  EXPECT_EQ(f32->format(), "f32");
  EXPECT_GT(f32->bytes(), 4 * wm->bytes());  // 5 of the rows are a panel of 16
  // Each segment is its format's int8 product.
  const int n = 5;
  const std::vector<float> x = Inputs(n, 256, 4), bias = Bias(46);
  std::vector<float> y(n * 46), want(n * 46);
  wm->Apply(x.data(), n, y.data(), bias.data());
  Matrix ab = a;
  ab.m = 24;
  ab.rows.insert(ab.rows.end(), b.rows.begin(), b.rows.end());
  const std::vector<float> y_ab = Int8Formula(ab, x, n, bias.data());
  const std::vector<float> y_c = Int8Formula(c, x, n, bias.data() + 24);
  for (int i = 0; i < n; ++i) {
    std::copy_n(&y_ab[i * 24], 24, &want[i * 46]);
    std::copy_n(&y_c[i * 22], 22, &want[i * 46 + 24]);
  }
  EXPECT_TRUE(SameBits(y, want));
  std::vector<float> row(256), row_want(256);
  for (int r : {0, 20, 45}) {
    wm->Row(r, row.data());
    f32->Row(r, row_want.data());
    EXPECT_TRUE(SameBits(row, row_want)) << "row " << r;
  }
}

TEST_F(QuantKernels, WeightMatrixQuantisesAtLoadOrKeepsFloatRows) {
  std::vector<float> w(24 * 256);
  std::mt19937 rng(5);
  std::normal_distribution<float> normal(0.0f, 0.1f);
  for (float& v : w) v = normal(rng);
  const TensorRef ref{w.data(), T(GgmlType::kF32), {24, 256}, 0};
  for (const char* fmt : {"q8_0", "q4_0", "q4_k", "q6_k"}) {
    const auto wm = WeightMatrix::Load({{"m", ref}}, fmt);
    EXPECT_EQ(wm->format(), fmt);
    // Its rows are QuantizeRow then DequantizeRow of the floats.
    const uint32_t type = std::string(fmt) == "q8_0"   ? T(GgmlType::kQ8_0)
                          : std::string(fmt) == "q4_0" ? T(GgmlType::kQ4_0)
                          : std::string(fmt) == "q4_k" ? T(GgmlType::kQ4_K)
                                                       : T(GgmlType::kQ6_K);
    std::vector<uint8_t> blocks(RowBytes(type, 256));
    std::vector<float> got(256), want(256);
    QuantizeRow(type, &w[256 * 7], blocks.data(), 256);
    DequantizeRow(type, blocks.data(), want.data(), 256);
    wm->Row(7, got.data());
    EXPECT_TRUE(SameBits(got, want)) << fmt;
  }
  // 96 values are not whole Q4_K blocks: the matrix stays fp32.
  const TensorRef narrow{w.data(), T(GgmlType::kF32), {16, 96}, 0};
  EXPECT_EQ(WeightMatrix::Load({{"m", narrow}}, "q4_k")->format(), "f32");
  EXPECT_EQ(WeightMatrix::Load({{"m", narrow}}, "q8_0")->format(), "q8_0");
  // f16 rounds the values.
  const auto half = WeightMatrix::Load({{"m", ref}}, "f16");
  std::vector<float> row(256);
  half->Row(3, row.data());
  std::vector<uint8_t> h(512);
  std::vector<float> want(256);
  QuantizeRow(T(GgmlType::kF16), &w[256 * 3], h.data(), 256);
  DequantizeRow(T(GgmlType::kF16), h.data(), want.data(), 256);
  EXPECT_TRUE(SameBits(row, want));
  // q4_k_m: Q6_K for the head and for v/down in the layers llama.cpp gives
  // more bits (of 8 layers: 0, 3, 6, 7), Q4_K elsewhere.
  EXPECT_EQ(WeightMatrix::Load({{"lm_head.weight", ref}}, "q4_k_m", 8)->format(), "q6_k");
  EXPECT_EQ(
      WeightMatrix::Load({{"model.layers.3.mlp.down_proj.weight", ref}}, "q4_k_m", 8)->format(),
      "q6_k");
  EXPECT_EQ(
      WeightMatrix::Load({{"model.layers.4.mlp.down_proj.weight", ref}}, "q4_k_m", 8)->format(),
      "q4_k");
  EXPECT_EQ(WeightMatrix::Load({{"model.layers.0.self_attn.q_proj.weight", ref},
                                {"model.layers.0.self_attn.v_proj.weight", ref}},
                               "q4_k_m", 8)
                ->format(),
            "q4_k/q6_k");
}

TEST_F(QuantKernels, UnknownWeightFormatIsAnErrorNamingIt) {
  try {
    CheckWeightFormat("q5_k");
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("q5_k"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("q4_k"), std::string::npos) << e.what();
  }
  std::vector<float> bad(32, 1e30f);
  const TensorRef ref{bad.data(), T(GgmlType::kF32), {1, 32}, 0};
  try {
    WeightMatrix::Load({{"model.layers.0.mlp.down_proj.weight", ref}}, "q8_0");
    FAIL() << "no error";
  } catch (const std::exception& e) {
    EXPECT_NE(std::string(e.what()).find("down_proj"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace splitlm::partition
