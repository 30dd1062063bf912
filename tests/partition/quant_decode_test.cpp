// The block formats splitlm reads but does not write (quant_decode.h): blocks
// built here field by field, as ggml's quantize_row_*_ref packs its codes,
// decode to the spec's formula evaluated by hand; the exact re-encodings
// (Q5_0/IQ4_NL as Q8_0, Q3_K as Q6_K) keep every value's bits, on chosen and
// on random (adversarial) blocks; a GGUF model holding these types computes
// exactly what the same model written in F32 computes, and a type splitlm
// cannot compute with is an error naming the file, the tensor and the type.
#include "partition/quant_decode.h"

#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "partition/gguf.h"
#include "partition/gguf_writer.h"
#include "partition/model.h"
#include "partition/quant.h"
#include "partition/stage.h"
#include "partition/weight_bytes.h"
#include "tests/common/stage_chain.h"
#include "tests/common/test_util.h"
#include "transport/codec.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

using testing::TempDir;

constexpr uint32_t T(GgmlType t) { return static_cast<uint32_t>(t); }

void PutHalf(uint8_t* p, float v) {
  const uint16_t h = transport::FloatToHalf(v);
  std::memcpy(p, &h, 2);
}

std::vector<float> Decode(uint32_t type, const std::vector<uint8_t>& b) {
  const GgmlBlock blk = *GgmlBlockOf(type);
  std::vector<float> out(b.size() / blk.bytes * blk.values);
  DequantizeRow(type, b.data(), out.data(), static_cast<int64_t>(out.size()));
  return out;
}

// Q4_1 and Q5_1/Q5_0: element j < 16 in the low nibble of qs[j], j + 16 in
// its high nibble; Q5's fifth bit j in bit j of qh.
TEST(QuantDecode, Q4_1Q5_0AndQ5_1FollowTheirFormulas) {
  const float d = 0.375f, m = -1.25f;  // exact in fp16
  int L[32];
  for (int j = 0; j < 32; ++j) L[j] = (j * 7 + 3) % 32;
  std::vector<uint8_t> q41(20), q50(22), q51(24);
  PutHalf(&q41[0], d), PutHalf(&q41[2], m);
  PutHalf(&q50[0], d);
  PutHalf(&q51[0], d), PutHalf(&q51[2], m);
  uint32_t qh = 0;
  for (int j = 0; j < 16; ++j) {
    q41[4 + j] = static_cast<uint8_t>((L[j] & 15) | (L[j + 16] & 15) << 4);
    q50[6 + j] = q51[8 + j] = q41[4 + j];
  }
  for (int j = 0; j < 32; ++j) qh |= static_cast<uint32_t>(L[j] >> 4) << j;
  std::memcpy(&q50[2], &qh, 4);
  std::memcpy(&q51[4], &qh, 4);
  const auto y41 = Decode(T(GgmlType::kQ4_1), q41);
  const auto y50 = Decode(T(GgmlType::kQ5_0), q50);
  const auto y51 = Decode(T(GgmlType::kQ5_1), q51);
  for (int j = 0; j < 32; ++j) {
    EXPECT_EQ(static_cast<float>(L[j] & 15) * d + m, y41[j]) << j;
    EXPECT_EQ(static_cast<float>(L[j] - 16) * d, y50[j]) << j;
    EXPECT_EQ(static_cast<float>(L[j]) * d + m, y51[j]) << j;
  }
  EXPECT_EQ(-0.125f, y41[0]);  // L[0] = 3: 3 * 0.375 - 1.25, by hand
}

TEST(QuantDecode, Iq4NlIndexesItsTable) {
  const int8_t table[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                            1,    13,   25,  38,  53,  69,  89,  113};
  std::vector<uint8_t> b(18);
  PutHalf(&b[0], 0.5f);
  for (int j = 0; j < 16; ++j) b[2 + j] = static_cast<uint8_t>(j | (15 - j) << 4);
  const auto y = Decode(T(GgmlType::kIQ4_NL), b);
  for (int j = 0; j < 16; ++j) {
    EXPECT_EQ(0.5f * table[j], y[j]);
    EXPECT_EQ(0.5f * table[15 - j], y[j + 16]);
  }
  EXPECT_EQ(-63.5f, y[0]);
}

// The 2-bit codes L[256] packed as quantize_row_q2_K_ref / q3_K_ref do.
void Pack2Bits(const int* L, uint8_t* qs) {
  for (int j = 0; j < 256; j += 128) {
    for (int l = 0; l < 32; ++l) {
      qs[j / 4 + l] = static_cast<uint8_t>((L[j + l] & 3) | (L[j + l + 32] & 3) << 2 |
                                           (L[j + l + 64] & 3) << 4 | (L[j + l + 96] & 3) << 6);
    }
  }
}

TEST(QuantDecode, Q2_KFollowsItsFormula) {
  const float d = 0.25f, dmin = 0.125f;
  int L[256], sc[16], mn[16];
  for (int i = 0; i < 256; ++i) L[i] = (i * 5 + i / 64) % 4;
  for (int s = 0; s < 16; ++s) sc[s] = (s * 3 + 1) % 16, mn[s] = (s * 7 + 2) % 16;
  std::vector<uint8_t> b(84);
  for (int s = 0; s < 16; ++s) b[s] = static_cast<uint8_t>(sc[s] | mn[s] << 4);
  Pack2Bits(L, &b[16]);
  PutHalf(&b[80], d), PutHalf(&b[82], dmin);
  const auto y = Decode(T(GgmlType::kQ2_K), b);
  for (int i = 0; i < 256; ++i) {
    const float want = (d * static_cast<float>(sc[i / 16])) * static_cast<float>(L[i]) -
                       dmin * static_cast<float>(mn[i / 16]);
    ASSERT_EQ(want, y[i]) << i;
  }
}

TEST(QuantDecode, Q3_KFollowsItsFormula) {
  const float d = 0.0625f;
  int L[256], sc[16];  // L: codes 0..7 (value L - 4); sc: 0..63 (scale sc - 32)
  for (int i = 0; i < 256; ++i) L[i] = (i * 3 + i / 32) % 8;
  for (int s = 0; s < 16; ++s) sc[s] = (s * 11 + 5) % 64;
  std::vector<uint8_t> b(110);
  // quantize_row_q3_K_ref: high bit of code j in hmask[j % 32] bit j / 32,
  // low 2 bits as Q2_K; scale j's low nibble in byte j (j < 8) or j - 8's
  // high nibble, its top 2 bits in byte 8 + j % 4 at bit 2 * (j / 4).
  int low[256];
  for (int i = 0; i < 256; ++i) {
    if (L[i] > 3) b[i % 32] |= static_cast<uint8_t>(1 << (i / 32));
    low[i] = L[i] & 3;
  }
  Pack2Bits(low, &b[32]);
  for (int j = 0; j < 16; ++j) {
    if (j < 8) {
      b[96 + j] = static_cast<uint8_t>(sc[j] & 0xF);
    } else {
      b[96 + j - 8] |= static_cast<uint8_t>((sc[j] & 0xF) << 4);
    }
    b[96 + 8 + j % 4] |= static_cast<uint8_t>((sc[j] >> 4) << (2 * (j / 4)));
  }
  PutHalf(&b[108], d);
  const auto y = Decode(T(GgmlType::kQ3_K), b);
  for (int i = 0; i < 256; ++i) {
    const float want = (d * static_cast<float>(sc[i / 16] - 32)) * static_cast<float>(L[i] - 4);
    ASSERT_EQ(want, y[i]) << i;
  }
}

TEST(QuantDecode, Q5_KFollowsItsFormula) {
  const float d = 0.5f, dmin = 0.25f;
  int L[256], sc[8], mn[8];
  for (int i = 0; i < 256; ++i) L[i] = (i * 13 + i / 32) % 32;
  for (int s = 0; s < 8; ++s) sc[s] = (s * 17 + 9) % 64, mn[s] = (s * 29 + 4) % 64;
  std::vector<uint8_t> b(176);
  PutHalf(&b[0], d), PutHalf(&b[2], dmin);
  // The 6-bit scales and mins as quantize_row_q5_K_ref (and Q4_K) packs them.
  for (int j = 0; j < 8; ++j) {
    if (j < 4) {
      b[4 + j] = static_cast<uint8_t>(sc[j]);
      b[4 + j + 4] = static_cast<uint8_t>(mn[j]);
    } else {
      b[4 + j + 4] = static_cast<uint8_t>((sc[j] & 0xF) | (mn[j] & 0xF) << 4);
      b[4 + j - 4] |= static_cast<uint8_t>((sc[j] >> 4) << 6);
      b[4 + j] |= static_cast<uint8_t>((mn[j] >> 4) << 6);
    }
  }
  uint8_t m1 = 1, m2 = 2;
  for (int n = 0; n < 256; n += 64, m1 <<= 2, m2 <<= 2) {
    for (int j = 0; j < 32; ++j) {
      int l1 = L[n + j], l2 = L[n + j + 32];
      if (l1 > 15) l1 -= 16, b[16 + j] |= m1;
      if (l2 > 15) l2 -= 16, b[16 + j] |= m2;
      b[48 + n / 2 + j] = static_cast<uint8_t>(l1 | l2 << 4);
    }
  }
  const auto y = Decode(T(GgmlType::kQ5_K), b);
  for (int i = 0; i < 256; ++i) {
    const float want = (d * static_cast<float>(sc[i / 32])) * static_cast<float>(L[i]) -
                       dmin * static_cast<float>(mn[i / 32]);
    ASSERT_EQ(want, y[i]) << i;
  }
}

uint32_t Bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  return u;
}

// Random bytes (scales of every kind: zero, subnormal, huge, infinite, NaN)
// re-encoded exactly: every value keeps its bits.
TEST(QuantDecode, ExactReEncodingsKeepEveryValuesBits) {
  std::mt19937 rng(12);
  for (uint32_t type : {T(GgmlType::kQ5_0), T(GgmlType::kIQ4_NL), T(GgmlType::kQ3_K)}) {
    const uint32_t to = *ExactBlockForm(type);
    SCOPED_TRACE(GgmlTypeName(type));
    const GgmlBlock in = *GgmlBlockOf(type), out = *GgmlBlockOf(to);
    for (int round = 0; round < 300; ++round) {
      const int n = 512;
      std::vector<uint8_t> src(n / in.values * in.bytes), dst(n / out.values * out.bytes);
      for (auto& v : src) v = static_cast<uint8_t>(rng());
      // The scale of the first block: each special fp16 in turn.
      const uint16_t specials[] = {0x0000, 0x8000, 0x0001, 0x03ff, 0x7bff, 0x7c00, 0xfc00, 0x7e00};
      const size_t d_at = type == T(GgmlType::kQ3_K) ? 108 : 0;
      std::memcpy(&src[d_at], &specials[round % 8], 2);
      ASSERT_TRUE(TranscodeRow(type, src.data(), dst.data(), n));
      const auto a = Decode(type, src), b = Decode(to, dst);
      for (int i = 0; i < n; ++i)
        ASSERT_EQ(Bits(a[i]), Bits(b[i])) << "round " << round << " value " << i;
    }
  }
  EXPECT_FALSE(ExactBlockForm(T(GgmlType::kQ4_1)).has_value());
  uint8_t none[34];
  EXPECT_FALSE(TranscodeRow(T(GgmlType::kQ5_K), none, none, 0));
}

TEST(QuantDecode, RaggedRowsAreErrors) {
  std::vector<uint8_t> b(110);
  float y[256];
  try {
    DequantizeRow(T(GgmlType::kQ3_K), b.data(), y, 100);
    FAIL();
  } catch (const Exception& e) {
    EXPECT_EQ(std::string("DequantizeRow: 100 values are not a whole number of Q3_K blocks of 256"),
              e.what());
  }
}

// The matrices of synthk-f32.gguf (rows of 256 and 768 values) re-encoded
// in each type with random codes and small scales: a GGUF holding them
// loads and gives the logits of the same values written as F32, split or not.
class QuantDecodeModel : public ::testing::Test {
 protected:
  struct Choice {
    const char* tensor;
    GgmlType type;
  };
  static constexpr Choice kChoices[] = {
      {"blk.0.attn_q.weight", GgmlType::kQ5_0},   {"blk.0.attn_k.weight", GgmlType::kIQ4_NL},
      {"blk.0.attn_v.weight", GgmlType::kQ5_0},   {"blk.0.attn_output.weight", GgmlType::kQ3_K},
      {"blk.1.ffn_gate.weight", GgmlType::kQ5_K}, {"blk.1.ffn_up.weight", GgmlType::kQ2_K},
      {"blk.1.ffn_down.weight", GgmlType::kQ5_1}, {"blk.2.attn_q.weight", GgmlType::kF16},
      {"blk.2.attn_k.weight", GgmlType::kF16},    {"blk.2.attn_v.weight", GgmlType::kBF16},
      {"blk.3.attn_k.weight", GgmlType::kQ4_1},   {"output.weight", GgmlType::kQ5_0},
  };

  // Random blocks of `type` for `values` values, with every fp16 scale set
  // to a small value so the weights stay of the model's magnitude.
  static std::vector<uint8_t> RandomBlocks(GgmlType type, int64_t values, std::mt19937& rng) {
    const GgmlBlock blk = *GgmlBlockOf(T(type));
    std::vector<uint8_t> b(values / blk.values * blk.bytes);
    for (auto& v : b) v = static_cast<uint8_t>(rng());
    std::vector<int> scales;  // byte offsets of fp16 scales in a block
    switch (type) {
      case GgmlType::kQ5_0:
      case GgmlType::kIQ4_NL: scales = {0}; break;
      case GgmlType::kQ4_1:
      case GgmlType::kQ5_1:
      case GgmlType::kQ5_K: scales = {0, 2}; break;
      case GgmlType::kQ3_K: scales = {108}; break;
      case GgmlType::kQ2_K: scales = {80, 82}; break;
      default: break;
    }
    std::uniform_real_distribution<float> u(-0.004f, 0.004f);
    for (size_t at = 0; at < b.size(); at += blk.bytes) {
      for (int s : scales) PutHalf(&b[at + s], u(rng));
    }
    if (type == GgmlType::kF16 || type == GgmlType::kBF16) {
      std::uniform_real_distribution<float> w(-0.1f, 0.1f);
      std::vector<float> f(static_cast<size_t>(values));
      for (auto& v : f) v = w(rng);
      QuantizeRow(T(type), f.data(), b.data(), values);
    }
    return b;
  }

  // Writes synthk-f32.gguf with kChoices re-encoded to `quant`, and the
  // same values to `held` as splitlm holds them: the types with an exact
  // block form (Q5_0, IQ4_NL, Q3_K) as that form's blocks (Q8_0, Q6_K),
  // every other one as F32.
  void WriteBoth(const std::string& src, const std::string& quant, const std::string& held) {
    auto in = GgufFile::Open(src);
    GgufWriter wq(quant), wf(held);
    for (const std::string& key : in->header().key_order) {
      wq.AddKeyValue(key, in->header().metadata.at(key));
      wf.AddKeyValue(key, in->header().metadata.at(key));
    }
    std::mt19937 rng(7);
    std::vector<std::vector<uint8_t>> q_data, f_data;
    for (const GgufTensor& t : in->header().tensors) {
      int64_t n = 1;
      for (int64_t d : t.dims) n *= d;
      uint32_t type = t.type;
      std::vector<uint8_t> bytes(in->data(t), in->data(t) + t.bytes);
      for (const Choice& c : kChoices) {
        if (t.name == c.tensor) type = T(c.type);
      }
      wq.AddTensor(t.name, t.dims, type);
      const std::optional<uint32_t> exact = type != t.type ? ExactBlockForm(type) : std::nullopt;
      wf.AddTensor(t.name, t.dims, exact ? *exact : t.type);
      if (type != t.type) {
        ASSERT_EQ(T(GgmlType::kF32), t.type) << t.name;
        std::vector<uint8_t> blocks = RandomBlocks(static_cast<GgmlType>(type), n, rng);
        if (exact) {
          const GgmlBlock to = *GgmlBlockOf(*exact);
          bytes.assign(static_cast<size_t>(n / to.values * to.bytes), 0);
          ASSERT_TRUE(TranscodeRow(type, blocks.data(), bytes.data(), n)) << t.name;
        } else {
          std::vector<float> f(static_cast<size_t>(n));
          DequantizeRow(type, blocks.data(), f.data(), n);
          bytes.assign(reinterpret_cast<const uint8_t*>(f.data()),
                       reinterpret_cast<const uint8_t*>(f.data()) + 4 * n);
        }
        q_data.push_back(std::move(blocks));
      } else {
        q_data.push_back(bytes);
      }
      f_data.push_back(std::move(bytes));
    }
    for (const auto& b : q_data) wq.WriteTensorData(b.data(), b.size());
    for (const auto& b : f_data) wf.WriteTensorData(b.data(), b.size());
    wq.Commit();
    wf.Commit();
  }
  TempDir dir_;
};

// Each type computes as the values it holds: a transcoded type exactly as a
// file of its block form holding the same values (the int8-activation
// kernels then see the same blocks), a widened type as F32.
TEST_F(QuantDecodeModel, EveryTypeOfAMixedFileComputesAsTheBlocksOrFloatsItIsHeldIn) {
  REQUIRE_SHARED(synthk, "gguf/synthk-f32.gguf");
  WriteBoth(synthk, dir_.Sub("mixed.gguf"), dir_.Sub("held.gguf"));
  auto mixed = Model::Open(dir_.Sub("mixed.gguf"));
  auto held = Model::Open(dir_.Sub("held.gguf"));
  const ModelConfig& c = mixed->config();
  auto all = StageWeights::Load(*mixed, StageSpec::Device(c, c.num_layers));
  // Q5_0/IQ4_NL held as Q8_0, Q3_K as Q6_K, F16/BF16 in 16 bits; Q4_1, Q5_1,
  // Q2_K and Q5_K widened (their matrix goes fp32 whole).
  EXPECT_EQ("embed:f32 0:f32/q6_k/q8_0 1:f32 2:bf16/f16/f32 3:f32 head:q8_0",
            all->weight_formats());
  const auto prompt = testing::Prompt(7, c.vocab_size);
  // (The copy holds F16/BF16 as F32: widening is exact, so the logits agree.)
  EXPECT_EQ("embed:f32 0:f32/q6_k/q8_0 1-3:f32 head:q8_0",
            StageWeights::Load(*held, StageSpec::Device(c, c.num_layers))->weight_formats());
  const auto want = testing::RunChain(*held, c.num_layers, prompt, 3);
  EXPECT_EQ(want, testing::RunChain(*mixed, c.num_layers, prompt, 3));
  EXPECT_EQ(want, testing::RunChain(*mixed, 2, prompt, 3));
}

// What a stage holds of layers [begin, end) alone, and with the embedding or
// the head: StageWeights' bytes of a slice of `all` (all layers, embedding,
// head), i.e. the WeightMatrix::bytes() of its matrices plus fp32 norms.
size_t SliceBytes(const StageWeights& all, int begin, int end, bool embedding, bool head) {
  StageSpec s;
  s.begin = begin, s.end = end, s.embedding = embedding, s.head = head;
  return all.Slice(s)->bytes();
}

// The planning arithmetic (weight_bytes.h) counts what the stages hold of a
// file mixing transcoded (Q5_0, IQ4_NL -> Q8_0; Q3_K -> Q6_K), widened (Q4_1,
// Q5_1, Q2_K, Q5_K -> fp32, with their whole stacked matrix) and 16-bit
// (F16, BF16) types: not the file's bytes.
TEST_F(QuantDecodeModel, PlannedBytesAreTheBytesTheStagesHold) {
  REQUIRE_SHARED(synthk, "gguf/synthk-f32.gguf");
  WriteBoth(synthk, dir_.Sub("mixed.gguf"), dir_.Sub("f32.gguf"));
  for (const std::string weights : {"", "q4_k_m", "q8_0"}) {
    SCOPED_TRACE("weights \"" + weights + "\"");
    auto mixed = Model::Open(dir_.Sub("mixed.gguf"), weights);
    const ModelConfig& c = mixed->config();
    auto all = StageWeights::Load(*mixed, StageSpec::Range(c, 0, c.num_layers));
    const WeightBytes w = ModelWeightBytes(*mixed, "model");
    ASSERT_EQ(static_cast<size_t>(c.num_layers), w.layers.size());
    for (int l = 0; l < c.num_layers; ++l) {
      EXPECT_EQ(static_cast<double>(SliceBytes(*all, l, l + 1, false, false)), w.layers[l])
          << "layer " << l;
    }
    // The device's embedding table (held as the head would be) and the row it
    // reads per token, the cloud's head (norm + matrix).
    EXPECT_EQ(static_cast<double>(SliceBytes(*all, 0, 0, true, false)), w.embed);
    StageSpec embed_only;
    embed_only.embedding = true;
    EXPECT_EQ(static_cast<double>(all->Slice(embed_only)->decode_bytes_per_token()), w.embed_row);
    EXPECT_EQ(static_cast<double>(SliceBytes(*all, c.num_layers, c.num_layers, false, true)),
              w.head);
    EXPECT_EQ(static_cast<double>(all->Slice(StageSpec::Cloud(c, 1))->bytes()),
              w.LayersBytes(1, c.num_layers) + w.head);
  }
  // Tied (no output.weight): the head is token_embd packed, and a stage
  // holding embedding and head keeps no fp32 table.
  {
    auto in = GgufFile::Open(dir_.Sub("mixed.gguf"));
    GgufWriter tied(dir_.Sub("tied.gguf"));
    for (const std::string& key : in->header().key_order)
      tied.AddKeyValue(key, in->header().metadata.at(key));
    for (const GgufTensor& t : in->header().tensors) {
      if (t.name != "output.weight") tied.AddTensor(t.name, t.dims, t.type);
    }
    for (const GgufTensor& t : in->header().tensors) {
      if (t.name != "output.weight") tied.WriteTensorData(in->data(t), t.bytes);
    }
    tied.Commit();
    auto model = Model::Open(dir_.Sub("tied.gguf"));
    const ModelConfig& c = model->config();
    const WeightBytes w = ModelWeightBytes(*model, "model");
    auto device = StageWeights::Load(*model, StageSpec::Device(c, 2));
    EXPECT_EQ(static_cast<double>(device->bytes()), w.embed + w.LayersBytes(0, 2));
    auto everything = StageWeights::Load(*model, StageSpec::Device(c, c.num_layers));
    EXPECT_EQ(static_cast<double>(everything->bytes()),
              w.embed + w.LayersBytes(0, c.num_layers) + w.head);
    auto cloud = StageWeights::Load(*model, StageSpec::Cloud(c, 1));
    EXPECT_EQ(static_cast<double>(cloud->bytes()),
              w.LayersBytes(1, c.num_layers) + w.head + w.embed);
  }
  // The file's bytes differ: held bytes are not a sum of tensor sizes.
  auto file = GgufFile::Open(dir_.Sub("mixed.gguf"));
  double layer1_file = 0;
  for (const GgufTensor& t : file->header().tensors) {
    if (t.name.rfind("blk.1.", 0) == 0) layer1_file += static_cast<double>(t.bytes);
  }
  EXPECT_LT(layer1_file, ModelWeightBytes(*Model::Open(dir_.Sub("mixed.gguf")), "model").layers[1]);
}

// IQ2_XXS has a block size splitlm knows (the file parses) but no decoder.
TEST_F(QuantDecodeModel, ATypeWithoutADecoderIsAnErrorNamingFileTensorAndType) {
  REQUIRE_SHARED(synthk, "gguf/synthk-f32.gguf");
  auto in = GgufFile::Open(synthk);
  const std::string path = dir_.Sub("iq2.gguf");
  GgufWriter w(path);
  for (const std::string& key : in->header().key_order)
    w.AddKeyValue(key, in->header().metadata.at(key));
  for (const GgufTensor& t : in->header().tensors) {
    w.AddTensor(t.name, t.dims, t.name == "blk.3.ffn_up.weight" ? T(GgmlType::kIQ2_XXS) : t.type);
  }
  for (const GgufTensor& t : in->header().tensors) {
    if (t.name == "blk.3.ffn_up.weight") {
      const std::vector<uint8_t> zeros(static_cast<size_t>(t.dims[0] * t.dims[1] / 256 * 66));
      w.WriteTensorData(zeros.data(), zeros.size());
    } else {
      w.WriteTensorData(in->data(t), t.bytes);
    }
  }
  w.Commit();
  auto model = Model::Open(path);
  const ModelConfig& c = model->config();
  EXPECT_NO_THROW(StageWeights::Load(*model, StageSpec::Device(c, 3)));
  try {
    StageWeights::Load(*model, StageSpec::Cloud(c, 3));
    ADD_FAILURE() << "expected an error";
  } catch (const Exception& e) {
    EXPECT_EQ(
        path + ": tensor \"blk.3.ffn_up.weight\" has type IQ2_XXS, which splitlm cannot load yet",
        std::string(e.what()));
  }
}

}  // namespace
}  // namespace splitlm::partition
