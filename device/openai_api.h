// The device's OpenAI-compatible HTTP API: POST /v1/completions,
// POST /v1/chat/completions (stream: true as server-sent events),
// GET /v1/models, GET /health, GET /metrics.
#pragma once

#include <memory>
#include <mutex>
#include <string>

#include "device/agent.h"
#include "transport/http_server.h"

namespace splitlm::partition {
class Tokenizer;
}

namespace splitlm::device {

struct ApiOptions {
  std::string model_name = "splitlm";  // the id /v1/models reports
  int default_max_tokens = 16;
};

// Answers HTTP requests with `agent` (one generation at a time). `tokenizer`
// may be null: prompts must then be arrays of token ids and texts come back
// as space-separated ids.
class OpenAiApi {
 public:
  OpenAiApi(Agent& agent, const partition::Tokenizer* tokenizer, transport::Metrics& metrics, ApiOptions options);
  void Handle(const transport::HttpRequest& request, transport::HttpResponder& responder);

 private:
  void Completions(const transport::HttpRequest& request, transport::HttpResponder& responder, bool chat);
  Agent& agent_;
  const partition::Tokenizer* tokenizer_;
  transport::Metrics& metrics_;
  ApiOptions options_;
  std::mutex generate_mu_;
};

}  // namespace splitlm::device
