// Where chat templates come from (built-in names, files, tokenizer_config.json,
// GGUF) and how a template that cannot be used is reported.
#include <gtest/gtest.h>

#include <fstream>

#include "device/chat_template.h"
#include "tests/common/test_util.h"
#include "transport/error.h"

namespace splitlm::device {
namespace {

using nlohmann::json;

void Write(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

std::string ErrorOf(const std::function<void()>& f) {
  try {
    f();
  } catch (const Exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(ChatTemplate, EveryBuiltInRendersAConversation) {
  ASSERT_EQ((std::vector<std::string>{"chatml", "llama2", "llama3", "mistral", "zephyr"}),
            BuiltinChatTemplateNames());
  const json messages = {{{"role", "system"}, {"content", "S"}},
                         {{"role", "user"}, {"content", "U"}}};
  for (const auto& name : BuiltinChatTemplateNames()) {
    ChatTemplateSource s = LoadChatTemplate(name);
    s.bos_token = "<s>";
    s.eos_token = "</s>";
    const std::string text = ChatTemplate(s).Render(messages, true);
    EXPECT_NE(std::string::npos, text.find('U')) << name;
    EXPECT_NE(std::string::npos, text.find('S')) << name;
  }
  EXPECT_EQ("<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n",
            ChatTemplate(LoadChatTemplate("chatml"))
                .Render({{{"role", "user"}, {"content", "U"}}}, true));
}

TEST(ChatTemplate, AnUnknownNameOrAnUnusableTemplateNamesTheWayOut) {
  EXPECT_EQ(
      "chat template nope: neither a built-in template (chatml, llama2, llama3, mistral, zephyr) "
      "nor a file",
      ErrorOf([] { LoadChatTemplate("nope"); }));
  testing::TempDir dir;
  Write(dir.Sub("t.jinja"), "{% for m in messages %}{{ m.content | wordcount }}{% endfor %}");
  EXPECT_EQ(
      "chat template, line 1, column 39: unsupported filter wordcount (template of " +
          dir.Sub("t.jinja") +
          "); choose a chat template by name (chatml, llama2, llama3, mistral, zephyr) or file",
      ErrorOf([&] { ChatTemplate(LoadChatTemplate(dir.Sub("t.jinja"))); }));
  Write(dir.Sub("u.jinja"), "{% filter upper %}x{% endfilter %}");
  EXPECT_EQ("the chat template of " + dir.Sub("u.jinja") +
                " cannot be used: chat template, line 1, column 1: "
                "unsupported statement {% filter %}; choose a chat template by name (chatml, "
                "llama2, llama3, mistral, zephyr) or file",
            ErrorOf([&] { ChatTemplate(LoadChatTemplate(dir.Sub("u.jinja"))); }));
}

TEST(ChatTemplate, TheModelDirectorysTokenizerConfigGivesTemplateAndTokens) {
  testing::TempDir dir;
  EXPECT_TRUE(ModelChatTemplate(dir.path()).source.empty());
  Write(
      dir.Sub("tokenizer_config.json"),
      R"({"bos_token": {"content": "<B>", "lstrip": false}, "eos_token": "<E>", "chat_template": "{{ bos_token }}{{ messages[0].content }}{{ eos_token }}"})");
  const ChatTemplateSource s = ModelChatTemplate(dir.path());
  EXPECT_EQ("<B>", s.bos_token);
  EXPECT_EQ("<E>", s.eos_token);
  EXPECT_EQ("<B>hi<E>", ChatTemplate(s).Render({{{"role", "user"}, {"content", "hi"}}}, true));
  Write(dir.Sub("tokenizer_config.json"), R"({"chat_template": 5})");
  EXPECT_EQ(dir.Sub("tokenizer_config.json") +
                ": \"chat_template\" is neither a string nor a list holding a \"default\" "
                "template; choose a chat template by name (chatml, llama2, llama3, mistral, "
                "zephyr) or file",
            ErrorOf([&] { ModelChatTemplate(dir.path()); }));
  Write(dir.Sub("tokenizer_config.json"), "{");
  EXPECT_EQ(dir.Sub("tokenizer_config.json") + " is not a JSON object",
            ErrorOf([&] { ModelChatTemplate(dir.path()); }));
}

TEST(ChatTemplate, AGgufCarriesItsTemplateAndTokenStrings) {
  REQUIRE_SHARED(gguf, "gguf/ggml-vocab-qwen2.gguf");
  const ChatTemplateSource s = ModelChatTemplate(gguf);
  EXPECT_NE(std::string::npos, s.source.find("<|im_start|>"));
  EXPECT_FALSE(s.eos_token.empty());
  EXPECT_EQ(s.source, LoadChatTemplate(gguf).source);
  REQUIRE_SHARED(bare, "gguf/stories260K-f32.gguf");
  EXPECT_TRUE(ModelChatTemplate(bare).source.empty());
  EXPECT_NE(std::string::npos, ErrorOf([&] {
                                 LoadChatTemplate(bare);
                               }).find("has no GGUF key tokenizer.chat_template"));
}

}  // namespace
}  // namespace splitlm::device
