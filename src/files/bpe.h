// GPT-2's byte-level BPE (OpenAI's encoder.json + vocab.bpe), as tiktoken's "gpt2" encoding.
//
// Text is split by GPT-2's pre-tokenization pattern
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// (PCRE2, UTF + UCP, JIT-compiled), and each piece's bytes are merged pairwise, always the
// adjacent pair whose concatenation has the lowest rank (= its id in encoder.json), leftmost
// first: tiktoken's algorithm. <|endoftext|> is id 50256.
//
// No torch here: this is part of the dgpt_config library. Thread-safe: one Gpt2Bpe may encode
// from any number of threads at once (the merge cache and the PCRE2 match data are per thread).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "files/tokenizer.h"

namespace dgpt {

class Gpt2Bpe : public Tokenizer {
 public:
  static constexpr int64_t kEndOfText = 50256;
  static constexpr int64_t kVocabSize = 50257;
  static constexpr const char* kEndOfTextText = "<|endoftext|>";

  // Reads and cross-checks the two files. Throws UserError naming the file and the problem.
  Gpt2Bpe(const std::string& encoder_json_path, const std::string& vocab_bpe_path);
  ~Gpt2Bpe() override;
  Gpt2Bpe(const Gpt2Bpe&) = delete;
  Gpt2Bpe& operator=(const Gpt2Bpe&) = delete;

  // The files found by find_gpt2_dir().
  static std::unique_ptr<Gpt2Bpe> load();
  static std::unique_ptr<Gpt2Bpe> load_from_dir(const std::string& dir);

  // Special tokens are plain text here (tiktoken's encode_ordinary): "<|endoftext|>" is
  // encoded as the 6 tokens of its characters. Throws UserError on invalid UTF-8.
  std::vector<int64_t> encode_ordinary(std::string_view text) const;
  // Same, appending to `out` (GPT-2 ids fit uint16): the `prepare openwebtext` path.
  void encode_ordinary_into(std::string_view text, std::vector<uint16_t>& out) const;

  // The Tokenizer interface (what `dgpt sample` uses for --start): tiktoken's
  // encode(text, allowed_special={"<|endoftext|>"}), so a prompt may contain <|endoftext|>,
  // which becomes id 50256; the text around it is encoded as by encode_ordinary.
  std::vector<int64_t> encode(const std::string& text) const override;

  // The exact bytes of the tokens (50256 gives "<|endoftext|>"). Throws UserError on an id
  // outside [0, 50257).
  std::string decode_bytes(const std::vector<int64_t>& ids) const;
  // decode_bytes made valid UTF-8: decode(encode(s)) == s for any valid UTF-8 s; a byte sequence
  // that is not valid UTF-8 (a sampled sequence may cut a character) becomes U+FFFD, as tiktoken's
  // decode(errors="replace"), and so does an id outside the vocabulary (the padding rows of a
  // model with vocab_size 50304).
  std::string decode(const std::vector<int64_t>& ids) const override;
  std::string piece(int64_t id) const override;  // token_bytes, or U+FFFD outside the vocabulary
  int64_t vocab_size() const override { return kVocabSize; }

  // The pieces GPT-2's pattern cuts valid UTF-8 text into (each is encoded on its own).
  std::vector<std::string> pretokenize(std::string_view text) const;
  // The bytes of one token ("<|endoftext|>" for 50256). Throws UserError outside [0, 50257).
  std::string_view token_bytes(int64_t id) const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// GPT-2's bytes_to_unicode(): the printable stand-in code point for each byte, as used by
// encoder.json and vocab.bpe.
const std::vector<char32_t>& gpt2_byte_to_unicode();

// Where encoder.json and vocab.bpe are: data/gpt2/ (relative to the working directory), then
// $DGPT_GPT2_DIR. Throws UserError saying where it looked and how to get them.
std::string find_gpt2_dir();
// Like find_gpt2_dir, but "" instead of an error.
std::string try_find_gpt2_dir();

// Strict UTF-8 check (no overlong forms, surrogates or code points above U+10FFFF). Returns the
// byte offset of the first invalid sequence, or std::string_view::npos.
size_t find_invalid_utf8(std::string_view s);

}  // namespace dgpt
