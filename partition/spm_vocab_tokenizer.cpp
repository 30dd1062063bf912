#include "partition/spm_vocab_tokenizer.h"

#include <queue>
#include <string_view>
#include <unordered_map>

#include "partition/added_tokens.h"
#include "partition/utf8.h"
#include "transport/error.h"

namespace splitlm::partition {
namespace {

constexpr std::string_view kSpace = "\xE2\x96\x81";  // U+2581, SentencePiece's space

std::string EscapeSpaces(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (char c : s) {
    if (c == ' ') {
      out += kSpace;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string UnescapeSpaces(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size();) {
    if (s.compare(i, kSpace.size(), kSpace) == 0) {
      out.push_back(' ');
      i += kSpace.size();
    } else {
      out.push_back(s[i++]);
    }
  }
  return out;
}

class SpmVocabTokenizer final : public Tokenizer {
 public:
  explicit SpmVocabTokenizer(SpmVocabSpec spec);
  std::vector<int32_t> Encode(const std::string& text) const override;
  std::string Decode(const std::vector<int32_t>& ids) const override;
  std::string TokenBytes(int32_t id) const override;
  int vocab_size() const override { return static_cast<int>(spec_.pieces.size()); }

 private:
  struct Symbol {
    int prev, next;
    size_t start, len;  // into the escaped text
  };
  struct Bigram {
    int left, right;
    float score;
    size_t len;
  };
  void EncodeText(const std::string& text, std::vector<int32_t>& out) const;
  void Resegment(const std::string& text, const Symbol& s,
                 const std::unordered_map<std::string, std::pair<int, int>>& rev,
                 const std::vector<Symbol>& syms, std::vector<int32_t>& out) const;
  int32_t Find(std::string_view piece) const;
  void CheckId(int32_t id) const;

  SpmVocabSpec spec_;
  std::unordered_map<std::string, int32_t> ids_;
  int32_t byte_ids_[256];
  std::vector<std::string> bytes_;  // what each id decodes to
  AddedTokenMatcher specials_;
};

SpmVocabTokenizer::SpmVocabTokenizer(SpmVocabSpec spec) : spec_(std::move(spec)) {
  special_ = spec_.special;
  description_ = spec_.description;
  const size_t n = spec_.pieces.size();
  if (spec_.scores.size() != n || spec_.types.size() != n) {
    throw Exception(Exception::kCorrupt, spec_.source + ": " + std::to_string(n) + " tokens but " +
                                             std::to_string(spec_.scores.size()) + " scores and " +
                                             std::to_string(spec_.types.size()) + " token types");
  }
  std::vector<std::pair<std::string, int32_t>> specials;
  bytes_.resize(n);
  std::fill(std::begin(byte_ids_), std::end(byte_ids_), -1);
  for (size_t id = 0; id < n; ++id) {
    const std::string& p = spec_.pieces[id];
    ids_[p] = static_cast<int32_t>(id);  // llama.cpp: the last of equal pieces wins
    const int32_t t = spec_.types[id];
    if (t == SpmVocabSpec::kControl || t == SpmVocabSpec::kUserDefined ||
        t == SpmVocabSpec::kUnknown) {
      specials.emplace_back(p, static_cast<int32_t>(id));
    }
    if (t == SpmVocabSpec::kByte) {
      unsigned v = 0;
      if (p.size() != 6 || std::sscanf(p.c_str(), "<0x%02X>", &v) != 1 || v > 255) {
        throw Exception(Exception::kCorrupt, spec_.source + ": byte token " + std::to_string(id) +
                                                 " is \"" + p + "\", not <0xXX>");
      }
      byte_ids_[v] = static_cast<int32_t>(id);
      bytes_[id] = std::string(1, static_cast<char>(v));
    } else if (t == SpmVocabSpec::kUnknown) {
      bytes_[id] = " \xE2\x81\x87 ";  // " ⁇ ", as SentencePiece decodes it
    } else if (t == SpmVocabSpec::kUserDefined || t == SpmVocabSpec::kControl) {
      bytes_[id] = p;
    } else {
      bytes_[id] = UnescapeSpaces(p);
    }
  }
  specials_ = AddedTokenMatcher(specials);
}

int32_t SpmVocabTokenizer::Find(std::string_view piece) const {
  thread_local std::string key;
  key.assign(piece.data(), piece.size());
  auto it = ids_.find(key);
  return it == ids_.end() ? -1 : it->second;
}

void SpmVocabTokenizer::Resegment(const std::string& text, const Symbol& s,
                                  const std::unordered_map<std::string, std::pair<int, int>>& rev,
                                  const std::vector<Symbol>& syms,
                                  std::vector<int32_t>& out) const {
  const std::string_view piece(text.data() + s.start, s.len);
  if (const int32_t id = Find(piece); id >= 0) {
    out.push_back(id);
    return;
  }
  auto it = rev.find(std::string(piece));
  if (it == rev.end()) {
    for (char c : piece) {
      const int32_t b = byte_ids_[static_cast<uint8_t>(c)];
      if (b < 0) {
        throw Exception(Exception::kCorrupt, spec_.source + ": no piece and no byte token <0x.." +
                                                 std::string(") for part of the text"));
      }
      out.push_back(b);
    }
    return;
  }
  Resegment(text, syms[it->second.first], rev, syms, out);
  Resegment(text, syms[it->second.second], rev, syms, out);
}

void SpmVocabTokenizer::EncodeText(const std::string& text, std::vector<int32_t>& out) const {
  std::vector<Symbol> syms;
  for (size_t i = 0; i < text.size();) {
    size_t len = Utf8SequenceLength(text, i);
    if (len == 0) len = 1;  // llama.cpp takes a stray byte as one symbol
    len = std::min(len, text.size() - i);
    const int idx = static_cast<int>(syms.size());
    syms.push_back({idx - 1, -1, i, len});
    if (idx > 0) syms[idx - 1].next = idx;
    i += len;
  }
  auto cmp = [](const Bigram& a, const Bigram& b) {
    return a.score < b.score || (a.score == b.score && a.left > b.left);
  };
  std::priority_queue<Bigram, std::vector<Bigram>, decltype(cmp)> queue(cmp);
  std::unordered_map<std::string, std::pair<int, int>> rev;
  auto try_add = [&](int left, int right) {
    if (left < 0 || right < 0) return;
    const std::string_view piece(text.data() + syms[left].start, syms[left].len + syms[right].len);
    const int32_t id = Find(piece);
    if (id < 0) return;
    queue.push({left, right, spec_.scores[id], piece.size()});
    rev[std::string(piece)] = {left, right};
  };
  for (size_t i = 1; i < syms.size(); ++i) try_add(static_cast<int>(i) - 1, static_cast<int>(i));
  while (!queue.empty()) {
    const Bigram b = queue.top();
    queue.pop();
    Symbol& l = syms[b.left];
    Symbol& r = syms[b.right];
    if (l.len == 0 || r.len == 0 || l.len + r.len != b.len) continue;  // stale
    l.len += r.len;
    r.len = 0;
    l.next = r.next;
    if (r.next >= 0) syms[r.next].prev = b.left;
    try_add(l.prev, b.left);
    try_add(b.left, l.next);
  }
  for (int i = syms.empty() ? -1 : 0; i >= 0; i = syms[i].next)
    Resegment(text, syms[i], rev, syms, out);
}

std::vector<int32_t> SpmVocabTokenizer::Encode(const std::string& text) const {
  std::vector<int32_t> out;
  bool prev_special = true;  // the text starts with a space, as after a special token
  for (const auto& piece : specials_.Split(text)) {
    if (piece.id >= 0) {
      out.push_back(piece.id);
      prev_special = true;
      continue;
    }
    std::string t = spec_.add_space_prefix && prev_special ? " " : "";
    t += piece.text;
    EncodeText(EscapeSpaces(t), out);
    prev_special = false;
  }
  return out;
}

void SpmVocabTokenizer::CheckId(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    throw Exception(Exception::kInvalidArgument, "token id " + std::to_string(id) +
                                                     " is outside the tokenizer's " +
                                                     std::to_string(vocab_size()) + " pieces");
  }
}

std::string SpmVocabTokenizer::TokenBytes(int32_t id) const {
  CheckId(id);
  return bytes_[id];
}

std::string SpmVocabTokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (size_t i = 0; i < ids.size(); ++i) {
    CheckId(ids[i]);
    const std::string& b = bytes_[ids[i]];
    // The space the encoder put before the text is not part of it.
    if (i == 0 && spec_.add_space_prefix && !b.empty() && b[0] == ' ') {
      out.append(b, 1, std::string::npos);
    } else {
      out += b;
    }
  }
  return ToValidUtf8(out);
}

}  // namespace

std::unique_ptr<Tokenizer> MakeSpmVocabTokenizer(SpmVocabSpec spec) {
  return std::make_unique<SpmVocabTokenizer>(std::move(spec));
}

}  // namespace splitlm::partition
