// The device's OpenAI-compatible API in-process (an all-local agent, a fake
// responder): prompts follow the one rule of partition::ValidatePrompt, and
// bad token ids are reported as they were sent.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "device/agent.h"
#include "device/openai_api.h"
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
  EXPECT_EQ("prompt of 256 tokens does not fit the context of 256: at most 255, leaving room for one generated token",
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
  EXPECT_EQ("prompt token id 9223372036854775808 is outside the vocabulary of 256", sent("1, 9223372036854775808"));
  EXPECT_EQ("prompt token id 18446744073709551615 is outside the vocabulary of 256", sent("18446744073709551615"));
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

}  // namespace
}  // namespace splitlm
