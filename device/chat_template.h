// Chat templates: the model's own (tokenizer_config.json "chat_template", or
// the GGUF key tokenizer.chat_template) or a built-in family by name, run
// through the Jinja subset of device/jinja.h.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "device/jinja.h"

namespace splitlm::device {

// The template's source and where it came from (for messages and logs).
struct ChatTemplateSource {
  std::string source;
  std::string origin;     // e.g. "built-in chatml", "/m/tokenizer_config.json"
  std::string bos_token;  // as the origin gives them ("" when it does not)
  std::string eos_token;
};

// The built-in families: llama2 ([INST]), llama3 (header ids), chatml
// (Qwen, SmolLM), mistral ([INST], v0.1 style), zephyr (TinyLlama).
const std::vector<std::string>& BuiltinChatTemplateNames();
// Null for an unknown name.
std::optional<std::string> BuiltinChatTemplate(const std::string& name);

// `name_or_file`: a built-in name; a tokenizer_config.json (its
// "chat_template"); a .gguf (its tokenizer.chat_template); or any other file,
// read as the template itself. Throws Exception: kNotFound for a file that
// cannot be read, kInvalidArgument for anything else, naming the file or key
// and, where it helps, `--chat-template NAME`.
ChatTemplateSource LoadChatTemplate(const std::string& name_or_file);

// The model's own template and special-token strings: `model_path` is a
// model directory (its tokenizer_config.json) or a .gguf file (the keys
// tokenizer.chat_template and tokenizer.ggml.bos/eos_token_id). `source` is
// empty when the model has no template; throws Exception (kCorrupt,
// kInvalidArgument) when the file is there but unreadable or malformed.
ChatTemplateSource ModelChatTemplate(const std::string& model_path);

// A parsed template with the special-token strings it is given. Immutable;
// Render is thread-safe.
class ChatTemplate {
 public:
  // Parses and tries a one-message conversation, so that a template using
  // what the Jinja subset lacks fails here, at start-up. Throws
  // Exception(kInvalidArgument) naming the origin and the templates to choose
  // from.
  explicit ChatTemplate(ChatTemplateSource source);

  // `messages`: [{"role": ..., "content": ...}, ...] as the API received
  // them. `extra`: more top-level names (e.g. "tools"). Throws
  // Exception(kInvalidArgument) (with the template's own raise_exception
  // message).
  std::string Render(const nlohmann::ordered_json& messages, bool add_generation_prompt,
                     const nlohmann::ordered_json& extra = nlohmann::ordered_json::object()) const;

  const ChatTemplateSource& source() const { return source_; }

 private:
  ChatTemplateSource source_;
  JinjaTemplate jinja_;
};

}  // namespace splitlm::device
