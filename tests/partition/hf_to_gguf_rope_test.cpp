// Llama 3 rope scaling through the converter: a directory whose config.json
// has rope_scaling.rope_type "llama3" becomes a GGUF with llama.cpp's
// rope_freqs.weight (the formula of convert_hf_to_gguf.py, evaluated here by
// hand in double precision), and the GGUF model computes what the directory
// computes: the same greedy ids, logits within float rounding (dividing by a
// factor is not bitwise the llama3 interpolation of the directory's path).
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <nlohmann/json.hpp>

#include "partition/gguf.h"
#include "partition/hf_to_gguf.h"
#include "partition/model.h"
#include "tests/common/stage_chain.h"
#include "tests/common/test_util.h"

namespace splitlm::partition {
namespace {

TEST(HfToGgufRope, Llama3ScalingBecomesLlamaCppsFrequencyFactors) {
  testing::TempDir dir;
  const std::string hf_dir = testing::MakeModel(dir.Sub("hf"));
  nlohmann::json cfg;
  std::ifstream(hf_dir + "/config.json") >> cfg;
  // Wavelengths of a 16-wide head at theta 10000 run from 6.3 to ~2e4: with
  // an original context of 256 the three branches (1, interpolated, factor)
  // all occur.
  cfg["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", 8.0},
                         {"low_freq_factor", 1.0},
                         {"high_freq_factor", 4.0},
                         {"original_max_position_embeddings", 256}};
  std::ofstream(hf_dir + "/config.json") << cfg.dump();
  auto hf = Model::Open(hf_dir);
  ConvertToGguf(*hf, dir.Sub("m.gguf"));
  auto gguf = Model::Open(dir.Sub("m.gguf"));
  const ModelConfig& c = hf->config();
  const std::vector<float>& f = gguf->config().rope_scaling.freq_factors;
  ASSERT_EQ(static_cast<size_t>(c.head_dim / 2), f.size());
  int interpolated = 0;
  for (int i = 0; i < c.head_dim / 2; ++i) {
    const double freq = 1.0 / std::pow(c.rope_theta, 2.0 * i / c.head_dim);
    const double wavelen = 2 * M_PI / freq;
    if (wavelen < 256 / 4.0) {
      EXPECT_EQ(1.0f, f[i]) << i;
    } else if (wavelen > 256 / 1.0) {
      EXPECT_EQ(8.0f, f[i]) << i;
    } else {
      const double smooth = (256 / wavelen - 1.0) / (4.0 - 1.0);
      EXPECT_NEAR(1 / ((1 - smooth) / 8 + smooth), f[i], 1e-5) << i;
      ++interpolated;
    }
  }
  EXPECT_GT(interpolated, 0);
  EXPECT_EQ(1.0f, f.front());
  EXPECT_EQ(8.0f, f.back());
  // The file holds the factors as its first tensor, and no scaling keys.
  auto file = GgufFile::Open(dir.Sub("m.gguf"));
  EXPECT_EQ("rope_freqs.weight", file->header().tensors.front().name);
  EXPECT_EQ(nullptr, file->Find("llama.rope.scaling.type"));

  const auto prompt = testing::Prompt(12, c.vocab_size);
  const auto want = testing::RunChain(*hf, c.num_layers, prompt, 10);
  const auto got = testing::RunChain(*gguf, 2, prompt, 10);
  ASSERT_EQ(want.size(), got.size());
  for (size_t s = 0; s < want.size(); ++s) {
    EXPECT_EQ(testing::Argmax(want[s]), testing::Argmax(got[s])) << "step " << s;
    for (size_t v = 0; v < want[s].size(); ++v)
      ASSERT_NEAR(want[s][v], got[s][v], 1e-3) << "step " << s;
  }
  // Without the factors the positions past the original context differ.
  cfg.erase("rope_scaling");
  std::ofstream(hf_dir + "/config.json") << cfg.dump();
  EXPECT_NE(want, testing::RunChain(*Model::Open(hf_dir), c.num_layers, prompt, 10));
}

}  // namespace
}  // namespace splitlm::partition
