// The device's OpenAI-compatible API in-process (an all-local agent, a fake
// responder): prompts follow the one rule of partition::ValidatePrompt, and
// bad token ids are reported as they were sent.
#include <gtest/gtest.h>

#include <algorithm>
#include <sstream>

#include <nlohmann/json.hpp>

#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>

#include <thread>

#include "cloud/worker.h"
#include "device/agent.h"
#include "device/draft_model_drafter.h"
#include "device/early_exit_drafter.h"
#include "device/openai_api.h"
#include "device/text_stream.h"
#include "partition/model.h"
#include "tests/common/test_util.h"

namespace splitlm {
namespace {

using nlohmann::json;

class Captured : public transport::HttpResponder {
 public:
  void Send(int status, const std::string&, const std::string& body) override {
    status_ = status;
    body_ = body;
  }
  void Start(int status, const std::string&) override { status_ = status; }
  bool Write(const std::string& chunk) override {
    body_ += chunk;
    return true;
  }
  int status_ = 0;
  std::string body_;
};

class OpenAiApiTest : public ::testing::Test {
 protected:
  OpenAiApiTest()
      : model_(partition::Model::Open(testing::MakeModel(dir_.Sub("tiny")))),
        agent_(*model_, LocalOptions(*model_), ctx_, metrics_),
        api_(agent_, nullptr, metrics_, Options()) {}
  static device::ApiOptions Options() {
    device::ApiOptions o;
    o.model_name = "tiny";
    o.default_max_tokens = 4;
    return o;
  }
  static device::AgentOptions LocalOptions(const partition::Model& m) {
    device::AgentOptions o;
    o.cut = m.config().num_layers;
    return o;
  }
  Captured Post(const json& body) {
    Captured c;
    api_.Handle({"POST", "/v1/completions", {}, body.dump()}, c);
    return c;
  }
  std::string ErrorMessage(const Captured& c) {
    return json::parse(c.body_)["error"]["message"].get<std::string>();
  }

  testing::TempDir dir_;
  std::unique_ptr<partition::Model> model_;
  zmq::context_t ctx_;
  transport::Metrics metrics_;
  device::Agent agent_;
  device::OpenAiApi api_;
};

TEST_F(OpenAiApiTest, APromptAsLongAsTheContextIsRefusedOneShorterIsServed) {
  const int context = model_->config().max_context;
  auto full = Post({{"prompt", std::vector<int>(context, 1)}, {"max_tokens", 1}});
  EXPECT_EQ(400, full.status_) << full.body_;
  EXPECT_EQ(
      "prompt of 256 tokens does not fit the context of 256: at most 255, leaving room for one "
      "generated token",
      ErrorMessage(full));
  auto fits = Post({{"prompt", std::vector<int>(context - 1, 1)}, {"max_tokens", 1}});
  ASSERT_EQ(200, fits.status_) << fits.body_;
  EXPECT_EQ(1, json::parse(fits.body_)["usage"]["completion_tokens"].get<int>());
}

TEST_F(OpenAiApiTest, BadTokenIdsAreReportedAsSent) {
  auto sent = [&](const std::string& ids) {
    Captured c;
    api_.Handle({"POST", "/v1/completions", {}, R"({"prompt": [)" + ids + "]}"}, c);
    EXPECT_EQ(400, c.status_) << ids;
    return ErrorMessage(c);
  };
  EXPECT_EQ("prompt token id 9223372036854775808 is outside the vocabulary of 256",
            sent("1, 9223372036854775808"));
  EXPECT_EQ("prompt token id 18446744073709551615 is outside the vocabulary of 256",
            sent("18446744073709551615"));
  EXPECT_EQ("prompt token id -1 is outside the vocabulary of 256", sent("-1"));
  EXPECT_EQ("prompt token id 256 is outside the vocabulary of 256", sent("256"));
  EXPECT_EQ("prompt token id 1.5 is not an integer", sent("1.5"));
  EXPECT_EQ("prompt token id 1e+300 is outside the vocabulary of 256", sent("1e300"));
}

TEST_F(OpenAiApiTest, IntegersTooLargeForTheirFieldAreRefusedNotWrapped) {
  auto c = Post({{"prompt", {1, 2}}, {"top_k", 4294967297u}});
  EXPECT_EQ(400, c.status_) << c.body_;
  EXPECT_EQ("\"top_k\" = 4294967297 is out of range", ErrorMessage(c));
  c = Post({{"prompt", {1, 2}}, {"max_tokens", -4294967295LL}});
  EXPECT_EQ(400, c.status_) << c.body_;
  EXPECT_EQ("\"max_tokens\" = -4294967295 is out of range", ErrorMessage(c));
}

// With speculation on, a split agent streams exactly the text of the local
// agent, greedy and sampled, for every drafter (the text of a run without a
// tokenizer is its ids).
TEST_F(OpenAiApiTest, ASpeculativeSplitStreamsTheLocalText) {
  auto quiet =
      std::make_shared<spdlog::logger>("test", std::make_shared<spdlog::sinks::null_sink_mt>());
  cloud::WorkerOptions wo;
  wo.server.bind = "tcp://127.0.0.1:*";
  wo.server.log = quiet;
  wo.log = quiet;
  transport::Metrics cloud_metrics;
  cloud::Worker worker(*model_, wo, ctx_, cloud_metrics);
  std::atomic<bool> stop{false};
  std::thread thread([&] { worker.Run(stop); });
  const std::vector<std::shared_ptr<const device::Drafter>> drafters = {
      std::make_shared<device::PromptLookupDrafter>(),
      std::make_shared<device::EarlyExitDrafter>(*model_),
      std::make_shared<device::DraftModelDrafter>(model_->dir(), *model_)};
  for (const auto& drafter : drafters) {
    for (double temperature : {0.0, 1.0}) {
      SCOPED_TRACE(drafter->name() + ", temperature " + std::to_string(temperature));
      const json body = {{"prompt", {1, 5, 9, 1, 5}},
                         {"max_tokens", 24},
                         {"temperature", temperature},
                         {"seed", 11}};
      const auto want = json::parse(Post(body).body_)["choices"][0]["text"].get<std::string>();
      device::AgentOptions o;
      o.cut = 1;
      o.fallback = device::Fallback::kFail;
      o.channel.endpoint = worker.endpoint();
      o.log = quiet;
      o.drafter = drafter;
      transport::Metrics m;
      device::Agent agent(*model_, o, ctx_, m);
      device::OpenAiApi api(agent, nullptr, m, Options());
      json streamed = body;
      streamed["stream"] = true;
      Captured c;
      api.Handle({"POST", "/v1/completions", {}, streamed.dump()}, c);
      ASSERT_EQ(200, c.status_) << c.body_;
      std::string joined;
      int chunks = 0;
      for (size_t p = 0; (p = c.body_.find("data: ", p)) != std::string::npos;) {
        const size_t e = c.body_.find("\n\n", p);
        const std::string data = c.body_.substr(p + 6, e - p - 6);
        p = e;
        if (data == "[DONE]") continue;
        const json event = json::parse(data);
        const json& choice = event["choices"][0];
        if (!choice.contains("text")) continue;
        const std::string d = choice["text"].get<std::string>();
        chunks += d.empty() ? 0 : 1;
        joined += d;
      }
      EXPECT_EQ(want, joined);
      EXPECT_GT(chunks, 5) << "streamed as accepted, not at the end";
      EXPECT_GT(m.Get("splitlm_device_drafts_total"), 0);
    }
  }
  stop = true;
  thread.join();
}

// The API with a text codec: ids in the prompt are bytes, and the i-th
// generated token decodes to the i-th byte of `script_` whatever its id (so
// the text is known in advance while the model chooses the ids).
class OpenAiTextTest : public OpenAiApiTest {
 protected:
  std::unique_ptr<device::OpenAiApi> Api(
      std::shared_ptr<const device::ChatTemplate> templ = nullptr,
      std::vector<int32_t> eos_ids = {}) {
    device::TextCodec codec;
    codec.encode = [](const std::string& text) {
      std::vector<int32_t> ids;
      for (unsigned char c : text) ids.push_back(c);
      return ids;
    };
    codec.decode = [this](const std::vector<int32_t>& ids) {
      return script_.substr(0, ids.size());
    };
    device::ApiOptions o = Options();
    o.chat_template = std::move(templ);
    o.eos_ids = std::move(eos_ids);
    return std::make_unique<device::OpenAiApi>(agent_, codec, metrics_, o);
  }
  static Captured Call(device::OpenAiApi& api, const std::string& path, const json& body) {
    Captured c;
    api.Handle({"POST", path, {}, body.dump()}, c);
    return c;
  }
  // The JSON events of a server-sent event stream, [DONE] excluded.
  static std::vector<json> Events(const std::string& body) {
    std::vector<json> events;
    size_t p = 0;
    while ((p = body.find("data: ", p)) != std::string::npos) {
      const size_t e = body.find("\n\n", p);
      const std::string data = body.substr(p + 6, e - p - 6);
      if (data != "[DONE]") events.push_back(json::parse(data));
      p = e;
    }
    return events;
  }
  // The greedy ids the model generates after `prompt` (read with no codec:
  // the text is then the ids).
  std::vector<int32_t> GreedyIds(const std::vector<int>& prompt, int n) {
    auto c = Post({{"prompt", prompt}, {"max_tokens", n}, {"temperature", 0}});
    std::istringstream in(json::parse(c.body_)["choices"][0]["text"].get<std::string>());
    std::vector<int32_t> ids;
    for (int32_t id; in >> id;) ids.push_back(id);
    return ids;
  }
  std::string script_;
};

TEST_F(OpenAiTextTest, AStreamNeverCarriesHalfACharacter) {
  script_ = "你好，世界！😀 ok 👨‍👩‍👧 ñ";
  const int n = static_cast<int>(script_.size());
  for (int id : GreedyIds({1, 5, 9}, n))
    ASSERT_FALSE(model_->config().IsEos(id)) << "the test needs a run without EOS";
  auto api = Api();
  auto c = Call(*api, "/v1/completions",
                {{"prompt", "x"}, {"max_tokens", n}, {"temperature", 0}, {"stream", true}});
  ASSERT_EQ(200, c.status_);
  std::string joined;
  int chunks = 0;
  for (const auto& e : Events(c.body_)) {
    const std::string d = e["choices"][0]["text"].get<std::string>();
    EXPECT_EQ(device::Utf8Lossy(d), d);
    EXPECT_EQ(d.size(), device::Utf8CompleteLength(d)) << "a chunk ends inside a character";
    chunks += d.empty() ? 0 : 1;
    joined += d;
  }
  EXPECT_EQ(script_, joined);
  EXPECT_GT(chunks, 5);  // streamed, not sent at the end
  auto whole =
      Call(*api, "/v1/completions", {{"prompt", "x"}, {"max_tokens", n}, {"temperature", 0}});
  EXPECT_EQ(script_, json::parse(whole.body_)["choices"][0]["text"].get<std::string>());
}

TEST_F(OpenAiTextTest, AStopStringEndsTheTextAndIsNotReturned) {
  script_ = "abc END xyz";
  for (int id : GreedyIds({1, 5, 9}, 11))
    ASSERT_FALSE(model_->config().IsEos(id)) << "the test needs a run without EOS";
  auto api = Api();
  for (const char* path : {"/v1/completions", "/v1/chat/completions"}) {
    const bool chat = std::string(path) == "/v1/chat/completions";
    json body = {{"max_tokens", 11}, {"temperature", 0}, {"stop", {"NEVER", "END"}}};
    if (chat) {
      body["messages"] = {{{"role", "user"}, {"content", "hi"}}};
    } else {
      body["prompt"] = "hi";
    }
    auto c = Call(*api, path, body);
    ASSERT_EQ(200, c.status_) << c.body_;
    const json r = json::parse(c.body_);
    EXPECT_EQ("abc ", chat ? r["choices"][0]["message"]["content"] : r["choices"][0]["text"])
        << path;
    EXPECT_EQ("stop", r["choices"][0]["finish_reason"]) << path;
    EXPECT_EQ(7, r["usage"]["completion_tokens"]) << path;  // up to the "D" of END
    EXPECT_EQ(r["usage"]["prompt_tokens"].get<int>() + 7, r["usage"]["total_tokens"]) << path;

    body["stream"] = true;
    auto s = Call(*api, path, body);
    std::string joined, finish;
    for (const auto& e : Events(s.body_)) {
      const json& choice = e["choices"][0];
      if (chat && choice["delta"].contains("content"))
        joined += choice["delta"]["content"].get<std::string>();
      if (!chat) joined += choice["text"].get<std::string>();
      if (!choice["finish_reason"].is_null()) finish = choice["finish_reason"];
    }
    EXPECT_EQ("abc ", joined) << path;
    EXPECT_EQ("stop", finish) << path;
  }
}

TEST_F(OpenAiTextTest, MaxTokensEndsWithLengthAndUsageCountsEveryToken) {
  script_ = "abcdefgh";
  for (int id : GreedyIds({1, 5, 9}, 3))
    ASSERT_FALSE(model_->config().IsEos(id)) << "the test needs a run without EOS";
  auto api = Api();
  auto c =
      Call(*api, "/v1/completions", {{"prompt", "hello"}, {"max_tokens", 3}, {"temperature", 0}});
  const json r = json::parse(c.body_);
  EXPECT_EQ("abc", r["choices"][0]["text"]);
  EXPECT_EQ("length", r["choices"][0]["finish_reason"]);
  EXPECT_EQ((json{{"prompt_tokens", 6}, {"completion_tokens", 3}, {"total_tokens", 9}}),
            r["usage"]);  // BOS + 5 bytes
  auto s = Call(*api, "/v1/completions",
                {{"prompt", "hello"},
                 {"max_tokens", 3},
                 {"temperature", 0},
                 {"stream", true},
                 {"stream_options", {{"include_usage", true}}}});
  const auto events = Events(s.body_);
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(r["usage"], events.back()["usage"]);
  EXPECT_TRUE(events.back()["choices"].empty());
}

TEST_F(OpenAiTextTest, AnEndOfSequenceIdEndsWithStopAndIsCountedButNotShown) {
  script_ = "abcdefgh";
  const auto ids = GreedyIds({1, 5, 9}, 6);
  ASSERT_GE(ids.size(), 3u);
  for (int id : ids) ASSERT_FALSE(model_->config().IsEos(id)) << "the test needs a run without EOS";
  const int32_t end = ids[2];
  const size_t at = std::find(ids.begin(), ids.end(), end) - ids.begin();  // its first appearance
  auto api = Api(nullptr, {end});
  auto c =
      Call(*api, "/v1/completions", {{"prompt", {1, 5, 9}}, {"max_tokens", 6}, {"temperature", 0}});
  const json r = json::parse(c.body_);
  EXPECT_EQ("stop", r["choices"][0]["finish_reason"]);
  EXPECT_EQ(static_cast<int>(at + 1), r["usage"]["completion_tokens"]);
  EXPECT_EQ(script_.substr(0, at), r["choices"][0]["text"]);
}

TEST_F(OpenAiTextTest, BadStopValuesAreRefused) {
  auto api = Api();
  auto error = [&](const json& stop) {
    auto c = Call(*api, "/v1/completions", {{"prompt", "x"}, {"stop", stop}});
    EXPECT_EQ(400, c.status_) << stop;
    EXPECT_EQ("stop", json::parse(c.body_)["error"]["param"]) << stop;
    return ErrorMessage(c);
  };
  EXPECT_EQ("\"stop\" holds 5 strings: at most 4", error({"a", "b", "c", "d", "e"}));
  EXPECT_EQ("\"stop\" strings must not be empty", error(""));
  EXPECT_EQ("\"stop\" strings must not be empty", error({"a", ""}));
  EXPECT_EQ("\"stop\" must be a string or an array of strings", error(3));
  EXPECT_EQ("\"stop\" must be a string or an array of strings, found 1", error({1}));
}

TEST_F(OpenAiTextTest, ChatMessagesAreRenderedWithTheTemplate) {
  script_ = "ok";
  auto templ = std::make_shared<const device::ChatTemplate>(device::LoadChatTemplate("chatml"));
  auto api = Api(templ);
  const json messages = {{{"role", "system"}, {"content", "Be brief."}},
                         {{"role", "user"}, {"content", "héllo"}}};
  auto c = Call(*api, "/v1/chat/completions", {{"messages", messages}, {"max_tokens", 1}});
  ASSERT_EQ(200, c.status_) << c.body_;
  // ChatML, no BOS: every byte of the rendered prompt is one prompt token.
  const std::string prompt =
      "<|im_start|>system\nBe "
      "brief.<|im_end|>\n<|im_start|>user\nhéllo<|im_end|>\n<|im_start|>assistant\n";
  EXPECT_EQ(static_cast<int>(prompt.size()), json::parse(c.body_)["usage"]["prompt_tokens"]);

  // "tools" reaches the template (a template that lists them), and must be an
  // array of objects.
  device::ChatTemplateSource lister_source;
  lister_source.source =
      "{% for t in tools %}[{{ t.function.name }}]{% endfor %}{% for m in messages %}{{ m.content "
      "}}{% endfor %}";
  lister_source.origin = "test";
  auto lister = std::make_shared<const device::ChatTemplate>(lister_source);
  auto tooled = Api(lister);
  const json tools = {{{"type", "function"}, {"function", {{"name", "get_weather"}}}},
                      {{"type", "function"}, {"function", {{"name", "now"}}}}};
  auto with_tools = Call(
      *tooled, "/v1/chat/completions",
      {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"tools", tools}, {"max_tokens", 1}});
  ASSERT_EQ(200, with_tools.status_) << with_tools.body_;
  EXPECT_EQ(static_cast<int>(std::string("[get_weather][now]hi").size()),
            json::parse(with_tools.body_)["usage"]["prompt_tokens"]);
  auto bad_tools = Call(*tooled, "/v1/chat/completions",
                        {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"tools", "x"}});
  EXPECT_EQ(400, bad_tools.status_);
  EXPECT_EQ("\"tools\" must be an array of tool definitions", ErrorMessage(bad_tools));
  auto bad_entry = Call(*tooled, "/v1/chat/completions",
                        {{"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"tools", {1}}});
  EXPECT_EQ(400, bad_entry.status_);

  // A template's raise_exception is the client's error.
  auto llama2 =
      Api(std::make_shared<const device::ChatTemplate>(device::LoadChatTemplate("llama2")));
  auto bad = Call(
      *llama2, "/v1/chat/completions",
      {{"messages", {{{"role", "user"}, {"content", "a"}}, {{"role", "user"}, {"content", "b"}}}}});
  EXPECT_EQ(400, bad.status_);
  EXPECT_NE(std::string::npos,
            ErrorMessage(bad).find("raise_exception: Conversation roles must alternate"))
      << ErrorMessage(bad);
  auto parts =
      Call(*api, "/v1/chat/completions",
           {{"messages",
             {{{"role", "user"}, {"content", {{{"type", "image_url"}, {"image_url", "x"}}}}}}}});
  EXPECT_EQ(400, parts.status_);
  EXPECT_EQ(
      "messages[0].content parts must be {\"type\": \"text\", \"text\": string} (only text is "
      "supported)",
      ErrorMessage(parts));
}

}  // namespace
}  // namespace splitlm
