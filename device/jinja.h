// A Jinja subset, enough for the chat templates models ship
// (tokenizer_config.json "chat_template", GGUF tokenizer.chat_template).
// It follows what transformers and @huggingface/jinja do: trim_blocks and
// lstrip_blocks on, one trailing newline of the template dropped, `{%-`/`-%}`
// whitespace control; undefined names render as "" and are false.
//
// Supported: {{ }}, {% if/elif/else %}, {% for x[, y] in ... %} with
// {% else %}, loop.index0/index/first/last/length/revindex/revindex0,
// {% break %}/{% continue %}, {% set %} (also `set ns.attr` on a
// namespace() and block `set ... endset`), {% macro %} with defaults,
// {# comments #}; literals (strings, numbers, true/false/none, lists,
// dicts), + - * / // % ~, comparisons, and/or/not, in/not in, is/is not
// with the common tests, `a if c else b`, indexing, slicing [a:b:c],
// attributes, filters (trim, tojson, length, upper, lower, default, join,
// first, last, replace, string, int, float, list, reverse, items,
// capitalize, title, count, abs), string methods (strip, lstrip, rstrip,
// startswith, endswith, split, upper, lower, replace, title, capitalize,
// find), dict methods (items, keys, values, get), and the globals range(),
// namespace(), raise_exception(), strftime_now().
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json.hpp>

#include "transport/error.h"

namespace splitlm::device {

class JinjaTemplate {
 public:
  // Throws Exception(kInvalidArgument) for a syntax error or an unsupported
  // construct; the message says where (line:column) and what.
  explicit JinjaTemplate(const std::string& source);
  ~JinjaTemplate();
  JinjaTemplate(JinjaTemplate&&) noexcept;
  JinjaTemplate& operator=(JinjaTemplate&&) noexcept;

  // Renders with the top-level names of `context` (a JSON object; key order
  // is kept, as tojson shows it). Throws Exception(kInvalidArgument) on a
  // runtime error, including raise_exception("...").
  // Thread-safe: rendering does not change the template.
  std::string Render(const nlohmann::ordered_json& context) const;

  struct Node;

 private:
  std::shared_ptr<const Node> root_;
};

}  // namespace splitlm::device
