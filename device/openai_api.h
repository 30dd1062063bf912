// The device's OpenAI-compatible HTTP API: POST /v1/completions,
// POST /v1/chat/completions (stream: true as server-sent events),
// GET /v1/models, GET /health, GET /metrics.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "device/agent.h"
#include "device/chat_template.h"
#include "transport/http_server.h"

namespace splitlm::partition {
class Tokenizer;
}

namespace splitlm::device {

struct ApiOptions {
  std::string model_name = "splitlm";  // the id /v1/models reports
  int default_max_tokens = 16;
  // Renders /v1/chat/completions messages (the model's own template, or one
  // chosen with --chat-template). Null: the "role: content" transcript of
  // old, for models that ship no template.
  std::shared_ptr<const ChatTemplate> chat_template;
  // Ids that end a generation besides the model config's end-of-sequence id
  // (Llama 3: <|eot_id|> next to <|end_of_text|>). Never part of the text.
  std::vector<int32_t> eos_ids;
};

// Text to ids and back: a tokenizer's Encode (no BOS added; special tokens
// written in the text recognised, where the tokenizer can) and Decode.
struct TextCodec {
  std::function<std::vector<int32_t>(const std::string&)> encode;
  std::function<std::string(const std::vector<int32_t>&)> decode;
};

// Answers HTTP requests with `agent` (one generation at a time). `tokenizer`
// may be null: prompts must then be arrays of token ids and texts come back
// as space-separated ids.
class OpenAiApi {
 public:
  OpenAiApi(Agent& agent, const partition::Tokenizer* tokenizer, transport::Metrics& metrics,
            ApiOptions options);
  // As above with any codec (tests use a fake); an empty codec is "no tokenizer".
  OpenAiApi(Agent& agent, TextCodec codec, transport::Metrics& metrics, ApiOptions options);
  void Handle(const transport::HttpRequest& request, transport::HttpResponder& responder);

 private:
  void Completions(const transport::HttpRequest& request, transport::HttpResponder& responder,
                   bool chat);
  // Counts one answer with `status` in splitlm_http_requests_total.
  void CountRequest(int status);
  Agent& agent_;
  TextCodec codec_;
  transport::Metrics& metrics_;
  // One counter per status the API answers with, made once (read-only after
  // construction, so the HTTP threads share it without a lock).
  std::map<int, transport::Metrics::Counter> requests_;
  ApiOptions options_;
  std::mutex generate_mu_;
};

}  // namespace splitlm::device
