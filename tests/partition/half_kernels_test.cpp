// The 16-bit-weight kernels (partition/kernels_half.h): F16 and BF16 weights,
// random and adversarial (subnormals, signed zeros, the largest finite
// values), give bit for bit what widening to fp32 then kernels::MatMul gives,
// on every instruction set, batch composition and thread count; WeightMatrix
// holds them in two bytes per weight; a GGUF model of F16 matrices (and
// `--weights f16`) splits exactly and computes as its widened copy.
#include <ATen/Parallel.h>
#include <gtest/gtest.h>

#include <cstring>
#include <random>
#include <vector>

#include "partition/gguf.h"
#include "partition/gguf_writer.h"
#include "partition/kernels.h"
#include "partition/kernels_half.h"
#include "partition/model.h"
#include "partition/quant.h"
#include "partition/stage.h"
#include "partition/weight_matrix.h"
#include "tests/common/stage_chain.h"
#include "tests/common/test_util.h"

namespace splitlm::partition {
namespace {

constexpr uint32_t T(GgmlType t) { return static_cast<uint32_t>(t); }
const uint32_t kTypes[] = {T(GgmlType::kF16), T(GgmlType::kBF16)};

struct Matrix {
  uint32_t type;
  int m, k;
  std::vector<uint16_t> rows;  // m rows of k values
};

// Random 16-bit values: normal weights, or (adversarial) any bit pattern
// that is not NaN or infinite, with runs of zeros, subnormals and extremes.
Matrix Random(uint32_t type, int m, int k, uint32_t seed, bool adversarial) {
  std::mt19937 rng(seed);
  Matrix w{type, m, k, std::vector<uint16_t>(static_cast<size_t>(m) * k)};
  if (!adversarial) {
    std::normal_distribution<float> normal(0.0f, 0.05f);
    std::vector<float> f(w.rows.size());
    for (float& v : f) v = normal(rng);
    QuantizeRow(type, f.data(), reinterpret_cast<uint8_t*>(w.rows.data()),
                static_cast<int64_t>(f.size()));
    return w;
  }
  const bool bf16 = type == T(GgmlType::kBF16);
  const uint16_t exp_mask = bf16 ? 0x7F80 : 0x7C00;
  static const uint16_t kF16Special[] = {0x0000, 0x8000, 0x0001, 0x83FF, 0x7BFF, 0xFBFF, 0x0400};
  static const uint16_t kBf16Special[] = {0x0000, 0x8000, 0x0001, 0x807F, 0x7F7F, 0xFF7F, 0x0080};
  for (size_t i = 0; i < w.rows.size(); ++i) {
    uint16_t h = static_cast<uint16_t>(rng());
    if ((h & exp_mask) == exp_mask) h &= static_cast<uint16_t>(~0x4000);  // no NaN or infinity
    if (i % 5 == 0) h = (bf16 ? kBf16Special : kF16Special)[rng() % 7];
    w.rows[i] = h;
  }
  return w;
}

std::vector<float> Widened(const Matrix& w) {
  std::vector<float> f(w.rows.size());
  DequantizeRow(w.type, reinterpret_cast<const uint8_t*>(w.rows.data()), f.data(),
                static_cast<int64_t>(f.size()));
  return f;
}

std::vector<uint16_t> Packed(const Matrix& w) {
  std::vector<const uint16_t*> ptrs(w.m);
  for (int r = 0; r < w.m; ++r) ptrs[r] = &w.rows[static_cast<size_t>(r) * w.k];
  std::vector<uint16_t> out(kernels::HalfPackedSize(w.m, w.k));
  kernels::PackHalf(ptrs.data(), w.m, w.k, out.data());
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

// Widen every weight, pack as fp32, MatMul.
std::vector<float> Reference(const Matrix& w, const std::vector<float>& x, int n, const float* bias,
                             kernels::Isa isa = kernels::Isa::Best()) {
  const std::vector<float> f = Widened(w);
  std::vector<float> packed(kernels::PackedSize(w.m, w.k));
  kernels::Pack(f.data(), w.m, w.k, packed.data());
  std::vector<float> y(static_cast<size_t>(n) * w.m);
  kernels::MatMul(isa, packed.data(), w.m, w.k, x.data(), n, y.data(), bias);
  return y;
}

std::vector<float> Half(const Matrix& w, const std::vector<uint16_t>& packed,
                        const std::vector<float>& x, int n, const float* bias,
                        kernels::Isa isa = kernels::Isa::Best()) {
  std::vector<float> y(static_cast<size_t>(n) * w.m);
  kernels::HalfMatMul(isa, w.type, packed.data(), w.m, w.k, x.data(), n, y.data(), w.m, bias);
  return y;
}

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

class HalfKernels : public ::testing::Test {};

TEST_F(HalfKernels, EqualWidenThenMatMulOnEveryIsa) {
  struct Shape {
    int m, k;
  };
  for (uint32_t type : kTypes) {
    for (const Shape s : {Shape{1, 7}, Shape{37, 96}, Shape{70, 256}}) {
      for (bool adversarial : {false, true}) {
        const Matrix w = Random(type, s.m, s.k, 3 + s.m, adversarial);
        const std::vector<uint16_t> packed = Packed(w);
        const std::vector<float> bias = Bias(s.m);
        for (int n : {1, 3, 13}) {
          const std::vector<float> x = Inputs(n, s.k, 11 * n);
          const std::vector<float> ref = Reference(w, x, n, bias.data(), kernels::Isa::Portable());
          SCOPED_TRACE(GgmlTypeName(type) + " m=" + std::to_string(s.m) +
                       " k=" + std::to_string(s.k) + " n=" + std::to_string(n) +
                       (adversarial ? " adversarial" : " random"));
          for (kernels::Isa isa : kernels::Isa::Available()) {  // portable first
            EXPECT_TRUE(SameBits(Half(w, packed, x, n, bias.data(), isa), ref)) << isa.name();
          }
        }
      }
    }
  }
}

TEST_F(HalfKernels, BatchRowEqualsTheRowAloneAndThreadsAgree) {
  for (uint32_t type : kTypes) {
    const Matrix w = Random(type, 53, 300, 9, false);
    const std::vector<uint16_t> packed = Packed(w);
    const int n = 8;
    const std::vector<float> x = Inputs(n, w.k, 13);
    const std::vector<float> batch = Half(w, packed, x, n, nullptr);
    for (int i = 0; i < n; ++i) {
      const std::vector<float> xi(x.begin() + static_cast<size_t>(i) * w.k,
                                  x.begin() + static_cast<size_t>(i + 1) * w.k);
      EXPECT_TRUE(SameBits(Half(w, packed, xi, 1, nullptr),
                           std::vector<float>(batch.begin() + static_cast<size_t>(i) * w.m,
                                              batch.begin() + static_cast<size_t>(i + 1) * w.m)))
          << GgmlTypeName(type) << " row " << i;
    }
    const int threads = at::get_num_threads();
    at::set_num_threads(1);
    const std::vector<float> one = Half(w, packed, x, n, nullptr);
    at::set_num_threads(2);
    const std::vector<float> two = Half(w, packed, x, n, nullptr);
    at::set_num_threads(threads);
    EXPECT_TRUE(SameBits(one, batch)) << GgmlTypeName(type);
    EXPECT_TRUE(SameBits(two, batch)) << GgmlTypeName(type);
  }
}

TEST_F(HalfKernels, WeightMatrixHoldsTwoBytesPerWeight) {
  const Matrix a = Random(T(GgmlType::kF16), 20, 64, 1, false),
               b = Random(T(GgmlType::kBF16), 12, 64, 2, false);
  const TensorRef ra{a.rows.data(), a.type, {a.m, a.k}, 0},
      rb{b.rows.data(), b.type, {b.m, b.k}, 0};
  const auto native = WeightMatrix::Load({{"q", ra}, {"v", rb}}, "");
  const auto f32 = WeightMatrix::Load({{"q", ra}, {"v", rb}}, "f32");
  EXPECT_EQ("bf16/f16", native->format());
  EXPECT_EQ("f32", f32->format());
  // Panels of 16 rows: F16 32 x 64 and BF16 16 x 64 in two bytes; fp32 32 x 64 in four.
  EXPECT_EQ((32u + 16u) * 64 * 2, native->bytes());
  EXPECT_EQ(32u * 64 * 4, f32->bytes());
  const std::vector<float> x = Inputs(5, 64, 3), bias = Bias(32);
  std::vector<float> y(5 * 32), want(5 * 32);
  native->Apply(x.data(), 5, y.data(), bias.data());
  f32->Apply(x.data(), 5, want.data(), bias.data());
  EXPECT_TRUE(SameBits(y, want));
  std::vector<float> row(64), row_want(64);
  for (int r : {0, 19, 20, 31}) {
    native->Row(r, row.data());
    f32->Row(r, row_want.data());
    EXPECT_TRUE(SameBits(row, row_want)) << "row " << r;
  }
  // `--weights f16` of fp32 weights: fp16-rounded values, in 16 bits.
  const std::vector<float> wf = Widened(Random(T(GgmlType::kBF16), 16, 64, 4, false));
  const auto rounded =
      WeightMatrix::Load({{"m", TensorRef{wf.data(), T(GgmlType::kF32), {16, 64}, 0}}}, "f16");
  EXPECT_EQ("f16", rounded->format());
  EXPECT_EQ(16u * 64 * 2, rounded->bytes());
}

// stories260K-f32.gguf with every matrix, the embedding table included,
// written as F16 (as `--weights f16` rounds them).
std::string WriteF16Copy(const std::string& src, const std::string& dst) {
  auto in = GgufFile::Open(src);
  GgufWriter w(dst);
  for (const std::string& key : in->header().key_order)
    w.AddKeyValue(key, in->header().metadata.at(key));
  std::vector<std::vector<uint8_t>> data;
  for (const GgufTensor& t : in->header().tensors) {
    const bool matrix = t.dims.size() == 2;
    w.AddTensor(t.name, t.dims, matrix ? T(GgmlType::kF16) : t.type);
    std::vector<uint8_t> bytes(in->data(t), in->data(t) + t.bytes);
    if (matrix) {
      const int64_t n = static_cast<int64_t>(t.bytes / 4);
      std::vector<uint8_t> h(static_cast<size_t>(n) * 2);
      QuantizeRow(T(GgmlType::kF16), reinterpret_cast<const float*>(bytes.data()), h.data(), n);
      bytes = std::move(h);
    }
    data.push_back(std::move(bytes));
  }
  for (const auto& b : data) w.WriteTensorData(b.data(), b.size());
  w.Commit();
  return dst;
}

TEST_F(HalfKernels, AnF16GgufSplitsExactlyAndComputesAsItsWidenedCopy) {
  REQUIRE_SHARED(gguf, "gguf/stories260K-f32.gguf");
  testing::TempDir dir;
  const std::string path = WriteF16Copy(gguf, dir.Sub("f16.gguf"));
  auto half = Model::Open(path);
  auto widened = Model::Open(path, "f32");
  auto rounded = Model::Open(gguf, "f16");  // the F32 file rounded at load
  const ModelConfig& c = half->config();
  auto all = StageWeights::Load(*half, StageSpec::Device(c, c.num_layers));
  auto all32 = StageWeights::Load(*widened, StageSpec::Device(c, c.num_layers));
  EXPECT_EQ("embed:f16 0-4:f16 head:f16", all->weight_formats());
  EXPECT_EQ("embed:f32 0-4:f32 head:f32", all32->weight_formats());
  EXPECT_LT(all->decode_bytes_per_token(), 0.6 * all32->decode_bytes_per_token());
  const auto prompt = testing::Prompt(6, c.vocab_size);
  const auto want = testing::RunChain(*widened, c.num_layers, prompt, 8);
  for (int cut = 0; cut <= c.num_layers; ++cut) {
    EXPECT_EQ(want, testing::RunChain(*half, cut, prompt, 8)) << "cut " << cut;
  }
  EXPECT_EQ(want, testing::RunChain(*rounded, 2, prompt, 8));
  for (kernels::Isa isa : kernels::Isa::Available()) {
    EXPECT_EQ(want, testing::RunChain(*Model::Open(path, "", isa), 3, prompt, 8)) << isa.name();
  }
}

}  // namespace
}  // namespace splitlm::partition
