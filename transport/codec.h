// Activation codecs: how hidden states cross the cut.
//
// | codec | bytes/value | error bound (per value x, row absmax m)          |
// |-------|-------------|--------------------------------------------------|
// | f32   | 4           | exact                                            |
// | f16   | 2           | |e| <= 2^-11 |x| for |x| >= 2^-14, else <= 2^-25 |
// | bf16  | 2           | |e| <= 2^-8 |x| (+ 2^-134 for subnormals)         |
// | int8  | 1 (+4/row)  | |e| <= m / 254 (one fp32 scale per row, absmax)  |
//
// Every codec rejects NaN and Inf with an error, and f16 rejects finite
// values beyond its range (|x| > 65504) rather than saturating silently.
// Rounding is to nearest, ties to even.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace splitlm::transport {

enum class Codec : uint8_t { kF32 = 0, kF16 = 1, kBF16 = 2, kInt8 = 3 };

const char* CodecName(Codec codec);  // "f32", "f16", "bf16", "int8"
std::optional<Codec> ParseCodec(std::string_view name);
// All codecs, in wire order; for help texts and Hello.
inline constexpr Codec kAllCodecs[] = {Codec::kF32, Codec::kF16, Codec::kBF16, Codec::kInt8};

// Bytes that `rows` vectors of `cols` values take in `codec`.
size_t EncodedSize(Codec codec, size_t rows, size_t cols);

// Encodes rows x cols floats into dst[0, EncodedSize). Throws Exception(kInvalidArgument)
// naming the row and column of a NaN, Inf or out-of-range value.
void Encode(Codec codec, const float* src, size_t rows, size_t cols, uint8_t* dst);

// Decodes `bytes` bytes into rows x cols floats. Throws Exception(kCorrupt) if
// `bytes` differs from EncodedSize or an int8 scale is not finite.
void Decode(Codec codec, const uint8_t* src, size_t bytes, size_t rows, size_t cols, float* dst);

// IEEE binary16 / bfloat16 conversions (round to nearest even).
uint16_t FloatToHalf(float f);
float HalfToFloat(uint16_t h);
uint16_t FloatToBf16(float f);
float Bf16ToFloat(uint16_t b);

}  // namespace splitlm::transport
