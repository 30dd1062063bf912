// Checks on the real data in ../shared: the stories260K checkpoint and the
// Llama 2 tokenizer. A clone without ../shared skips these, saying why.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "partition/model.h"
#include "partition/sampler.h"
#include "partition/stage.h"
#include "partition/tokenizer.h"
#include "tests/common/stories260k.h"
#include "tests/common/test_util.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

TEST(Stories260K, GreedyFromBosMatchesTheReferenceAtEveryCut) {
  REQUIRE_SHARED(dir, "models/stories260K");
  auto m = Model::Open(dir);
  const std::vector<int32_t>& expected = testing::Stories260KGreedyFromBos();
  for (int cut = 0; cut <= m->config().num_layers; ++cut) {
    EXPECT_EQ(expected, testing::GreedySplit(*m, cut, {1}, static_cast<int>(expected.size())))
        << "cut " << cut;
  }
}

TEST(Llama2Tokenizer, EncodesAndDecodes) {
  REQUIRE_SHARED(path, "tokenizers/llama2/tokenizer.model");
  auto tok = Tokenizer::Open(path);
  EXPECT_EQ(32000, tok->vocab_size());
  auto ids = tok->Encode("Once upon a time");
  EXPECT_EQ((std::vector<int32_t>{9038, 2501, 263, 931}), ids);
  EXPECT_EQ("Once upon a time", tok->Decode(ids));
  EXPECT_THROW(tok->Decode({40000}), Exception);
}

TEST(TokenizerTest, RejectsMissingAndInvalidFiles) {
  testing::TempDir dir;
  EXPECT_THROW(Tokenizer::Open(dir.Sub("missing.model")), Exception);
  std::ofstream(dir.Sub("bad.model")) << "not a sentencepiece model";
  try {
    Tokenizer::Open(dir.Sub("bad.model"));
    FAIL();
  } catch (const Exception& e) {
    EXPECT_NE(std::string(e.what()).find("not a SentencePiece model"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace splitlm::partition
