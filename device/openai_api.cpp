#include "device/openai_api.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <limits>
#include <set>
#include <type_traits>

#include "device/text_stream.h"
#include "partition/model.h"
#include "partition/prompt.h"
#include "partition/tokenizer.h"
#include "transport/error.h"

namespace splitlm::device {
namespace {

// Ordered: a message's fields reach the chat template in the order sent
// (tojson of tool-call arguments shows them so).
using json = nlohmann::ordered_json;

struct BadRequest {
  std::string message;
  std::string param;
};

json ErrorBody(const std::string& message, const std::string& type, const std::string& param = "") {
  return {{"error",
           {{"message", message},
            {"type", type},
            {"param", param.empty() ? json(nullptr) : json(param)},
            {"code", nullptr}}}};
}

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

template <typename T>
T Field(const json& body, const char* name, T def, bool (json::*is)() const) {
  auto it = body.find(name);
  if (it == body.end() || it->is_null()) return def;
  if (!((*it).*is)()) throw BadRequest{std::string("\"") + name + "\" has the wrong type", name};
  if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) {
    // An integer that T cannot hold is refused as sent, not wrapped around.
    const bool fits =
        it->is_number_unsigned()
            ? it->template get<uint64_t>() <= static_cast<uint64_t>(std::numeric_limits<T>::max())
            : it->template get<int64_t>() >= static_cast<int64_t>(std::numeric_limits<T>::min()) &&
                  (std::is_unsigned_v<T> ||
                   it->template get<int64_t>() <=
                       static_cast<int64_t>(std::numeric_limits<T>::max()));
    if (!fits)
      throw BadRequest{std::string("\"") + name + "\" = " + it->dump() + " is out of range", name};
  }
  return it->get<T>();
}

// A token id of a prompt array, as sent: a JSON number that is a whole
// number in [0, vocab). Whatever else is reported with its value as written
// (an id of 2^63 is not read as a negative 64-bit integer).
int32_t TokenId(const json& v, int vocab) {
  const bool whole = v.is_number_integer() ||
                     (v.is_number_float() && std::floor(v.get<double>()) == v.get<double>());
  const bool in_range = v.is_number_unsigned()  ? v.get<uint64_t>() < static_cast<uint64_t>(vocab)
                        : v.is_number_integer() ? v.get<int64_t>() >= 0 && v.get<int64_t>() < vocab
                                                : v.get<double>() >= 0 && v.get<double>() < vocab;
  if (!whole) throw BadRequest{"prompt token id " + v.dump() + " is not an integer", "prompt"};
  if (!in_range) {
    throw BadRequest{
        "prompt token id " + v.dump() + " is outside the vocabulary of " + std::to_string(vocab),
        "prompt"};
  }
  return static_cast<int32_t>(v.get<double>());
}

// "stop": null, a string, or an array of at most 4 strings; none empty.
std::vector<std::string> StopStrings(const json& body) {
  auto it = body.find("stop");
  if (it == body.end() || it->is_null()) return {};
  std::vector<std::string> stops;
  if (it->is_string()) {
    stops.push_back(it->get<std::string>());
  } else if (it->is_array()) {
    if (it->size() > 4)
      throw BadRequest{"\"stop\" holds " + std::to_string(it->size()) + " strings: at most 4",
                       "stop"};
    for (const auto& s : *it) {
      if (!s.is_string())
        throw BadRequest{"\"stop\" must be a string or an array of strings, found " + s.dump(),
                         "stop"};
      stops.push_back(s.get<std::string>());
    }
  } else {
    throw BadRequest{"\"stop\" must be a string or an array of strings", "stop"};
  }
  for (const auto& s : stops) {
    if (s.empty()) throw BadRequest{"\"stop\" strings must not be empty", "stop"};
  }
  return stops;
}

// A message's content: a string, or an array of {"type": "text", "text": s}
// parts (joined). Null only where the template may see none (an assistant
// turn with tool calls).
json MessageContent(const json& msg, size_t i) {
  const std::string where = "messages[" + std::to_string(i) + "]";
  auto c = msg.find("content");
  if (c == msg.end() || c->is_null()) {
    if (msg.value("role", "") == "assistant" && msg.contains("tool_calls")) return nullptr;
    throw BadRequest{where + " needs \"content\"", "messages"};
  }
  if (c->is_string()) return *c;
  if (c->is_array()) {
    std::string text;
    for (const auto& part : *c) {
      if (!part.is_object() || part.value("type", "") != "text" || !part.contains("text") ||
          !part["text"].is_string()) {
        throw BadRequest{where +
                             ".content parts must be {\"type\": \"text\", \"text\": string} (only "
                             "text is supported)",
                         "messages"};
      }
      text += part["text"].get<std::string>();
    }
    return text;
  }
  throw BadRequest{where + ".content must be a string or an array of text parts", "messages"};
}

// The messages as the template sees them: role and content checked, every
// other field passed through (tool_calls, reasoning_content, name...).
// The request fields a chat template may use besides the messages: "tools"
// (function definitions, as Llama 3.1+ and Qwen templates render them).
json TemplateExtras(const json& body) {
  json extra = json::object();
  auto t = body.find("tools");
  if (t == body.end() || t->is_null()) return extra;
  if (!t->is_array()) throw BadRequest{"\"tools\" must be an array of tool definitions", "tools"};
  for (const auto& tool : *t) {
    if (!tool.is_object())
      throw BadRequest{
          "\"tools\" entries must be objects ({\"type\": \"function\", \"function\": {...}})",
          "tools"};
  }
  extra["tools"] = *t;
  return extra;
}

json CheckedMessages(const json& m) {
  if (!m.is_array() || m.empty())
    throw BadRequest{"\"messages\" must be a non-empty array", "messages"};
  json out = json::array();
  for (size_t i = 0; i < m.size(); ++i) {
    const json& msg = m[i];
    if (!msg.is_object() || !msg.contains("role") || !msg["role"].is_string()) {
      throw BadRequest{"messages[" + std::to_string(i) + "] needs a string \"role\"", "messages"};
    }
    json copy = msg;
    copy["content"] = MessageContent(msg, i);
    out.push_back(std::move(copy));
  }
  return out;
}

TextCodec CodecOf(const partition::Tokenizer* tokenizer) {
  if (!tokenizer) return {};
  return {[tokenizer](const std::string& text) { return tokenizer->Encode(text); },
          [tokenizer](const std::vector<int32_t>& ids) { return tokenizer->Decode(ids); }};
}

// A completion request as parsed: the generation, and how to answer it.
struct CompletionRequest {
  GenerateRequest generate;
  bool stream = false;
  bool include_usage = false;
  std::vector<std::string> stops;
};

// Only the fields this endpoint knows: anything else is refused by name.
void CheckFieldNames(const json& body, bool chat) {
  static const std::set<std::string> kCommon = {
      "model", "max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k",
      "seed",  "stream",     "stream_options",        "n",           "user",  "stop"};
  for (auto it = body.begin(); it != body.end(); ++it) {
    const bool ok = kCommon.count(it.key()) ||
                    (chat ? (it.key() == "messages" || it.key() == "tools") : it.key() == "prompt");
    if (!ok) throw BadRequest{"unknown field \"" + it.key() + "\"", it.key()};
  }
}

// Everything but the prompt: n, the length, sampling, streaming and stops.
void ReadGenerationFields(const json& body, bool chat, int default_max_tokens, int max_context,
                          CompletionRequest& out) {
  GenerateRequest& req = out.generate;
  if (Field<int>(body, "n", 1, &json::is_number_integer) != 1)
    throw BadRequest{"only n = 1 is supported", "n"};
  req.max_tokens = Field<int>(
      body, chat && body.contains("max_completion_tokens") ? "max_completion_tokens" : "max_tokens",
      default_max_tokens, &json::is_number_integer);
  if (req.max_tokens < 1 || req.max_tokens > max_context)
    throw BadRequest{"max_tokens must be in 1.." + std::to_string(max_context), "max_tokens"};
  req.sampling.temperature = Field<float>(body, "temperature", 1.0f, &json::is_number);
  req.sampling.top_p = Field<float>(body, "top_p", 1.0f, &json::is_number);
  req.sampling.top_k = Field<int>(body, "top_k", 0, &json::is_number_integer);
  req.sampling.seed = Field<uint64_t>(body, "seed", 0, &json::is_number_integer);
  out.stream = Field<bool>(body, "stream", false, &json::is_boolean);
  out.stops = StopStrings(body);
  if (auto so = body.find("stream_options"); so != body.end() && !so->is_null()) {
    if (!so->is_object())
      throw BadRequest{"\"stream_options\" must be an object", "stream_options"};
    out.include_usage = Field<bool>(*so, "include_usage", false, &json::is_boolean);
  }
  if (req.sampling.temperature < 0 || req.sampling.temperature > 2)
    throw BadRequest{"temperature must be in [0, 2]", "temperature"};
  try {
    partition::ValidateSamplingParams(req.sampling);
  } catch (const Exception& e) {
    throw BadRequest{e.what(), "top_p"};
  }
}

// Text to ids, or a BadRequest naming `param` when there is no tokenizer.
std::vector<int32_t> EncodeText(const TextCodec& codec, const std::string& text,
                                const char* param) {
  if (!codec.encode)
    throw BadRequest{"this model has no tokenizer: send the prompt as an array of token ids",
                     param};
  return codec.encode(text);
}

// The messages through the chat template.
std::vector<int32_t> TemplatePrompt(const json& body, const json& messages,
                                    const ChatTemplate& chat_template, const TextCodec& codec,
                                    int32_t bos_id) {
  std::string text;
  try {
    text = chat_template.Render(messages, true, TemplateExtras(body));
  } catch (const Exception& e) {
    throw BadRequest{e.what(), "messages"};
  }
  // A template that writes the BOS token as text gets the BOS id (a
  // SentencePiece encoder would spell "<s>" out).
  const std::string& bos = chat_template.source().bos_token;
  const bool starts_with_bos = !bos.empty() && text.compare(0, bos.size(), bos) == 0;
  if (starts_with_bos) text.erase(0, bos.size());
  std::vector<int32_t> prompt = EncodeText(codec, text, "messages");
  if (starts_with_bos) prompt.insert(prompt.begin(), bos_id);
  return prompt;
}

// /v1/chat/completions: the messages, through the template if there is one.
std::vector<int32_t> ChatPrompt(const json& body, const ApiOptions& options, const TextCodec& codec,
                                int32_t bos_id) {
  auto m = body.find("messages");
  if (m == body.end()) throw BadRequest{"\"messages\" must be a non-empty array", "messages"};
  const json messages = CheckedMessages(*m);
  if (options.chat_template)
    return TemplatePrompt(body, messages, *options.chat_template, codec, bos_id);
  // No template: a plain role-prefixed transcript, ending with the
  // assistant's turn.
  std::string text;
  for (const auto& msg : messages) {
    if (!msg["content"].is_string())
      throw BadRequest{"each message needs string \"role\" and \"content\"", "messages"};
    text += msg["role"].get<std::string>() + ": " + msg["content"].get<std::string>() + "\n";
  }
  text += "assistant:";
  std::vector<int32_t> prompt = EncodeText(codec, text, "messages");
  prompt.insert(prompt.begin(), bos_id);
  return prompt;
}

// /v1/completions: "prompt", a string or an array of token ids.
std::vector<int32_t> TextPrompt(const json& body, const TextCodec& codec,
                                const partition::ModelConfig& cfg) {
  auto p = body.find("prompt");
  if (p == body.end()) throw BadRequest{"\"prompt\" is required", "prompt"};
  std::vector<int32_t> prompt;
  if (p->is_string()) {
    prompt = EncodeText(codec, p->get<std::string>(), "prompt");
    prompt.insert(prompt.begin(), cfg.bos_token_id);
  } else if (p->is_array() && !p->empty() &&
             std::all_of(p->begin(), p->end(), [](const json& v) { return v.is_number(); })) {
    for (const auto& v : *p) prompt.push_back(TokenId(v, cfg.vocab_size));
  } else {
    throw BadRequest{"\"prompt\" must be a string or a non-empty array of token ids", "prompt"};
  }
  return prompt;
}

// The request `body`, checked field by field; throws BadRequest.
CompletionRequest ParseCompletion(const json& body, bool chat, const partition::ModelConfig& cfg,
                                  const ApiOptions& options, const TextCodec& codec) {
  CompletionRequest out;
  CheckFieldNames(body, chat);
  ReadGenerationFields(body, chat, options.default_max_tokens, cfg.max_context, out);
  out.generate.prompt =
      chat ? ChatPrompt(body, options, codec, cfg.bos_token_id) : TextPrompt(body, codec, cfg);
  try {
    partition::ValidatePrompt(out.generate.prompt, cfg);
  } catch (const Exception& e) {
    throw BadRequest{e.what(), chat ? "messages" : "prompt"};
  }
  return out;
}

// Ids to text: the codec's, or the ids written out when there is none.
std::string DecodeIds(const TextCodec& codec, const std::vector<int32_t>& ids) {
  if (codec.decode) return codec.decode(ids);
  std::string s;
  for (int32_t t : ids) s += " " + std::to_string(t);
  return s;
}

// An end-of-sequence id: the model's, or one of the tokenizer's `eos_ids`.
bool EndsSequence(const partition::ModelConfig& cfg, const std::vector<int32_t>& eos_ids,
                  int32_t token) {
  return cfg.IsEos(token) || std::find(eos_ids.begin(), eos_ids.end(), token) != eos_ids.end();
}

// Every generated token counts, the end-of-sequence one included.
json Usage(size_t prompt_tokens, size_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens},
          {"completion_tokens", completion_tokens},
          {"total_tokens", prompt_tokens + completion_tokens}};
}

// What every chunk and the final body of one completion carry.
struct CompletionId {
  std::string id;
  int64_t created;
  std::string model;
  bool chat;

  // One server-sent event of a stream.
  std::string Chunk(const json& delta_or_text, const json& finish) const {
    json c = {{"id", id}, {"created", created}, {"model", model}};
    if (chat) {
      c["object"] = "chat.completion.chunk";
      c["choices"] =
          json::array({{{"index", 0}, {"delta", delta_or_text}, {"finish_reason", finish}}});
    } else {
      c["object"] = "text_completion";
      c["choices"] = json::array({{{"index", 0},
                                   {"text", delta_or_text},
                                   {"logprobs", nullptr},
                                   {"finish_reason", finish}}});
    }
    return "data: " + c.dump() + "\n\n";
  }

  // The end of a stream: the finish reason, the usage if asked, [DONE].
  void EndStream(transport::HttpResponder& w, const std::string& finish, const json& usage,
                 bool include_usage) const {
    w.Write(Chunk(chat ? json::object() : json(""), finish));
    if (include_usage) {
      w.Write("data: " +
              json{{"id", id},
                   {"object", chat ? "chat.completion.chunk" : "text_completion"},
                   {"created", created},
                   {"model", model},
                   {"choices", json::array()},
                   {"usage", usage}}
                  .dump() +
              "\n\n");
    }
    w.Write("data: [DONE]\n\n");
  }

  // The whole answer when not streaming.
  json Body(const std::string& text, const std::string& finish, const json& usage) const {
    json choice =
        chat ? json{{"index", 0},
                    {"message", {{"role", "assistant"}, {"content", text}}},
                    {"finish_reason", finish}}
             : json{{"index", 0}, {"text", text}, {"logprobs", nullptr}, {"finish_reason", finish}};
    return {{"id", id},
            {"object", chat ? "chat.completion" : "text_completion"},
            {"created", created},
            {"model", model},
            {"choices", json::array({choice})},
            {"usage", usage}};
  }
};

}  // namespace

namespace {

std::string RequestSeries(int status) {
  return "splitlm_http_requests_total{status=\"" + std::to_string(status) + "\"}";
}

}  // namespace

OpenAiApi::OpenAiApi(Agent& agent, const partition::Tokenizer* tokenizer,
                     transport::Metrics& metrics, ApiOptions options)
    : OpenAiApi(agent, CodecOf(tokenizer), metrics, std::move(options)) {}

OpenAiApi::OpenAiApi(Agent& agent, TextCodec codec, transport::Metrics& metrics, ApiOptions options)
    : agent_(agent), codec_(std::move(codec)), metrics_(metrics), options_(std::move(options)) {
  metrics_.Describe("splitlm_http_requests_total", transport::Metrics::Kind::kCounter,
                    "HTTP requests by status");
  for (int status : {200, 400, 404, 405, 503}) {
    requests_.emplace(status, metrics_.CounterOf(RequestSeries(status)));
  }
}

void OpenAiApi::CountRequest(int status) {
  const auto it = requests_.find(status);
  if (it != requests_.end()) {
    it->second.Add(1);
  } else {
    metrics_.CounterOf(RequestSeries(status)).Add(1);
  }
}

void OpenAiApi::Handle(const transport::HttpRequest& r, transport::HttpResponder& w) {
  auto send = [&](int status, const json& body) {
    CountRequest(status);
    w.Send(status, "application/json", body.dump());
  };
  const std::string path = r.target.substr(0, r.target.find('?'));
  if (path == "/health" && r.method == "GET") return send(200, {{"status", "ok"}});
  if (path == "/metrics" && r.method == "GET") {
    CountRequest(200);
    return w.Send(200, "text/plain; version=0.0.4", metrics_.Render());
  }
  if (path == "/v1/models" && r.method == "GET") {
    return send(200, {{"object", "list"},
                      {"data", json::array({{{"id", options_.model_name},
                                             {"object", "model"},
                                             {"created", 0},
                                             {"owned_by", "splitlm"}}})}});
  }
  if ((path == "/v1/completions" || path == "/v1/chat/completions")) {
    if (r.method != "POST") return send(405, ErrorBody("use POST", "invalid_request_error"));
    return Completions(r, w, path == "/v1/chat/completions");
  }
  send(404, ErrorBody("no route " + r.method + " " + path, "invalid_request_error"));
}

void OpenAiApi::Completions(const transport::HttpRequest& r, transport::HttpResponder& w,
                            bool chat) {
  auto send = [&](int status, const json& body) {
    CountRequest(status);
    w.Send(status, "application/json", body.dump());
  };
  json body = json::parse(r.body, nullptr, false);
  if (body.is_discarded() || !body.is_object())
    return send(400, ErrorBody("request body is not a JSON object", "invalid_request_error"));
  const auto& cfg = agent_.model().config();
  CompletionRequest request;
  try {
    request = ParseCompletion(body, chat, cfg, options_, codec_);
  } catch (const BadRequest& e) {
    return send(400, ErrorBody(e.message, "invalid_request_error", e.param));
  }
  const GenerateRequest& req = request.generate;
  const CompletionId answer{(chat ? "chatcmpl-" : "cmpl-") + std::to_string(Now()) +
                                std::to_string(reinterpret_cast<uintptr_t>(&req) & 0xffff),
                            Now(), options_.model_name, chat};
  std::vector<int32_t> generated;
  TextStream text([this](const std::vector<int32_t>& ids) { return DecodeIds(codec_, ids); },
                  request.stops);
  auto send_delta = [&](const std::string& delta) {
    if (!request.stream || delta.empty()) return true;
    return w.Write(answer.Chunk(chat ? json{{"content", delta}} : json(delta), nullptr));
  };

  std::lock_guard<std::mutex> lock(generate_mu_);
  if (request.stream) {
    w.Start(200, "text/event-stream");
    CountRequest(200);
    if (chat) w.Write(answer.Chunk({{"role", "assistant"}, {"content", ""}}, nullptr));
  }
  bool ended = false;  // an end-of-sequence id
  try {
    agent_.Generate(req, [&](int32_t token) {
      generated.push_back(token);
      ended = EndsSequence(cfg, options_.eos_ids, token);  // never part of the text
      return !ended && send_delta(text.Push(token)) && !text.stopped();
    });
  } catch (const std::exception& e) {
    if (request.stream) {
      w.Write("data: " + ErrorBody(e.what(), "server_error").dump() + "\n\n");
      return;
    }
    return send(503, ErrorBody(e.what(), "server_error"));
  }
  const bool stopped = text.stopped();
  send_delta(text.Finish());
  // OpenAI: "stop" for a natural end or a stop string, "length" at
  // max_tokens (or the context's end).
  const std::string finish = ended || stopped ? "stop" : "length";
  const json usage = Usage(req.prompt.size(), generated.size());
  if (request.stream) return answer.EndStream(w, finish, usage, request.include_usage);
  send(200, answer.Body(text.text(), finish, usage));
}

}  // namespace splitlm::device
