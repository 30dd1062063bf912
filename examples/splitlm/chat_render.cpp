// `splitlm chat-render`: the prompt text a chat template makes of a
// conversation, as /v1/chat/completions renders it (before tokenisation).
#include <fstream>
#include <iostream>

#include <nlohmann/json.hpp>

#include "device/chat_template.h"
#include "examples/splitlm/cli.h"
#include "transport/error.h"

namespace splitlm::cli {
namespace {

using json = nlohmann::ordered_json;

struct ChatRenderArgs {
  std::string templ, model, messages, tools, jsonl, bos, eos;
  bool no_generation_prompt = false, print_template = false;
};

// One case: {"messages": [...], "add_generation_prompt": bool,
// "bos_token": s, "eos_token": s, "tools": [...]} (all but messages optional).
std::string RenderCase(const device::ChatTemplateSource& base, const json& c) {
  if (!c.is_object() || !c.contains("messages"))
    throw Exception(Exception::kInvalidArgument, "a case must be an object with \"messages\"");
  device::ChatTemplateSource s = base;
  if (c.contains("bos_token")) s.bos_token = c["bos_token"].get<std::string>();
  if (c.contains("eos_token")) s.eos_token = c["eos_token"].get<std::string>();
  device::ChatTemplate t(s);
  json extra = json::object();
  if (c.contains("tools")) extra["tools"] = c["tools"];
  return t.Render(c["messages"], c.value("add_generation_prompt", true), extra);
}

}  // namespace

Runner AddChatRender(CLI::App& app) {
  auto* cmd = app.add_subcommand("chat-render", "print the prompt a chat template makes of a conversation");
  auto a = std::make_shared<ChatRenderArgs>();
  auto* t = cmd->add_option("--template", a->templ, "built-in name (llama2, llama3, chatml, mistral, zephyr) or FILE "
                                                     "(tokenizer_config.json, .gguf, or the template itself)");
  auto* m = cmd->add_option("--model", a->model, "model directory or .gguf: its own template and BOS/EOS strings");
  auto* msg = cmd->add_option("--messages", a->messages, "the conversation as a JSON array of {role, content}");
  auto* tools = cmd->add_option("--tools", a->tools, "tool definitions as a JSON array (the template's `tools`, as "
                                                     "the OpenAI API's \"tools\" field)");
  cmd->add_option("--jsonl", a->jsonl, "one case per line: {\"messages\": [...], \"add_generation_prompt\": bool, "
                                        "\"bos_token\": s, \"eos_token\": s, \"tools\": [...]}; prints one JSON string "
                                        "per line")->excludes(msg)->excludes(tools);
  cmd->add_option("--bos-token", a->bos, "the bos_token string the template sees");
  cmd->add_option("--eos-token", a->eos, "the eos_token string the template sees");
  cmd->add_flag("--no-generation-prompt", a->no_generation_prompt, "add_generation_prompt = false");
  cmd->add_flag("--print-template", a->print_template, "print the template's source and nothing else");
  (void)t;
  (void)m;
  return [a, cmd](const Context&) {
    device::ChatTemplateSource s;
    if (!a->model.empty()) s = device::ModelChatTemplate(a->model);
    if (!a->templ.empty()) {
      auto chosen = device::LoadChatTemplate(a->templ);
      if (chosen.bos_token.empty()) chosen.bos_token = s.bos_token;
      if (chosen.eos_token.empty()) chosen.eos_token = s.eos_token;
      s = chosen;
    }
    if (s.source.empty())
      throw Exception(Exception::kInvalidArgument,
                      "no chat template: pass --template NAME|FILE or a --model that has one");
    if (a->print_template) {
      std::cout << s.source;
      return 0;
    }
    if (cmd->count("--bos-token")) s.bos_token = a->bos;
    if (cmd->count("--eos-token")) s.eos_token = a->eos;
    if (!a->jsonl.empty()) {
      std::ifstream in(a->jsonl);
      if (!in) throw Exception(Exception::kNotFound, "cannot read " + a->jsonl);
      std::string line;
      for (int n = 1; std::getline(in, line); ++n) {
        if (line.empty()) continue;
        const json c = json::parse(line, nullptr, false);
        if (c.is_discarded())
          throw Exception(Exception::kInvalidArgument, a->jsonl + ":" + std::to_string(n) + ": not JSON");
        try {
          std::cout << json(RenderCase(s, c)).dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
        } catch (const std::exception& e) {
          std::cout << json({{"error", e.what()}}).dump() << "\n";
        }
      }
      return 0;
    }
    const json messages = json::parse(a->messages.empty() ? "[]" : a->messages, nullptr, false);
    if (messages.is_discarded() || !messages.is_array() || messages.empty()) {
      throw Exception(Exception::kInvalidArgument,
                      "--messages must be a non-empty JSON array of {\"role\", \"content\"}");
    }
    json c = {{"messages", messages}, {"add_generation_prompt", !a->no_generation_prompt}};
    if (!a->tools.empty()) {
      c["tools"] = json::parse(a->tools, nullptr, false);
      if (c["tools"].is_discarded() || !c["tools"].is_array())
        throw Exception(Exception::kInvalidArgument, "--tools must be a JSON array");
    }
    std::cout << RenderCase(s, c);
    return 0;
  };
}

}  // namespace splitlm::cli
