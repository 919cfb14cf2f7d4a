#include "files/tokenizer.h"

#include <nlohmann/json.hpp>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "files/bpe.h"
#include "files/atomic_file.h"
#include "base/errors.h"

namespace dgpt {

std::vector<char32_t> utf8_decode(const std::string& s) {
  std::vector<char32_t> out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    int len = c < 0x80 ? 1 : (c >> 5) == 0x6 ? 2 : (c >> 4) == 0xE ? 3 : (c >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + size_t(len) > s.size())
      throw UserError("invalid UTF-8 at byte " + std::to_string(i));
    char32_t cp = len == 1 ? c : c & (0x7F >> len);
    for (int k = 1; k < len; ++k) {
      const unsigned char cc = static_cast<unsigned char>(s[i + size_t(k)]);
      if ((cc & 0xC0) != 0x80) throw UserError("invalid UTF-8 at byte " + std::to_string(i));
      cp = (cp << 6) | (cc & 0x3F);
    }
    out.push_back(cp);
    i += size_t(len);
  }
  return out;
}

std::string utf8_encode(char32_t cp) {
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xF0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3F));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

CharTokenizer::CharTokenizer(std::vector<char32_t> symbols) : symbols_(std::move(symbols)) {}

CharTokenizer CharTokenizer::from_text(const std::string& utf8) {
  auto cps = utf8_decode(utf8);
  std::set<char32_t> distinct(cps.begin(), cps.end());
  return CharTokenizer(std::vector<char32_t>(distinct.begin(), distinct.end()));
}

namespace {

// What a dataset folder's meta.json says. Only a missing file means "no vocabulary file" (nanoGPT's
// GPT-2 datasets have none); one that exists but cannot be read, is not a regular file, is not JSON
// or is not a vocabulary dgpt knows is an error, never a silent fall-back to GPT-2's 50304 tokens.
struct Meta {
  enum Kind { Missing, Char, Gpt2 } kind = Missing;
  nlohmann::json json;
};

constexpr int64_t kMaxMetaBytes = int64_t{64} << 20;

[[noreturn]] void bad_meta(const std::string& path, const std::string& what) {
  throw UserError(path + " is not a valid vocabulary file: " + what);
}

Meta read_meta(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT) return {};
    throw UserError("cannot read vocabulary file " + path + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) throw UserError("vocabulary file " + path + " is not a regular file");
  if (st.st_size > kMaxMetaBytes)
    throw UserError("vocabulary file " + path + " has " + std::to_string(st.st_size) + " bytes, more than the " +
                    std::to_string(kMaxMetaBytes) + " a meta.json may have");
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  if (in) text << in.rdbuf();
  if (!in || in.bad()) throw UserError("cannot read vocabulary file " + path + ": " + std::strerror(errno));
  Meta meta;
  try {
    meta.json = nlohmann::json::parse(text.str());
  } catch (const nlohmann::json::exception& e) {
    bad_meta(path, std::string("not JSON (") + e.what() + ")");
  }
  if (!meta.json.is_object()) bad_meta(path, "not a JSON object");
  std::string tokenizer = "char";
  if (meta.json.contains("tokenizer")) {
    if (!meta.json["tokenizer"].is_string()) bad_meta(path, "'tokenizer' is not a string");
    tokenizer = meta.json["tokenizer"].get<std::string>();
  }
  if (tokenizer == "gpt2") {
    meta.kind = Meta::Gpt2;
    if (meta.json.contains("vocab_size") &&
        !(meta.json["vocab_size"].is_number_integer() && meta.json["vocab_size"].get<int64_t>() == Gpt2Bpe::kVocabSize))
      bad_meta(path, "GPT-2's vocab_size is " + std::to_string(Gpt2Bpe::kVocabSize) + ", this one says " +
                         meta.json["vocab_size"].dump());
    return meta;
  }
  if (tokenizer != "char") bad_meta(path, "unknown tokenizer '" + tokenizer + "' (known: 'char', 'gpt2')");
  meta.kind = Meta::Char;
  return meta;
}

// A character vocabulary: itos, one character per id in ascending code-point order (as prepare writes
// it and encode's binary search needs), vocab_size its length, stoi (when present) its inverse.
std::vector<char32_t> char_symbols(const nlohmann::json& meta, const std::string& path) {
  if (!meta.contains("itos") || !meta["itos"].is_array()) bad_meta(path, "no 'itos' list");
  if (!meta.contains("vocab_size") || !meta["vocab_size"].is_number_integer())
    bad_meta(path, "no integer 'vocab_size'");
  const auto& itos = meta["itos"];
  const int64_t vocab_size = meta["vocab_size"].get<int64_t>();
  if (vocab_size != int64_t(itos.size()))
    bad_meta(path, "vocab_size is " + std::to_string(vocab_size) + " but itos has " + std::to_string(itos.size()) +
                       " entries");
  if (itos.empty() || itos.size() > 65536)
    bad_meta(path, "itos has " + std::to_string(itos.size()) + " entries; a vocabulary of uint16 ids has 1 to 65536");
  std::vector<char32_t> symbols;
  for (size_t i = 0; i < itos.size(); ++i) {
    if (!itos[i].is_string()) bad_meta(path, "itos[" + std::to_string(i) + "] is not a string");
    std::vector<char32_t> cps;
    try {
      cps = utf8_decode(itos[i].get<std::string>());
    } catch (const UserError& e) {
      bad_meta(path, "itos[" + std::to_string(i) + "]: " + e.what());
    }
    if (cps.size() != 1) bad_meta(path, "itos[" + std::to_string(i) + "] is not one character");
    if (!symbols.empty() && cps[0] <= symbols.back())
      bad_meta(path, "itos is not in ascending order of distinct characters at entry " + std::to_string(i));
    symbols.push_back(cps[0]);
  }
  if (meta.contains("stoi")) {
    const auto& stoi = meta["stoi"];
    if (!stoi.is_object() || stoi.size() != symbols.size()) bad_meta(path, "stoi is not the inverse of itos");
    for (size_t i = 0; i < symbols.size(); ++i) {
      auto it = stoi.find(utf8_encode(symbols[i]));
      if (it == stoi.end() || !it->is_number_integer() || it->get<int64_t>() != int64_t(i))
        bad_meta(path, "stoi is not the inverse of itos (at id " + std::to_string(i) + ")");
    }
  }
  return symbols;
}

}  // namespace

CharTokenizer CharTokenizer::from_meta_json(const std::string& path) {
  const Meta meta = read_meta(path);
  if (meta.kind == Meta::Missing) throw UserError("cannot open " + path + ": " + std::strerror(ENOENT));
  if (meta.kind != Meta::Char) bad_meta(path, "it describes GPT-2 BPE, not a character vocabulary");
  return CharTokenizer(char_symbols(meta.json, path));
}

void CharTokenizer::write_meta_json(const std::string& path) const {
  nlohmann::json meta;
  meta["tokenizer"] = "char";
  meta["vocab_size"] = symbols_.size();
  meta["itos"] = nlohmann::json::array();
  meta["stoi"] = nlohmann::json::object();
  for (size_t i = 0; i < symbols_.size(); ++i) {
    meta["itos"].push_back(utf8_encode(symbols_[i]));
    meta["stoi"][utf8_encode(symbols_[i])] = i;
  }
  write_file_atomically(path, meta.dump(1) + "\n");
}

std::vector<int64_t> CharTokenizer::encode(const std::string& text) const {
  std::vector<int64_t> ids;
  for (char32_t cp : utf8_decode(text)) {
    auto it = std::lower_bound(symbols_.begin(), symbols_.end(), cp);
    if (it == symbols_.end() || *it != cp)
      throw UserError("character '" + utf8_encode(cp) + "' (U+" + [&] {
        char buf[16];
        std::snprintf(buf, sizeof buf, "%04X", unsigned(cp));
        return std::string(buf);
      }() + ") is not in the dataset's vocabulary");
    ids.push_back(it - symbols_.begin());
  }
  return ids;
}

std::string CharTokenizer::decode(const std::vector<int64_t>& ids) const {
  std::string out;
  for (int64_t id : ids) out += piece(id);
  return out;
}

std::string CharTokenizer::piece(int64_t id) const {
  // U+FFFD for ids outside the vocabulary (padding rows of the embedding)
  return id < 0 || id >= vocab_size() ? std::string("\xEF\xBF\xBD") : utf8_encode(symbols_[size_t(id)]);
}

std::string TextStream::push(int64_t id) {
  pending_ += tokenizer_.piece(id);
  const size_t settled = settled_utf8_prefix(pending_);
  std::string text = replace_invalid_utf8(std::string_view(pending_).substr(0, settled));
  pending_.erase(0, settled);
  return text;
}

std::string TextStream::finish() {
  std::string text = replace_invalid_utf8(pending_);
  pending_.clear();
  return text;
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& data_dir) {
  const std::string path = data_dir + "/meta.json";
  const Meta meta = read_meta(path);
  if (meta.kind == Meta::Missing) {
    // nanoGPT's GPT-2 datasets (openwebtext, shakespeare) have no meta file: GPT-2 BPE.
    if (!try_find_gpt2_dir().empty()) return Gpt2Bpe::load();
    throw UserError("no vocabulary at " + path +
                    " (run `dgpt prepare <dataset>`), and no GPT-2 tokenizer files for a dataset without one "
                    "(encoder.json and vocab.bpe in data/gpt2/ or $DGPT_GPT2_DIR; ./setup.sh fetches them)");
  }
  // meta.json {"tokenizer": "gpt2", ...} (dgpt prepare shakespeare / openwebtext): GPT-2 BPE.
  if (meta.kind == Meta::Gpt2) return Gpt2Bpe::load();
  return std::make_unique<CharTokenizer>(char_symbols(meta.json, path));
}

int64_t dataset_vocab_size(const std::string& data_dir) {
  const std::string path = data_dir + "/meta.json";
  const Meta meta = read_meta(path);
  // GPT-2's 50257 padded to a multiple of 64, as nanoGPT does; the padding rows are never targets.
  if (meta.kind != Meta::Char) return kPaddedGpt2VocabSize;
  return int64_t(char_symbols(meta.json, path).size());
}

std::string describe_dataset_vocabulary(const std::string& data_dir) {
  const std::string path = data_dir + "/meta.json";
  const Meta meta = read_meta(path);
  if (meta.kind == Meta::Missing) return "GPT-2's padded " + std::to_string(kPaddedGpt2VocabSize) + " (" + path + " does not exist)";
  if (meta.kind == Meta::Gpt2) return "GPT-2's padded " + std::to_string(kPaddedGpt2VocabSize) + " (" + path + ")";
  return std::to_string(char_symbols(meta.json, path).size()) + " characters (" + path + ")";
}

void check_model_vocabulary(int64_t model_vocab_size, const std::string& data_dir, const std::string& model) {
  const int64_t data_vocab = dataset_vocab_size(data_dir);
  // A GPT-2 dataset (ids < 50257) fits GPT-2's own 50257 rows (init_from='gpt2') as well as nanoGPT's padded 50304.
  if (data_vocab == kPaddedGpt2VocabSize && model_vocab_size == Gpt2Bpe::kVocabSize) return;
  if (model_vocab_size != data_vocab)
    throw UserError(model + " has a vocabulary of " + std::to_string(model_vocab_size) + " tokens, but its dataset's is " +
                    describe_dataset_vocabulary(data_dir) + ": the data, meta.json and the checkpoint must agree");
}

}  // namespace dgpt
