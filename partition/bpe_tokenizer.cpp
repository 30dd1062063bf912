#include "partition/bpe_tokenizer.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <utf8proc.h>

#include <algorithm>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <queue>
#include <string_view>
#include <unordered_map>

#include "partition/added_tokens.h"
#include "partition/utf8.h"
#include "transport/error.h"

namespace splitlm::partition {

const char kGpt2Regex[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

namespace {

// GPT-2's bytes_to_unicode: printable Latin-1 bytes stand for themselves, the
// others for U+0100 upwards in byte order.
std::vector<uint32_t> ByteToCodepoint() {
  std::vector<uint32_t> cp(256);
  uint32_t next = 256;
  for (uint32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
    cp[b] = printable ? b : next++;
  }
  return cp;
}

// The bytes a byte-level token string stands for; the string's own UTF-8 if
// one of its characters is outside the map (as Hugging Face's decoder does).
std::string ByteLevelToBytes(const std::string& token,
                             const std::unordered_map<uint32_t, uint8_t>& from_cp) {
  std::string out;
  for (size_t i = 0; i < token.size();) {
    const size_t n = Utf8SequenceLength(token, i);
    if (n == 0) return token;
    uint32_t cp = static_cast<uint8_t>(token[i]) & (n == 1   ? 0x7F
                                                    : n == 2 ? 0x1F
                                                    : n == 3 ? 0x0F
                                                             : 0x07);
    for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (static_cast<uint8_t>(token[i + k]) & 0x3F);
    auto it = from_cp.find(cp);
    if (it == from_cp.end()) return token;
    out.push_back(static_cast<char>(it->second));
    i += n;
  }
  return out;
}

struct CodeDeleter {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};
struct MatchDataDeleter {
  void operator()(pcre2_match_data* m) const { pcre2_match_data_free(m); }
};
using Code = std::unique_ptr<pcre2_code, CodeDeleter>;
using MatchData = std::unique_ptr<pcre2_match_data, MatchDataDeleter>;

Code Compile(const std::string& pattern, const std::string& source) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  Code code(pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                          PCRE2_UTF | PCRE2_UCP, &err, &offset, nullptr));
  if (!code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw Exception(Exception::kCorrupt, source + ": pre-tokenizer regex \"" + pattern +
                                             "\" is not supported (PCRE2, at offset " +
                                             std::to_string(offset) + ": " +
                                             reinterpret_cast<char*>(msg) + ")");
  }
  pcre2_jit_compile(code.get(),
                    PCRE2_JIT_COMPLETE);  // falls back to the interpreter if JIT is unavailable
  return code;
}

uint64_t PairKey(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

class BpeTokenizer final : public Tokenizer {
 public:
  explicit BpeTokenizer(BpeSpec spec);
  std::vector<int32_t> Encode(const std::string& text) const override;
  std::string Decode(const std::vector<int32_t>& ids) const override;
  std::string TokenBytes(int32_t id) const override;
  int vocab_size() const override { return static_cast<int>(bytes_.size()); }

 private:
  struct Step {
    BpeSpec::PreStep spec;
    Code code;
  };
  struct Merge {
    int32_t rank;
    int32_t id;
  };
  // Splits `s` by the pre-tokenizer steps from `step` on, calling emit(word).
  template <typename Emit>
  void PreTokenize(size_t step, std::string_view s, pcre2_match_data* md,
                   std::deque<std::string>& arena, const Emit& emit) const;
  void EncodeWord(std::string_view word, std::vector<int32_t>& out) const;
  void MergeWord(std::string_view word, std::vector<int32_t>& out) const;
  std::string_view Normalize(std::string_view s, std::deque<std::string>& arena) const;
  void CheckId(int32_t id) const;

  std::string source_;
  std::vector<std::string> bytes_;                     // raw bytes of each id
  std::unordered_map<std::string, int32_t> word_ids_;  // raw bytes -> id (model vocabulary)
  std::unordered_map<uint64_t, Merge> merges_;
  int32_t byte_ids_[256];
  bool ignore_merges_;
  std::vector<BpeSpec::Normalizer> normalizers_;
  std::vector<Step> steps_;
  AddedTokenMatcher added_;
  mutable std::mutex cache_mu_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
};

BpeTokenizer::BpeTokenizer(BpeSpec spec)
    : source_(spec.source),
      ignore_merges_(spec.ignore_merges),
      normalizers_(spec.normalizers),
      added_(spec.added, spec.added_options) {
  special_ = spec.special;
  description_ = spec.description;
  const std::vector<uint32_t> to_cp = ByteToCodepoint();
  std::unordered_map<uint32_t, uint8_t> from_cp;
  for (uint32_t b = 0; b < 256; ++b) from_cp[to_cp[b]] = static_cast<uint8_t>(b);
  size_t n = spec.vocab.size();
  for (const auto& a : spec.added) n = std::max(n, static_cast<size_t>(a.second) + 1);
  bytes_.resize(n);
  std::unordered_map<std::string, int32_t> token_ids;  // byte-level string -> id, for the merges
  token_ids.reserve(spec.vocab.size());
  word_ids_.reserve(spec.vocab.size());
  for (size_t id = 0; id < spec.vocab.size(); ++id) {
    const std::string& t = spec.vocab[id];
    if (t.empty()) continue;
    bytes_[id] = ByteLevelToBytes(t, from_cp);
    token_ids.emplace(t, static_cast<int32_t>(id));
    word_ids_.emplace(bytes_[id], static_cast<int32_t>(id));
  }
  for (const auto& a : spec.added) bytes_[a.second] = ByteLevelToBytes(a.first, from_cp);
  for (int b = 0; b < 256; ++b) {
    auto it = word_ids_.find(std::string(1, static_cast<char>(b)));
    if (it == word_ids_.end()) {
      throw Exception(
          Exception::kCorrupt,
          source_ + ": byte-level vocabulary has no token for byte " + std::to_string(b));
    }
    byte_ids_[b] = it->second;
  }
  merges_.reserve(spec.merges.size());
  for (size_t r = 0; r < spec.merges.size(); ++r) {
    const auto& [a, b] = spec.merges[r];
    auto ia = token_ids.find(a), ib = token_ids.find(b), im = token_ids.find(a + b);
    if (ia == token_ids.end() || ib == token_ids.end() || im == token_ids.end()) {
      throw Exception(Exception::kCorrupt, source_ + ": merge " + std::to_string(r) + " (\"" + a +
                                               " " + b +
                                               "\") uses a token that is not in the vocabulary");
    }
    merges_.emplace(PairKey(ia->second, ib->second), Merge{static_cast<int32_t>(r), im->second});
  }
  for (auto& s : spec.pre_tokenizer) {
    Step step{s, nullptr};
    if (s.kind == BpeSpec::PreStep::Kind::kSplit) step.code = Compile(s.regex, source_);
    if (s.kind == BpeSpec::PreStep::Kind::kByteLevel && s.use_regex)
      step.code = Compile(kGpt2Regex, source_);
    steps_.push_back(std::move(step));
  }
}

std::string_view BpeTokenizer::Normalize(std::string_view s, std::deque<std::string>& arena) const {
  if (normalizers_.empty()) return s;
  if (std::all_of(s.begin(), s.end(), [](char c) { return static_cast<uint8_t>(c) < 0x80; }))
    return s;
  std::string cur(s);
  for (auto n : normalizers_) {
    int opts = UTF8PROC_STABLE;
    if (n == BpeSpec::Normalizer::kNfc || n == BpeSpec::Normalizer::kNfkc) opts |= UTF8PROC_COMPOSE;
    if (n == BpeSpec::Normalizer::kNfd || n == BpeSpec::Normalizer::kNfkd)
      opts |= UTF8PROC_DECOMPOSE;
    if (n == BpeSpec::Normalizer::kNfkc || n == BpeSpec::Normalizer::kNfkd) opts |= UTF8PROC_COMPAT;
    utf8proc_uint8_t* dst = nullptr;
    const utf8proc_ssize_t len = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(cur.data()),
                                              static_cast<utf8proc_ssize_t>(cur.size()), &dst,
                                              static_cast<utf8proc_option_t>(opts));
    if (len < 0)
      throw Exception(Exception::kInvalidArgument,
                      std::string("Unicode normalisation failed: ") + utf8proc_errmsg(len));
    cur.assign(reinterpret_cast<char*>(dst), static_cast<size_t>(len));
    std::free(dst);
  }
  arena.push_back(std::move(cur));
  return arena.back();
}

template <typename Emit>
void BpeTokenizer::PreTokenize(size_t step, std::string_view s, pcre2_match_data* md,
                               std::deque<std::string>& arena, const Emit& emit) const {
  if (s.empty()) return;
  if (step == steps_.size()) {
    emit(s);
    return;
  }
  const Step& st = steps_[step];
  if (st.spec.kind == BpeSpec::PreStep::Kind::kByteLevel && st.spec.add_prefix_space &&
      s[0] != ' ') {
    arena.push_back(" " + std::string(s));
    s = arena.back();
  }
  if (!st.code) {
    PreTokenize(step + 1, s, md, arena, emit);
    return;
  }
  const bool keep_matches =
      st.spec.kind == BpeSpec::PreStep::Kind::kByteLevel || st.spec.keep_matches || st.spec.invert;
  const bool keep_gaps =
      st.spec.kind == BpeSpec::PreStep::Kind::kByteLevel || st.spec.keep_matches || !st.spec.invert;
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(s.data());
  size_t pos = 0, gap_start = 0;
  while (pos < s.size()) {
    const int rc =
        pcre2_match(st.code.get(), subject, s.size(), pos, PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw Exception(Exception::kCorrupt,
                      source_ + ": pre-tokenizer regex failed: " + reinterpret_cast<char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    if (ov[1] == ov[0]) {  // an empty match splits nothing: step over one character
      pos = ov[0] + std::max<size_t>(1, Utf8SequenceLength(s, ov[0]));
      continue;
    }
    if (keep_gaps && ov[0] > gap_start)
      PreTokenize(step + 1, s.substr(gap_start, ov[0] - gap_start), md, arena, emit);
    if (keep_matches) PreTokenize(step + 1, s.substr(ov[0], ov[1] - ov[0]), md, arena, emit);
    gap_start = pos = ov[1];
  }
  if (keep_gaps && gap_start < s.size())
    PreTokenize(step + 1, s.substr(gap_start), md, arena, emit);
}

void BpeTokenizer::MergeWord(std::string_view word, std::vector<int32_t>& out) const {
  struct Sym {
    int32_t id;
    int32_t prev, next;
    bool alive;
  };
  struct Cand {
    int32_t rank, pos, id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  const int n = static_cast<int>(word.size());
  std::vector<Sym> sym(n);
  for (int i = 0; i < n; ++i)
    sym[i] = {byte_ids_[static_cast<uint8_t>(word[i])], i - 1, i + 1 < n ? i + 1 : -1, true};
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> queue;
  auto consider = [&](int left) {
    if (left < 0 || sym[left].next < 0) return;
    auto it = merges_.find(PairKey(sym[left].id, sym[sym[left].next].id));
    if (it != merges_.end()) queue.push({it->second.rank, left, it->second.id});
  };
  for (int i = 0; i + 1 < n; ++i) consider(i);
  while (!queue.empty()) {
    const Cand c = queue.top();
    queue.pop();
    Sym& left = sym[c.pos];
    if (!left.alive || left.next < 0) continue;
    Sym& right = sym[left.next];
    auto it = merges_.find(PairKey(left.id, right.id));
    if (it == merges_.end() || it->second.id != c.id) continue;  // stale: a neighbour changed
    left.id = c.id;
    right.alive = false;
    left.next = right.next;
    if (right.next >= 0) sym[right.next].prev = c.pos;
    consider(left.prev);
    consider(c.pos);
  }
  for (int i = 0; i >= 0; i = sym[i].next) out.push_back(sym[i].id);
}

void BpeTokenizer::EncodeWord(std::string_view word, std::vector<int32_t>& out) const {
  thread_local std::string key;
  key.assign(word.data(), word.size());
  if (ignore_merges_) {
    auto it = word_ids_.find(key);
    if (it != word_ids_.end()) {
      out.push_back(it->second);
      return;
    }
  }
  if (word.size() == 1) {
    out.push_back(byte_ids_[static_cast<uint8_t>(word[0])]);
    return;
  }
  constexpr size_t kMaxCachedWord = 128;
  constexpr size_t kMaxCacheEntries = 1 << 18;
  if (word.size() <= kMaxCachedWord) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    auto it = cache_.find(key);
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t first = out.size();
  MergeWord(word, out);
  if (word.size() <= kMaxCachedWord) {
    std::lock_guard<std::mutex> lock(cache_mu_);
    if (cache_.size() >= kMaxCacheEntries) cache_.clear();
    cache_.emplace(
        key, std::vector<int32_t>(out.begin() + static_cast<std::ptrdiff_t>(first), out.end()));
  }
}

std::vector<int32_t> BpeTokenizer::Encode(const std::string& text) const {
  if (const size_t bad = FindInvalidUtf8(text); bad != std::string::npos) {
    throw Exception(Exception::kInvalidArgument,
                    "text to encode is not valid UTF-8 (at byte " + std::to_string(bad) + ")");
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 4);
  MatchData md(pcre2_match_data_create(4, nullptr));
  std::deque<std::string> arena;
  auto emit = [&](std::string_view w) { EncodeWord(w, out); };
  for (const auto& piece : added_.Split(text)) {
    if (piece.id >= 0) {
      out.push_back(piece.id);
      continue;
    }
    PreTokenize(0, Normalize(piece.text, arena), md.get(), arena, emit);
    arena.clear();
  }
  return out;
}

void BpeTokenizer::CheckId(int32_t id) const {
  if (id < 0 || id >= vocab_size()) {
    throw Exception(Exception::kInvalidArgument, "token id " + std::to_string(id) +
                                                     " is outside the tokenizer's " +
                                                     std::to_string(vocab_size()) + " ids");
  }
}

std::string BpeTokenizer::TokenBytes(int32_t id) const {
  CheckId(id);
  return bytes_[id];
}

std::string BpeTokenizer::Decode(const std::vector<int32_t>& ids) const {
  std::string out;
  for (int32_t id : ids) {
    CheckId(id);
    out += bytes_[id];
  }
  return ToValidUtf8(out);
}

}  // namespace

std::unique_ptr<Tokenizer> MakeBpeTokenizer(BpeSpec spec) {
  return std::make_unique<BpeTokenizer>(std::move(spec));
}

}  // namespace splitlm::partition
