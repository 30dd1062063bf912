// The Jinja subset chat templates need: what each construct renders, and
// that errors say where and what. (Byte-for-byte agreement with the
// reference renderer on real templates: chat_template_diff.sh.)
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "device/jinja.h"
#include "transport/error.h"

namespace splitlm::device {
namespace {

using nlohmann::json;

std::string Render(const std::string& src, const json& ctx = json::object()) {
  return JinjaTemplate(src).Render(ctx);
}

std::string Error(const std::string& src, const json& ctx = json::object()) {
  try {
    Render(src, ctx);
  } catch (const Exception& e) {
    return e.what();
  }
  return "(no error)";
}

TEST(Jinja, OutputsTextExpressionsAndLiterals) {
  EXPECT_EQ("a 3 x-y [1, 2] true null",
            Render("a {{ 1 + 2 }} {{ 'x' ~ '-' ~ \"y\" }} {{ [1, 2] }} {{ true }} {{ none }}"));
  EXPECT_EQ("7 2.5 1 -3 8 1.0",
            Render("{{ 15 // 2 }} {{ 5 / 2 }} {{ 7 % 3 }} {{ -3 }} {{ 2 ** 3 }} {{ 1.0 }}"));
  EXPECT_EQ("[]", Render("[{{ nothing }}]"));
}

TEST(Jinja, WhitespaceControlTrimBlocksAndLstripBlocks) {
  EXPECT_EQ("ab", Render("a  {{- '' -}}  \n b"));
  // trim_blocks: the newline after a block tag goes; lstrip_blocks: the
  // indentation before it too; an expression's newline stays.
  EXPECT_EQ("x\ny\n", Render("{% if true %}\nx\n  {% endif %}\n{{ 'y' }}\n\n"));
  EXPECT_EQ("12", Render("{%- for i in [1, 2] -%}\n  {{ i }}\n{%- endfor %}"));
  EXPECT_EQ("ab", Render("a{# a comment #}b"));
}

TEST(Jinja, LoopsExposeLoopVariablesElseBreakAndContinue) {
  EXPECT_EQ(
      "0/1/T/F/3 1/2/F/F/3 2/3/F/T/3 ",
      Render("{% for x in xs %}{{ loop.index0 }}/{{ loop.index }}/{{ 'T' if loop.first else 'F' }}/"
             "{{ 'T' if loop.last else 'F' }}/{{ loop.length }} {% endfor %}",
             {{"xs", {"a", "b", "c"}}}));
  EXPECT_EQ("empty", Render("{% for x in [] %}{{ x }}{% else %}empty{% endfor %}"));
  EXPECT_EQ("13", Render("{% for x in [1, 2, 3, 4] %}{% if x == 2 %}{% continue %}{% endif %}{% if "
                         "x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"));
  EXPECT_EQ("a=1;b=2;", Render("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}",
                               {{"d", {{"a", 1}, {"b", 2}}}}));
  EXPECT_EQ("cba", Render("{% for x in 'abc'[::-1] %}{{ x }}{% endfor %}"));
  EXPECT_EQ("24", Render("{% for x in [1, 2, 3, 4] if x is even %}{{ x }}{% endfor %}"));
}

TEST(Jinja, SetInALoopStaysInItUnlessOnANamespace) {
  EXPECT_EQ(
      "0 3",
      Render(
          "{% set n = 0 %}{% set ns = namespace(n=0) %}{% for x in [1, 2, 3] %}{% set n = n + 1 %}"
          "{% set ns.n = ns.n + 1 %}{% endfor %}{{ n }} {{ ns.n }}"));
  EXPECT_EQ("[ab]", Render("{% set x %}a{{ 'b' }}{% endset %}[{{ x }}]"));
}

TEST(Jinja, ConditionsOperatorsAndTests) {
  EXPECT_EQ("b", Render("{% if 0 %}a{% elif 'x' in 'xyz' %}b{% else %}c{% endif %}"));
  EXPECT_EQ("TTTTFT",
            Render("{{ 'T' if 2 in [1, 2] else 'F' }}{{ 'T' if 'k' not in {'a': 1} else 'F' }}"
                   "{{ 'T' if x is none else 'F' }}{{ 'T' if y is not defined else 'F' }}"
                   "{{ 'T' if '' else 'F' }}{{ 'T' if not [] and 1 < 2 <= 2 else 'F' }}",
                   {{"x", nullptr}}));
  EXPECT_EQ("TTFT", Render("{{ 'T' if s is string else 'F' }}{{ 'T' if m is mapping else 'F' }}"
                           "{{ 'T' if s is mapping else 'F' }}{{ 'T' if l is iterable else 'F' }}",
                           {{"s", "x"}, {"m", json::object()}, {"l", json::array()}}));
  EXPECT_EQ("F", Render("{{ 'T' if e is defined and e.x else 'F' }}"));
}

TEST(Jinja, IndexingSlicingAndMethods) {
  const json ctx = {{"m", {{"role", "user"}, {"content", " <think>a</think>\n\nb "}}},
                    {"l", {1, 2, 3, 4}}};
  EXPECT_EQ(
      "user user 4 [2, 3] [4, 3, 2, 1] [1, 3]",
      Render("{{ m.role }} {{ m['role'] }} {{ l[-1] }} {{ l[1:3] }} {{ l[::-1] }} {{ l[::2] }}",
             ctx));
  EXPECT_EQ("b|a", Render("{{ m.content.split('</think>')[-1].strip() }}|{{ "
                          "m.content.split('</think>')[0].split('<think>')[-1] }}",
                          ctx));
  EXPECT_EQ("x.. ..x x",
            Render("{{ '..x..'.lstrip('.') }} {{ '..x..'.rstrip('.') }} {{ '..x..'.strip('.') }}"));
  EXPECT_EQ(
      "TF",
      Render(
          "{{ 'T' if 'abc'.startswith('ab') else 'F' }}{{ 'T' if 'abc'.endswith('b') else 'F' }}"));
  EXPECT_EQ("ABC abc a-c 1 def",
            Render("{{ 'abc'.upper() }} {{ 'ABC'.lower() }} {{ 'abc'.replace('b', '-') }} {{ "
                   "d.get('k') }} {{ d.get('z', 'def') }}",
                   {{"d", {{"k", 1}}}}));
}

TEST(Jinja, Filters) {
  EXPECT_EQ(
      "x|3|ABC|abc|d|1-2|1|2|a_c|5|7",
      Render(
          "{{ ' x \n' | trim }}|{{ [1, 2, 3] | length }}|{{ 'abc' | upper }}|{{ 'ABC' | lower }}|"
          "{{ u | default('d') }}|{{ [1, 2] | join('-') }}|{{ [1, 2] | first }}|"
          "{{ [1, 2] | last }}|{{ 'abc' | replace('b', '_') }}|{{ 5 | string }}|{{ '7' | int }}"));
  EXPECT_EQ(R"({"a": [1, "x"], "b": {"c": null}})",
            Render("{{ v | tojson }}", {{"v", {{"a", {1, "x"}}, {"b", {{"c", nullptr}}}}}}));
  EXPECT_EQ("3", Render("{{ messages|length - 1 + 1 }}", {{"messages", {1, 2, 3}}}));
}

TEST(Jinja, MacrosAndRaiseException) {
  EXPECT_EQ(
      "<a,b><c,z>",
      Render(
          "{% macro p(x, y='z') %}<{{ x }},{{ y }}>{% endmacro %}{{ p('a', 'b') }}{{ p('c') }}"));
  EXPECT_EQ("chat template, line 2, column 4: raise_exception: roles must alternate",
            Error("x\n{{ raise_exception('roles must alternate') }}"));
}

TEST(Jinja, ErrorsSayWhereAndWhat) {
  EXPECT_EQ("chat template, line 1, column 3: unsupported statement {% include %}",
            Error("ab{% include 'x' %}"));
  EXPECT_EQ("chat template, line 1, column 1: tag is never closed with }}", Error("{{ x"));
  EXPECT_EQ("chat template, line 1, column 16: the template ends before {% endif %}",
            Error("{% if x %}abcde"));
  EXPECT_EQ("chat template, line 1, column 6: unsupported filter wordcount",
            Error("{{ x|wordcount }}", {{"x", "a"}}));
  EXPECT_EQ("chat template, line 1, column 8: unsupported string method .zfill()",
            Error("{{ 'a'.zfill(3) }}"));
  EXPECT_EQ("chat template, line 1, column 8: cannot apply '-' to a string and an integer",
            Error("{{ 'a' - 1 }}"));
  EXPECT_EQ("chat template, line 1, column 4: expected an expression, found the end of the tag",
            Error("{{ }}"));
  // A literal beyond the range of a double is an error; one below it is 0.0,
  // as in Python.
  const std::string huge = "1" + std::string(400, '0') + ".5";
  EXPECT_EQ("chat template, line 1, column 4: float " + huge + " is out of range",
            Error("{{ " + huge + " }}"));
  EXPECT_EQ(
      "chat template, line 1, column 4: integer 1" + std::string(30, '0') + " is out of range",
      Error("{{ 1" + std::string(30, '0') + " }}"));
  EXPECT_EQ("0.0", Render("{{ 0." + std::string(400, '0') + "1 }}"));
  // Deep nesting is refused, not a stack overflow.
  EXPECT_NE(std::string::npos,
            Error("{{ " + std::string(100000, '(') + "1" + std::string(100000, ')') + " }}")
                .find("nested more than 200 deep"));
  EXPECT_NE(std::string::npos,
            Error("{{ " + std::string(100000, '-') + "1 }}").find("nested more than 200 deep"));
  std::string ifs;
  for (int i = 0; i < 1000; ++i) ifs += "{% if true %}";
  EXPECT_NE(std::string::npos, Error(ifs).find("nested more than 200 deep"));
}

}  // namespace
}  // namespace splitlm::device
