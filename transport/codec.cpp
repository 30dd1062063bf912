#include "transport/codec.h"

#include <cmath>
#include <cstring>

#include "transport/error.h"

namespace splitlm::transport {
namespace {

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

float FromBits(uint32_t u) {
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

[[noreturn]] void BadValue(Codec codec, size_t row, size_t col, float v, const char* why) {
  throw Exception(Exception::kInvalidArgument, std::string("cannot encode ") + CodecName(codec) +
                                                   ": value " + std::to_string(v) + " at row " +
                                                   std::to_string(row) + ", column " +
                                                   std::to_string(col) + " " + why);
}

}  // namespace

const char* CodecName(Codec codec) {
  switch (codec) {
    case Codec::kF32: return "f32";
    case Codec::kF16: return "f16";
    case Codec::kBF16: return "bf16";
    case Codec::kInt8: return "int8";
  }
  return "?";
}

std::optional<Codec> ParseCodec(std::string_view name) {
  for (Codec c : kAllCodecs) {
    if (name == CodecName(c)) return c;
  }
  return std::nullopt;
}

size_t EncodedSize(Codec codec, size_t rows, size_t cols) {
  switch (codec) {
    case Codec::kF32: return rows * cols * 4;
    case Codec::kF16:
    case Codec::kBF16: return rows * cols * 2;
    case Codec::kInt8: return rows * (4 + cols);
  }
  return 0;
}

uint16_t FloatToHalf(float f) {
  const uint32_t x = Bits(f);
  const uint32_t sign = (x >> 16) & 0x8000u;
  const uint32_t abs = x & 0x7fffffffu;
  if (abs >= 0x7f800000u)
    return static_cast<uint16_t>(sign | 0x7c00u | (abs > 0x7f800000u ? 0x200u : 0));
  if (abs >= 0x477ff000u) return static_cast<uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: Inf
  if (abs < 0x38800000u) {  // below 2^-14: subnormal half (or zero)
    // Add 0.5 (in float) so the FPU rounds the mantissa to half's subnormal grid.
    const float magic = FromBits(0x3f000000u);  // 0.5
    const float r = FromBits(abs) + magic;
    return static_cast<uint16_t>(sign | (Bits(r) - Bits(magic)));
  }
  const uint32_t mant_odd = (abs >> 13) & 1u;
  uint32_t v = abs + 0xc8000fffu + mant_odd;  // rebias exponent (-112 << 23) and round
  return static_cast<uint16_t>(sign | (v >> 13));
}

float HalfToFloat(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  const uint32_t exp = (h >> 10) & 0x1fu;
  const uint32_t mant = h & 0x3ffu;
  if (exp == 0) {
    const float v = static_cast<float>(mant) * 0x1.0p-24f;  // exact
    return sign ? -v : v;
  }
  if (exp == 31) return FromBits(sign | 0x7f800000u | (mant << 13));
  return FromBits(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t FloatToBf16(float f) {
  uint32_t x = Bits(f);
  if ((x & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((x >> 16) | 0x40u);  // NaN
  x += 0x7fffu + ((x >> 16) & 1u);
  return static_cast<uint16_t>(x >> 16);
}

float Bf16ToFloat(uint16_t b) { return FromBits(static_cast<uint32_t>(b) << 16); }

void Encode(Codec codec, const float* src, size_t rows, size_t cols, uint8_t* dst) {
  for (size_t r = 0; r < rows; ++r) {
    const float* row = src + r * cols;
    for (size_t c = 0; c < cols; ++c) {
      if (!std::isfinite(row[c])) BadValue(codec, r, c, row[c], "(NaN or Inf)");
    }
  }
  const size_t n = rows * cols;
  if (n == 0) return;
  switch (codec) {
    case Codec::kF32: std::memcpy(dst, src, n * 4); return;
    case Codec::kF16:
      for (size_t i = 0; i < n; ++i) {
        if (std::fabs(src[i]) > 65504.0f)
          BadValue(codec, i / cols, i % cols, src[i],
                   "exceeds f16's range of 65504: use bf16 or f32");
        const uint16_t h = FloatToHalf(src[i]);
        std::memcpy(dst + 2 * i, &h, 2);
      }
      return;
    case Codec::kBF16:
      for (size_t i = 0; i < n; ++i) {
        const uint16_t b = FloatToBf16(src[i]);
        if ((b & 0x7fffu) == 0x7f80u)
          BadValue(codec, i / cols, i % cols, src[i], "rounds to Inf in bf16");
        std::memcpy(dst + 2 * i, &b, 2);
      }
      return;
    case Codec::kInt8:
      for (size_t r = 0; r < rows; ++r) {
        const float* row = src + r * cols;
        uint8_t* out = dst + r * (4 + cols);
        float m = 0.0f;
        for (size_t c = 0; c < cols; ++c) m = std::fmax(m, std::fabs(row[c]));
        const float scale = m / 127.0f;
        std::memcpy(out, &scale, 4);
        for (size_t c = 0; c < cols; ++c) {
          float q = scale > 0.0f ? std::nearbyint(row[c] / scale) : 0.0f;
          q = std::fmin(127.0f, std::fmax(-127.0f, q));
          out[4 + c] = static_cast<uint8_t>(static_cast<int8_t>(q));
        }
      }
      return;
  }
  throw Exception(Exception::kInvalidArgument, "unknown codec");
}

void Decode(Codec codec, const uint8_t* src, size_t bytes, size_t rows, size_t cols, float* dst) {
  if (bytes != EncodedSize(codec, rows, cols)) {
    throw Exception(Exception::kCorrupt,
                    std::string(CodecName(codec)) + " payload of " + std::to_string(bytes) +
                        " bytes does not match " + std::to_string(rows) + "x" +
                        std::to_string(cols) + " values (" +
                        std::to_string(EncodedSize(codec, rows, cols)) + " bytes expected)");
  }
  const size_t n = rows * cols;
  if (n == 0) return;  // nothing to copy (and dst may be null)
  switch (codec) {
    case Codec::kF32: std::memcpy(dst, src, n * 4); return;
    case Codec::kF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t h;
        std::memcpy(&h, src + 2 * i, 2);
        dst[i] = HalfToFloat(h);
      }
      return;
    case Codec::kBF16:
      for (size_t i = 0; i < n; ++i) {
        uint16_t b;
        std::memcpy(&b, src + 2 * i, 2);
        dst[i] = Bf16ToFloat(b);
      }
      return;
    case Codec::kInt8:
      for (size_t r = 0; r < rows; ++r) {
        const uint8_t* in = src + r * (4 + cols);
        float scale;
        std::memcpy(&scale, in, 4);
        if (!std::isfinite(scale) || scale < 0.0f) {
          throw Exception(Exception::kCorrupt,
                          "int8 payload row " + std::to_string(r) + " has a bad scale");
        }
        for (size_t c = 0; c < cols; ++c) {
          dst[r * cols + c] = static_cast<float>(static_cast<int8_t>(in[4 + c])) * scale;
        }
      }
      return;
  }
  throw Exception(Exception::kInvalidArgument, "unknown codec");
}

}  // namespace splitlm::transport
