#include "device/chat_template.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "partition/gguf.h"
#include "partition/mapped_file.h"
#include "transport/error.h"

namespace splitlm::device {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

// The templates as their model families publish them (Hugging Face
// tokenizer_config.json), so a model without its own gets the same prompt.
// NOLINTNEXTLINE(readability-function-size): a table of template texts, data only.
const std::map<std::string, std::string>& Builtins() {
  static const std::map<std::string, std::string> kBuiltins = {
      // Llama 2 chat: [INST] turns, the system prompt inside the first one.
      {"llama2",
       "{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}"
       "{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages "
       "%}"
       "{% set system_message = false %}{% endif %}"
       "{% for message in loop_messages %}"
       "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
       "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') "
       "}}{% endif %}"
       "{% if loop.index0 == 0 and system_message != false %}"
       "{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] "
       "%}"
       "{% else %}{% set content = message['content'] %}{% endif %}"
       "{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' "
       "}}"
       "{% elif message['role'] == 'assistant' %}{{ ' ' + content.strip() + ' ' + eos_token }}{% "
       "endif %}"
       "{% endfor %}"},
      // Llama 3 instruct: header ids around the role, <|eot_id|> after each turn.
      {"llama3",
       "{% set loop_messages = messages %}{% for message in loop_messages %}"
       "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + "
       "message['content'] | trim + "
       "'<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif "
       "%}{{ content }}"
       "{% endfor %}{% if add_generation_prompt %}{{ "
       "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"},
      // ChatML (Qwen, SmolLM, many fine-tunes).
      {"chatml",
       "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + "
       "message['content'] + '<|im_end|>' + "
       "'\\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif "
       "%}"},
      // Mistral instruct (v0.1 turns; a system message goes before the first
      // user message, as later Mistral templates do).
      {"mistral",
       "{% if messages[0]['role'] == 'system' %}{% set system_message = messages[0]['content'] + "
       "'\\n\\n' %}"
       "{% set loop_messages = messages[1:] %}{% else %}{% set system_message = '' %}"
       "{% set loop_messages = messages %}{% endif %}{{ bos_token }}"
       "{% for message in loop_messages %}"
       "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
       "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') "
       "}}{% endif %}"
       "{% if message['role'] == 'user' %}{% if loop.first %}{{ '[INST] ' + system_message + "
       "message['content'] + "
       "' [/INST]' }}{% else %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}"
       "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token }}"
       "{% else %}{{ raise_exception('Only user, assistant and a leading system message are "
       "supported') }}{% endif %}"
       "{% endfor %}"},
      // Zephyr (TinyLlama chat): <|role|> lines ended by the EOS token.
      {"zephyr",
       "{% for message in messages %}\n"
       "{% if message['role'] == 'user' %}\n{{ '<|user|>\\n' + message['content'] + eos_token }}\n"
       "{% elif message['role'] == 'system' %}\n{{ '<|system|>\\n' + message['content'] + "
       "eos_token }}\n"
       "{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\\n'  + message['content'] + "
       "eos_token }}\n"
       "{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif "
       "%}\n{% endfor %}"},
  };
  return kBuiltins;
}

std::string NamesList() {
  std::string s;
  for (const auto& n : BuiltinChatTemplateNames()) s += (s.empty() ? "" : ", ") + n;
  return s;
}

std::string WayOut() { return "; choose a chat template by name (" + NamesList() + ") or file"; }

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw Exception(Exception::kNotFound, "cannot read chat template file " + path);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

// A special token in tokenizer_config.json: a string or {"content": ...}.
std::string TokenText(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_object() && v.contains("content") && v["content"].is_string())
    return v["content"].get<std::string>();
  return "";
}

ChatTemplateSource FromTokenizerConfig(const std::string& path) {
  const json cfg = json::parse(ReadFile(path), nullptr, false);
  if (cfg.is_discarded() || !cfg.is_object())
    throw Exception(Exception::kInvalidArgument, path + " is not a JSON object");
  ChatTemplateSource s;
  s.origin = path;
  if (cfg.contains("bos_token")) s.bos_token = TokenText(cfg["bos_token"]);
  if (cfg.contains("eos_token")) s.eos_token = TokenText(cfg["eos_token"]);
  auto t = cfg.find("chat_template");
  if (t == cfg.end() || t->is_null()) return s;  // no template: only the tokens
  if (t->is_string()) {
    s.source = t->get<std::string>();
    return s;
  }
  // Several named templates ([{"name": "default", "template": ...}, ...]).
  if (t->is_array()) {
    for (const auto& e : *t) {
      if (e.is_object() && e.value("name", "") == "default" && e.contains("template") &&
          e["template"].is_string()) {
        s.source = e["template"].get<std::string>();
        s.origin += " (chat_template \"default\")";
        return s;
      }
    }
  }
  throw Exception(
      Exception::kInvalidArgument,
      path + ": \"chat_template\" is neither a string nor a list holding a \"default\" template" +
          WayOut());
}

ChatTemplateSource FromGguf(const std::string& path) {
  std::unique_ptr<partition::MappedFile> file;
  partition::GgufHeader header;
  file = partition::MappedFile::Open(path, 24, "GGUF");
  header = partition::ParseGgufHeader(file->data(), file->size(), path);
  auto text = [&](const char* key) -> const partition::GgufValue* {
    auto it = header.metadata.find(key);
    return it == header.metadata.end() ? nullptr : &it->second;
  };
  const auto* t = text("tokenizer.chat_template");
  if (t && t->type != partition::GgufType::kString) {
    throw Exception(Exception::kInvalidArgument,
                    path + ": GGUF key tokenizer.chat_template is not a string" + WayOut());
  }
  ChatTemplateSource s;
  if (t) s.source = t->text;
  s.origin = path + " (GGUF key tokenizer.chat_template)";
  // The token strings behind tokenizer.ggml.bos/eos_token_id.
  const auto* tokens = text("tokenizer.ggml.tokens");
  auto token = [&](const char* key) -> std::string {
    const auto* id = text(key);
    if (!tokens || !id || !id->is_integer() || id->integer < 0 ||
        static_cast<size_t>(id->integer) >= tokens->texts.size())
      return "";
    return tokens->texts[static_cast<size_t>(id->integer)];
  };
  s.bos_token = token("tokenizer.ggml.bos_token_id");
  s.eos_token = token("tokenizer.ggml.eos_token_id");
  return s;
}

bool IsGguf(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  return in.read(magic, 4) && std::string(magic, 4) == "GGUF";
}

}  // namespace

const std::vector<std::string>& BuiltinChatTemplateNames() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> v;
    for (const auto& [name, src] : Builtins()) v.push_back(name);
    return v;
  }();
  return kNames;
}

std::optional<std::string> BuiltinChatTemplate(const std::string& name) {
  auto it = Builtins().find(name);
  if (it == Builtins().end()) return std::nullopt;
  return it->second;
}

ChatTemplateSource LoadChatTemplate(const std::string& name_or_file) {
  if (auto b = BuiltinChatTemplate(name_or_file)) return {*b, "built-in " + name_or_file, "", ""};
  std::error_code ec;
  if (!fs::is_regular_file(name_or_file, ec)) {
    throw Exception(Exception::kInvalidArgument, "chat template " + name_or_file +
                                                     ": neither a built-in template (" +
                                                     NamesList() + ") nor a file");
  }
  if (IsGguf(name_or_file)) {
    auto s = FromGguf(name_or_file);
    if (s.source.empty())
      throw Exception(Exception::kInvalidArgument,
                      name_or_file + " has no GGUF key tokenizer.chat_template" + WayOut());
    return s;
  }
  if (fs::path(name_or_file).extension() == ".json") {
    auto s = FromTokenizerConfig(name_or_file);
    if (s.source.empty())
      throw Exception(Exception::kInvalidArgument,
                      name_or_file + " has no \"chat_template\"" + WayOut());
    return s;
  }
  return {ReadFile(name_or_file), name_or_file, "", ""};
}

ChatTemplateSource ModelChatTemplate(const std::string& model_path) {
  std::error_code ec;
  if (fs::is_directory(model_path, ec)) {
    const std::string cfg = (fs::path(model_path) / "tokenizer_config.json").string();
    if (fs::exists(cfg, ec)) return FromTokenizerConfig(cfg);
    return {};
  }
  if (fs::is_regular_file(model_path, ec) && IsGguf(model_path)) return FromGguf(model_path);
  return {};
}

namespace {
JinjaTemplate Parse(const ChatTemplateSource& s) {
  try {
    return JinjaTemplate(s.source);
  } catch (const Exception& e) {
    throw Exception(e.code(),
                    "the chat template of " + s.origin + " cannot be used: " + e.what() + WayOut());
  }
}
}  // namespace

ChatTemplate::ChatTemplate(ChatTemplateSource source)
    : source_(std::move(source)), jinja_(Parse(source_)) {
  try {
    Render(nlohmann::ordered_json::array({{{"role", "user"}, {"content", "Hello"}}}), true);
  } catch (const Exception& e) {
    throw Exception(e.code(), std::string(e.what()) + WayOut());
  }
}

std::string ChatTemplate::Render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                                 const nlohmann::ordered_json& extra) const {
  nlohmann::ordered_json ctx = extra.is_object() ? extra : nlohmann::ordered_json::object();
  ctx["messages"] = messages;
  ctx["add_generation_prompt"] = add_generation_prompt;
  ctx["bos_token"] = source_.bos_token;
  ctx["eos_token"] = source_.eos_token;
  try {
    return jinja_.Render(ctx);
  } catch (const Exception& e) {
    throw Exception(e.code(), std::string(e.what()) + " (template of " + source_.origin + ")");
  }
}

}  // namespace splitlm::device
