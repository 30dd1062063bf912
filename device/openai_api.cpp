#include "device/openai_api.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <limits>
#include <type_traits>
#include <set>

#include "partition/error.h"
#include "partition/model.h"
#include "partition/prompt.h"
#include "partition/tokenizer.h"

namespace splitlm::device {
namespace {

using nlohmann::json;

struct BadRequest {
  std::string message;
  std::string param;
};

json ErrorBody(const std::string& message, const std::string& type, const std::string& param = "") {
  return {{"error", {{"message", message}, {"type", type}, {"param", param.empty() ? json(nullptr) : json(param)}, {"code", nullptr}}}};
}

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count();
}

template <typename T>
T Field(const json& body, const char* name, T def, bool (json::*is)() const) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return def;
  if (!((*it).*is)()) throw BadRequest{std::string("\"") + name + "\" has the wrong type", name};
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    // An integer that T cannot hold is refused as sent, not wrapped around.
    const bool fits = it->is_number_unsigned()
                          ? it->template get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
                          : it->template get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                                (std::is_unsigned_v<T> ||
                                 it->template get<int64_t>() <= static_cast<int64_t>(std::numeric_limits<T>::max()));
    if (!fits) throw BadRequest{std::string("\"") + name + "\" = " + it->dump() + " is out of range", name};
  }
  return it->get<T>();
}

// A token id of a prompt array, as sent: a JSON number that is a whole
// number in [0, vocab). Whatever else is reported with its value as written
// (an id of 2^63 is not read as a negative 64-bit integer).
int32_t TokenId(const json& v, int vocab) {
  const bool whole = v.is_number_integer() || (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
  const bool in_range = v.is_number_unsigned() ? v.get<uint64_t>() < static_cast<uint64_t>(vocab)
                        : v.is_number_integer() ? v.get<int64_t>() >= 0 && v.get<int64_t>() < vocab
                                                : v.get<double>() >= 0 && v.get<double>() < vocab;
  if (!whole) throw BadRequest{"prompt token id " + v.dump() + " is not an integer", "prompt"};
  if (!in_range) {
    throw BadRequest{"prompt token id " + v.dump() + " is outside the vocabulary of " + std::to_string(vocab), "prompt"};
  }
  return static_cast<int32_t>(v.get<double>());
}

}  // namespace

OpenAiApi::OpenAiApi(Agent& agent, const partition::Tokenizer* tokenizer, transport::Metrics& metrics,
                     ApiOptions options)
    : agent_(agent), tokenizer_(tokenizer), metrics_(metrics), options_(std::move(options)) {
  metrics_.Describe("splitlm_http_requests_total", transport::Metrics::Kind::kCounter, "HTTP requests by status");
}

void OpenAiApi::Handle(const transport::HttpRequest& r, transport::HttpResponder& w) {
  auto send = [&](int status, const json& body) {
    metrics_.Add("splitlm_http_requests_total{status=\"" + std::to_string(status) + "\"}", 1);
    w.Send(status, "application/json", body.dump());
  };
  const std::string path = r.target.substr(0, r.target.find('?'));
  if (path == "/health" && r.method == "GET") return send(200, {{"status", "ok"}});
  if (path == "/metrics" && r.method == "GET") {
    metrics_.Add("splitlm_http_requests_total{status=\"200\"}", 1);
    return w.Send(200, "text/plain; version=0.0.4", metrics_.Render());
  }
  if (path == "/v1/models" && r.method == "GET") {
    return send(200, {{"object", "list"},
                      {"data", json::array({{{"id", options_.model_name}, {"object", "model"}, {"created", 0}, {"owned_by", "splitlm"}}})}});
  }
  if ((path == "/v1/completions" || path == "/v1/chat/completions")) {
    if (r.method != "POST") return send(405, ErrorBody("use POST", "invalid_request_error"));
    return Completions(r, w, path == "/v1/chat/completions");
  }
  send(404, ErrorBody("no route " + r.method + " " + path, "invalid_request_error"));
}

void OpenAiApi::Completions(const transport::HttpRequest& r, transport::HttpResponder& w, bool chat) {
  auto send = [&](int status, const json& body) {
    metrics_.Add("splitlm_http_requests_total{status=\"" + std::to_string(status) + "\"}", 1);
    w.Send(status, "application/json", body.dump());
  };
  json body = json::parse(r.body, nullptr, false);
  if (body.is_discarded() || !body.is_object()) return send(400, ErrorBody("request body is not a JSON object", "invalid_request_error"));
  const auto& cfg = agent_.model().config();
  GenerateRequest req;
  bool stream = false;
  try {
    static const std::set<std::string> kCommon = {"model", "max_tokens", "max_completion_tokens", "temperature", "top_p",
                                                  "top_k", "seed", "stream", "stream_options", "n", "user"};
    for (auto it = body.begin(); it != body.end(); ++it) {
      const bool ok = kCommon.count(it.key()) || (chat ? it.key() == "messages" : it.key() == "prompt");
      if (!ok) throw BadRequest{"unknown field \"" + it.key() + "\"", it.key()};
    }
    if (Field<int>(body, "n", 1, &json::is_number_integer) != 1) throw BadRequest{"only n = 1 is supported", "n"};
    req.max_tokens = Field<int>(body, chat && body.contains("max_completion_tokens") ? "max_completion_tokens" : "max_tokens",
                                options_.default_max_tokens, &json::is_number_integer);
    if (req.max_tokens < 1 || req.max_tokens > cfg.max_context) throw BadRequest{"max_tokens must be in 1.." + std::to_string(cfg.max_context), "max_tokens"};
    req.sampling.temperature = Field<float>(body, "temperature", 1.0f, &json::is_number);
    req.sampling.top_p = Field<float>(body, "top_p", 1.0f, &json::is_number);
    req.sampling.top_k = Field<int>(body, "top_k", 0, &json::is_number_integer);
    req.sampling.seed = Field<uint64_t>(body, "seed", 0, &json::is_number_integer);
    stream = Field<bool>(body, "stream", false, &json::is_boolean);
    if (req.sampling.temperature < 0 || req.sampling.temperature > 2) throw BadRequest{"temperature must be in [0, 2]", "temperature"};
    try {
      partition::ValidateSamplingParams(req.sampling);
    } catch (const partition::PartitionError& e) {
      throw BadRequest{e.what(), "top_p"};
    }
    auto encode = [&](const std::string& text) {
      if (!tokenizer_) throw BadRequest{"this model has no tokenizer: send the prompt as an array of token ids", chat ? "messages" : "prompt"};
      return tokenizer_->Encode(text);
    };
    if (chat) {
      auto m = body.find("messages");
      if (m == body.end() || !m->is_array() || m->empty()) throw BadRequest{"\"messages\" must be a non-empty array", "messages"};
      // A plain role-prefixed transcript, ending with the assistant's turn.
      std::string text;
      for (const auto& msg : *m) {
        if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string() || !msg.contains("content") ||
            !msg["content"].is_string()) {
          throw BadRequest{"each message needs string \"role\" and \"content\"", "messages"};
        }
        text += msg["role"].get<std::string>() + ": " + msg["content"].get<std::string>() + "\n";
      }
      text += "assistant:";
      req.prompt = encode(text);
      req.prompt.insert(req.prompt.begin(), cfg.bos_token_id);
    } else {
      auto p = body.find("prompt");
      if (p == body.end()) throw BadRequest{"\"prompt\" is required", "prompt"};
      if (p->is_string()) {
        req.prompt = encode(p->get<std::string>());
        req.prompt.insert(req.prompt.begin(), cfg.bos_token_id);
      } else if (p->is_array() && !p->empty() && std::all_of(p->begin(), p->end(), [](const json& v) { return v.is_number(); })) {
        for (const auto& v : *p) req.prompt.push_back(TokenId(v, cfg.vocab_size));
      } else {
        throw BadRequest{"\"prompt\" must be a string or a non-empty array of token ids", "prompt"};
      }
    }
    try {
      partition::ValidatePrompt(req.prompt, cfg);
    } catch (const partition::PartitionError& e) {
      throw BadRequest{e.what(), chat ? "messages" : "prompt"};
    }
  } catch (const BadRequest& e) {
    return send(400, ErrorBody(e.message, "invalid_request_error", e.param));
  }

  const std::string id = (chat ? "chatcmpl-" : "cmpl-") + std::to_string(Now()) + std::to_string(reinterpret_cast<uintptr_t>(&req) & 0xffff);
  const int64_t created = Now();
  std::vector<int32_t> generated;
  std::string emitted;
  auto text_of = [&](const std::vector<int32_t>& ids) {
    if (tokenizer_) return tokenizer_->Decode(ids);
    std::string s;
    for (int32_t t : ids) s += " " + std::to_string(t);
    return s;
  };
  auto chunk = [&](const json& delta_or_text, const json& finish) {
    json c = {{"id", id}, {"created", created}, {"model", options_.model_name}};
    if (chat) {
      c["object"] = "chat.completion.chunk";
      c["choices"] = json::array({{{"index", 0}, {"delta", delta_or_text}, {"finish_reason", finish}}});
    } else {
      c["object"] = "text_completion";
      c["choices"] = json::array({{{"index", 0}, {"text", delta_or_text}, {"logprobs", nullptr}, {"finish_reason", finish}}});
    }
    return "data: " + c.dump() + "\n\n";
  };

  std::lock_guard<std::mutex> lock(generate_mu_);
  if (stream) {
    w.Start(200, "text/event-stream");
    metrics_.Add("splitlm_http_requests_total{status=\"200\"}", 1);
    if (chat) w.Write(chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
  }
  GenerateResult result;
  try {
    result = agent_.Generate(req, [&](int32_t token) {
      generated.push_back(token);
      if (!stream) return true;
      const std::string text = text_of(generated);
      const std::string delta = text.substr(std::min(emitted.size(), text.size()));
      emitted = text;
      return w.Write(chunk(chat ? json{{"content", delta}} : json(delta), nullptr));
    });
  } catch (const std::exception& e) {
    if (stream) {
      w.Write("data: " + ErrorBody(e.what(), "server_error").dump() + "\n\n");
      return;
    }
    return send(503, ErrorBody(e.what(), "server_error"));
  }
  if (stream) {
    w.Write(chunk(chat ? json::object() : json(""), result.finish_reason == "context" ? "length" : result.finish_reason));
    w.Write("data: [DONE]\n\n");
    return;
  }
  const std::string text = text_of(generated);
  const std::string finish = result.finish_reason == "context" ? "length" : result.finish_reason;
  json choice = chat ? json{{"index", 0}, {"message", {{"role", "assistant"}, {"content", text}}}, {"finish_reason", finish}}
                     : json{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish}};
  send(200, {{"id", id},
             {"object", chat ? "chat.completion" : "text_completion"},
             {"created", created},
             {"model", options_.model_name},
             {"choices", json::array({choice})},
             {"usage", {{"prompt_tokens", req.prompt.size()}, {"completion_tokens", generated.size()},
                        {"total_tokens", req.prompt.size() + generated.size()}}}});
}

}  // namespace splitlm::device
