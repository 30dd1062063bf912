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

void AddChatRenderFlags(CLI::App* cmd, ChatRenderArgs* args) {
  cmd->add_option("--template", args->templ,
                  "built-in name (llama2, llama3, chatml, mistral, zephyr) or FILE "
                  "(tokenizer_config.json, .gguf, or the template itself)");
  cmd->add_option("--model", args->model,
                  "model directory or .gguf: its own template and BOS/EOS strings");
  auto* messages = cmd->add_option("--messages", args->messages,
                                   "the conversation as a JSON array of {role, content}");
  auto* tools = cmd->add_option("--tools", args->tools,
                                "tool definitions as a JSON array (the template's `tools`, as "
                                "the OpenAI API's \"tools\" field)");
  cmd->add_option("--jsonl", args->jsonl,
                  "one case per line: {\"messages\": [...], \"add_generation_prompt\": bool, "
                  "\"bos_token\": s, \"eos_token\": s, \"tools\": [...]}; prints one JSON string "
                  "per line")
      ->excludes(messages)
      ->excludes(tools);
  cmd->add_option("--bos-token", args->bos, "the bos_token string the template sees");
  cmd->add_option("--eos-token", args->eos, "the eos_token string the template sees");
  cmd->add_flag("--no-generation-prompt", args->no_generation_prompt,
                "add_generation_prompt = false");
  cmd->add_flag("--print-template", args->print_template,
                "print the template's source and nothing else");
}

// --template, else the --model's own; BOS/EOS strings from the model unless
// the chosen template has its own.
device::ChatTemplateSource ChooseTemplate(const ChatRenderArgs& args) {
  device::ChatTemplateSource source;
  if (!args.model.empty()) source = device::ModelChatTemplate(args.model);
  if (!args.templ.empty()) {
    auto chosen = device::LoadChatTemplate(args.templ);
    if (chosen.bos_token.empty()) chosen.bos_token = source.bos_token;
    if (chosen.eos_token.empty()) chosen.eos_token = source.eos_token;
    source = chosen;
  }
  if (source.source.empty())
    throw Exception(Exception::kInvalidArgument,
                    "no chat template: pass --template NAME|FILE or a --model that has one");
  return source;
}

// --jsonl: one JSON string per case, or {"error": ...} for a case that fails.
void RenderJsonl(const device::ChatTemplateSource& source, const std::string& path) {
  std::ifstream in(path);
  if (!in) throw Exception(Exception::kNotFound, "cannot read " + path);
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (line.empty()) continue;
    const json c = json::parse(line, nullptr, false);
    if (c.is_discarded())
      throw Exception(Exception::kInvalidArgument, path + ":" + std::to_string(n) + ": not JSON");
    try {
      std::cout << json(RenderCase(source, c)).dump(-1, ' ', false, json::error_handler_t::replace)
                << "\n";
    } catch (const std::exception& e) {
      std::cout << json({{"error", e.what()}}).dump() << "\n";
    }
  }
}

// --messages (and --tools): the rendered prompt as it is.
void RenderMessages(const device::ChatTemplateSource& source, const ChatRenderArgs& args) {
  const json messages = json::parse(args.messages.empty() ? "[]" : args.messages, nullptr, false);
  if (messages.is_discarded() || !messages.is_array() || messages.empty()) {
    throw Exception(Exception::kInvalidArgument,
                    "--messages must be a non-empty JSON array of {\"role\", \"content\"}");
  }
  json c = {{"messages", messages}, {"add_generation_prompt", !args.no_generation_prompt}};
  if (!args.tools.empty()) {
    c["tools"] = json::parse(args.tools, nullptr, false);
    if (c["tools"].is_discarded() || !c["tools"].is_array())
      throw Exception(Exception::kInvalidArgument, "--tools must be a JSON array");
  }
  std::cout << RenderCase(source, c);
}

int RunChatRender(const ChatRenderArgs& args, const CLI::App& cmd) {
  device::ChatTemplateSource source = ChooseTemplate(args);
  if (args.print_template) {
    std::cout << source.source;
    return 0;
  }
  if (cmd.count("--bos-token")) source.bos_token = args.bos;
  if (cmd.count("--eos-token")) source.eos_token = args.eos;
  if (!args.jsonl.empty()) {
    RenderJsonl(source, args.jsonl);
  } else {
    RenderMessages(source, args);
  }
  return 0;
}

}  // namespace

Runner AddChatRender(CLI::App& app) {
  auto* cmd =
      app.add_subcommand("chat-render", "print the prompt a chat template makes of a conversation");
  auto args = std::make_shared<ChatRenderArgs>();
  AddChatRenderFlags(cmd, args.get());
  return [args, cmd](const Context&) { return RunChatRender(*args, *cmd); };
}

}  // namespace splitlm::cli
