// Text <-> token ids for a dataset, chosen by what its folder holds.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dgpt {

class Tokenizer {
 public:
  virtual ~Tokenizer() = default;
  virtual std::vector<int64_t> encode(const std::string& text) const = 0;
  virtual std::string decode(const std::vector<int64_t>& ids) const = 0;
  // The bytes of one id as decode() concatenates them before making the text valid UTF-8: a GPT-2
  // token may hold part of a character; an id outside the vocabulary gives U+FFFD.
  virtual std::string piece(int64_t id) const = 0;
  virtual int64_t vocab_size() const = 0;
};

// The text of a growing sequence of ids, as it grows (`dgpt sample` streams with it): push() returns
// the text no later id can change (never the first bytes of a character whose other bytes are in
// later tokens), finish() the rest. Together they are decode() of every id pushed.
class TextStream {
 public:
  explicit TextStream(const Tokenizer& tokenizer) : tokenizer_(tokenizer) {}
  std::string push(int64_t id);
  std::string finish();

 private:
  const Tokenizer& tokenizer_;
  std::string pending_;  // bytes not yet returned: at most a character's first 3
};

// Character-level vocabulary (nanoGPT's shakespeare_char): the sorted distinct code points of a text.
class CharTokenizer : public Tokenizer {
 public:
  explicit CharTokenizer(std::vector<char32_t> symbols);
  static CharTokenizer from_text(const std::string& utf8);
  static CharTokenizer from_meta_json(const std::string& path);  // throws UserError
  void write_meta_json(const std::string& path) const;

  std::vector<int64_t> encode(const std::string& text) const override;
  std::string decode(const std::vector<int64_t>& ids) const override;
  std::string piece(int64_t id) const override;
  int64_t vocab_size() const override { return int64_t(symbols_.size()); }

 private:
  std::vector<char32_t> symbols_;  // id -> code point, ascending
};

// The tokenizer of a dataset folder: its meta.json; GPT-2 BPE (src/bpe.h) when meta.json says
// "tokenizer": "gpt2", or when there is no meta.json but the GPT-2 files are found (data/gpt2/,
// $DGPT_GPT2_DIR). Throws UserError saying what is missing, and for a meta.json that exists but is
// unreadable, not a regular file, not JSON, or not a consistent vocabulary.
std::unique_ptr<Tokenizer> load_tokenizer(const std::string& data_dir);
// The vocabulary size for a new model: a character vocabulary's size, else (GPT-2 BPE, or no meta.json)
// GPT-2's 50257 padded to 50304, as nanoGPT does.
int64_t dataset_vocab_size(const std::string& data_dir);
constexpr int64_t kPaddedGpt2VocabSize = 50304;
// "65 characters (data/x/meta.json)", "GPT-2's padded 50304 (... does not exist)": for messages.
std::string describe_dataset_vocabulary(const std::string& data_dir);
// Throws UserError unless `model_vocab_size` (a checkpoint's) equals dataset_vocab_size(data_dir), or is
// GPT-2's own 50257 for a GPT-2 dataset (whose ids are below it);
// `model` names the model in the message ("checkpoint out/ckpt.pt").
void check_model_vocabulary(int64_t model_vocab_size, const std::string& data_dir, const std::string& model);

// UTF-8 helpers (throw UserError on invalid input).
std::vector<char32_t> utf8_decode(const std::string& s);
std::string utf8_encode(char32_t cp);
// Bytes made valid UTF-8: each maximal invalid subsequence becomes U+FFFD, as Python's
// decode(errors="replace") (and so tiktoken's decode) does.
std::string replace_invalid_utf8(std::string_view bytes);
// The length of the longest prefix of `bytes` whose replace_invalid_utf8 no further bytes can
// change: all of it but a trailing incomplete character.
size_t settled_utf8_prefix(std::string_view bytes);

}  // namespace dgpt
