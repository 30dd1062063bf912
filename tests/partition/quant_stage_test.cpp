// Stages over quantised weights: a split run equals the local run at every
// cut, batches equal single rows, every ISA gives the same bits; block
// formats multiply 8-bit activations (kernels_quant.h), which the
// fingerprint tells apart from the file dequantised to fp32.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "partition/kernels.h"
#include "partition/model.h"
#include "partition/stage.h"
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
    EXPECT_EQ(all->weight_formats(), std::string("0-3:f32/") + fmt + " head:" + fmt);
    // The quantised model reads fewer bytes per token than fp32.
    auto f32 = Model::Open(path, "f32");
    auto f32_all =
        StageWeights::Load(*f32, StageSpec::Device(f32->config(), f32->config().num_layers));
    EXPECT_EQ(f32_all->weight_formats(), "0-3:f32 head:f32");
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
  // 6 and 7, Q4_K elsewhere; the head Q6_K.
  EXPECT_EQ(all->weight_formats(),
            "0:f32/q4_k/q6_k 1-2:f32/q4_k 3:f32/q4_k/q6_k 4-5:f32/q4_k "
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

}  // namespace
}  // namespace splitlm::partition
