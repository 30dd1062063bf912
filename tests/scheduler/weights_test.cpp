// Weight formats in the scheduler: bytes per layer in each format follow the
// block arithmetic (and a GGUF file's own tensors), a quantised device's
// memory-bound decode time drops by the byte ratio, and the best cut and the
// memory constraint move with the format.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <map>
#include <numeric>

#include "partition/gguf.h"
#include "partition/mapped_file.h"
#include "partition/model.h"
#include "partition/stage.h"
#include "partition/weight_bytes.h"
#include "scheduler/cost_model.h"
#include "scheduler/hardware.h"
#include "scheduler/profile.h"
#include "scheduler/weights.h"
#include "tests/common/test_util.h"
#include "tests/scheduler/synthetic_profiles.h"
#include "transport/error.h"

namespace splitlm::scheduler {
namespace {

using partition::WeightBytesOf;

// The shapes of ../shared/gguf/synthk-*.gguf: every row a multiple of 256.
partition::ModelConfig Synthk() {
  partition::ModelConfig c;
  c.hidden_size = 256;
  c.num_layers = 4;
  c.num_heads = 8;
  c.num_kv_heads = 4;
  c.head_dim = 32;
  c.intermediate_size = 768;
  c.vocab_size = 512;
  c.max_context = 512;
  return c;
}

// Values of one layer's matrices (q, k, v, o, gate, up, down), of attn_v, of
// ffn_down, and bytes of its two F32 norms.
constexpr double kMatrixValues = 256.0 * 256 + 2 * 256 * 128 + 256.0 * 256 + 3 * 256.0 * 768;
constexpr double kAttnV = 256.0 * 128, kFfnDown = 768.0 * 256;
constexpr double kNormBytes = 2 * 256 * 4;
constexpr double kTable = 512.0 * 256;  // token_embd, output

// Bytes per value of each format as the int8-activation kernels hold it
// (kernels_quant.cpp's packed layouts, 16 rows a panel): Q8_0 34 B / 32 and
// Q4_0 18 / 32 as in the file (ggml-common.h), Q4_K 148 / 256 (the file's
// 144 plus its sub-block scales unpacked), Q6_K 210 / 256.
const std::map<std::string, double> kBytesPerValue = {{"f32", 4},           {"f16", 2},
                                                      {"bf16", 2},          {"q8_0", 34.0 / 32},
                                                      {"q4_0", 18.0 / 32},  {"q4_k", 148.0 / 256},
                                                      {"q6_k", 210.0 / 256}};

TEST(WeightBytesTest, EveryLayerHoldsItsMatricesInTheFormatAndItsNormsInF32) {
  for (const auto& [format, per_value] : kBytesPerValue) {
    SCOPED_TRACE(format);
    const auto w = WeightBytesOf(Synthk(), format);
    ASSERT_EQ(4u, w.layers.size());
    for (double bytes : w.layers) EXPECT_DOUBLE_EQ(kMatrixValues * per_value + kNormBytes, bytes);
    // The device holds the embedding table in the format (token_embd as
    // llama-quantize writes it: the format's type) and reads one row a token.
    EXPECT_DOUBLE_EQ(kTable * per_value, w.embed);
    EXPECT_DOUBLE_EQ(256 * per_value, w.embed_row);
    // llama-quantize gives the output matrix Q6_K for Q4_0 (and keeps Q8_0 for Q8_0).
    EXPECT_DOUBLE_EQ(kTable * (format == "q4_0" ? 210.0 / 256 : per_value), w.head_read);
    // Every value but the norms' is in a block format for the q types.
    EXPECT_NEAR(format[0] == 'q' ? kMatrixValues / (kMatrixValues + 512) : 0.0, w.BlockFraction(0),
                1e-12);
  }
}

TEST(WeightBytesTest, Q4KMGivesAttnVAndFfnDownQ6KInTheLayersLlamaCppPicks) {
  // use_more_bits(i, 4): i >= 7*4/8 = 3, or (i - 4/8) % 3 == 2: layers 2 and 3.
  const auto w = WeightBytesOf(Synthk(), "q4_k_m");
  const double q4k = kMatrixValues * 148 / 256 + kNormBytes;
  const double more = (kMatrixValues - kAttnV - kFfnDown) * 148 / 256 +
                      (kAttnV + kFfnDown) * 210 / 256 + kNormBytes;
  EXPECT_DOUBLE_EQ(q4k, w.layers[0]);
  EXPECT_DOUBLE_EQ(q4k, w.layers[1]);
  EXPECT_DOUBLE_EQ(more, w.layers[2]);
  EXPECT_DOUBLE_EQ(more, w.layers[3]);
  EXPECT_DOUBLE_EQ(kTable * 148 / 256, w.embed);      // token_embd: Q4_K in the file, held so
  EXPECT_DOUBLE_EQ(kTable * 210 / 256, w.head_read);  // output: Q6_K
}

TEST(WeightBytesTest, RowsThatAreNoWholeBlockStayF32) {
  partition::ModelConfig c = Synthk();
  c.hidden_size = 96;  // q, k, v, gate, up rows of 96: no Q4_K block; down rows of 768 are
  c.head_dim = 12;
  const auto w = WeightBytesOf(c, "q4_k");
  const double h = 96, qd = 96, kvd = 48, ff = 768;
  const double f32_values = h * qd + 2 * h * kvd + 2 * h * ff;  // rows of h
  const double o_values = qd * h;                               // rows of qd = 96
  EXPECT_DOUBLE_EQ((f32_values + o_values) * 4 + ff * h * 148 / 256 + 2 * h * 4, w.layers[0]);
}

TEST(WeightBytesTest, AnUnknownFormatNamesTheAcceptedOnes) {
  try {
    WeightBytesOf(Synthk(), "q5_k");
    FAIL() << "no error";
  } catch (const Exception& e) {
    EXPECT_NE(
        std::string::npos,
        std::string(e.what()).find(
            "\"q5_k\": unknown format (choose f32, f16, bf16, q8_0, q4_0, q4_k, q6_k, q4_k_m)"))
        << e.what();
  }
}

// The bytes of every tensor of `path` named blk.N.*, per N, read with the
// GGUF reader (each tensor's size as the file lays it out).
std::vector<double> TensorBytesPerLayer(const std::string& path, int layers) {
  auto file = partition::MappedFile::Open(path, 0, "GGUF");
  const auto h = partition::ParseGgufHeader(file->data(), file->size(), path);
  std::vector<double> out(layers, 0);
  for (const auto& t : h.tensors) {
    for (int l = 0; l < layers; ++l) {
      if (t.name.rfind("blk." + std::to_string(l) + ".", 0) == 0)
        out[l] += static_cast<double>(t.bytes);
    }
  }
  return out;
}

TEST(WeightBytesTest, AGgufModelCountsItsOwnTensorsAndMatchesTheFormatFromShapes) {
  for (const std::string type : {"q4_k_m", "q8_0", "q4_0"}) {
    SCOPED_TRACE(type);
    const std::string rel = "gguf/synthk-" + type + ".gguf";
    const std::string path = ::splitlm::testing::SharedPath(rel);
    if (path.empty()) GTEST_SKIP() << "../shared/" << rel << " is absent (set SPLITLM_SHARED)";
    auto model = partition::Model::Open(path);
    const auto own = partition::ModelWeightBytes(*model, "model");
    EXPECT_EQ("gguf", own.format);
    // Every matrix of synthk is held in its file type: the file's bytes,
    // but for Q4_K's unpacked scales (4 bytes more per 144-byte block).
    std::vector<double> file = TensorBytesPerLayer(path, 4);
    for (int l = 0; l < 4; ++l) {
      EXPECT_LE(file[l], own.layers[l]) << l;
      EXPECT_LE(own.layers[l], file[l] * 148 / 144) << l;
    }
    // llama-quantize made the file from F32: the format computed from the
    // shapes alone gives the same bytes.
    EXPECT_EQ(WeightBytesOf(model->config(), type).layers, own.layers);
    EXPECT_DOUBLE_EQ(WeightBytesOf(model->config(), type).head_read, own.head_read);
  }
}

// The synthetic device reads its weights at 1 byte per ns.
WeightCost Cost(const std::string& format) { return {WeightBytesOf(Synthk(), format), 1.0}; }

TEST(RetargetTest, MemoryBoundDecodeDropsByTheByteRatio) {
  const WeightCost f32 = Cost("f32");
  for (const std::string format : {"q8_0", "q4_0", "q4_k_m", "f16"}) {
    SCOPED_TRACE(format);
    const WeightCost to = Cost(format);
    const ComputeProfile measured = testing::MemoryBound(f32.bytes.layers, 1e-3);
    const ComputeProfile p = RetargetProfile(measured, f32, to);
    const double ratio = to.bytes.LayersBytes(0, 4) / f32.bytes.LayersBytes(0, 4);
    EXPECT_NEAR(ratio, p.StepUs(0, 4, 64, false, false) / measured.StepUs(0, 4, 64, false, false),
                1e-12);
    // The cost model's device time per token at cut 4 (embedding + layers + head).
    PlanInputs a, b;
    a.device = a.cloud = measured;
    b.device = b.cloud = p;
    const double layers_a = PredictAll(a)[3].device_ms - PredictAll(a)[0].device_ms;
    const double layers_b = PredictAll(b)[3].device_ms - PredictAll(b)[0].device_ms;
    EXPECT_NEAR(to.bytes.LayersBytes(0, 3) / f32.bytes.LayersBytes(0, 3), layers_b / layers_a,
                1e-9);
    // Memory counts the format's bytes.
    EXPECT_DOUBLE_EQ(to.bytes.LayersBytes(0, 4), p.HeldLayerBytes(0, 4));
    EXPECT_EQ(format, p.weights);
  }
}

TEST(RetargetTest, TheContextDependentPartIsKept) {
  const WeightCost f32 = Cost("f32"), q4 = Cost("q4_0");
  const ComputeProfile measured =
      testing::MemoryBound(f32.bytes.layers, 1e-3, /*kv_us_per_position=*/0.5);
  const ComputeProfile p = RetargetProfile(measured, f32, q4);
  for (int ctx : {1, 300, 1000}) {
    EXPECT_NEAR(q4.bytes.layers[1] * 1e-3 + 0.5 * ctx, p.DecodeUs(1, ctx), 1e-9) << ctx;
  }
  // Prefill: same flops (compute factor 1), unchanged; a factor of 2 doubles
  // the time of the values in blocks (all but the norms).
  EXPECT_DOUBLE_EQ(measured.PrefillUs(0, 128), p.PrefillUs(0, 128));
  WeightCost slow = q4;
  slow.quant_compute_factor = 2;
  EXPECT_NEAR((1 + q4.bytes.BlockFraction(0)) * measured.PrefillUs(0, 128),
              RetargetProfile(measured, f32, slow).PrefillUs(0, 128), 1e-6);
  EXPECT_GT(q4.bytes.BlockFraction(0), 0.99);
}

// A slow memory-bound device (f32 layers ~3.3 ms each), a fast cloud, a link
// of 8 ms: in f32 the cloud wins, with q4_0 weights (0.14x the bytes) the
// device does.
PlanInputs SplitInputs(const std::string& device_format) {
  const WeightCost f32 = Cost("f32");
  PlanInputs in;
  in.device = RetargetProfile(testing::MemoryBound(f32.bytes.layers, 1e-3, 0, 200), f32,
                              Cost(device_format));
  in.cloud = testing::MemoryBound(f32.bytes.layers, 1e-6, 0, 1);
  in.link.rtt_ms = 8;
  in.link.up_mbit_s = in.link.down_mbit_s = 100;
  in.workload.activation_bytes = 1024;
  in.workload.max_context = 512;
  return in;
}

TEST(RetargetTest, TheBestCutMovesToTheDeviceWhenItHoldsQ4_0) {
  const Plan f32 = ChooseCut(SplitInputs("f32"));
  const Plan q4 = ChooseCut(SplitInputs("q4_0"));
  ASSERT_TRUE(f32.chosen && q4.chosen);
  EXPECT_EQ(0, *f32.chosen) << FormatPlan(f32, Objective::kLatency);
  EXPECT_EQ(4, *q4.chosen) << FormatPlan(q4, Objective::kLatency);
}

TEST(RetargetTest, TheMemoryBudgetAdmitsMoreLayersWithQuantisedWeights) {
  auto deepest = [](PlanInputs in) {
    in.constraints.memory_budget_mb = 5.0;
    int k = -1;
    for (const auto& p : PredictAll(in)) {
      if (p.violations.empty()) k = p.cut;
    }
    return k;
  };
  // Embedding, then per layer weights + 0.5 MiB of KV: f32 0.5 + 3.5 MiB each;
  // q4_0 0.28 + 0.92 MiB each, + 0.41 MiB of Q6_K head at cut 4.
  EXPECT_EQ(1, deepest(SplitInputs("f32")));
  EXPECT_EQ(4, deepest(SplitInputs("q4_0")));
}

TEST(RooflineWeightsTest, DecodeOnABandwidthBoundDeviceTakesTheFormatsBytes) {
  HardwareProfile hw;
  hw.memory_bandwidth_gb_s = 1;
  hw.compute_gflop_s = 1e6;
  hw.bandwidth_efficiency = hw.compute_efficiency = 1;
  const auto c = Synthk();
  partition::StageSpec layers = partition::StageSpec::Range(c, 0, 4);
  layers.embedding = layers.head = false;
  const double f32 = RooflineUs(hw, c, Cost("f32"), layers, 1, 1, 0);
  EXPECT_DOUBLE_EQ(f32, RooflineUs(hw, c, layers, 1, 1, 0));  // the fp32 overload
  for (const std::string format : {"q8_0", "q4_0", "q4_k_m"}) {
    const double ratio = Cost(format).bytes.LayersBytes(0, 4) / Cost("f32").bytes.LayersBytes(0, 4);
    EXPECT_NEAR(ratio, RooflineUs(hw, c, Cost(format), layers, 1, 1, 0) / f32, 1e-12) << format;
  }
  // A compute-bound prefill: same flops, times the compute factor.
  hw.compute_gflop_s = 0.001;
  WeightCost q4 = Cost("q4_0");
  const double same = RooflineUs(hw, c, q4, layers, 64, 1, 0);
  EXPECT_DOUBLE_EQ(RooflineUs(hw, c, Cost("f32"), layers, 64, 1, 0), same);
  q4.quant_compute_factor = 1.5;
  EXPECT_NEAR((1 + 0.5 * q4.bytes.BlockFraction(0)) * same, RooflineUs(hw, c, q4, layers, 64, 1, 0),
              1e-9 * same);
}

TEST(ProfileWeightsTest, JsonKeepsTheFormatAndOldProfilesReadAsF32) {
  ComputeProfile p = testing::MemoryBound({1000, 2000}, 1e-3);
  p.weights = "q4_k_m";
  const auto back = ComputeProfile::FromJson(p.ToJson(), "p.json");
  EXPECT_EQ("q4_k_m", back.weights);
  EXPECT_EQ(p.layer_weight_bytes, back.layer_weight_bytes);
  EXPECT_DOUBLE_EQ(3000, back.HeldLayerBytes(0, 2));
  nlohmann::json old = nlohmann::json::parse(p.ToJson());
  old.erase("weights");
  old.erase("layer_weight_bytes");
  const auto legacy = ComputeProfile::FromJson(old.dump(), "old.json");
  EXPECT_EQ("f32", legacy.weights);
  EXPECT_DOUBLE_EQ(2 * p.layer_bytes, legacy.HeldLayerBytes(0, 2));
  old["layer_weight_bytes"] = {1.0};
  EXPECT_THROW(ComputeProfile::FromJson(old.dump(), "bad.json"), std::runtime_error);
}

// A profile's memory figures are those of the stages it describes: a tied
// table counted once (embedding + layers + head = the whole device stage),
// and a cached profile gets them anew from the model as opened (they follow
// the held formats, not the measurement).
TEST(ProfileWeightsTest, AMeasuredOrCachedProfileCountsWhatTheStagesHold) {
  REQUIRE_SHARED(stories, "models/stories260K");  // tied, as most small models are
  splitlm::testing::TempDir dir;
  for (const std::string weights : {"", "q8_0"}) {
    SCOPED_TRACE("weights \"" + weights + "\"");
    const auto model = partition::Model::Open(stories, weights);
    const auto& c = model->config();
    ProfileOptions options;
    options.repeats = 1;
    const std::string path = dir.Sub("profile-" + weights + ".json");
    const ComputeProfile measured = LoadOrMeasureProfile(*model, path, options);
    const auto whole =
        partition::StageWeights::Load(*model, partition::StageSpec::Device(c, c.num_layers));
    const auto device = partition::StageWeights::Load(*model, partition::StageSpec::Device(c, 1));
    EXPECT_EQ(
        static_cast<double>(whole->bytes()),
        measured.embed_bytes + measured.HeldLayerBytes(0, c.num_layers) + measured.head_bytes);
    EXPECT_EQ(static_cast<double>(device->bytes()),
              measured.embed_bytes + measured.HeldLayerBytes(0, 1));
    // A cache written with other figures (an older version's) is corrected.
    nlohmann::json stale = nlohmann::json::parse(measured.ToJson());
    stale["embed_bytes"] = 1;
    stale["head_bytes"] = 1;
    std::ofstream(path, std::ios::trunc) << stale.dump();
    bool was_measured = true;
    const ComputeProfile cached = LoadOrMeasureProfile(*model, path, options, &was_measured);
    EXPECT_FALSE(was_measured) << "the cache matched the model and the hardware";
    EXPECT_EQ(measured.embed_bytes, cached.embed_bytes);
    EXPECT_EQ(measured.head_bytes, cached.head_bytes);
  }
}

}  // namespace
}  // namespace splitlm::scheduler
