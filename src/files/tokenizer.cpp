#include "files/tokenizer.h"

#include <nlohmann/json.hpp>
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

CharTokenizer CharTokenizer::from_meta_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw UserError("cannot open " + path);
  try {
    auto meta = nlohmann::json::parse(in);
    std::vector<char32_t> symbols;
    for (auto& s : meta.at("itos")) {
      auto cps = utf8_decode(s.get<std::string>());
      if (cps.size() != 1) throw UserError("itos entry is not one character");
      symbols.push_back(cps[0]);
    }
    if (int64_t(symbols.size()) != meta.at("vocab_size").get<int64_t>())
      throw UserError("vocab_size does not match itos");
    return CharTokenizer(std::move(symbols));
  } catch (const nlohmann::json::exception& e) {
    throw UserError(path + " is not a valid vocabulary file: " + e.what());
  } catch (const UserError& e) {
    throw UserError(path + " is not a valid vocabulary file: " + e.what());
  }
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

namespace {
bool is_gpt2_meta(const std::string& meta_path) {
  std::ifstream in(meta_path);
  const auto meta = nlohmann::json::parse(in, nullptr, false);
  return meta.is_object() && meta.contains("tokenizer") && meta["tokenizer"] == "gpt2";
}
}  // namespace

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& data_dir) {
  const std::string meta = data_dir + "/meta.json";
  if (::access(meta.c_str(), R_OK) != 0) {
    // nanoGPT's GPT-2 datasets (openwebtext, shakespeare) have no meta file: GPT-2 BPE.
    if (!try_find_gpt2_dir().empty()) return Gpt2Bpe::load();
    throw UserError("no vocabulary at " + meta +
                    " (run `dgpt prepare <dataset>`), and no GPT-2 tokenizer files for a dataset without one "
                    "(encoder.json and vocab.bpe in data/gpt2/ or $DGPT_GPT2_DIR; ./setup.sh fetches them)");
  }
  // meta.json {"tokenizer": "gpt2", ...} (dgpt prepare shakespeare / openwebtext): GPT-2 BPE.
  if (is_gpt2_meta(meta)) return Gpt2Bpe::load();
  return std::make_unique<CharTokenizer>(CharTokenizer::from_meta_json(meta));
}

int64_t dataset_vocab_size(const std::string& data_dir) {
  const std::string meta = data_dir + "/meta.json";
  if (::access(meta.c_str(), R_OK) != 0) return 50304;
  // GPT-2's 50257 padded to a multiple of 64, as nanoGPT does; the padding rows are never targets.
  if (is_gpt2_meta(meta)) return 50304;
  return load_tokenizer(data_dir)->vocab_size();
}

}  // namespace dgpt
