#include "device/jinja.h"

#include "transport/error.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <optional>
#include <sstream>

#include <utf8proc.h>

namespace splitlm::device {

using json = nlohmann::ordered_json;  // objects keep their key order, as in Python
using NodeP = std::shared_ptr<JinjaTemplate::Node>;

// NOLINTNEXTLINE(bugprone-exception-escape): json's destructor; bad_alloc only
struct JinjaTemplate::Node {
  enum Kind {
    // statements
    kRoot,
    kBlock,
    kText,
    kOutput,
    kIf,
    kFor,
    kSet,
    kMacro,
    kBreak,
    kContinue,
    // expressions
    kLiteral,
    kName,
    kList,
    kDict,
    kAttr,
    kIndex,
    kSlice,
    kCall,
    kFilter,
    kTest,
    kUnary,
    kBinary,
    kTernary,
  };
  Kind kind = kBlock;
  size_t pos = 0;
  std::string name;                // op, filter/test/attr/variable name; kRoot: the source
  json value;                      // literal, text
  std::vector<NodeP> kids;         // operands, bodies (see the parser for each kind's layout)
  std::vector<std::string> names;  // for-loop targets, set target, macro parameters
  std::vector<std::pair<std::string, NodeP>> kwargs;
  bool negate = false;  // `is not`
};

namespace {

using Node = JinjaTemplate::Node;

std::string Where(const std::string& src, size_t pos) {
  size_t line = 1, col = 1;
  for (size_t i = 0; i < pos && i < src.size(); ++i) {
    if (src[i] == '\n') {
      ++line;
      col = 1;
    } else {
      ++col;
    }
  }
  return "line " + std::to_string(line) + ", column " + std::to_string(col);
}

// ---------------------------------------------------------------- lexer

struct Token {
  enum Type {
    kText,
    kExprOpen,
    kExprClose,
    kStmtOpen,
    kStmtClose,
    kName,
    kString,
    kInt,
    kFloat,
    kOp,
    kEnd
  };
  Type type;
  std::string text;
  size_t pos;
};

bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

class Lexer {
 public:
  explicit Lexer(const std::string& src) : src_(src) {
    // As @huggingface/jinja and jinja2 (keep_trailing_newline=False).
    if (!src_.empty() && src_.back() == '\n') src_.pop_back();
  }

  std::vector<Token> Run() {
    size_t i = 0;
    bool strip_next = false;
    while (i < src_.size()) {
      size_t j = src_.find('{', i);
      while (j != std::string::npos &&
             (j + 1 >= src_.size() ||
              (src_[j + 1] != '{' && src_[j + 1] != '%' && src_[j + 1] != '#'))) {
        j = src_.find('{', j + 1);
      }
      const size_t text_end = j == std::string::npos ? src_.size() : j;
      std::string text = src_.substr(i, text_end - i);
      if (strip_next) {
        size_t k = 0;
        while (k < text.size() && IsSpace(text[k])) ++k;
        text.erase(0, k);
        strip_next = false;
      }
      if (j == std::string::npos) {
        Push(Token::kText, text, i);
        break;
      }
      const char kind = src_[j + 1];
      const bool minus = j + 2 < src_.size() && src_[j + 2] == '-';
      if (minus) {
        while (!text.empty() && IsSpace(text.back())) text.pop_back();
      } else if (kind != '{') {
        // lstrip_blocks: spaces and tabs between a line start and {% or {#.
        size_t k = text.size();
        while (k > 0 && (text[k - 1] == ' ' || text[k - 1] == '\t')) --k;
        const bool line_start = k > 0 ? text[k - 1] == '\n' : (i == 0 || src_[i - 1] == '\n');
        if (line_start) text.resize(k);
      }
      Push(Token::kText, text, i);
      size_t p = j + 2 + (minus ? 1 : 0);
      if (kind == '#') {
        const size_t e = src_.find("#}", p);
        if (e == std::string::npos) Fail(j, "comment {# is never closed with #}");
        strip_next = e > 0 && src_[e - 1] == '-';
        i = e + 2;
        if (i < src_.size() && src_[i] == '\n') ++i;  // trim_blocks
        continue;
      }
      tokens_.push_back({kind == '{' ? Token::kExprOpen : Token::kStmtOpen, "", j});
      p = Tag(j, p, kind == '{' ? '}' : '%', &strip_next);
      tokens_.push_back({kind == '{' ? Token::kExprClose : Token::kStmtClose, "", p});
      i = p + 2;
      if (kind == '%' && i < src_.size() && src_[i] == '\n') ++i;  // trim_blocks
    }
    tokens_.push_back({Token::kEnd, "", src_.size()});
    return std::move(tokens_);
  }

  const std::string& source() const { return src_; }

 private:
  void Push(Token::Type type, const std::string& text, size_t pos) {
    if (!text.empty()) tokens_.push_back({type, text, pos});
  }
  [[noreturn]] void Fail(size_t pos, const std::string& what) {
    throw Exception(Exception::kInvalidArgument,
                    "chat template, " + Where(src_, pos) + ": " + what);
  }

  // Tokens of a tag body from `p`; returns where its closing `}}`/`%}` starts.
  size_t Tag(size_t open, size_t p, char close, bool* strip_next) {
    int depth = 0;
    while (true) {
      while (p < src_.size() && IsSpace(src_[p])) ++p;
      if (p >= src_.size()) Fail(open, std::string("tag is never closed with ") + close + "}");
      const char c = src_[p];
      if (c == '-' && p + 2 < src_.size() + 0 && src_[p + 1] == close && src_[p + 2] == '}' &&
          depth == 0) {
        *strip_next = true;
        return p + 1;
      }
      if (c == close && p + 1 < src_.size() && src_[p + 1] == '}' && depth == 0) {
        *strip_next = false;
        return p;
      }
      if (std::isalpha(static_cast<unsigned char>(c)) || c == '_') {
        p = LexName(p);
      } else if (std::isdigit(static_cast<unsigned char>(c))) {
        p = LexNumber(p);
      } else if (c == '\'' || c == '"') {
        p = LexString(p);
      } else {
        p = LexOp(p, &depth);
      }
    }
  }

  // Each Lex* pushes the token starting at `p` and returns where it ends.
  size_t LexName(size_t p) {
    size_t e = p;
    while (e < src_.size() && (std::isalnum(static_cast<unsigned char>(src_[e])) || src_[e] == '_'))
      ++e;
    tokens_.push_back({Token::kName, src_.substr(p, e - p), p});
    return e;
  }

  size_t LexNumber(size_t p) {
    size_t e = p;
    while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
    bool real = false;
    if (e + 1 < src_.size() && src_[e] == '.' &&
        std::isdigit(static_cast<unsigned char>(src_[e + 1]))) {
      real = true;
      ++e;
      while (e < src_.size() && std::isdigit(static_cast<unsigned char>(src_[e]))) ++e;
    }
    tokens_.push_back({real ? Token::kFloat : Token::kInt, src_.substr(p, e - p), p});
    return e;
  }

  size_t LexString(size_t p) {
    const char quote = src_[p];
    std::string s;
    size_t e = p + 1;
    while (e < src_.size() && src_[e] != quote) {
      if (src_[e] == '\\' && e + 1 < src_.size()) {
        const char n = src_[++e];
        s += n == 'n'   ? '\n'
             : n == 't' ? '\t'
             : n == 'r' ? '\r'
             : n == 'b' ? '\b'
             : n == 'f' ? '\f'
             : n == 'v' ? '\v'
                        : n;
      } else {
        s += src_[e];
      }
      ++e;
    }
    if (e >= src_.size()) Fail(p, "string literal is never closed");
    tokens_.push_back({Token::kString, s, p});
    return e + 1;
  }

  // An operator; `depth` counts the brackets open in the tag.
  size_t LexOp(size_t p, int* depth) {
    static const char* kOps[] = {"//", "**", "==", "!=", "<=", ">=", "+", "-", "*",
                                 "/",  "%",  "~",  "<",  ">",  "=",  "(", ")", "[",
                                 "]",  "{",  "}",  ",",  ".",  ":",  "|"};
    const char* found = nullptr;
    for (const char* op : kOps) {
      if (src_.compare(p, std::strlen(op), op) == 0) {
        found = op;
        break;
      }
    }
    if (!found) Fail(p, std::string("unexpected character '") + src_[p] + "'");
    if (*found == '{' || *found == '(' || *found == '[') ++*depth;
    if ((*found == '}' || *found == ')' || *found == ']') && *depth > 0) --*depth;
    tokens_.push_back({Token::kOp, found, p});
    return p + std::strlen(found);
  }

  std::string src_;
  std::vector<Token> tokens_;
};

// ---------------------------------------------------------------- parser

class Parser {
 public:
  Parser(std::vector<Token> tokens, const std::string& src) : t_(std::move(tokens)), src_(src) {}

  NodeP Root() {
    auto root = std::make_shared<Node>();
    root->kind = Node::kRoot;
    root->name = src_;
    root->kids.push_back(Body({}));
    if (Peek().type != Token::kEnd) Fail(Peek().pos, "unexpected {% " + StmtWord() + " %}");
    return root;
  }

 private:
  const Token& Peek(size_t ahead = 0) const { return t_[std::min(i_ + ahead, t_.size() - 1)]; }
  const Token& Next() { return t_[std::min(i_++, t_.size() - 1)]; }
  [[noreturn]] void Fail(size_t pos, const std::string& what) const {
    throw Exception(Exception::kInvalidArgument,
                    "chat template, " + Where(src_, pos) + ": " + what);
  }
  bool IsOp(const char* op, size_t ahead = 0) const {
    return Peek(ahead).type == Token::kOp && Peek(ahead).text == op;
  }
  bool IsName(const char* n, size_t ahead = 0) const {
    return Peek(ahead).type == Token::kName && Peek(ahead).text == n;
  }
  void ExpectOp(const char* op) {
    if (!IsOp(op)) Fail(Peek().pos, std::string("expected '") + op + "'" + Got());
    Next();
  }
  std::string Got() const {
    const Token& t = Peek();
    if (t.type == Token::kExprClose || t.type == Token::kStmtClose)
      return ", found the end of the tag";
    if (t.type == Token::kEnd) return ", found the end of the template";
    return ", found '" + t.text + "'";
  }
  std::string ExpectName() {
    if (Peek().type != Token::kName) Fail(Peek().pos, "expected a name" + Got());
    return Next().text;
  }
  void ExpectStmtClose() {
    if (Peek().type != Token::kStmtClose) Fail(Peek().pos, "expected %}" + Got());
    Next();
  }
  // The keyword of the statement at a {%, or "".
  std::string StmtWord() const {
    return Peek().type == Token::kStmtOpen && Peek(1).type == Token::kName ? Peek(1).text : "";
  }

  // Statements up to a {% word %} in `ends` (left unconsumed).
  NodeP Body(const std::vector<std::string>& ends) {
    Nest nest(*this);
    auto block = std::make_shared<Node>();
    block->kind = Node::kBlock;
    while (true) {
      const Token& t = Peek();
      if (t.type == Token::kEnd) {
        if (!ends.empty()) Fail(t.pos, "the template ends before {% " + ends.back() + " %}");
        return block;
      }
      if (t.type == Token::kText) {
        auto n = std::make_shared<Node>();
        n->kind = Node::kText;
        n->pos = t.pos;
        n->value = t.text;
        block->kids.push_back(n);
        Next();
      } else if (t.type == Token::kExprOpen) {
        Next();
        auto n = std::make_shared<Node>();
        n->kind = Node::kOutput;
        n->pos = t.pos;
        n->kids.push_back(Expr());
        if (Peek().type != Token::kExprClose) Fail(Peek().pos, "expected }}" + Got());
        Next();
        block->kids.push_back(n);
      } else if (t.type == Token::kStmtOpen) {
        const std::string word = StmtWord();
        if (std::find(ends.begin(), ends.end(), word) != ends.end()) return block;
        Next();
        block->kids.push_back(Statement(t.pos));
      } else {
        Fail(t.pos, "unexpected '" + t.text + "'");
      }
    }
  }

  NodeP Statement(size_t pos) {
    const std::string word = ExpectName();
    auto n = std::make_shared<Node>();
    n->pos = pos;
    if (word == "if") return IfStatement(n);
    if (word == "for") return ForStatement(n);
    if (word == "set") return SetStatement(n);
    if (word == "macro") return MacroStatement(n);
    if (word == "break" || word == "continue") {
      n->kind = word == "break" ? Node::kBreak : Node::kContinue;
      ExpectStmtClose();
      return n;
    }
    if (word == "generation" || word == "endgeneration") {  // assistant-mask markers: no output
      ExpectStmtClose();
      n->kind = Node::kBlock;
      return n;
    }
    Fail(pos, "unsupported statement {% " + word + " %}");
  }

  // Each *Statement fills `n` from the tokens after its keyword, up to and
  // including its end tag.
  NodeP IfStatement(NodeP n) {
    n->kind = Node::kIf;
    n->kids.push_back(Expr());
    ExpectStmtClose();
    n->kids.push_back(Body({"elif", "else", "endif"}));
    Node* tail = n.get();
    while (true) {
      const size_t p = Next().pos;  // {%
      const std::string w = ExpectName();
      if (w == "elif") {
        auto e = std::make_shared<Node>();
        e->kind = Node::kIf;
        e->pos = p;
        e->kids.push_back(Expr());
        ExpectStmtClose();
        e->kids.push_back(Body({"elif", "else", "endif"}));
        auto wrap = std::make_shared<Node>();
        wrap->kind = Node::kBlock;
        wrap->kids.push_back(e);
        tail->kids.push_back(wrap);
        tail = e.get();
      } else if (w == "else") {
        ExpectStmtClose();
        tail->kids.push_back(Body({"endif"}));
      } else {
        ExpectStmtClose();
        return n;
      }
    }
  }

  NodeP ForStatement(NodeP n) {
    n->kind = Node::kFor;
    n->names.push_back(ExpectName());
    while (IsOp(",")) {
      Next();
      n->names.push_back(ExpectName());
    }
    if (!IsName("in")) Fail(Peek().pos, "expected 'in'" + Got());
    Next();
    n->kids.push_back(Ternary(/*allow_if=*/false));
    NodeP filter;
    if (IsName("if")) {
      Next();
      filter = Expr();
    }
    if (IsName("recursive")) Fail(Peek().pos, "recursive loops are not supported");
    ExpectStmtClose();
    n->kids.push_back(Body({"else", "endfor"}));
    NodeP otherwise;
    Next();
    if (ExpectName() == "else") {
      ExpectStmtClose();
      otherwise = Body({"endfor"});
      Next();
      ExpectName();
    }
    ExpectStmtClose();
    n->kids.push_back(otherwise);
    n->kids.push_back(filter);
    return n;
  }

  NodeP SetStatement(NodeP n) {
    n->kind = Node::kSet;
    n->names.push_back(ExpectName());
    if (IsOp(".")) {
      Next();
      n->names.push_back(ExpectName());
    }
    if (IsOp("=")) {
      Next();
      n->kids.push_back(Expr());
      ExpectStmtClose();
      return n;
    }
    ExpectStmtClose();
    n->kids.push_back(Body({"endset"}));
    n->value = true;  // block set: the body's output
    Next();
    ExpectName();
    ExpectStmtClose();
    return n;
  }

  NodeP MacroStatement(NodeP n) {
    n->kind = Node::kMacro;
    n->name = ExpectName();
    ExpectOp("(");
    while (!IsOp(")")) {
      n->names.push_back(ExpectName());
      NodeP def;
      if (IsOp("=")) {
        Next();
        def = Expr();
      }
      n->kids.push_back(def);
      if (!IsOp(")")) ExpectOp(",");
    }
    Next();
    ExpectStmtClose();
    n->kids.push_back(Body({"endmacro"}));
    Next();
    ExpectName();
    ExpectStmtClose();
    return n;
  }

  NodeP Make(Node::Kind kind, size_t pos, std::vector<NodeP> kids, std::string name = "") {
    auto n = std::make_shared<Node>();
    n->kind = kind;
    n->pos = pos;
    n->kids = std::move(kids);
    n->name = std::move(name);
    return n;
  }

  // Nesting is bounded so that a hostile template cannot exhaust the stack.
  struct Nest {
    explicit Nest(Parser& p) : p_(p) {
      if (++p_.depth_ > kMaxDepth)
        p_.Fail(p_.Peek().pos, "nested more than " + std::to_string(kMaxDepth) + " deep");
    }
    ~Nest() { --p_.depth_; }
    Parser& p_;
  };
  static constexpr int kMaxDepth = 200;

  NodeP Expr() {
    Nest nest(*this);
    return Ternary(true);
  }

  NodeP Ternary(bool allow_if) {
    NodeP e = Or();
    while (allow_if && IsName("if")) {
      const size_t p = Next().pos;
      NodeP cond = Or();
      NodeP otherwise;
      if (IsName("else")) {
        Next();
        otherwise = Ternary(true);
      }
      e = Make(Node::kTernary, p, {e, cond, otherwise});
    }
    return e;
  }
  NodeP Or() {
    NodeP e = And();
    while (IsName("or")) {
      const size_t p = Next().pos;
      e = Make(Node::kBinary, p, {e, And()}, "or");
    }
    return e;
  }
  NodeP And() {
    NodeP e = Not();
    while (IsName("and")) {
      const size_t p = Next().pos;
      e = Make(Node::kBinary, p, {e, Not()}, "and");
    }
    return e;
  }
  NodeP Not() {
    Nest nest(*this);
    if (IsName("not")) {
      const size_t p = Next().pos;
      return Make(Node::kUnary, p, {Not()}, "not");
    }
    return Compare();
  }
  NodeP Compare() {
    NodeP e = Math1();
    while (true) {
      static const char* kCmp[] = {"==", "!=", "<", ">", "<=", ">="};
      bool cmp = false;
      for (const char* op : kCmp) cmp = cmp || IsOp(op);
      if (cmp) {
        const Token& t = Next();
        e = Make(Node::kBinary, t.pos, {e, Math1()}, t.text);
      } else if (IsName("in")) {
        const size_t p = Next().pos;
        e = Make(Node::kBinary, p, {e, Math1()}, "in");
      } else if (IsName("not") && IsName("in", 1)) {
        const size_t p = Next().pos;
        Next();
        e = Make(Node::kBinary, p, {e, Math1()}, "not in");
      } else {
        return e;
      }
    }
  }
  NodeP Math1() {
    NodeP e = Concat();
    while (IsOp("+") || IsOp("-")) {
      const Token& t = Next();
      e = Make(Node::kBinary, t.pos, {e, Concat()}, t.text);
    }
    return e;
  }
  NodeP Concat() {
    NodeP e = Math2();
    while (IsOp("~")) {
      const size_t p = Next().pos;
      e = Make(Node::kBinary, p, {e, Math2()}, "~");
    }
    return e;
  }
  NodeP Math2() {
    NodeP e = Pow();
    while (IsOp("*") || IsOp("/") || IsOp("//") || IsOp("%")) {
      const Token& t = Next();
      e = Make(Node::kBinary, t.pos, {e, Pow()}, t.text);
    }
    return e;
  }
  NodeP Pow() {
    NodeP e = Unary();
    while (IsOp("**")) {
      const size_t p = Next().pos;
      e = Make(Node::kBinary, p, {e, Unary()}, "**");
    }
    return e;
  }
  NodeP Unary() {
    Nest nest(*this);
    if (IsOp("-") || IsOp("+")) {
      const Token& t = Next();
      return Make(Node::kUnary, t.pos, {Unary()}, t.text);
    }
    return FilterTest(Postfix(Primary()));
  }

  void Args(const NodeP& call) {
    ExpectOp("(");
    while (!IsOp(")")) {
      if (Peek().type == Token::kName && IsOp("=", 1)) {
        std::string key = Next().text;
        Next();
        call->kwargs.emplace_back(key, Expr());
      } else {
        call->kids.push_back(Expr());
      }
      if (!IsOp(")")) ExpectOp(",");
    }
    Next();
  }

  NodeP Postfix(NodeP e) {
    while (true) {
      if (IsOp(".")) {
        Next();
        const size_t p = Peek().pos;  // the attribute's name
        e = Make(Node::kAttr, p, {e}, ExpectName());
      } else if (IsOp("[")) {
        const size_t p = Next().pos;
        NodeP a, b, c;
        bool slice = false;
        if (!IsOp(":")) a = Expr();
        if (IsOp(":")) {
          slice = true;
          Next();
          if (!IsOp(":") && !IsOp("]")) b = Expr();
          if (IsOp(":")) {
            Next();
            if (!IsOp("]")) c = Expr();
          }
        }
        ExpectOp("]");
        e = slice ? Make(Node::kSlice, p, {e, a, b, c}) : Make(Node::kIndex, p, {e, a});
      } else if (IsOp("(")) {
        auto call = Make(Node::kCall, e->pos, {e});
        Args(call);
        e = call;
      } else {
        return e;
      }
    }
  }

  NodeP FilterTest(NodeP e) {
    while (true) {
      if (IsOp("|")) {
        Next();
        const size_t p = Peek().pos;  // the filter's name
        auto f = Make(Node::kFilter, p, {e}, ExpectName());
        if (IsOp("(")) Args(f);
        e = Postfix(f);
      } else if (IsName("is")) {
        const size_t p = Next().pos;
        auto t = Make(Node::kTest, p, {e});
        if (IsName("not")) {
          Next();
          t->negate = true;
        }
        t->name = ExpectName();
        if (IsOp("(")) {
          Args(t);
        } else if (Peek().type == Token::kString || Peek().type == Token::kInt ||
                   Peek().type == Token::kFloat ||
                   (Peek().type == Token::kName && !IsName("and") && !IsName("or") &&
                    !IsName("else") && !IsName("if") && !IsName("in") && !IsName("not") &&
                    !IsName("is"))) {
          t->kids.push_back(Primary());  // `x is divisibleby 3`, `x is sameas none`
        }
        e = t;
      } else {
        return e;
      }
    }
  }

  NodeP Primary() {
    const Token& t = Next();
    auto lit = [&](json v) {
      auto n = Make(Node::kLiteral, t.pos, {});
      n->value = std::move(v);
      return n;
    };
    switch (t.type) {
      case Token::kString: {
        std::string s = t.text;
        while (Peek().type == Token::kString) s += Next().text;  // adjacent literals concatenate
        return lit(s);
      }
      case Token::kInt: try { return lit(std::stoll(t.text));
        } catch (const std::exception&) {
          Fail(t.pos, "integer " + t.text + " is out of range");
        }
      case Token::kFloat: {  // an underflow is the nearest double (0.0 past the denormals)
        const double v = std::strtod(t.text.c_str(), nullptr);
        if (std::isinf(v)) Fail(t.pos, "float " + t.text + " is out of range");
        return lit(v);
      }
      case Token::kName:
        if (t.text == "true" || t.text == "True") return lit(true);
        if (t.text == "false" || t.text == "False") return lit(false);
        if (t.text == "none" || t.text == "None") return lit(nullptr);
        return Make(Node::kName, t.pos, {}, t.text);
      case Token::kOp:
        if (t.text == "(") return Parenthesised(t.pos);
        if (t.text == "[") return ListLiteral(t.pos);
        if (t.text == "{") return DictLiteral(t.pos);
        break;
      default: break;
    }
    --i_;
    Fail(t.pos, "expected an expression" + Got());
  }

  // After the opening bracket at `pos`, up to and including the closing one.
  NodeP Parenthesised(size_t pos) {
    NodeP e = Expr();
    if (IsOp(",")) {  // a tuple: kept as a list
      auto list = Make(Node::kList, pos, {e});
      while (IsOp(",")) {
        Next();
        if (IsOp(")")) break;
        list->kids.push_back(Expr());
      }
      e = list;
    }
    ExpectOp(")");
    return e;
  }

  NodeP ListLiteral(size_t pos) {
    auto list = Make(Node::kList, pos, {});
    while (!IsOp("]")) {
      list->kids.push_back(Expr());
      if (!IsOp("]")) ExpectOp(",");
    }
    Next();
    return list;
  }

  NodeP DictLiteral(size_t pos) {
    auto dict = Make(Node::kDict, pos, {});
    while (!IsOp("}")) {
      dict->kids.push_back(Expr());
      ExpectOp(":");
      dict->kids.push_back(Expr());
      if (!IsOp("}")) ExpectOp(",");
    }
    Next();
    return dict;
  }

  std::vector<Token> t_;
  size_t i_ = 0;
  int depth_ = 0;
  const std::string& src_;
};

// ---------------------------------------------------------------- values

// NOLINTNEXTLINE(bugprone-exception-escape): json's destructor; bad_alloc only
struct Value {
  enum class K { kUndefined, kJson, kNamespace, kMacro, kGlobal };
  K k = K::kUndefined;
  json j;
  std::shared_ptr<json> ns;     // kNamespace: shared, attribute sets change it
  const Node* macro = nullptr;  // kMacro
  std::string global;           // kGlobal: range, namespace, raise_exception, strftime_now

  static Value Of(json v) {
    Value r;
    r.k = K::kJson;
    r.j = std::move(v);
    return r;
  }
  bool undefined() const { return k == K::kUndefined; }
  bool is_json() const { return k == K::kJson; }
};

// Code points of UTF-8 text (invalid bytes are kept as single units).
std::vector<std::string> CodePoints(const std::string& s) {
  std::vector<std::string> out;
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = s[i];
    size_t n = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 1;
    if (i + n > s.size()) n = 1;
    out.push_back(s.substr(i, n));
    i += n;
  }
  return out;
}

std::string FormatNumber(const json& v) {
  if (v.is_number_integer()) return v.dump();
  const double d = v.get<double>();
  if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e16) {
    std::ostringstream s;
    s.precision(1);
    s << std::fixed << d;
    return s.str();
  }
  return v.dump();
}

std::string ToJson(const json& v, int indent, int depth);

class Renderer {
 public:
  Renderer(const std::string& src, const json& context) : src_(src) {
    scopes_.emplace_back();
    for (auto it = context.begin(); it != context.end(); ++it)
      scopes_.back()[it.key()] = Value::Of(it.value());
    for (const char* g : {"range", "namespace", "raise_exception", "strftime_now"}) {
      if (!context.contains(g)) {
        Value v;
        v.k = Value::K::kGlobal;
        v.global = g;
        scopes_.back()[g] = v;
      }
    }
  }

  enum class Flow { kNormal, kBreak, kContinue };

  Flow Exec(const Node& n, std::string& out) {
    switch (n.kind) {
      case Node::kRoot: return Exec(*n.kids[0], out);
      case Node::kBlock:
        for (const auto& k : n.kids) {
          const Flow f = Exec(*k, out);
          if (f != Flow::kNormal) return f;
        }
        return Flow::kNormal;
      case Node::kText: out += n.value.get_ref<const std::string&>(); return Flow::kNormal;
      case Node::kOutput: out += Str(Eval(*n.kids[0])); return Flow::kNormal;
      case Node::kIf:
        if (Truthy(Eval(*n.kids[0]))) return Exec(*n.kids[1], out);
        if (n.kids.size() > 2) return Exec(*n.kids[2], out);
        return Flow::kNormal;
      case Node::kFor: return For(n, out);
      case Node::kSet: Set(n); return Flow::kNormal;
      case Node::kMacro: {
        Value v;
        v.k = Value::K::kMacro;
        v.macro = &n;
        scopes_.back()[n.name] = v;
        return Flow::kNormal;
      }
      case Node::kBreak:
        if (loops_ == 0) Fail(n, "{% break %} outside a loop");
        return Flow::kBreak;
      case Node::kContinue:
        if (loops_ == 0) Fail(n, "{% continue %} outside a loop");
        return Flow::kContinue;
      default: Fail(n, "internal: not a statement");
    }
  }

 private:
  [[noreturn]] void Fail(const Node& n, const std::string& what) const {
    throw Exception(Exception::kInvalidArgument,
                    "chat template, " + Where(src_, n.pos) + ": " + what);
  }

  std::string TypeName(const Value& v) const {
    switch (v.k) {
      case Value::K::kUndefined: return "undefined";
      case Value::K::kNamespace: return "namespace";
      case Value::K::kMacro: return "macro";
      case Value::K::kGlobal: return "function";
      default: break;
    }
    const json& j = v.j;
    if (j.is_null()) return "none";
    if (j.is_boolean()) return "boolean";
    if (j.is_number_integer()) return "integer";
    if (j.is_number()) return "float";
    if (j.is_string()) return "string";
    if (j.is_array()) return "list";
    return "mapping";
  }

  static std::string Article(const std::string& noun) {
    return (std::string("aeiou").find(noun[0]) != std::string::npos ? "an " : "a ") + noun;
  }

  static bool Truthy(const Value& v) {
    if (v.undefined()) return false;
    if (!v.is_json()) return true;
    const json& j = v.j;
    if (j.is_null()) return false;
    if (j.is_boolean()) return j.get<bool>();
    if (j.is_number()) return j.get<double>() != 0;
    if (j.is_string())
      return !j.get_ref<const std::string&>().empty();  // json::empty() is false for any string
    if (j.is_array() || j.is_object()) return !j.empty();
    return true;
  }

  std::string Str(const Value& v) const {
    switch (v.k) {
      case Value::K::kUndefined: return "";
      case Value::K::kNamespace: return ToJson(*v.ns, 0, 0);
      case Value::K::kMacro:
      case Value::K::kGlobal: return "[function]";
      default: break;
    }
    const json& j = v.j;
    if (j.is_string()) return j.get<std::string>();
    if (j.is_number()) return FormatNumber(j);
    if (j.is_boolean()) return j.get<bool>() ? "true" : "false";
    if (j.is_null()) return "null";
    return ToJson(j, 0, 0);
  }

  const json& Json(const Node& at, const Value& v, const char* what) const {
    if (!v.is_json()) Fail(at, std::string(what) + " needs a value, got " + TypeName(v));
    return v.j;
  }

  Value Lookup(const std::string& name) const {
    for (auto s = scopes_.rbegin(); s != scopes_.rend(); ++s) {
      auto it = s->find(name);
      if (it != s->end()) return it->second;
    }
    return {};
  }

  void Set(const Node& n) {
    Value v;
    if (n.value.is_boolean()) {
      std::string body;
      Exec(*n.kids[0], body);
      v = Value::Of(body);
    } else {
      v = Eval(*n.kids[0]);
    }
    if (n.names.size() == 1) {
      scopes_.back()[n.names[0]] = v;
      return;
    }
    Value target = Lookup(n.names[0]);
    if (target.k != Value::K::kNamespace)
      Fail(n, "cannot set " + n.names[0] + "." + n.names[1] + ": " + n.names[0] +
                  " is not a namespace()");
    if (!v.is_json()) Fail(n, "a namespace attribute must hold a value, got " + TypeName(v));
    (*target.ns)[n.names[1]] = v.j;
  }

  // {% for names in sequence [if condition] %}body[{% else %}empty]{% endfor %}:
  // kids[0] is the sequence, [1] the body, [2] the else block, [3] the condition.
  Flow For(const Node& loop, std::string& out) {
    std::vector<json> items = LoopItems(loop);
    if (loop.kids[3]) FilterLoopItems(loop, items);
    if (items.empty()) return loop.kids[2] ? Exec(*loop.kids[2], out) : Flow::kNormal;
    ++loops_;
    const int64_t length = static_cast<int64_t>(items.size());
    for (int64_t index = 0; index < length; ++index) {
      scopes_.emplace_back();
      BindLoopNames(loop, items[index]);
      scopes_.back()["loop"] = LoopVariable(items, index);
      Flow flow;
      try {
        flow = Exec(*loop.kids[1], out);
      } catch (...) {
        scopes_.pop_back();
        --loops_;
        throw;
      }
      scopes_.pop_back();
      if (flow == Flow::kBreak) break;
    }
    --loops_;
    return Flow::kNormal;
  }

  // What a for loop goes over: a list's items, a mapping's keys (or [key,
  // value] pairs when the loop has two or more names), a string's characters,
  // a namespace's keys; nothing for an undefined sequence.
  std::vector<json> LoopItems(const Node& loop) {
    const Value sequence = Eval(*loop.kids[0]);
    std::vector<json> items;
    if (sequence.k == Value::K::kNamespace) {
      for (auto it = sequence.ns->begin(); it != sequence.ns->end(); ++it)
        items.push_back(it.key());
    } else if (sequence.is_json() && sequence.j.is_array()) {
      items.assign(sequence.j.begin(), sequence.j.end());
    } else if (sequence.is_json() && sequence.j.is_object()) {
      for (auto it = sequence.j.begin(); it != sequence.j.end(); ++it)
        items.push_back(loop.names.size() > 1 ? json::array({it.key(), it.value()})
                                              : json(it.key()));
    } else if (sequence.is_json() && sequence.j.is_string()) {
      for (const auto& character : CodePoints(sequence.j.get<std::string>()))
        items.push_back(character);
    } else if (!sequence.undefined() && !(sequence.is_json() && sequence.j.is_null())) {
      Fail(loop, "cannot loop over " + Article(TypeName(sequence)));
    } else if (sequence.is_json()) {
      Fail(loop, "cannot loop over none");
    }
    return items;
  }

  // Binds the loop's names to `item` in the innermost scope, unpacking it when
  // the loop has more than one name.
  void BindLoopNames(const Node& loop, const json& item) {
    if (loop.names.size() == 1) {
      scopes_.back()[loop.names[0]] = Value::Of(item);
      return;
    }
    if (!item.is_array() || item.size() != loop.names.size()) {
      Fail(loop, "cannot unpack " + item.dump() + " into " + std::to_string(loop.names.size()) +
                     " names");
    }
    for (size_t i = 0; i < loop.names.size(); ++i)
      scopes_.back()[loop.names[i]] = Value::Of(item[i]);
  }

  // {% for x in xs if cond %}: keeps the items whose condition holds, before
  // loop.* counts them.
  void FilterLoopItems(const Node& loop, std::vector<json>& items) {
    std::vector<json> kept;
    for (const auto& item : items) {
      scopes_.emplace_back();
      BindLoopNames(loop, item);
      if (Truthy(Eval(*loop.kids[3]))) kept.push_back(item);
      scopes_.pop_back();
    }
    items.swap(kept);
  }

  // The `loop` variable of item `index` of `items`.
  static Value LoopVariable(const std::vector<json>& items, int64_t index) {
    const int64_t length = static_cast<int64_t>(items.size());
    return Value::Of({{"index0", index},
                      {"index", index + 1},
                      {"first", index == 0},
                      {"last", index == length - 1},
                      {"length", length},
                      {"revindex", length - index},
                      {"revindex0", length - index - 1},
                      {"previtem", index > 0 ? items[index - 1] : json()},
                      {"nextitem", index + 1 < length ? items[index + 1] : json()}});
  }

  Value Eval(const Node& n) {
    switch (n.kind) {
      case Node::kLiteral: return Value::Of(n.value);
      case Node::kName: return Lookup(n.name);
      case Node::kList: {
        json a = json::array();
        for (const auto& k : n.kids) a.push_back(Json(*k, Eval(*k), "a list item"));
        return Value::Of(a);
      }
      case Node::kDict: {
        json o = json::object();
        for (size_t i = 0; i + 1 < n.kids.size(); i += 2) {
          const Value key = Eval(*n.kids[i]);
          if (!key.is_json() || !key.j.is_string())
            Fail(*n.kids[i], "dictionary keys must be strings");
          o[key.j.get<std::string>()] =
              Json(*n.kids[i + 1], Eval(*n.kids[i + 1]), "a dictionary value");
        }
        return Value::Of(o);
      }
      case Node::kAttr: return Member(n, Eval(*n.kids[0]), json(n.name));
      case Node::kIndex: {
        const Value key = Eval(*n.kids[1]);
        return Member(n, Eval(*n.kids[0]), key.is_json() ? key.j : json());
      }
      case Node::kSlice: return Slice(n);
      case Node::kCall: return Call(n);
      case Node::kFilter: return Filter(n);
      case Node::kTest: {
        const bool r = Test(n);
        return Value::Of(n.negate ? !r : r);
      }
      case Node::kUnary: {
        Value v = Eval(*n.kids[0]);
        if (n.name == "not") return Value::Of(!Truthy(v));
        const json& j = Json(n, v, "unary minus");
        if (!j.is_number()) Fail(n, "unary " + n.name + " needs a number, got " + TypeName(v));
        if (n.name == "+") return v;
        return j.is_number_integer() ? Value::Of(-j.get<int64_t>()) : Value::Of(-j.get<double>());
      }
      case Node::kBinary: return Binary(n);
      case Node::kTernary:
        if (Truthy(Eval(*n.kids[1]))) return Eval(*n.kids[0]);
        return n.kids[2] ? Eval(*n.kids[2]) : Value{};
      default: Fail(n, "internal: not an expression");
    }
  }

  Value Member(const Node& n, const Value& obj, const json& key) {
    if (obj.k == Value::K::kNamespace) {
      if (key.is_string() && obj.ns->contains(key.get<std::string>()))
        return Value::Of((*obj.ns)[key.get<std::string>()]);
      return {};
    }
    if (obj.undefined()) Fail(n, "cannot read " + key.dump() + " of an undefined value");
    if (!obj.is_json()) Fail(n, "cannot read " + key.dump() + " of " + Article(TypeName(obj)));
    const json& j = obj.j;
    if (j.is_object()) {
      if (key.is_string()) {
        auto it = j.find(key.get<std::string>());
        if (it != j.end()) return Value::Of(*it);
      }
      return {};
    }
    if ((j.is_array() || j.is_string()) && key.is_number_integer()) {
      if (j.is_array()) {
        int64_t i = key.get<int64_t>();
        if (i < 0) i += static_cast<int64_t>(j.size());
        if (i < 0 || i >= static_cast<int64_t>(j.size())) return {};
        return Value::Of(j[static_cast<size_t>(i)]);
      }
      const auto cps = CodePoints(j.get<std::string>());
      int64_t i = key.get<int64_t>();
      if (i < 0) i += static_cast<int64_t>(cps.size());
      if (i < 0 || i >= static_cast<int64_t>(cps.size())) return {};
      return Value::Of(cps[static_cast<size_t>(i)]);
    }
    if (j.is_null()) Fail(n, "cannot read " + key.dump() + " of none");
    return {};
  }

  Value Slice(const Node& n) {
    const Value obj = Eval(*n.kids[0]);
    auto bound = [&](const NodeP& k) -> std::optional<int64_t> {
      if (!k) return std::nullopt;
      const Value v = Eval(*k);
      if (v.is_json() && v.j.is_null()) return std::nullopt;
      if (!v.is_json() || !v.j.is_number_integer()) Fail(*k, "slice bounds must be integers");
      return v.j.get<int64_t>();
    };
    const auto a = bound(n.kids[1]), b = bound(n.kids[2]), c = bound(n.kids[3]);
    const int64_t step = c.value_or(1);
    if (step == 0) Fail(n, "slice step cannot be zero");
    std::vector<json> items;
    bool text = false;
    if (obj.is_json() && obj.j.is_array()) {
      items.assign(obj.j.begin(), obj.j.end());
    } else if (obj.is_json() && obj.j.is_string()) {
      text = true;
      for (const auto& cp : CodePoints(obj.j.get<std::string>())) items.push_back(cp);
    } else {
      Fail(n, "cannot slice " + Article(TypeName(obj)));
    }
    const int64_t len = static_cast<int64_t>(items.size());
    auto clamp = [&](std::optional<int64_t> v, int64_t def) {
      if (!v) return def;
      int64_t x = *v < 0 ? *v + len : *v;
      if (step > 0) return std::clamp<int64_t>(x, 0, len);
      return std::clamp<int64_t>(x, -1, len - 1);
    };
    const int64_t start = clamp(a, step > 0 ? 0 : len - 1), stop = clamp(b, step > 0 ? len : -1);
    json r = json::array();
    std::string s;
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      if (text) {
        s += items[static_cast<size_t>(i)].get<std::string>();
      } else {
        r.push_back(items[static_cast<size_t>(i)]);
      }
    }
    return text ? Value::Of(s) : Value::Of(r);
  }

  Value Binary(const Node& n) {
    const std::string& op = n.name;
    if (op == "and") {
      Value l = Eval(*n.kids[0]);
      return Truthy(l) ? Eval(*n.kids[1]) : l;
    }
    if (op == "or") {
      Value l = Eval(*n.kids[0]);
      return Truthy(l) ? l : Eval(*n.kids[1]);
    }
    const Value l = Eval(*n.kids[0]), r = Eval(*n.kids[1]);
    if (op == "~") return Value::Of(Str(l) + Str(r));
    if (op == "==" || op == "!=") {
      bool eq;
      if (l.is_json() && r.is_json()) {
        eq = l.j == r.j;
      } else {
        eq = l.k == r.k && l.undefined();
      }
      return Value::Of(op == "==" ? eq : !eq);
    }
    if (op == "in" || op == "not in") {
      const bool found = Contains(n, l, r);
      return Value::Of(op == "in" ? found : !found);
    }
    if (op == "+" && ((l.is_json() && l.j.is_string()) || (r.is_json() && r.j.is_string()))) {
      return Value::Of(Str(l) + Str(r));
    }
    if (op == "+" && l.is_json() && r.is_json() && l.j.is_array() && r.j.is_array()) {
      json a = l.j;
      a.insert(a.end(), r.j.begin(), r.j.end());
      return Value::Of(a);
    }
    if (op == "*" && l.is_json() && l.j.is_string() && r.is_json() && r.j.is_number_integer()) {
      std::string s;
      for (int64_t i = 0; i < r.j.get<int64_t>(); ++i) s += l.j.get<std::string>();
      return Value::Of(s);
    }
    if (op == "<" || op == ">" || op == "<=" || op == ">=") {
      if (l.is_json() && r.is_json() && l.j.is_string() && r.j.is_string()) {
        const int c = l.j.get<std::string>().compare(r.j.get<std::string>());
        return Value::Of(op == "<" ? c < 0 : op == ">" ? c > 0 : op == "<=" ? c <= 0 : c >= 0);
      }
    }
    return Arithmetic(n, op, l, r);
  }

  // `l in r`: a substring, a list element, a mapping's or namespace's key.
  bool Contains(const Node& n, const Value& l, const Value& r) {
    bool found = false;
    if (r.is_json() && r.j.is_string()) {
      if (!l.is_json() || !l.j.is_string())
        Fail(n, "'in <string>' needs a string on the left, got " + TypeName(l));
      found = r.j.get<std::string>().find(l.j.get<std::string>()) != std::string::npos;
    } else if (r.is_json() && r.j.is_array()) {
      found = l.is_json() && std::find(r.j.begin(), r.j.end(), l.j) != r.j.end();
    } else if (r.is_json() && r.j.is_object()) {
      found = l.is_json() && l.j.is_string() && r.j.contains(l.j.get<std::string>());
    } else if (r.k == Value::K::kNamespace) {
      found = l.is_json() && l.j.is_string() && r.ns->contains(l.j.get<std::string>());
    } else if (!r.undefined()) {
      Fail(n, "'in' needs a string, list or mapping on the right, got " + TypeName(r));
    }
    return found;
  }

  // Comparison and arithmetic on numbers and booleans (integers stay
  // integers unless either side is a float, as in Python).
  Value Arithmetic(const Node& n, const std::string& op, const Value& l, const Value& r) {
    const bool nums = l.is_json() && r.is_json() && (l.j.is_number() || l.j.is_boolean()) &&
                      (r.j.is_number() || r.j.is_boolean());
    if (!nums)
      Fail(n,
           "cannot apply '" + op + "' to " + Article(TypeName(l)) + " and " + Article(TypeName(r)));
    const double x = l.j.is_boolean() ? l.j.get<bool>() : l.j.get<double>();
    const double y = r.j.is_boolean() ? r.j.get<bool>() : r.j.get<double>();
    const bool ints = !l.j.is_number_float() && !r.j.is_number_float();
    if (op == "<") return Value::Of(x < y);
    if (op == ">") return Value::Of(x > y);
    if (op == "<=") return Value::Of(x <= y);
    if (op == ">=") return Value::Of(x >= y);
    auto num = [&](double v) { return ints ? Value::Of(static_cast<int64_t>(v)) : Value::Of(v); };
    if (op == "+") return num(x + y);
    if (op == "-") return num(x - y);
    if (op == "*") return num(x * y);
    if (op == "**") return num(std::pow(x, y));
    if (y == 0 && (op == "/" || op == "//" || op == "%")) Fail(n, "division by zero");
    if (op == "/") return Value::Of(x / y);
    if (op == "//") return num(std::floor(x / y));
    if (op == "%") return num(x - y * std::floor(x / y));
    Fail(n, "unknown operator " + op);
  }

  std::vector<Value> EvalArgs(const Node& n, size_t first) {
    std::vector<Value> args;
    for (size_t i = first; i < n.kids.size(); ++i) args.push_back(Eval(*n.kids[i]));
    return args;
  }

  const std::string& StrArg(const Node& n, const std::vector<Value>& args, size_t i,
                            const std::string& what) const {
    if (i >= args.size() || !args[i].is_json() || !args[i].j.is_string())
      Fail(n, what + " needs a string argument");
    return args[i].j.get_ref<const std::string&>();
  }

  static std::string Strip(const std::string& s, const std::string& chars, bool left, bool right) {
    size_t b = 0, e = s.size();
    auto in = [&](char c) {
      return chars.empty() ? IsSpace(c) : chars.find(c) != std::string::npos;
    };
    if (left)
      while (b < e && in(s[b])) ++b;
    if (right)
      while (e > b && in(s[e - 1])) --e;
    return s.substr(b, e - b);
  }

  // 0 lower, 1 upper: Unicode simple case mapping, code point by code point
  // (invalid bytes are kept).
  static std::string Case(const std::string& s, int mode) {
    std::string out;
    out.reserve(s.size());
    const auto* p = reinterpret_cast<const utf8proc_uint8_t*>(s.data());
    for (size_t i = 0; i < s.size();) {
      utf8proc_int32_t cp = 0;
      const utf8proc_ssize_t n =
          utf8proc_iterate(p + i, static_cast<utf8proc_ssize_t>(s.size() - i), &cp);
      if (n <= 0) {
        out += s[i++];
        continue;
      }
      cp = mode ? utf8proc_toupper(cp) : utf8proc_tolower(cp);
      utf8proc_uint8_t buf[4];
      out.append(reinterpret_cast<const char*>(buf),
                 static_cast<size_t>(utf8proc_encode_char(cp, buf)));
      i += static_cast<size_t>(n);
    }
    return out;
  }

  static std::string Title(const std::string& s) {
    std::string r = s;
    bool start = true;
    for (char& c : r) {
      const auto u = static_cast<unsigned char>(c);
      c = static_cast<char>(start ? std::toupper(u) : std::tolower(u));
      start = !std::isalnum(u);
    }
    return r;
  }

  static std::string ReplaceAll(std::string s, const std::string& from, const std::string& to,
                                int64_t count) {
    if (from.empty()) return s;
    size_t p = 0;
    for (int64_t done = 0;
         (count < 0 || done < count) && (p = s.find(from, p)) != std::string::npos; ++done) {
      s.replace(p, from.size(), to);
      p += to.size();
    }
    return s;
  }

  // s.startswith(x) / s.endswith(x) (`m`), x a string or a list of strings.
  bool HasAffix(const Node& n, const std::string& s, const std::string& m,
                const std::vector<Value>& args) {
    std::vector<std::string> options;
    if (!args.empty() && args[0].is_json() && args[0].j.is_array()) {
      for (const auto& o : args[0].j) {
        if (!o.is_string()) Fail(n, m + "() needs strings");
        options.push_back(o.get<std::string>());
      }
    } else {
      options.push_back(StrArg(n, args, 0, m + "()"));
    }
    for (const auto& o : options) {
      if (o.size() <= s.size() &&
          (m == "startswith" ? s.compare(0, o.size(), o) == 0
                             : s.compare(s.size() - o.size(), o.size(), o) == 0)) {
        return true;
      }
    }
    return false;
  }

  // s.split(sep=None, maxsplit=-1), as Python's.
  json Split(const Node& n, const std::string& s, const std::vector<Value>& args) {
    int64_t max = -1;
    if (args.size() > 1 && args[1].is_json() && args[1].j.is_number_integer())
      max = args[1].j.get<int64_t>();
    if (args.empty() || (args[0].is_json() && args[0].j.is_null())) return SplitOnSpace(s, max);
    json parts = json::array();
    const std::string& sep = StrArg(n, args, 0, "split()");
    if (sep.empty()) Fail(n, "split() separator is empty");
    size_t i = 0;
    while (true) {
      const size_t e = (max >= 0 && static_cast<int64_t>(parts.size()) == max) ? std::string::npos
                                                                               : s.find(sep, i);
      if (e == std::string::npos) {
        parts.push_back(s.substr(i));
        break;
      }
      parts.push_back(s.substr(i, e - i));
      i = e + sep.size();
    }
    return parts;
  }

  // Split at runs of white space, at most `max` times (< 0: no limit).
  static json SplitOnSpace(const std::string& s, int64_t max) {
    json parts = json::array();
    size_t i = 0;
    while (true) {
      while (i < s.size() && IsSpace(s[i])) ++i;
      if (i >= s.size()) break;
      if (max >= 0 && static_cast<int64_t>(parts.size()) == max) {
        parts.push_back(Strip(s.substr(i), "", false, true));
        break;
      }
      size_t e = i;
      while (e < s.size() && !IsSpace(s[e])) ++e;
      parts.push_back(s.substr(i, e - i));
      i = e;
    }
    return parts;
  }

  Value StringMethod(const Node& n, const std::string& s, const std::string& m,
                     const std::vector<Value>& args) {
    auto chars = [&]() -> std::string {
      if (args.empty() || (args[0].is_json() && args[0].j.is_null())) return "";
      return StrArg(n, args, 0, m + "()");
    };
    if (m == "strip") return Value::Of(Strip(s, chars(), true, true));
    if (m == "lstrip") return Value::Of(Strip(s, chars(), true, false));
    if (m == "rstrip") return Value::Of(Strip(s, chars(), false, true));
    if (m == "upper") return Value::Of(Case(s, 1));
    if (m == "lower") return Value::Of(Case(s, 0));
    if (m == "title") return Value::Of(Title(s));
    if (m == "capitalize")
      return Value::Of(s.empty() ? s : Case(s.substr(0, 1), 1) + Case(s.substr(1), 0));
    if (m == "startswith" || m == "endswith") return Value::Of(HasAffix(n, s, m, args));
    if (m == "split") return Value::Of(Split(n, s, args));
    if (m == "replace") {
      int64_t count = -1;
      if (args.size() > 2 && args[2].is_json() && args[2].j.is_number_integer())
        count = args[2].j.get<int64_t>();
      return Value::Of(
          ReplaceAll(s, StrArg(n, args, 0, "replace()"), StrArg(n, args, 1, "replace()"), count));
    }
    if (m == "find") {
      const size_t p = s.find(StrArg(n, args, 0, "find()"));
      return Value::Of(p == std::string::npos
                           ? int64_t{-1}
                           : static_cast<int64_t>(CodePoints(s.substr(0, p)).size()));
    }
    if (m == "count") {
      const std::string& sub = StrArg(n, args, 0, "count()");
      int64_t c = 0;
      for (size_t p = 0; !sub.empty() && (p = s.find(sub, p)) != std::string::npos; p += sub.size())
        ++c;
      return Value::Of(c);
    }
    if (m == "join") {
      if (args.empty() || !args[0].is_json() || !args[0].j.is_array())
        Fail(n, "join() needs a list");
      std::string r;
      for (size_t i = 0; i < args[0].j.size(); ++i)
        r += (i ? s : "") + Str(Value::Of(args[0].j[i]));
      return Value::Of(r);
    }
    Fail(n, "unsupported string method ." + m + "()");
  }

  Value Call(const Node& n) {
    const Node& callee = *n.kids[0];
    if (callee.kind == Node::kAttr) {
      const Value obj = Eval(*callee.kids[0]);
      const std::string& m = callee.name;
      if (obj.is_json() && obj.j.is_string()) {
        return StringMethod(n, obj.j.get<std::string>(), m, EvalArgs(n, 1));
      }
      if (obj.is_json() && obj.j.is_object() &&
          (m == "items" || m == "keys" || m == "values" || m == "get")) {
        return MappingMethod(n, obj.j, m, EvalArgs(n, 1));
      }
    }
    const Value f = Eval(callee);
    const auto args = EvalArgs(n, 1);
    if (f.k == Value::K::kMacro) return CallMacro(n, *f.macro, args);
    if (f.k != Value::K::kGlobal) {
      Fail(n, callee.kind == Node::kAttr ? "unsupported method ." + callee.name + "() on " +
                                               Article(TypeName(Eval(*callee.kids[0])))
                                         : "cannot call " + Article(TypeName(f)));
    }
    return CallGlobal(n, f.global, args);
  }

  // d.items(), d.keys(), d.values(), d.get(key, default=none).
  Value MappingMethod(const Node& n, const json& obj, const std::string& m,
                      const std::vector<Value>& args) {
    json r = json::array();
    if (m == "get") {
      const std::string& key = StrArg(n, args, 0, "get()");
      auto it = obj.find(key);
      if (it != obj.end()) return Value::Of(*it);
      return args.size() > 1 ? args[1] : Value::Of(nullptr);
    }
    for (auto it = obj.begin(); it != obj.end(); ++it) {
      r.push_back(m == "items"  ? json::array({it.key(), it.value()})
                  : m == "keys" ? json(it.key())
                                : it.value());
    }
    return Value::Of(r);
  }

  // The global functions: raise_exception, namespace, range, strftime_now.
  Value CallGlobal(const Node& n, const std::string& name, const std::vector<Value>& args) {
    if (name == "raise_exception") {
      throw Exception(Exception::kInvalidArgument,
                      "chat template, " + Where(src_, n.pos) +
                          ": raise_exception: " + (args.empty() ? "" : Str(args[0])));
    }
    if (name == "namespace") return Namespace(n, args);
    if (name == "range") return Range(n, args);
    if (name == "strftime_now") {
      const std::string& fmt = StrArg(n, args, 0, "strftime_now()");
      const std::time_t now = std::time(nullptr);
      std::tm tm{};
      localtime_r(&now, &tm);
      char buf[256];
      const size_t len = std::strftime(buf, sizeof buf, fmt.c_str(), &tm);
      return Value::Of(std::string(buf, len));
    }
    Fail(n, "unknown function " + name);
  }

  Value Namespace(const Node& n, const std::vector<Value>& args) {
    Value v;
    v.k = Value::K::kNamespace;
    v.ns = std::make_shared<json>(json::object());
    if (!args.empty()) {
      if (!args[0].is_json() || !args[0].j.is_object())
        Fail(n, "namespace() takes a mapping or keyword arguments");
      *v.ns = args[0].j;
    }
    for (const auto& [key, expr] : n.kwargs) (*v.ns)[key] = Json(*expr, Eval(*expr), "namespace()");
    return v;
  }

  Value Range(const Node& n, const std::vector<Value>& args) {
    std::vector<int64_t> a;
    for (const auto& v : args) {
      if (!v.is_json() || !v.j.is_number_integer()) Fail(n, "range() needs integers");
      a.push_back(v.j.get<int64_t>());
    }
    if (a.empty() || a.size() > 3) Fail(n, "range() takes 1 to 3 integers");
    const int64_t start = a.size() > 1 ? a[0] : 0, stop = a.size() > 1 ? a[1] : a[0],
                  step = a.size() > 2 ? a[2] : 1;
    if (step == 0) Fail(n, "range() step cannot be zero");
    json r = json::array();
    for (int64_t i = start; step > 0 ? i < stop : i > stop; i += step) {
      r.push_back(i);
      if (r.size() > 1000000) Fail(n, "range() is too long");
    }
    return Value::Of(r);
  }

  Value CallMacro(const Node& call, const Node& m, const std::vector<Value>& args) {
    if (args.size() > m.names.size())
      Fail(call, "macro " + m.name + " takes " + std::to_string(m.names.size()) + " arguments");
    if (++depth_ > 100) Fail(call, "macros nest more than 100 deep");
    std::map<std::string, Value> frame;
    for (size_t i = 0; i < m.names.size(); ++i) {
      if (i < args.size()) {
        frame[m.names[i]] = args[i];
      } else if (m.kids[i]) {
        frame[m.names[i]] = Eval(*m.kids[i]);
      }
    }
    for (const auto& [key, expr] : call.kwargs) {
      if (std::find(m.names.begin(), m.names.end(), key) == m.names.end())
        Fail(*expr, "macro " + m.name + " has no argument " + key);
      frame[key] = Eval(*expr);
    }
    scopes_.push_back(std::move(frame));
    std::string out;
    const int loops = loops_;
    loops_ = 0;
    try {
      Exec(*m.kids.back(), out);
    } catch (...) {
      scopes_.pop_back();
      loops_ = loops;
      --depth_;
      throw;
    }
    loops_ = loops;
    scopes_.pop_back();
    --depth_;
    return Value::Of(out);
  }

  // A filter's operands: the node, its name, the value, the value as JSON
  // and the positional arguments.
  struct FilterCall {
    const Node& n;
    const std::string& name;
    const Value& value;
    const json& j;
    const std::vector<Value>& args;
  };
  // A filter of kFilters: its result, or nullopt when it cannot take this
  // type of value.
  using FilterFn = std::optional<Value> (Renderer::*)(const FilterCall&);

  Value Filter(const Node& n) {
    const Value v = Eval(*n.kids[0]);
    const auto args = EvalArgs(n, 1);
    const std::string& f = n.name;
    if (f == "default" || f == "d") return DefaultFilter(n, v, args);
    if (f == "string") return Value::Of(Str(v));
    if (f == "tojson") return ToJsonFilter(n, v, args);
    if (v.undefined() && (f == "length" || f == "count")) return Value::Of(0);
    const json& j = Json(n, v, ("filter " + f).c_str());
    static const std::map<std::string, FilterFn> kFilters = {
        {"length", &Renderer::LengthFilter},
        {"count", &Renderer::LengthFilter},
        {"trim", &Renderer::TrimFilter},
        {"upper", &Renderer::CaseFilter},
        {"lower", &Renderer::CaseFilter},
        {"title", &Renderer::TitleFilter},
        {"capitalize", &Renderer::StringMethodFilter},
        {"replace", &Renderer::StringMethodFilter},
        {"join", &Renderer::JoinFilter},
        {"first", &Renderer::FirstLastFilter},
        {"last", &Renderer::FirstLastFilter},
        {"list", &Renderer::ListFilter},
        {"reverse", &Renderer::ReverseFilter},
        {"items", &Renderer::ItemsFilter},
        {"int", &Renderer::IntFilter},
        {"float", &Renderer::FloatFilter},
        {"abs", &Renderer::AbsFilter},
    };
    const auto it = kFilters.find(f);
    if (it == kFilters.end()) Fail(n, "unsupported filter " + f);
    if (std::optional<Value> r = (this->*it->second)(FilterCall{n, f, v, j, args}))
      return *std::move(r);
    Fail(n, "filter " + f + " cannot take " + Article(TypeName(v)));
  }

  std::optional<Value> Kwarg(const Node& n, const char* key) {
    for (const auto& [k, e] : n.kwargs) {
      if (k == key) return Eval(*e);
    }
    return std::nullopt;
  }

  Value DefaultFilter(const Node& n, const Value& v, const std::vector<Value>& args) {
    const bool boolean = (args.size() > 1 && Truthy(args[1])) ||
                         (Kwarg(n, "boolean") && Truthy(*Kwarg(n, "boolean")));
    Value def = args.empty() ? Value::Of("") : args[0];
    if (v.undefined() || (boolean && !Truthy(v))) return def;
    return v;
  }

  Value ToJsonFilter(const Node& n, const Value& v, const std::vector<Value>& args) {
    int indent = 0;
    if (auto i = Kwarg(n, "indent"); i && i->is_json() && i->j.is_number_integer())
      indent = static_cast<int>(i->j.get<int64_t>());
    if (!args.empty() && args[0].is_json() && args[0].j.is_number_integer())
      indent = static_cast<int>(args[0].j.get<int64_t>());
    if (v.k == Value::K::kNamespace) return Value::Of(ToJson(*v.ns, indent, 0));
    return Value::Of(v.undefined() ? "null" : ToJson(Json(n, v, "tojson"), indent, 0));
  }

  std::optional<Value> LengthFilter(const FilterCall& c) {
    if (c.j.is_string())
      return Value::Of(static_cast<int64_t>(CodePoints(c.j.get<std::string>()).size()));
    if (c.j.is_array() || c.j.is_object()) return Value::Of(static_cast<int64_t>(c.j.size()));
    return std::nullopt;
  }

  std::optional<Value> TrimFilter(const FilterCall& c) {
    if (!c.j.is_string()) return std::nullopt;
    std::string chars;
    if (!c.args.empty()) chars = StrArg(c.n, c.args, 0, "trim");
    return Value::Of(Strip(c.j.get<std::string>(), chars, true, true));
  }

  std::optional<Value> CaseFilter(const FilterCall& c) {  // upper, lower
    if (!c.j.is_string()) return std::nullopt;
    return Value::Of(Case(c.j.get<std::string>(), c.name == "upper"));
  }

  std::optional<Value> TitleFilter(const FilterCall& c) {
    if (!c.j.is_string()) return std::nullopt;
    return Value::Of(Title(c.j.get<std::string>()));
  }

  std::optional<Value> StringMethodFilter(
      const FilterCall& c) {  // capitalize, replace: as the methods
    if (!c.j.is_string()) return std::nullopt;
    return StringMethod(c.n, c.j.get<std::string>(), c.name,
                        c.name == "replace" ? c.args : std::vector<Value>{});
  }

  std::optional<Value> JoinFilter(const FilterCall& c) {
    if (!c.j.is_array()) return std::nullopt;
    std::string sep = c.args.empty() ? "" : StrArg(c.n, c.args, 0, "join");
    std::string r;
    for (size_t i = 0; i < c.j.size(); ++i) r += (i ? sep : "") + Str(Value::Of(c.j[i]));
    return Value::Of(r);
  }

  std::optional<Value> FirstLastFilter(const FilterCall& c) {
    if (!c.j.is_array() && !c.j.is_string()) return std::nullopt;
    if (c.j.is_string() ? c.j.get_ref<const std::string&>().empty() : c.j.empty())
      return Value{};  // undefined
    return Member(c.n, c.value, json(c.name == "first" ? 0 : -1));
  }

  std::optional<Value> ListFilter(const FilterCall& c) {
    if (c.j.is_array()) return c.value;
    json r = json::array();
    if (c.j.is_string()) {
      for (const auto& cp : CodePoints(c.j.get<std::string>())) r.push_back(cp);
      return Value::Of(r);
    }
    if (c.j.is_object()) {
      for (auto it = c.j.begin(); it != c.j.end(); ++it) r.push_back(it.key());
      return Value::Of(r);
    }
    return std::nullopt;
  }

  std::optional<Value> ReverseFilter(const FilterCall& c) {
    if (c.j.is_string()) {
      auto cps = CodePoints(c.j.get<std::string>());
      std::string r;
      for (auto it = cps.rbegin(); it != cps.rend(); ++it) r += *it;
      return Value::Of(r);
    }
    if (!c.j.is_array()) return std::nullopt;
    json r = json::array();
    for (auto it = c.j.rbegin(); it != c.j.rend(); ++it) r.push_back(*it);
    return Value::Of(r);
  }

  std::optional<Value> ItemsFilter(const FilterCall& c) {
    if (!c.j.is_object()) return std::nullopt;
    json r = json::array();
    for (auto it = c.j.begin(); it != c.j.end(); ++it)
      r.push_back(json::array({it.key(), it.value()}));
    return Value::Of(r);
  }

  std::optional<Value> IntFilter(const FilterCall& c) {
    const json& j = c.j;
    if (j.is_number()) return Value::Of(static_cast<int64_t>(j.get<double>()));
    if (j.is_boolean()) return Value::Of(int64_t{j.get<bool>()});
    if (!j.is_string()) return std::nullopt;
    try {
      return Value::Of(static_cast<int64_t>(std::stod(j.get<std::string>())));
    } catch (const std::exception&) {
      return Value::Of(0);
    }
  }

  std::optional<Value> FloatFilter(const FilterCall& c) {
    if (c.j.is_number()) return Value::Of(c.j.get<double>());
    if (!c.j.is_string()) return std::nullopt;
    try {
      return Value::Of(std::stod(c.j.get<std::string>()));
    } catch (const std::exception&) {
      return Value::Of(0.0);
    }
  }

  std::optional<Value> AbsFilter(const FilterCall& c) {
    if (!c.j.is_number()) return std::nullopt;
    return c.j.is_number_integer() ? Value::Of(std::llabs(c.j.get<int64_t>()))
                                   : Value::Of(std::fabs(c.j.get<double>()));
  }

  bool Test(const Node& n) {
    const Value v = Eval(*n.kids[0]);
    const std::string& t = n.name;
    const json* j = v.is_json() ? &v.j : nullptr;
    if (t == "defined") return !v.undefined();
    if (t == "undefined") return v.undefined();
    if (t == "none") return j && j->is_null();
    if (t == "string") return j && j->is_string();
    if (t == "number") return j && j->is_number();
    if (t == "integer") return j && j->is_number_integer();
    if (t == "float") return j && j->is_number_float();
    if (t == "boolean") return j && j->is_boolean();
    if (t == "true") return j && j->is_boolean() && j->get<bool>();
    if (t == "false") return j && j->is_boolean() && !j->get<bool>();
    if (t == "mapping") return (j && j->is_object()) || v.k == Value::K::kNamespace;
    if (t == "iterable") return j && (j->is_array() || j->is_object() || j->is_string());
    if (t == "sequence") return j && (j->is_array() || j->is_object() || j->is_string());
    if (t == "callable") return v.k == Value::K::kMacro || v.k == Value::K::kGlobal;
    if (t == "lower" || t == "upper") {
      if (!j || !j->is_string()) return false;
      const std::string& s = j->get_ref<const std::string&>();
      return s == Case(s, t == "upper");
    }
    if (t == "odd" || t == "even") {
      if (!j || !j->is_number_integer()) Fail(n, "test " + t + " needs an integer");
      return (j->get<int64_t>() % 2 != 0) == (t == "odd");
    }
    const auto args = EvalArgs(n, 1);
    if (t == "eq" || t == "equalto" || t == "sameas" || t == "ne") {
      if (args.size() != 1) Fail(n, "test " + t + " takes one argument");
      const bool eq =
          (j && args[0].is_json()) ? *j == args[0].j : v.undefined() && args[0].undefined();
      return t == "ne" ? !eq : eq;
    }
    if (t == "divisibleby") {
      if (!j || !j->is_number_integer() || args.size() != 1 || !args[0].is_json() ||
          !args[0].j.is_number_integer() || args[0].j.get<int64_t>() == 0) {
        Fail(n, "test divisibleby needs two integers, the second non-zero");
      }
      return j->get<int64_t>() % args[0].j.get<int64_t>() == 0;
    }
    Fail(n, "unsupported test '" + t + "'");
  }

  const std::string& src_;
  std::vector<std::map<std::string, Value>> scopes_;
  int loops_ = 0;
  int depth_ = 0;
};

// As @huggingface/jinja's tojson (Python's json.dumps separators).
std::string ToJson(const json& v, int indent, int depth) {
  if (v.is_array() || v.is_object()) {
    if (v.empty()) return v.is_array() ? "[]" : "{}";
    const std::string pad =
        indent ? "\n" + std::string(static_cast<size_t>(indent * (depth + 1)), ' ') : "";
    const std::string end =
        indent ? "\n" + std::string(static_cast<size_t>(indent * depth), ' ') : "";
    const std::string sep = indent ? "," : ", ";
    std::string r = v.is_array() ? "[" : "{";
    bool first = true;
    for (auto it = v.begin(); it != v.end(); ++it) {
      r += (first ? "" : sep) + pad;
      first = false;
      if (v.is_object()) r += json(it.key()).dump() + ": ";
      r += ToJson(it.value(), indent, depth + 1);
    }
    return r + end + (v.is_array() ? "]" : "}");
  }
  if (v.is_number_float()) {
    const double d = v.get<double>();
    if (std::isfinite(d) && d == std::floor(d) && std::fabs(d) < 1e16)
      return std::to_string(static_cast<int64_t>(d));
  }
  return v.dump(-1, ' ', false, json::error_handler_t::replace);
}

}  // namespace

JinjaTemplate::JinjaTemplate(const std::string& source) {
  Lexer lexer(source);
  auto tokens = lexer.Run();
  root_ = Parser(std::move(tokens), source).Root();
}

JinjaTemplate::~JinjaTemplate() = default;
JinjaTemplate::JinjaTemplate(JinjaTemplate&&) noexcept = default;
JinjaTemplate& JinjaTemplate::operator=(JinjaTemplate&&) noexcept = default;

std::string JinjaTemplate::Render(const json& context) const {
  if (!context.is_object())
    throw Exception(Exception::kInvalidArgument, "chat template context must be a JSON object");
  std::string out;
  Renderer r(root_->name, context);
  r.Exec(*root_, out);
  return out;
}

}  // namespace splitlm::device
