// Activation codecs: error bounds on random and adversarial inputs.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <random>
#include <vector>

#include "transport/codec.h"
#include "transport/error.h"

namespace splitlm::transport {
namespace {

std::vector<float> RoundTrip(Codec codec, const std::vector<float>& x, size_t rows) {
  const size_t cols = x.size() / rows;
  std::vector<uint8_t> wire(EncodedSize(codec, rows, cols));
  Encode(codec, x.data(), rows, cols, wire.data());
  std::vector<float> y(x.size());
  Decode(codec, wire.data(), wire.size(), rows, cols, y.data());
  return y;
}

std::vector<float> RandomValues(size_t n, uint32_t seed, float scale) {
  std::mt19937 rng(seed);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (float& f : v) f = d(rng);
  return v;
}

// Checks the documented bound of each codec (codec.h) on `x`.
void ExpectWithinBound(Codec codec, const std::vector<float>& x, size_t rows) {
  const auto y = RoundTrip(codec, x, rows);
  const size_t cols = x.size() / rows;
  for (size_t r = 0; r < rows; ++r) {
    float m = 0;
    for (size_t c = 0; c < cols; ++c) m = std::max(m, std::fabs(x[r * cols + c]));
    for (size_t c = 0; c < cols; ++c) {
      const float a = x[r * cols + c], b = y[r * cols + c], e = std::fabs(a - b);
      switch (codec) {
        case Codec::kF32: ASSERT_EQ(a, b); break;
        case Codec::kF16:
          ASSERT_LE(e, std::fabs(a) >= 0x1.0p-14f ? std::ldexp(std::fabs(a), -11) : 0x1.0p-25f)
              << a;
          break;
        case Codec::kBF16: ASSERT_LE(e, std::ldexp(std::fabs(a), -8) + 0x1.0p-133f) << a; break;
        case Codec::kInt8: ASSERT_LE(e, m / 254.0f * (1 + 1e-6f)) << a << " absmax " << m; break;
      }
    }
  }
}

TEST(CodecTest, RandomValuesStayWithinTheDocumentedBound) {
  for (Codec codec : kAllCodecs) {
    for (float scale : {1e-3f, 1.0f, 300.0f}) {
      ExpectWithinBound(codec, RandomValues(768 * 4, 7, scale), 4);
    }
  }
}

TEST(CodecTest, AdversarialValues) {
  const float kMin = std::numeric_limits<float>::denorm_min();
  std::vector<float> edge = {0.0f,    -0.0f,    kMin,      -kMin,   1e-30f, 6e-5f,
                             6.1e-5f, 65504.0f, -65504.0f, 1.0f,    -1.0f,  0.33333334f,
                             1e-8f,   2.9e-8f,  3e-8f,     65503.9f};
  for (Codec codec : kAllCodecs) ExpectWithinBound(codec, edge, 1);
  std::vector<float> zeros(64, 0.0f);
  for (Codec codec : kAllCodecs) EXPECT_EQ(zeros, RoundTrip(codec, zeros, 2));
  // One huge value in a row: int8's bound is relative to the row's absmax.
  std::vector<float> spike(64, 0.01f);
  spike[5] = 1e30f;
  ExpectWithinBound(Codec::kInt8, spike, 1);
  ExpectWithinBound(Codec::kBF16, spike, 1);
}

TEST(CodecTest, HalfConversionMatchesIeeeOnEveryHalfValue) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    if (((h >> 10) & 0x1f) == 0x1f) continue;  // Inf/NaN
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    ASSERT_EQ(h, FloatToHalf(f)) << std::hex << h;
  }
  EXPECT_EQ(0x3c00, FloatToHalf(1.0f + 0x1.0p-11f));      // tie to even (down)
  EXPECT_EQ(0x3c02, FloatToHalf(1.0f + 3 * 0x1.0p-11f));  // tie to even (up)
  EXPECT_EQ(0x3f80, FloatToBf16(1.0f));
  EXPECT_EQ(0x3f80, FloatToBf16(1.0f + 0x1.0p-8f));  // tie to even
}

TEST(CodecTest, RejectsNonFiniteAndOutOfRangeValues) {
  for (Codec codec : kAllCodecs) {
    for (float bad : {NAN, INFINITY, -INFINITY}) {
      std::vector<float> x(8, 1.0f);
      x[3] = bad;
      std::vector<uint8_t> wire(EncodedSize(codec, 1, 8));
      try {
        Encode(codec, x.data(), 1, 8, wire.data());
        FAIL() << CodecName(codec);
      } catch (const Exception& e) {
        EXPECT_NE(std::string(e.what()).find("row 0, column 3"), std::string::npos) << e.what();
      }
    }
  }
  std::vector<float> big = {1.0f, 70000.0f};
  std::vector<uint8_t> wire(4);
  EXPECT_THROW(Encode(Codec::kF16, big.data(), 1, 2, wire.data()), Exception);
  std::vector<float> huge = {3.4e38f, 1.0f};
  EXPECT_THROW(Encode(Codec::kBF16, huge.data(), 1, 2, wire.data()), Exception);
}

TEST(CodecTest, DecodeRejectsWrongSizesAndBadScales) {
  std::vector<float> out(8);
  std::vector<uint8_t> wire(31);
  EXPECT_THROW(Decode(Codec::kF32, wire.data(), wire.size(), 1, 8, out.data()), Exception);
  std::vector<uint8_t> int8(12, 0);
  const float nan = NAN;
  std::memcpy(int8.data(), &nan, 4);
  EXPECT_THROW(Decode(Codec::kInt8, int8.data(), int8.size(), 1, 8, out.data()), Exception);
}

TEST(CodecTest, EmptyTensorsAreNoOps) {
  for (Codec c : kAllCodecs) {
    EXPECT_NO_THROW(Encode(c, nullptr, 0, 768, nullptr));
    EXPECT_NO_THROW(Decode(c, nullptr, EncodedSize(c, 3, 0), 3, 0, nullptr));
  }
}

TEST(CodecTest, SizesAndNames) {
  EXPECT_EQ(768u * 4, EncodedSize(Codec::kF32, 1, 768));
  EXPECT_EQ(768u * 2, EncodedSize(Codec::kF16, 1, 768));
  EXPECT_EQ(768u + 4, EncodedSize(Codec::kInt8, 1, 768));
  for (Codec c : kAllCodecs) EXPECT_EQ(c, ParseCodec(CodecName(c)));
  EXPECT_FALSE(ParseCodec("fp8").has_value());
}

}  // namespace
}  // namespace splitlm::transport
