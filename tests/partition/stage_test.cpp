// Exactness of stages: split == monolithic at every cut, prefill == one by
// one, batch == single, portable kernels == AVX2 kernels, all to the bit; and
// the math checked against a plain LibTorch implementation of the HF model.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

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

float MaxAbsDiff(const std::vector<float>& a, const std::vector<float>& b) {
  float m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

using testing::RunChain;

class StageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = MakeModel(dir_.Sub("tiny"));
    model_ = Model::Open(path_);
  }
  TempDir dir_;
  std::string path_;
  std::unique_ptr<Model> model_;
};

TEST_F(StageTest, SplitEqualsMonolithicAtEveryCut) {
  const ModelConfig& c = model_->config();
  const auto prompt = Prompt(7, c.vocab_size);
  const auto reference = RunChain(*model_, c.num_layers, prompt, 64);
  for (int cut = 0; cut <= c.num_layers; ++cut) {
    const auto split = RunChain(*model_, cut, prompt, 64);
    ASSERT_EQ(reference.size(), split.size());
    for (size_t s = 0; s < split.size(); ++s) {
      ASSERT_LE(MaxAbsDiff(reference[s], split[s]), 1e-5f) << "cut " << cut << " step " << s;
      // Stronger than the 1e-5 bound: the kernels make it bit-identical.
      ASSERT_EQ(reference[s], split[s]) << "cut " << cut << " step " << s;
      ASSERT_EQ(Argmax(reference[s]), Argmax(split[s]));
    }
  }
}

TEST_F(StageTest, PrefillEqualsOneByOne) {
  const ModelConfig& c = model_->config();
  const auto prompt = Prompt(23, c.vocab_size);
  for (int cut : {0, 2}) {
    auto w = StageWeights::Load(*model_, StageSpec::Device(c, cut));
    Stage all_at_once(w), one_by_one(w);
    std::vector<float> a(all_at_once.OutputSize(23)), b(one_by_one.OutputSize(1));
    all_at_once.Forward({prompt.data(), nullptr, 23}, a.data());
    for (int i = 0; i < 23; ++i) {
      one_by_one.Forward({&prompt[i], nullptr, 1}, b.data());
      ASSERT_TRUE(std::equal(b.begin(), b.end(), a.begin() + i * c.hidden_size)) << "row " << i;
    }
  }
  auto full = StageWeights::Load(*model_, StageSpec::Device(c, c.num_layers));
  Stage x(full), y(full);
  std::vector<float> lx(c.vocab_size), ly(c.vocab_size);
  x.Forward({prompt.data(), nullptr, 23}, lx.data());
  for (int i = 0; i < 23; ++i) y.Forward({&prompt[i], nullptr, 1}, ly.data());
  EXPECT_EQ(lx, ly);
  EXPECT_EQ(23, x.position());
}

TEST_F(StageTest, BatchEqualsSingle) {
  const ModelConfig& c = model_->config();
  auto w = StageWeights::Load(*model_, StageSpec::Cloud(c, 1));
  auto dev = StageWeights::Load(*model_, StageSpec::Device(c, 1));
  const int kSessions = 5;
  std::vector<std::unique_ptr<Stage>> batched, single, devices;
  for (int s = 0; s < kSessions; ++s) {
    batched.push_back(std::make_unique<Stage>(w));
    single.push_back(std::make_unique<Stage>(w));
    devices.push_back(std::make_unique<Stage>(dev));
  }
  for (int step = 0; step < 6; ++step) {
    std::vector<std::vector<float>> hidden(kSessions);
    std::vector<Stage*> stages;
    std::vector<StageInput> inputs;
    std::vector<std::vector<float>> out_b(kSessions, std::vector<float>(c.vocab_size)),
        out_s = out_b;
    std::vector<float*> outs;
    for (int s = 0; s < kSessions; ++s) {
      const int n = step == 0 ? 2 + s : 1;  // ragged prefills, then decodes
      auto ids = Prompt(n + s, c.vocab_size);
      ids.erase(ids.begin(), ids.begin() + s);
      hidden[s].resize(devices[s]->OutputSize(n));
      devices[s]->Forward({ids.data(), nullptr, n}, hidden[s].data());
      stages.push_back(batched[s].get());
      inputs.push_back({nullptr, hidden[s].data(), n});
      outs.push_back(out_b[s].data());
      single[s]->Forward({nullptr, hidden[s].data(), n}, out_s[s].data());
    }
    Stage::ForwardBatch(stages, inputs, outs);
    for (int s = 0; s < kSessions; ++s)
      ASSERT_EQ(out_s[s], out_b[s]) << "session " << s << " step " << step;
  }
}

TEST_F(StageTest, PortableKernelsMatchVectorKernelsBitForBit) {
  const ModelConfig& c = model_->config();
  const auto prompt = Prompt(9, c.vocab_size);
  EXPECT_EQ(kernels::Isa::Best(), model_->isa());
  const auto fast = RunChain(*model_, c.num_layers, prompt, 8);
  const auto portable =
      RunChain(*Model::Open(path_, "", kernels::Isa::Portable()), c.num_layers, prompt, 8);
  EXPECT_EQ(fast, portable) << "best ISA: " << model_->isa().name();
}

TEST_F(StageTest, EveryInstructionSetGivesTheSameBits) {
  const ModelConfig& c = model_->config();
  const auto prompt = Prompt(9, c.vocab_size);
  const auto reference = RunChain(*Model::Open(path_, "", kernels::Isa::Portable()), 2, prompt, 8);
  int compared = 0;
  for (kernels::Isa isa : kernels::Isa::Available()) {
    if (isa == kernels::Isa::Portable()) continue;
    auto model = Model::Open(path_, "", isa);
    ASSERT_EQ(isa, model->isa());
    EXPECT_EQ(reference, RunChain(*model, 2, prompt, 8)) << isa.name();
    ++compared;
  }
  std::printf("compared %d vector instruction sets with the portable path\n", compared);
}

// A device on one instruction set and a cloud on another (each its own
// Model) give the tokens of a local run: the choice is per model, not global.
TEST_F(StageTest, DeviceAndCloudOnDifferentInstructionSetsAgree) {
  const ModelConfig& c = model_->config();
  const auto prompt = Prompt(7, c.vocab_size);
  const auto local = RunChain(*model_, c.num_layers, prompt, 6);
  auto portable = Model::Open(path_, "", kernels::Isa::Portable());
  const int cut = 2;
  Stage device(StageWeights::Load(*portable, StageSpec::Device(c, cut)));
  Stage cloud(StageWeights::Load(*model_, StageSpec::Cloud(c, cut)));
  std::vector<float> hidden(device.OutputSize(static_cast<int>(prompt.size()))),
      logits(c.vocab_size);
  device.Forward({prompt.data(), nullptr, static_cast<int>(prompt.size())}, hidden.data());
  cloud.Forward({nullptr, hidden.data(), static_cast<int>(prompt.size())}, logits.data());
  EXPECT_EQ(local.front(), logits);
}

TEST(Isa, NamesChoicesAndErrors) {
  EXPECT_STREQ("portable", kernels::Isa::Portable().name());
  ASSERT_FALSE(kernels::Isa::Available().empty());
  EXPECT_EQ(kernels::Isa::Portable(), kernels::Isa::Available().front());
  for (kernels::Isa isa : kernels::Isa::Available()) {
    ASSERT_TRUE(kernels::Isa::Named(isa.name()).has_value()) << isa.name();
    EXPECT_EQ(isa, *kernels::Isa::Named(isa.name()));
    EXPECT_EQ(isa, kernels::Isa::Choose(isa.name(), "SPLITLM_KERNELS"));
  }
  const auto available = kernels::Isa::Available();
  EXPECT_NE(std::find(available.begin(), available.end(), kernels::Isa::Best()), available.end());
  EXPECT_EQ(kernels::Isa::Best(), kernels::Isa::Choose(nullptr));
  EXPECT_EQ(kernels::Isa::Best(), kernels::Isa::Choose(""));
  EXPECT_FALSE(kernels::Isa::Named("avx9").has_value());
  try {
    kernels::Isa::Choose("avx9", "SPLITLM_KERNELS");
    FAIL() << "no exception";
  } catch (const Exception& e) {
    EXPECT_EQ(Exception::kInvalidArgument, e.code());
    EXPECT_NE(std::string(e.what()).find("SPLITLM_KERNELS \"avx9\""), std::string::npos)
        << e.what();
    EXPECT_NE(std::string(e.what()).find("portable"), std::string::npos) << e.what();
  }
}

TEST_F(StageTest, TruncateThenReplayGivesTheSameLogits) {
  const ModelConfig& c = model_->config();
  Stage stage(StageWeights::Load(*model_, StageSpec::Device(c, c.num_layers)));
  const auto prompt = Prompt(12, c.vocab_size);
  std::vector<float> first(c.vocab_size), again(c.vocab_size);
  stage.Forward({prompt.data(), nullptr, 12}, first.data());
  stage.Truncate(5);
  EXPECT_EQ(5, stage.position());
  stage.Forward({prompt.data() + 5, nullptr, 7}, again.data());
  EXPECT_EQ(first, again);
  EXPECT_THROW(stage.Truncate(13), Exception);
}

TEST_F(StageTest, SlicesShareWeightsAndComputeTheSame) {
  const ModelConfig& c = model_->config();
  auto full = StageWeights::Load(*model_, StageSpec::Device(c, c.num_layers));
  const auto prompt = Prompt(9, c.vocab_size);
  for (int cut = 0; cut < c.num_layers; ++cut) {
    Stage device(full->Slice(StageSpec::Device(c, cut))),
        cloud(full->Slice(StageSpec::Cloud(c, cut)));
    std::vector<float> hidden(device.OutputSize(9)), logits(c.vocab_size);
    device.Forward({prompt.data(), nullptr, 9}, hidden.data());
    cloud.Forward({nullptr, hidden.data(), 9}, logits.data());
    EXPECT_EQ(RunChain(*model_, cut, prompt, 0)[0], logits) << "cut " << cut;
  }
  auto cloud_only = StageWeights::Load(*model_, StageSpec::Cloud(c, 2));
  EXPECT_THROW(cloud_only->Slice(StageSpec::Cloud(c, 1)), Exception);
  EXPECT_THROW(cloud_only->Slice(StageSpec::Device(c, 3)), Exception);
  EXPECT_NO_THROW(cloud_only->Slice(StageSpec::Cloud(c, 3)));
}

TEST_F(StageTest, DeviceHoldsOnlyItsLayers) {
  const ModelConfig& c = model_->config();
  size_t prev = 0;
  auto embed_only = StageWeights::Load(*model_, StageSpec::Device(c, 0));
  EXPECT_EQ(static_cast<size_t>(c.vocab_size) * c.hidden_size * 4, embed_only->bytes());
  for (int cut = 0; cut < c.num_layers; ++cut) {
    auto w = StageWeights::Load(*model_, StageSpec::Device(c, cut));
    EXPECT_GT(w->bytes(), prev) << "cut " << cut;
    if (cut > 0) {
      auto one = StageWeights::Load(*model_, StageSpec::Device(c, 1));
      EXPECT_EQ(embed_only->bytes() + cut * (one->bytes() - embed_only->bytes()), w->bytes());
    }
    prev = w->bytes();
  }
}

TEST_F(StageTest, RejectsBadInputsWithoutChangingState) {
  const ModelConfig& c = model_->config();
  EXPECT_THROW(StageSpec::Device(c, c.num_layers + 1), Exception);
  EXPECT_THROW(StageSpec::Device(c, -1), Exception);
  Stage stage(StageWeights::Load(*model_, StageSpec::Device(c, 2)), /*max_context=*/8);
  std::vector<float> out(stage.OutputSize(9));
  int32_t bad = c.vocab_size;
  try {
    stage.Forward({&bad, nullptr, 1}, out.data());
    FAIL() << "expected Exception";
  } catch (const Exception& e) {
    EXPECT_NE(std::string(e.what()).find("outside the vocabulary"), std::string::npos) << e.what();
  }
  auto ids = Prompt(9, c.vocab_size);
  try {
    stage.Forward({ids.data(), nullptr, 9}, out.data());
    FAIL() << "expected Exception";
  } catch (const Exception& e) {
    EXPECT_NE(std::string(e.what()).find("exceed the context of 8"), std::string::npos) << e.what();
  }
  std::vector<float> hidden(c.hidden_size);
  EXPECT_THROW(stage.Forward({nullptr, hidden.data(), 1}, out.data()), Exception);
  EXPECT_EQ(0, stage.position());
}

// ---- An independent LibTorch implementation of the HF forward pass ----

at::Tensor Load(const Model& m, const std::string& name, std::vector<int64_t> shape) {
  at::Tensor out = at::empty(shape, at::TensorOptions().dtype(at::kFloat));
  TensorToF32(m.Tensor(name, shape), out.data_ptr<float>());
  return out;
}

at::Tensor RmsNorm(const at::Tensor& x, const at::Tensor& w, double eps) {
  return w * (x * at::rsqrt(x.pow(2).mean(-1, true) + eps));
}

at::Tensor RotateHalf(const at::Tensor& x) {
  auto half = x.size(-1) / 2;
  return at::cat({-x.narrow(-1, half, half), x.narrow(-1, 0, half)}, -1);
}

std::vector<float> ReferenceLogits(const Model& m, const std::vector<int32_t>& ids) {
  const ModelConfig& c = m.config();
  const int64_t n = ids.size(), h = c.hidden_size, hd = c.head_dim, nh = c.num_heads,
                nkv = c.num_kv_heads, inter = c.intermediate_size;
  at::Tensor embed = Load(m, "model.embed_tokens.weight", {c.vocab_size, h});
  at::Tensor idx = at::tensor(std::vector<int64_t>(ids.begin(), ids.end()));
  at::Tensor x = embed.index_select(0, idx);
  at::Tensor inv = 1.0 / at::pow(c.rope_theta, at::arange(0, hd, 2).to(at::kFloat) / hd);
  at::Tensor freqs = at::outer(at::arange(n).to(at::kFloat), inv);
  at::Tensor emb = at::cat({freqs, freqs}, -1);
  at::Tensor cos = emb.cos(), sin = emb.sin();
  at::Tensor mask = at::full({n, n}, -INFINITY).triu(1);
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = "model.layers." + std::to_string(l) + ".";
    at::Tensor r = RmsNorm(x, Load(m, p + "input_layernorm.weight", {h}), c.rms_norm_eps);
    auto proj = [&](const char* what, int64_t out) {
      at::Tensor y = at::linear(r, Load(m, p + "self_attn." + what + "_proj.weight", {out, h}));
      if (c.qkv_bias) y = y + Load(m, p + "self_attn." + what + "_proj.bias", {out});
      return y;
    };
    at::Tensor q = proj("q", nh * hd).view({n, nh, hd}).transpose(0, 1);
    at::Tensor k = proj("k", nkv * hd).view({n, nkv, hd}).transpose(0, 1);
    at::Tensor v = proj("v", nkv * hd).view({n, nkv, hd}).transpose(0, 1);
    q = q * cos + RotateHalf(q) * sin;
    k = k * cos + RotateHalf(k) * sin;
    k = k.repeat_interleave(nh / nkv, 0);
    v = v.repeat_interleave(nh / nkv, 0);
    at::Tensor att =
        at::softmax(at::matmul(q, k.transpose(1, 2)) / std::sqrt(double(hd)) + mask, -1);
    at::Tensor o = at::matmul(att, v).transpose(0, 1).reshape({n, nh * hd});
    x = x + at::linear(o, Load(m, p + "self_attn.o_proj.weight", {h, nh * hd}));
    r = RmsNorm(x, Load(m, p + "post_attention_layernorm.weight", {h}), c.rms_norm_eps);
    at::Tensor g = at::linear(r, Load(m, p + "mlp.gate_proj.weight", {inter, h}));
    at::Tensor u = at::linear(r, Load(m, p + "mlp.up_proj.weight", {inter, h}));
    x = x + at::linear(at::silu(g) * u, Load(m, p + "mlp.down_proj.weight", {h, inter}));
  }
  x = RmsNorm(x, Load(m, "model.norm.weight", {h}), c.rms_norm_eps);
  at::Tensor head =
      m.HasTensor("lm_head.weight") ? Load(m, "lm_head.weight", {c.vocab_size, h}) : embed;
  at::Tensor logits = at::linear(x[n - 1], head).contiguous();
  return std::vector<float>(logits.data_ptr<float>(), logits.data_ptr<float>() + c.vocab_size);
}

void ExpectMatchesReference(const Model& m, float tol) {
  const auto prompt = Prompt(17, m.config().vocab_size);
  const auto ours = RunChain(m, m.config().num_layers, prompt, 0)[0];
  const auto ref = ReferenceLogits(m, prompt);
  EXPECT_LE(MaxAbsDiff(ours, ref), tol);
  EXPECT_EQ(Argmax(ref), Argmax(ours));
}

TEST_F(StageTest, MatchesLibTorchReferenceLlama) { ExpectMatchesReference(*model_, 1e-4f); }

TEST(StageLoad, MatchesLibTorchReferenceQwen2WithBiases) {
  TempDir dir;
  RandomModelOptions o;
  o.arch = Arch::kQwen2;
  o.seed = 3;
  auto m = Model::Open(MakeModel(dir.Sub("qwen"), o));
  EXPECT_TRUE(m->config().qkv_bias);
  ExpectMatchesReference(*m, 1e-4f);
}

TEST(StageLoad, HalfPrecisionAndShardedFilesLoad) {
  TempDir dir;
  RandomModelOptions o;
  o.seed = 5;
  auto f32 = Model::Open(MakeModel(dir.Sub("f32"), o));
  o.shards = 3;
  auto sharded = Model::Open(MakeModel(dir.Sub("sharded"), o));
  const auto prompt = Prompt(6, f32->config().vocab_size);
  EXPECT_EQ(RunChain(*f32, 2, prompt, 4), RunChain(*sharded, 2, prompt, 4));
  o.shards = 1;
  for (StoredDType dt : {StoredDType::kF16, StoredDType::kBF16}) {
    o.dtype = dt;
    auto half = Model::Open(MakeModel(dir.Sub(StoredDTypeName(dt)), o));
    ExpectMatchesReference(*half, 1e-4f);  // computed in fp32 from the same rounded weights
    EXPECT_LE(MaxAbsDiff(RunChain(*f32, 2, prompt, 0)[0], RunChain(*half, 2, prompt, 0)[0]), 0.5f);
  }
}

}  // namespace
}  // namespace splitlm::partition
