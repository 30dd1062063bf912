// ggml's block formats: quantising llama.cpp's F32 fixture reproduces the
// blocks llama-quantize wrote, dequantisation follows the documented
// formulas, and the round trip stays within each format's bound on random
// and adversarial blocks.
#include "partition/quant.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <random>

#include "partition/gguf.h"
#include "partition/gguf_quantize.h"
#include "tests/common/test_util.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

constexpr uint32_t kF32 = 0, kF16 = 1, kQ4_0 = 2, kQ8_0 = 8, kQ4_K = 12, kQ6_K = 14, kBF16 = 30;

size_t RowBytes(uint32_t type, int64_t n) {
  return n / GgmlBlockOf(type)->values * GgmlBlockOf(type)->bytes;
}

std::vector<uint8_t> Quantize(uint32_t type, const std::vector<float>& x) {
  std::vector<uint8_t> out(RowBytes(type, x.size()));
  QuantizeRow(type, x.data(), out.data(), x.size());
  return out;
}

std::vector<float> Dequantize(uint32_t type, const std::vector<uint8_t>& b, int64_t n) {
  std::vector<float> out(n);
  DequantizeRow(type, b.data(), out.data(), n);
  return out;
}

// The error bound quant.h documents for the block of `x` starting at `i0`.
double Bound(uint32_t type, const float* x) {
  const int n = GgmlBlockOf(type)->values;
  double amax = 0, mx = -1e300, mn = 0;
  for (int i = 0; i < n; ++i) {
    amax = std::max(amax, std::fabs(double(x[i])));
    mx = std::max(mx, double(x[i]));
    mn = std::min(mn, double(x[i]));
  }
  switch (type) {
    case kQ8_0: return amax / 127 * (0.5 + 127.0 / 2048) + std::ldexp(1.0, -18);
    case kQ4_0: return amax / 8 * (1 + 8.0 / 2048) + std::ldexp(1.0, -21);
    case kQ4_K: return (mx - mn) / 8 + std::ldexp(1.0, -14);
    default: return amax / 16 + std::ldexp(1.0, -12);  // Q6_K
  }
}

// Quantises and dequantises `x` and checks every value against the bound.
void ExpectWithinBound(uint32_t type, const std::vector<float>& x, const std::string& what) {
  const auto y = Dequantize(type, Quantize(type, x), x.size());
  const int block = GgmlBlockOf(type)->values;
  for (size_t b = 0; b < x.size(); b += block) {
    const double bound = Bound(type, &x[b]);
    for (int i = 0; i < block; ++i) {
      ASSERT_LE(std::fabs(double(x[b + i]) - double(y[b + i])), bound)
          << GgmlTypeName(type) << " " << what << " value " << b + i << ": " << x[b + i] << " -> "
          << y[b + i];
    }
  }
}

const uint32_t kBlockTypes[] = {kQ8_0, kQ4_0, kQ4_K, kQ6_K};

TEST(Quant, RandomRowsStayWithinTheDocumentedBound) {
  std::mt19937 rng(7);
  for (double scale : {1e-4, 0.02, 1.0, 300.0}) {
    std::normal_distribution<float> normal(0.0f, static_cast<float>(scale));
    std::vector<float> x(4096);
    for (auto& v : x) v = normal(rng);
    for (uint32_t type : kBlockTypes)
      ExpectWithinBound(type, x, "normal scale " + std::to_string(scale));
  }
  std::uniform_real_distribution<float> uniform(0.5f,
                                                2.0f);  // one-signed rows exercise the K-quant mins
  std::vector<float> x(2048);
  for (auto& v : x) v = uniform(rng);
  for (uint32_t type : kBlockTypes) ExpectWithinBound(type, x, "positive");
}

TEST(Quant, AdversarialBlocksStayWithinTheBound) {
  std::vector<std::pair<std::string, std::vector<float>>> cases;
  cases.push_back({"all zeros", std::vector<float>(256, 0.0f)});
  std::vector<float> outlier(256, 1e-3f);
  outlier[77] = -40.0f;
  cases.push_back({"single outlier", outlier});
  std::vector<float> tiny(256);
  for (int i = 0; i < 256; ++i) tiny[i] = (i % 7 - 3) * 1e-5f;  // fp16 scales are subnormal
  cases.push_back({"subnormal scales", tiny});
  std::vector<float> below(256);
  for (int i = 0; i < 256; ++i) below[i] = (i % 5 - 2) * 1e-38f;  // scales underflow fp16 to 0
  cases.push_back({"scales below fp16", below});
  std::vector<float> large(256);
  for (int i = 0; i < 256; ++i)
    large[i] = (i % 9 - 4) * 1e5f;  // Q8_0's d = amax/127 near fp16's top
  cases.push_back({"large", large});
  std::vector<float> halfway(256);
  for (int i = 0; i < 256; ++i)
    halfway[i] = (i % 2 ? 1 : -1) * (127.0f * (1.0f + 1.0f / 2048));  // d on an fp16 tie
  cases.push_back({"fp16 tie", halfway});
  for (const auto& [what, x] : cases) {
    for (uint32_t type : kBlockTypes) ExpectWithinBound(type, x, what);
  }
}

TEST(Quant, ZerosDequantiseToExactZeros) {
  const std::vector<float> zeros(256, 0.0f);
  for (uint32_t type : kBlockTypes) {
    for (float v : Dequantize(type, Quantize(type, zeros), 256))
      ASSERT_EQ(0.0f, v) << GgmlTypeName(type);
  }
}

TEST(Quant, ValuesPastTheScaleRangeAreRefused) {
  const std::vector<float> huge(256, 1e9f);
  for (uint32_t type : {kQ8_0, kQ4_0}) {
    try {
      Quantize(type, huge);
      FAIL() << GgmlTypeName(type);
    } catch (const Exception& e) {
      EXPECT_NE(std::string::npos, std::string(e.what()).find("overflows fp16")) << e.what();
    }
  }
  std::vector<float> nan(32, 1.0f);
  nan[5] = std::nanf("");
  try {
    Quantize(kQ8_0, nan);
    FAIL();
  } catch (const Exception& e) {
    EXPECT_EQ(std::string("cannot quantise to Q8_0: value 5 is not finite"), e.what());
  }
}

TEST(Quant, ScalesAtTheTopOfFp16AreKeptAndPastItRefused) {
  std::vector<float> x(32, 1.0f);
  x[3] = 65504.0f * 127;  // Q8_0's d = amax/127 is fp16's largest finite value
  const auto q = Quantize(kQ8_0, x);
  EXPECT_EQ(65504.0f, Dequantize(kQ8_0, q, 32)[3] / 127);
  ExpectWithinBound(kQ8_0, x, "fp16 max");
  x[3] = 65520.0f * 127;  // rounds to an infinite fp16 scale
  EXPECT_THROW(Quantize(kQ8_0, x), Exception);
  x[3] = -65504.0f * 8;  // Q4_0's d = max/-8
  ExpectWithinBound(kQ4_0, x, "fp16 max");
}

// Arbitrary bit patterns: decoding any bytes and encoding any finite floats
// either returns or throws Exception (a small deterministic fuzz).
TEST(Quant, ArbitraryBitsNeverCrash) {
  std::mt19937 rng(11);
  for (int round = 0; round < 200; ++round) {
    std::vector<uint32_t> bits(512);
    for (auto& b : bits) b = rng();
    std::vector<float> x(512);
    std::memcpy(x.data(), bits.data(), 512 * 4);
    for (auto& v : x) {
      if (!std::isfinite(v)) v = 0.0f;
    }
    for (uint32_t type : {kQ8_0, kQ4_0, kQ4_K, kQ6_K, kF16, kBF16}) {
      std::vector<uint8_t> raw(RowBytes(type, 512));
      std::memcpy(raw.data(), bits.data(), raw.size());
      (void)Dequantize(type, raw, 512);
      try {
        (void)Quantize(type, x);
      } catch (const Exception&) {
      }
    }
  }
}

TEST(Quant, UnsupportedTypesAndRaggedRowsAreErrors) {
  float x[32] = {};
  uint8_t b[64] = {};
  try {
    DequantizeRow(16, b, x, 256);
    FAIL();
  } catch (const Exception& e) {
    EXPECT_EQ(
        std::string(
            "DequantizeRow: tensor type IQ2_XXS is not supported (F32, F16, BF16, Q8_0, Q4_0, Q4_K "
            "and "
            "Q6_K are; DequantizeRow also reads Q4_1, Q5_0, Q5_1, Q2_K, Q3_K, Q5_K and IQ4_NL)"),
        e.what());
  }
  try {
    QuantizeRow(kQ4_K, x, b, 32);
    FAIL();
  } catch (const Exception& e) {
    EXPECT_EQ(std::string("QuantizeRow: 32 values are not a whole number of Q4_K blocks of 256"),
              e.what());
  }
  EXPECT_THROW(QuantizeRow(999, x, b, 32), Exception);
}

TEST(Quant, DequantisationFollowsTheDocumentedLayouts) {
  // Q8_0: d = 0.5, q[j] = j - 16.
  std::vector<uint8_t> q8(34);
  q8[0] = 0x00, q8[1] = 0x38;
  for (int j = 0; j < 32; ++j) q8[2 + j] = static_cast<uint8_t>(j - 16);
  auto y = Dequantize(kQ8_0, q8, 32);
  for (int j = 0; j < 32; ++j) ASSERT_EQ(0.5f * (j - 16), y[j]);
  // Q4_0: d = 2; byte j holds element j (low nibble) and j + 16 (high).
  std::vector<uint8_t> q4(18);
  q4[0] = 0x00, q4[1] = 0x40;
  for (int j = 0; j < 16; ++j) q4[2 + j] = static_cast<uint8_t>(j | ((15 - j) << 4));
  y = Dequantize(kQ4_0, q4, 32);
  for (int j = 0; j < 16; ++j) {
    ASSERT_EQ(2.0f * (j - 8), y[j]);
    ASSERT_EQ(2.0f * (15 - j - 8), y[j + 16]);
  }
  // Q4_K: d = 1, dmin = 0.5, sub-block 0 scale 3 min 2, sub-block 1 scale 1 min 0; q = 5
  // everywhere.
  std::vector<uint8_t> q4k(144, 0);
  q4k[0] = 0x00, q4k[1] = 0x3c, q4k[2] = 0x00, q4k[3] = 0x38;
  q4k[4] = 3, q4k[5] = 1, q4k[8] = 2;
  for (int l = 0; l < 128; ++l) q4k[16 + l] = 0x55;
  y = Dequantize(kQ4_K, q4k, 256);
  EXPECT_EQ(3.0f * 5 - 0.5f * 2, y[0]);
  EXPECT_EQ(1.0f * 5, y[32]);
  EXPECT_EQ(0.0f, y[64]);  // scale 0, min 0
  // Q6_K: d = 0.25, scale of the first 16 values -3, code 63 in the first value.
  std::vector<uint8_t> q6k(210, 0);
  q6k[208] = 0x00, q6k[209] = 0x34;
  q6k[192] = static_cast<uint8_t>(-3);
  q6k[0] = 0x0F, q6k[128] = 0x03;  // low 4 bits 15, high 2 bits 3: q = 63
  y = Dequantize(kQ6_K, q6k, 256);
  EXPECT_EQ(0.25f * -3 * 31, y[0]);
  EXPECT_EQ(0.25f * -3 * -32, y[1]);
}

TEST(Quant, FloatTypesRoundToNearestEven) {
  const std::vector<float> x = {1.0f, 1.0f + 1.0f / 2048, 65504.0f, 1e6f, -0.0f, 3.0f};
  const auto h = Dequantize(kF16, Quantize(kF16, x), x.size());
  EXPECT_EQ(1.0f, h[1]);  // the tie rounds to even
  EXPECT_EQ(65504.0f, h[2]);
  EXPECT_TRUE(std::isinf(h[3]));
  EXPECT_TRUE(std::signbit(h[4]));
  const auto b = Dequantize(kBF16, Quantize(kBF16, x), x.size());
  EXPECT_EQ(3.0f, b[5]);
  const auto f = Dequantize(kF32, Quantize(kF32, x), x.size());
  EXPECT_EQ(0, std::memcmp(f.data(), x.data(), x.size() * 4));
}

// ---- llama.cpp's fixtures (../shared/gguf) ----

std::unique_ptr<GgufFile> OpenShared(const std::string& name) {
  const auto shared = testing::SharedDir();
  if (!shared) return nullptr;
  return GgufFile::Open(*shared + "/gguf/" + name);
}

#define SKIP_WITHOUT_SHARED(f) \
  if (!(f)) GTEST_SKIP() << "../shared (with gguf/) not found: set SPLITLM_SHARED"

std::vector<float> ToF32(const GgufFile& f, const GgufTensor& t) {
  int64_t n = 1;
  for (int64_t d : t.dims) n *= d;
  std::vector<float> out(n);
  DequantizeRow(t.type, f.data(t), out.data(), n);
  return out;
}

struct Identical {
  int tensors = 0;
  int identical = 0;
};

// Quantises every tensor of the F32 fixture to the type llama.cpp gave it in
// `quantised` and counts those whose bytes are llama.cpp's, per type.
std::map<uint32_t, Identical> CompareWithLlamaCpp(const GgufFile& f32, const GgufFile& quantised) {
  std::map<uint32_t, Identical> out;
  for (const auto& t : quantised.header().tensors) {
    if (GgmlBlockOf(t.type)->values == 1) continue;
    const auto x = ToF32(f32, *f32.FindTensor(t.name));
    const auto mine = Quantize(t.type, x);
    const bool same =
        mine.size() == t.bytes && std::memcmp(mine.data(), quantised.data(t), t.bytes) == 0;
    ++out[t.type].tensors;
    out[t.type].identical += same ? 1 : 0;
    EXPECT_TRUE(same) << t.name << " (" << GgmlTypeName(t.type)
                      << ") differs from llama.cpp's blocks";
  }
  return out;
}

TEST(QuantLlamaCpp, Q8_0BlocksAreLlamaCppsByteForByte) {
  auto f32 = OpenShared("synthk-f32.gguf");
  SKIP_WITHOUT_SHARED(f32);
  const auto counts = CompareWithLlamaCpp(*f32, *OpenShared("synthk-q8_0.gguf"));
  EXPECT_EQ(30, counts.at(kQ8_0).identical);
}

TEST(QuantLlamaCpp, Q4_0BlocksAreLlamaCppsByteForByte) {
  auto f32 = OpenShared("synthk-f32.gguf");
  SKIP_WITHOUT_SHARED(f32);
  const auto counts = CompareWithLlamaCpp(*f32, *OpenShared("synthk-q4_0.gguf"));
  EXPECT_EQ(29, counts.at(kQ4_0).identical);
  EXPECT_EQ(1, counts.at(kQ6_K).identical);  // output.weight
}

TEST(QuantLlamaCpp, Q4_K_MBlocksAreLlamaCppsByteForByte) {
  auto f32 = OpenShared("synthk-f32.gguf");
  SKIP_WITHOUT_SHARED(f32);
  const auto counts = CompareWithLlamaCpp(*f32, *OpenShared("synthk-q4_k_m.gguf"));
  EXPECT_EQ(25, counts.at(kQ4_K).identical);
  EXPECT_EQ(5, counts.at(kQ6_K).identical);
}

TEST(QuantLlamaCpp, TensorTypesAreLlamaQuantizes) {
  auto f32 = OpenShared("synthk-f32.gguf");
  SKIP_WITHOUT_SHARED(f32);
  const std::pair<const char*, QuantizeTarget> files[] = {
      {"synthk-q8_0.gguf", QuantizeTarget::kQ8_0},
      {"synthk-q4_0.gguf", QuantizeTarget::kQ4_0},
      {"synthk-q4_k_m.gguf", QuantizeTarget::kQ4_K_M}};
  for (const auto& [name, target] : files) {
    const auto theirs = OpenShared(name);
    const auto types = PlanTensorTypes(f32->header(), target);
    for (size_t i = 0; i < types.size(); ++i) {
      const auto& t = f32->header().tensors[i];
      EXPECT_EQ(GgmlTypeName(theirs->FindTensor(t.name)->type), GgmlTypeName(types[i]))
          << name << " " << t.name;
    }
  }
}

// llama.cpp's blocks decode to values within each format's bound of the F32
// source: the layouts (nibble order, scale packing, ql/qh split) are read as
// llama.cpp wrote them. (The fixtures hold no dequantised F32 from llama.cpp
// to compare exactly; quant.h's formulas are ggml's dequantize_row_*.)
TEST(QuantLlamaCpp, LlamaCppBlocksDecodeCloseToTheSource) {
  auto f32 = OpenShared("synthk-f32.gguf");
  SKIP_WITHOUT_SHARED(f32);
  for (const char* name : {"synthk-q8_0.gguf", "synthk-q4_0.gguf", "synthk-q4_k_m.gguf"}) {
    const auto q = OpenShared(name);
    for (const auto& t : q->header().tensors) {
      if (GgmlBlockOf(t.type)->values == 1) continue;
      const auto x = ToF32(*f32, *f32->FindTensor(t.name));
      const auto y = ToF32(*q, t);
      const int block = GgmlBlockOf(t.type)->values;
      for (size_t b = 0; b < x.size(); b += block) {
        const double bound = Bound(t.type, &x[b]);
        for (int i = 0; i < block; ++i) {
          ASSERT_LE(std::fabs(double(x[b + i]) - y[b + i]), bound)
              << name << " " << t.name << " value " << b + i;
        }
      }
    }
  }
}

}  // namespace
}  // namespace splitlm::partition
