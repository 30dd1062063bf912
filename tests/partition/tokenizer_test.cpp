// Tokenizers against llama.cpp's test vectors (../shared/tokenizers/vectors:
// its test texts and the ids its reference tokenizers gave), for every file
// kind splitlm reads; BOS/EOS rules; errors for what is not supported.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "partition/added_tokens.h"
#include "partition/gguf_writer.h"
#include "partition/tokenizer.h"
#include "tests/common/test_util.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

struct Case {
  std::string text;
  std::vector<int32_t> ids;
};

// llama.cpp's test-tokenizer-0 format: NAME.inp holds the texts, each followed
// by "\n__ggml_vocab_test__\n"; NAME.out one line of ids per text.
std::vector<Case> ReadVectors(const std::string& inp, const std::string& out) {
  const std::string sep = "\n__ggml_vocab_test__\n";
  const std::string texts = ReadFile(inp);
  std::istringstream ids(ReadFile(out));
  std::vector<Case> cases;
  for (size_t pos = 0; pos < texts.size();) {
    const size_t end = texts.find(sep, pos);
    if (end == std::string::npos) break;
    Case c{texts.substr(pos, end - pos), {}};
    std::string line;
    std::getline(ids, line);
    std::istringstream ls(line);
    for (int32_t id; ls >> id;) c.ids.push_back(id);
    cases.push_back(std::move(c));
    pos = end + sep.size();
  }
  return cases;
}

void ExpectVectors(const std::string& tokenizer, const std::string& vectors) {
  auto tok = Tokenizer::Open(tokenizer);
  const std::vector<Case> cases = ReadVectors(vectors + ".inp", vectors + ".out");
  ASSERT_GE(cases.size(), 40u) << vectors;
  for (const Case& c : cases) {
    EXPECT_EQ(c.ids, tok->Encode(c.text)) << tokenizer << ": \"" << c.text << "\"";
    EXPECT_EQ(c.text, tok->Decode(c.ids)) << tokenizer;
  }
}

#define VECTOR_TEST(Name, tokenizer_rel, vectors_rel)    \
  TEST(TokenizerVectors, Name) {                         \
    REQUIRE_SHARED(tokenizer, tokenizer_rel);            \
    REQUIRE_SHARED(vectors, "tokenizers/vectors");       \
    ExpectVectors(tokenizer, vectors + "/" vectors_rel); \
  }

VECTOR_TEST(Llama3TokenizerJson, "tokenizers/llama3/tokenizer.json", "llama-bpe")
VECTOR_TEST(Llama3Gguf, "gguf/ggml-vocab-llama-bpe.gguf", "llama-bpe")
VECTOR_TEST(Qwen3TokenizerJson, "tokenizers/qwen3/tokenizer.json", "qwen2")
VECTOR_TEST(Qwen2Gguf, "gguf/ggml-vocab-qwen2.gguf", "qwen2")
VECTOR_TEST(Llama2TokenizerModel, "tokenizers/llama2/tokenizer.model", "llama-spm")
VECTOR_TEST(Llama2Gguf, "gguf/ggml-vocab-llama-spm.gguf", "llama-spm")

TEST(Tokenizer, Llama3SpecialTokensInTextAndGenerationConfigEos) {
  REQUIRE_SHARED(json, "tokenizers/llama3/tokenizer.json");
  REQUIRE_SHARED(config, "tokenizers/llama3/tokenizer_config.json");
  testing::TempDir dir;
  std::filesystem::create_symlink(json, dir.Sub("tokenizer.json"));
  std::filesystem::create_symlink(config, dir.Sub("tokenizer_config.json"));
  auto plain = Tokenizer::Open(dir.path());
  EXPECT_EQ(std::optional<int32_t>(128000), plain->bos_id());
  EXPECT_TRUE(plain->add_bos());
  EXPECT_EQ("<|begin_of_text|>", plain->bos_token());
  EXPECT_EQ("<|end_of_text|>", plain->eos_token());
  EXPECT_EQ(std::vector<int32_t>{128001}, plain->eos_ids());
  EXPECT_EQ(128256, plain->vocab_size());
  // Written in the text, special tokens are single ids, as HF encode does.
  const std::vector<int32_t> ids = plain->Encode("<|eot_id|>Hi<|eot_id");
  ASSERT_GE(ids.size(), 2u);
  EXPECT_EQ(128009, ids[0]);
  EXPECT_EQ("<|eot_id|>Hi<|eot_id", plain->Decode(ids));

  std::ofstream(dir.Sub("generation_config.json"))
      << R"({"bos_token_id": 128000, "eos_token_id": [128001, 128009]})";
  auto tok = Tokenizer::Open(dir.Sub("tokenizer.json"));
  EXPECT_EQ((std::vector<int32_t>{128001, 128009}), tok->eos_ids());
  EXPECT_TRUE(tok->IsEos(128009));
  EXPECT_FALSE(tok->IsEos(128000));
}

TEST(Tokenizer, Qwen3AddsNoBosAndStopsAtImEnd) {
  REQUIRE_SHARED(path, "tokenizers/qwen3/tokenizer.json");
  auto tok = Tokenizer::Open(path);
  EXPECT_FALSE(tok->bos_id().has_value());
  EXPECT_FALSE(tok->add_bos());
  EXPECT_EQ("<|im_end|>", tok->eos_token());
  EXPECT_EQ(std::vector<int32_t>{151645}, tok->eos_ids());
  // NFC: a decomposed accent encodes as the composed one.
  EXPECT_EQ(tok->Encode("caf\xC3\xA9"), tok->Encode("cafe\xCC\x81"));
}

TEST(Tokenizer, GgufEndOfGenerationIds) {
  REQUIRE_SHARED(path, "gguf/ggml-vocab-llama-bpe.gguf");
  auto tok = Tokenizer::Open(path);
  EXPECT_EQ(std::optional<int32_t>(128000), tok->bos_id());
  EXPECT_TRUE(tok->IsEos(128001));  // <|end_of_text|>
  EXPECT_TRUE(tok->IsEos(128009));  // <|eot_id|>
}

TEST(Tokenizer, TokenBytesConcatenateToTheText) {
  REQUIRE_SHARED(json, "tokenizers/llama3/tokenizer.json");
  REQUIRE_SHARED(gguf, "gguf/ggml-vocab-llama-spm.gguf");
  for (const std::string& path : {json, gguf}) {
    auto tok = Tokenizer::Open(path);
    const std::string text =
        "na\xC3\xAFve \xF0\x9F\xA6\x99 \xE7\xA9\xBA\xE6\xB0\x97 "
        "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9";
    std::string joined;
    for (int32_t id : tok->Encode(text)) joined += tok->TokenBytes(id);
    if (!joined.empty() && joined[0] == ' ' && text[0] != ' ')
      joined.erase(0, 1);  // SentencePiece's prefix space
    EXPECT_EQ(text, joined) << path;
    EXPECT_THROW(tok->TokenBytes(tok->vocab_size()), Exception);
    EXPECT_THROW(tok->Decode({-1}), Exception);
  }
}

TEST(Tokenizer, DecodeReplacesAnIncompleteCharacter) {
  REQUIRE_SHARED(json, "tokenizers/llama3/tokenizer.json");
  auto tok = Tokenizer::Open(json);
  // A character cut between byte tokens: the lone bytes become U+FFFD.
  std::vector<int32_t> ids = tok->Encode("\xF0\x9F\xA6\x99");
  ASSERT_GE(ids.size(), 2u);
  std::string first = tok->TokenBytes(ids[0]);
  EXPECT_LT(first.size(), 4u);
  EXPECT_EQ("\xEF\xBF\xBD", tok->Decode({ids[0]}));
}

TEST(Tokenizer, RejectsInvalidUtf8) {
  REQUIRE_SHARED(json, "tokenizers/qwen3/tokenizer.json");
  auto tok = Tokenizer::Open(json);
  try {
    tok->Encode("ok\xC3(");
    FAIL();
  } catch (const Exception& e) {
    EXPECT_NE(std::string(e.what()).find("not valid UTF-8 (at byte 2)"), std::string::npos)
        << e.what();
  }
}

// A byte-level tokenizer.json: the 256 byte tokens (ids 0..255 in byte
// order, written as GPT-2's byte-to-unicode map writes them), then "ab" 256,
// "bc" 257, "abc" 258, added token "<x>" 300, and `merges`.
std::string TinyTokenizerJson(const std::string& normalizer, const std::string& decoder,
                              const std::string& merges, const std::string& model_extra = "") {
  std::string vocab;
  int next = 256;
  for (int b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174;
    const int cp = printable ? b : next++;
    std::string utf8;
    if (cp < 0x80) {
      utf8 = std::string(1, static_cast<char>(cp));
    } else {
      utf8 = {static_cast<char>(0xC0 | (cp >> 6)), static_cast<char>(0x80 | (cp & 0x3F))};
    }
    if (utf8 == "\"" || utf8 == "\\") utf8 = "\\" + utf8;
    vocab += "\"" + utf8 + "\": " + std::to_string(b) + ", ";
  }
  vocab += R"("ab": 256, "bc": 257, "abc": 258)";
  return std::string(R"({"normalizer": )") + normalizer +
         R"(, "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true},
  "decoder": )" +
         decoder + R"(, "added_tokens": [{"id": 300, "content": "<x>"}],
  "model": {"type": "BPE", "vocab": {)" +
         vocab + R"(}, "merges": )" + merges + model_extra + "}}";
}

std::string OpenError(const std::string& path) {
  try {
    Tokenizer::Open(path);
  } catch (const Exception& e) {
    return e.what();
  }
  return "";
}

TEST(Tokenizer, RefusesWhatItDoesNotImplementNamingTheFileAndFeature) {
  testing::TempDir dir;
  const std::string bytelevel = R"({"type": "ByteLevel"})";
  std::ofstream(dir.Sub("lower.json"))
      << TinyTokenizerJson(R"({"type": "Lowercase"})", bytelevel, "[]");
  std::ofstream(dir.Sub("meta.json"))
      << TinyTokenizerJson("null", R"({"type": "Metaspace"})", "[]");
  std::ofstream(dir.Sub("fallback.json"))
      << TinyTokenizerJson("null", bytelevel, "[]", R"(, "byte_fallback": true)");
  std::ofstream(dir.Sub("badmerge.json")) << TinyTokenizerJson("null", bytelevel, R"(["a q"])");
  std::ofstream(dir.Sub("broken.json")) << "{\"model\": ";
  std::string e = OpenError(dir.Sub("lower.json"));
  EXPECT_NE(e.find(dir.Sub("lower.json") + ": unsupported normalizer \"Lowercase\""),
            std::string::npos)
      << e;
  e = OpenError(dir.Sub("meta.json"));
  EXPECT_NE(e.find("decoder \"Metaspace\""), std::string::npos) << e;
  EXPECT_NE(e.find("tokenizer.model"), std::string::npos) << e;
  e = OpenError(dir.Sub("fallback.json"));
  EXPECT_NE(e.find("byte_fallback"), std::string::npos) << e;
  e = OpenError(dir.Sub("badmerge.json"));
  EXPECT_NE(e.find("merge 0 (\"a q\") uses a token that is not in the vocabulary"),
            std::string::npos)
      << e;
  e = OpenError(dir.Sub("broken.json"));
  EXPECT_NE(e.find(dir.Sub("broken.json") + ": not valid JSON"), std::string::npos) << e;
  e = OpenError(dir.Sub("missing.json"));
  EXPECT_NE(e.find("not found"), std::string::npos) << e;
  e = OpenError(dir.path());
  EXPECT_NE(e.find("without tokenizer.model or tokenizer.json"), std::string::npos) << e;
}

TEST(Tokenizer, TinyByteLevelBpeMergesByRank) {
  testing::TempDir dir;
  const std::string bl = R"({"type": "ByteLevel"})";
  // "a b" first: a b c -> ab c -> abc. "b c" first: a b c -> a bc, and no
  // merge joins a and bc. With ignore_merges, a word in the vocabulary is one token.
  std::ofstream(dir.Sub("ab_first.json"))
      << TinyTokenizerJson("null", bl, R"(["a b", "b c", "ab c"])");
  std::ofstream(dir.Sub("bc_first.json"))
      << TinyTokenizerJson("null", bl, R"([["b", "c"], ["a", "b"], ["ab", "c"]])");
  std::ofstream(dir.Sub("ignore.json"))
      << TinyTokenizerJson("null", bl, R"(["b c", "a b", "ab c"])", R"(, "ignore_merges": true)");
  auto ab = Tokenizer::Open(dir.Sub("ab_first.json"));
  auto bc = Tokenizer::Open(dir.Sub("bc_first.json"));
  auto ig = Tokenizer::Open(dir.Sub("ignore.json"));
  EXPECT_EQ((std::vector<int32_t>{258}), ab->Encode("abc"));
  EXPECT_EQ((std::vector<int32_t>{'a', 257}), bc->Encode("abc"));
  EXPECT_EQ((std::vector<int32_t>{258}), ig->Encode("abc"));
  EXPECT_EQ((std::vector<int32_t>{'a', 257, 'd'}),
            ig->Encode("abcd"));  // not in the vocabulary: merges
  // The added token is found first; the rest splits with the GPT-2 regex.
  EXPECT_EQ((std::vector<int32_t>{256, 300, ' ', 'c'}), ab->Encode("ab<x> c"));
  EXPECT_EQ("ab<x> c", ab->Decode({256, 300, ' ', 'c'}));
  EXPECT_EQ(301, ab->vocab_size());
  EXPECT_EQ("", ab->TokenBytes(299));  // an id without a token adds nothing
}

// Hugging Face's AddedToken flags: lstrip/rstrip drop the whitespace beside
// the token (Unicode White_Space, not just ASCII); single_word matches only
// between non-word characters, and a refused match stays text.
TEST(Tokenizer, AddedTokenStripAndSingleWord) {
  AddedTokenOptions l, r, w;
  l.lstrip = true;
  r.rstrip = true;
  w.single_word = true;
  const AddedTokenMatcher m({{"<L>", 1}, {"<R>", 2}, {"cat", 3}, {"<P>", 4}}, {l, r, w});
  auto split = [&](std::string_view text) {
    std::string out;
    for (const auto& p : m.Split(text))
      out += p.id >= 0 ? "[" + std::to_string(p.id) + "]" : "{" + std::string(p.text) + "}";
    return out;
  };
  EXPECT_EQ("{a}[1]{ b}", split("a \t\n<L> b"));
  EXPECT_EQ("{a }[2]{b }", split("a <R>  \u3000b "));  // U+3000 is White_Space
  EXPECT_EQ("[1]{  }[2]", split(" <L>  <R> "));        // <R> strips only after itself
  EXPECT_EQ("{x }[4]{ y}", split("x <P> y"));          // no flags: nothing dropped
  EXPECT_EQ("{a }[3]{ b}", split("a cat b"));
  EXPECT_EQ("[3]{.}", split("cat."));
  EXPECT_EQ("{cats cat_ \u00e9cat}",
            split("cats cat_ \u00e9cat"));  // next to word characters: text
  EXPECT_EQ("{a}[1]", split("a\u00a0<L>"));
}

// A GGUF file with only string keys.
void WriteGguf(const std::string& path,
               const std::vector<std::pair<std::string, std::string>>& keys) {
  GgufWriter w(path);
  for (const auto& [k, v] : keys) {
    GgufValue value;
    value.type = GgufType::kString;
    value.text = v;
    w.AddKeyValue(k, value);
  }
  w.Commit();
}

TEST(Tokenizer, GgufWithoutOrWithAnUnknownVocabularyIsAClearError) {
  testing::TempDir dir;
  WriteGguf(dir.Sub("none.gguf"), {{"general.architecture", "llama"}});
  WriteGguf(dir.Sub("bert.gguf"), {{"tokenizer.ggml.model", "bert"}});
  WriteGguf(dir.Sub("falcon.gguf"),
            {{"tokenizer.ggml.model", "gpt2"}, {"tokenizer.ggml.pre", "falcon"}});
  std::string e = OpenError(dir.Sub("none.gguf"));
  EXPECT_NE(e.find(dir.Sub("none.gguf") + ": no tokenizer.ggml.model"), std::string::npos) << e;
  e = OpenError(dir.Sub("bert.gguf"));
  EXPECT_NE(e.find(dir.Sub("bert.gguf") + ": unsupported tokenizer.ggml.model \"bert\""),
            std::string::npos)
      << e;
  e = OpenError(dir.Sub("falcon.gguf"));
  EXPECT_NE(e.find(dir.Sub("falcon.gguf") + ": unsupported tokenizer.ggml.pre \"falcon\""),
            std::string::npos)
      << e;
}

TEST(Tokenizer, RejectsMissingAndInvalidFiles) {
  testing::TempDir dir;
  EXPECT_THROW(Tokenizer::Open(dir.Sub("missing.model")), Exception);
  std::ofstream(dir.Sub("bad.model")) << "not a sentencepiece model";
  const std::string e = OpenError(dir.Sub("bad.model"));
  EXPECT_NE(e.find("not a SentencePiece model"), std::string::npos) << e;
}

TEST(Tokenizer, LoadsTheSentencePieceShimTheOptionsName) {
  testing::TempDir dir;
  std::ofstream(dir.Sub("tokenizer.model")) << "not a sentencepiece model";
  TokenizerOptions options;
  options.spm_shim = dir.Sub("no-such-shim.so");
  try {
    Tokenizer::Open(dir.Sub("tokenizer.model"), options);
    FAIL() << "opened a SentencePiece model without its shim";
  } catch (const Exception& e) {
    EXPECT_EQ(Exception::kUnavailable, e.code());
    EXPECT_NE(std::string(e.what()).find("cannot load the SentencePiece shim " + options.spm_shim),
              std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace splitlm::partition
