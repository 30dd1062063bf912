// Stages over quantised weights: a split run equals the local run at every
// cut, batches equal single rows, every ISA gives the same bits; block
// formats multiply 8-bit activations (kernels_quant.h), which the
// fingerprint tells apart from the file dequantised to fp32.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstring>
#include <string>

#include "partition/kernels.h"
#include "partition/model.h"
#include "partition/stage.h"
#include "partition/tensor_f32.h"
#include "tests/common/stage_chain.h"
#include "tests/common/test_util.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

using testing::MakeModel;
using testing::TempDir;

using testing::Argmax;
using testing::Prompt;

using testing::RunChain;

void ExpectSplitEqualsLocal(const Model& model, const std::vector<int>& cuts, int steps) {
  const ModelConfig& c = model.config();
  const auto prompt = Prompt(9, c.vocab_size);
  const auto local = RunChain(model, c.num_layers, prompt, steps);
  for (int cut : cuts) EXPECT_EQ(local, RunChain(model, cut, prompt, steps)) << "cut " << cut;
}

std::vector<int> AllCuts(const Model& model) {
  std::vector<int> cuts;
  cuts.reserve(model.config().num_layers);
  for (int k = 0; k < model.config().num_layers; ++k) cuts.push_back(k);
  return cuts;
}

class QuantStage : public ::testing::Test {
 protected:
  TempDir dir_;
};

TEST_F(QuantStage, QuantisedAtLoadSplitEqualsLocalAtEveryCut) {
  const std::string path = MakeModel(dir_.Sub("tiny"));
  for (const char* fmt : {"q8_0", "q4_0"}) {
    auto model = Model::Open(path, fmt);
    SCOPED_TRACE(fmt);
    ExpectSplitEqualsLocal(*model, AllCuts(*model), 12);
    // The tiny model's down_proj rows (172 values) are not whole blocks.
    auto all =
        StageWeights::Load(*model, StageSpec::Device(model->config(), model->config().num_layers));
    EXPECT_EQ(all->weight_formats(),
              std::string("embed:") + fmt + " 0-3:f32/" + fmt + " head:" + fmt);
    // The quantised model reads fewer bytes per token than fp32.
    auto f32 = Model::Open(path, "f32");
    auto f32_all =
        StageWeights::Load(*f32, StageSpec::Device(f32->config(), f32->config().num_layers));
    EXPECT_EQ(f32_all->weight_formats(), "embed:f32 0-3:f32 head:f32");
    EXPECT_LT(all->decode_bytes_per_token(), f32_all->decode_bytes_per_token());
    // Other weights, other logits.
    EXPECT_NE(RunChain(*model, 2, Prompt(5, 256), 0), RunChain(*f32, 2, Prompt(5, 256), 0));
  }
}

TEST_F(QuantStage, KQuantsBatchesAndEveryIsaAgree) {
  partition::RandomModelOptions o;
  o.preset = "small";  // hidden 256: whole Q4_K / Q6_K blocks
  const std::string path = MakeModel(dir_.Sub("small"), o);
  auto model = Model::Open(path, "q4_k_m");
  const ModelConfig& c = model->config();
  auto all = StageWeights::Load(*model, StageSpec::Device(c, c.num_layers));
  // down_proj (704 values a row) stays fp32; v_proj is Q6_K in layers 0, 3,
  // 6 and 7, Q4_K elsewhere; the head and the (untied) table Q6_K.
  EXPECT_EQ(all->weight_formats(),
            "embed:q6_k 0:f32/q4_k/q6_k 1-2:f32/q4_k 3:f32/q4_k/q6_k 4-5:f32/q4_k "
            "6-7:f32/q4_k/q6_k head:q6_k");
  ExpectSplitEqualsLocal(*model, {0, 3, 7}, 4);

  // A batch of sessions equals each alone.
  auto cloud_w = StageWeights::Load(*model, StageSpec::Cloud(c, 2));
  auto dev_w = StageWeights::Load(*model, StageSpec::Device(c, 2));
  std::vector<std::unique_ptr<Stage>> batched, single, devices;
  std::vector<std::vector<float>> hidden(3), out_b(3, std::vector<float>(c.vocab_size)),
      out_s = out_b;
  std::vector<Stage*> stages;
  std::vector<StageInput> inputs;
  std::vector<float*> outs;
  for (int s = 0; s < 3; ++s) {
    batched.push_back(std::make_unique<Stage>(cloud_w));
    single.push_back(std::make_unique<Stage>(cloud_w));
    Stage dev(dev_w);
    const auto ids = Prompt(2 + 3 * s, c.vocab_size);
    hidden[s].resize(dev.OutputSize(static_cast<int>(ids.size())));
    dev.Forward({ids.data(), nullptr, static_cast<int>(ids.size())}, hidden[s].data());
    stages.push_back(batched[s].get());
    inputs.push_back({nullptr, hidden[s].data(), static_cast<int>(ids.size())});
    outs.push_back(out_b[s].data());
    single[s]->Forward(inputs.back(), out_s[s].data());
  }
  Stage::ForwardBatch(stages, inputs, outs);
  EXPECT_EQ(out_s, out_b);

  // Every instruction set.
  const auto reference = RunChain(*Model::Open(path, "q4_k_m", kernels::Isa::Portable()), 3,
                                  Prompt(5, c.vocab_size), 2);
  for (kernels::Isa isa : kernels::Isa::Available()) {
    EXPECT_EQ(reference, RunChain(*Model::Open(path, "q4_k_m", isa), 3, Prompt(5, c.vocab_size), 2))
        << isa.name();
  }
}

TEST_F(QuantStage, UnknownWeightFormatIsRejectedAtOpen) {
  const std::string path = MakeModel(dir_.Sub("tiny"));
  EXPECT_THROW(Model::Open(path, "q3_k"), Exception);
}

// Block formats held as stored multiply 8-bit activations: split == local at
// every cut, and the model is another format than the file dequantised to
// fp32 (same identity, another fingerprint), so a pair of the two is reported
// as of different formats. (Agreement with llama.cpp's argmax: GgufScore.)
void ExpectInt8SplitsExactly(const std::string& path, const std::string& formats) {
  auto native = Model::Open(path);
  auto f32 = Model::Open(path, "f32");
  const ModelConfig& c = native->config();
  auto all = StageWeights::Load(*native, StageSpec::Device(c, c.num_layers));
  EXPECT_NE(all->weight_formats().find(formats), std::string::npos) << all->weight_formats();
  EXPECT_EQ(native->identity(), f32->identity());
  EXPECT_NE(native->fingerprint(), f32->fingerprint());
  EXPECT_EQ(native->fingerprint(), Model::Open(path)->fingerprint());
  ExpectSplitEqualsLocal(*native, AllCuts(*native), 6);
}

TEST_F(QuantStage, SynthkQ8_0HeldQuantisedSplitsExactly) {
  REQUIRE_SHARED(path, "gguf/synthk-q8_0.gguf");
  ExpectInt8SplitsExactly(path, "q8_0");
}

TEST_F(QuantStage, SynthkQ4_0HeldQuantisedSplitsExactly) {
  REQUIRE_SHARED(path, "gguf/synthk-q4_0.gguf");
  ExpectInt8SplitsExactly(path, "q4_0");
}

TEST_F(QuantStage, SynthkQ4_K_MHeldQuantisedSplitsExactly) {
  REQUIRE_SHARED(path, "gguf/synthk-q4_k_m.gguf");
  ExpectInt8SplitsExactly(path, "q4_k");
}

// The embedding table is held in the model's format (as the head would be):
// a device without the head holds the file's blocks, not an fp32 table, and
// its rows decode to the floats the file's dequantisation gives, bit for bit
// (the device's output at cut 0 is the embedding rows), so split == local.
void ExpectEmbeddingHeldAsStored(const std::string& path, const std::string& weights,
                                 bool quantised) {
  SCOPED_TRACE(path + " weights \"" + weights + "\"");
  auto model = Model::Open(path, weights);
  const ModelConfig& c = model->config();
  const int64_t h = c.hidden_size, vocab = c.vocab_size;
  std::vector<float> table(static_cast<size_t>(vocab * h));
  TensorToF32(model->Tensor("model.embed_tokens.weight", {vocab, h}), table.data());
  auto device = StageWeights::Load(*model, StageSpec::Device(c, 0));
  Stage stage(device);
  std::vector<int32_t> ids;
  ids.reserve(16);
  for (int i = 0; i < 16; ++i) ids.push_back(static_cast<int32_t>((i * 97 + 3) % vocab));
  std::vector<float> out(ids.size() * h);
  stage.Forward({ids.data(), nullptr, static_cast<int>(ids.size())}, out.data());
  for (size_t i = 0; i < ids.size(); ++i) {
    ASSERT_EQ(0,
              std::memcmp(&out[i * h], &table[static_cast<size_t>(ids[i]) * h], h * sizeof(float)))
        << "token " << ids[i];
  }
  ExpectSplitEqualsLocal(*model, {0, 1}, 4);
  if (!quantised) return;
  // Fewer bytes than the fp32 table: the blocks as stored.
  EXPECT_LT(device->bytes(), table.size() * sizeof(float)) << device->weight_formats();
  EXPECT_LT(device->decode_bytes_per_token(), h * sizeof(float));
}

TEST_F(QuantStage, EmbeddingIsHeldInTheModelsFormatAndDecodesAsTheFile) {
  REQUIRE_SHARED(f32, "gguf/synthk-f32.gguf");
  for (const char* name : {"synthk-q8_0.gguf", "synthk-q4_0.gguf", "synthk-q4_k_m.gguf"})
    ExpectEmbeddingHeldAsStored(testing::SharedPath(std::string("gguf/") + name), "", true);
  ExpectEmbeddingHeldAsStored(f32, "", false);
  ExpectEmbeddingHeldAsStored(f32, "f32", false);
}

// --weights quantises the table like every other matrix: the device at cut 1
// holds less than the fp32 table alone, and still splits exactly.
TEST_F(QuantStage, EmbeddingIsQuantisedAtLoadWithTheOtherMatrices) {
  const std::string path = MakeModel(dir_.Sub("tiny"));
  auto f32 = Model::Open(path, "f32");
  auto q8 = Model::Open(path, "q8_0");
  const ModelConfig& c = q8->config();
  auto device = StageWeights::Load(*q8, StageSpec::Device(c, 1));
  auto layer = StageWeights::Load(*q8, StageSpec::Range(c, 0, 1));
  const size_t table = static_cast<size_t>(c.vocab_size) * c.hidden_size * sizeof(float);
  EXPECT_LT(device->bytes() - layer->bytes(), table / 3);
  EXPECT_EQ(0u, device->weight_formats().rfind("embed:q8_0 ", 0)) << device->weight_formats();
  EXPECT_LT(StageWeights::Load(*q8, StageSpec::Device(c, 0))->decode_bytes_per_token(),
            StageWeights::Load(*f32, StageSpec::Device(c, 0))->decode_bytes_per_token());
  ExpectSplitEqualsLocal(*q8, AllCuts(*q8), 6);
}

}  // namespace
}  // namespace splitlm::partition
