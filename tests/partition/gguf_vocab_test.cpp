// The tokenizer of a converted or quantised model directory: the
// tokenizer.ggml.* keys equal those llama.cpp's converter wrote for the same
// tokenizer (../shared/gguf/ggml-vocab-*.gguf), and the written file's
// tokenizer encodes and decodes llama.cpp's test texts exactly as the
// directory's tokenizer does.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include "partition/gguf.h"
#include "partition/gguf_quantize.h"
#include "partition/gguf_tokenizer.h"
#include "partition/gguf_vocab.h"
#include "partition/hf_to_gguf.h"
#include "partition/model.h"
#include "partition/spm_model_proto.h"
#include "partition/tokenizer.h"
#include "tests/common/test_util.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The texts of a llama.cpp vocabulary test file, split at its separator lines.
std::vector<std::string> Texts(const std::string& inp) {
  const std::string all = ReadAll(inp), sep = "\n__ggml_vocab_test__\n";
  std::vector<std::string> out;
  size_t start = 0;
  for (size_t at = all.find(sep); at != std::string::npos; at = all.find(sep, start)) {
    out.push_back(all.substr(start, at - start));
    start = at + sep.size();
  }
  return out;
}

// Every tokenizer.* key of llama.cpp's file is in ours, with the same type
// and value.
void ExpectSameTokenizerKeys(const GgufFile& reference, const GgufFile& ours) {
  int compared = 0;
  for (const std::string& key : reference.header().key_order) {
    if (key.rfind("tokenizer.", 0) != 0) continue;
    ++compared;
    const GgufValue& want = *reference.Find(key);
    const GgufValue* got = ours.Find(key);
    ASSERT_NE(nullptr, got) << key;
    EXPECT_EQ(want.type, got->type) << key;
    EXPECT_EQ(want.element_type, got->element_type) << key;
    EXPECT_EQ(want.integer, got->integer) << key;
    EXPECT_EQ(want.text, got->text) << key;
    EXPECT_EQ(want.integers, got->integers) << key;
    EXPECT_EQ(want.reals, got->reals) << key;
    EXPECT_EQ(want.texts, got->texts) << key;
  }
  EXPECT_GE(compared, 5);
}

// The tokenizers of `dir` and of the GGUF file agree on every text.
void ExpectSameTokenization(const std::string& dir, const GgufFile& gguf, const std::string& inp) {
  auto source = Tokenizer::Open(dir);
  auto written = OpenGgufTokenizer(gguf);
  ASSERT_EQ(source->vocab_size(), written->vocab_size());
  EXPECT_EQ(source->bos_id(), written->bos_id());
  EXPECT_EQ(source->add_bos(), written->add_bos());
  EXPECT_EQ(source->eos_token(), written->eos_token());
  const std::vector<std::string> texts = Texts(inp);
  ASSERT_GE(texts.size(), 20u);
  for (const std::string& text : texts) {
    const std::vector<int32_t> ids = source->Encode(text);
    EXPECT_EQ(ids, written->Encode(text)) << text;
    EXPECT_EQ(source->Decode(ids), written->Decode(ids)) << text;
  }
}

// A random-weight model directory with the tokenizer at `tokenizer`.
std::string ModelWith(const testing::TempDir& dir, const std::string& tokenizer) {
  RandomModelOptions options;
  options.tokenizer = tokenizer;
  return testing::MakeModel(dir.Sub("hf"), options);
}

TEST(GgufVocab, SentencePieceModelGivesLlamaCppsKeysAndTheSameTokens) {
  REQUIRE_SHARED(spm, "tokenizers/llama2/tokenizer.model");
  REQUIRE_SHARED(reference, "gguf/ggml-vocab-llama-spm.gguf");
  REQUIRE_SHARED(inp, "tokenizers/vectors/llama-spm.inp");
  testing::TempDir dir;
  const std::string hf = ModelWith(dir, spm);
  EXPECT_TRUE(ConvertToGguf(*Model::Open(hf), dir.Sub("m.gguf")).empty());
  auto ours = GgufFile::Open(dir.Sub("m.gguf"));
  ExpectSameTokenizerKeys(*GgufFile::Open(reference), *ours);
  ExpectSameTokenization(hf, *ours, inp);
}

TEST(GgufVocab, ByteLevelBpeGivesLlamaCppsKeysAndTheSameTokens) {
  REQUIRE_SHARED(json, "tokenizers/llama3/tokenizer.json");
  REQUIRE_SHARED(reference, "gguf/ggml-vocab-llama-bpe.gguf");
  REQUIRE_SHARED(inp, "tokenizers/vectors/llama-bpe.inp");
  testing::TempDir dir;
  const std::string hf = ModelWith(dir, json);
  EXPECT_TRUE(ConvertToGguf(*Model::Open(hf), dir.Sub("m.gguf")).empty());
  auto ours = GgufFile::Open(dir.Sub("m.gguf"));
  ExpectSameTokenizerKeys(*GgufFile::Open(reference), *ours);
  ExpectSameTokenization(hf, *ours, inp);
}

TEST(GgufVocab, QwenTokenizerIsWrittenWithItsPreTokenizer) {
  REQUIRE_SHARED(json, "tokenizers/qwen3/tokenizer.json");
  REQUIRE_SHARED(inp, "tokenizers/vectors/qwen2.inp");
  testing::TempDir dir;
  const std::string hf = ModelWith(dir, json);
  EXPECT_TRUE(ConvertToGguf(*Model::Open(hf), dir.Sub("m.gguf")).empty());
  auto ours = GgufFile::Open(dir.Sub("m.gguf"));
  EXPECT_EQ("qwen2", ours->Find("tokenizer.ggml.pre")->text);
  ExpectSameTokenization(hf, *ours, inp);
}

TEST(GgufVocab, QuantisedFileKeepsTheTokenizer) {
  REQUIRE_SHARED(spm, "tokenizers/llama2/tokenizer.model");
  REQUIRE_SHARED(inp, "tokenizers/vectors/llama-spm.inp");
  testing::TempDir dir;
  const std::string hf = ModelWith(dir, spm);
  ConvertToGguf(*Model::Open(hf), dir.Sub("f32.gguf"));
  QuantizeOptions options;
  options.target = *ParseQuantizeTarget("q8_0");
  QuantizeGguf(dir.Sub("f32.gguf"), dir.Sub("q8.gguf"), options);
  ExpectSameTokenization(hf, *GgufFile::Open(dir.Sub("q8.gguf")), inp);
}

TEST(GgufVocab, VocabularyLargerThanTheModelIsNotWrittenAndSaysWhy) {
  REQUIRE_SHARED(spm, "tokenizers/llama2/tokenizer.model");
  testing::TempDir dir;
  RandomModelOptions options;
  options.tokenizer = spm;
  options.vocab = 1000;
  const std::string hf = testing::MakeModel(dir.Sub("hf"), options);
  const std::vector<std::string> notes = ConvertToGguf(*Model::Open(hf), dir.Sub("m.gguf"));
  ASSERT_EQ(1u, notes.size());
  EXPECT_NE(std::string::npos, notes[0].find("more than the model's 1000 token rows")) << notes[0];
  EXPECT_EQ("none", GgufFile::Open(dir.Sub("m.gguf"))->Find("tokenizer.ggml.model")->text);
}

TEST(GgufVocab, DirectoryWithoutTokenizerWritesNone) {
  testing::TempDir dir;
  const std::string hf = testing::MakeModel(dir.Sub("hf"));
  EXPECT_TRUE(ReadGgufVocab(hf, 256).keys.empty());
  ConvertToGguf(*Model::Open(hf), dir.Sub("m.gguf"));
  EXPECT_EQ("none", GgufFile::Open(dir.Sub("m.gguf"))->Find("tokenizer.ggml.model")->text);
}

TEST(GgufVocab, MalformedTokenizerJsonIsAnErrorNamingTheFile) {
  testing::TempDir dir;
  const std::string hf = testing::MakeModel(dir.Sub("hf"));
  for (const char* text : {"{\"model\": {\"type\": 3}}",
                           "{\"model\": {\"type\": \"BPE\", \"vocab\": {\"a\": \"x\"}}, "
                           "\"pre_tokenizer\": {\"type\": \"ByteLevel\"}}",
                           "not json"}) {
    std::ofstream(hf + "/tokenizer.json") << text;
    try {
      ReadGgufVocab(hf, 256);
      ADD_FAILURE() << text << " was read";
    } catch (const Exception& e) {
      EXPECT_NE(std::string::npos, std::string(e.what()).find(hf + "/tokenizer.json")) << e.what();
    }
  }
}

TEST(SpmModelProto, TruncatedOrMalformedFilesAreErrorsNamingTheFile) {
  REQUIRE_SHARED(spm, "tokenizers/llama2/tokenizer.model");
  const std::string bytes = ReadAll(spm);
  const SpmModelProto m = ParseSpmModelProto(bytes, spm);
  EXPECT_EQ(32000u, m.pieces.size());
  EXPECT_EQ(2, m.model_type);
  for (size_t cut : {size_t{0}, size_t{1}, size_t{7}, bytes.size() / 2, bytes.size() - 1}) {
    try {
      ParseSpmModelProto(bytes.substr(0, cut), "x.model");
      ADD_FAILURE() << "cut at " << cut << " parsed";
    } catch (const Exception& e) {
      EXPECT_EQ(0u, std::string(e.what()).find("x.model: not a SentencePiece model")) << e.what();
    }
  }
  EXPECT_THROW(ParseSpmModelProto(std::string("\x0a\xff\xff\xff\xff\x0f", 6), "x.model"),
               Exception);
  EXPECT_THROW(ParseSpmModelProto(std::string("\x0f", 1), "x.model"), Exception);
  EXPECT_THROW(ReadSpmModelProto("/nonexistent/tokenizer.model"), Exception);
}

}  // namespace
}  // namespace splitlm::partition
