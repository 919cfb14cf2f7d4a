// `dgpt prepare shakespeare` and `dgpt prepare openwebtext`: datasets in GPT-2's BPE (src/bpe.h),
// in nanoGPT's format (uint16 train.bin / val.bin) plus meta.json {"tokenizer": "gpt2", "vocab_size": 50257}.
#pragma once
#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>
#include <vector>

namespace dgpt {

// nanoGPT's data/shakespeare/prepare.py: the tinyshakespeare text (`input`, else out_dir/input.txt,
// else downloaded), the first 90% of its characters encoded with encode_ordinary to train.bin, the
// rest to val.bin (301,966 and 36,059 tokens).
void prepare_shakespeare_gpt2(const std::string& input, const std::string& out_dir, std::ostream& log);

struct OpenWebTextOptions {
  // .jsonl files (one JSON object per line with a "text" string), .txt files (one document each),
  // or folders searched recursively for both, taken in sorted order.
  std::vector<std::string> inputs;
  std::string out_dir = "data/openwebtext";
  // ceil(val_fraction * documents) documents, drawn with `seed`, go to val.bin (nanoGPT's
  // train_test_split(test_size=0.0005, seed=2357)); 0 puts every document in train.bin.
  double val_fraction = 0.0005;
  uint64_t seed = 2357;
  int threads = 0;    // tokenizer threads; 0 = every core
  int progress = -1;  // progress bar on stderr: -1 = when stderr is a terminal, 0 = never, 1 = always
  size_t batch_bytes = size_t(1) << 20;  // input handed to a tokenizer thread at a time (about)
};

struct OpenWebTextSummary {
  uint64_t documents = 0;  // records: non-blank .jsonl lines and .txt files, malformed ones included
  uint64_t train_documents = 0, val_documents = 0;
  uint64_t train_tokens = 0, val_tokens = 0;  // <|endoftext|> included, one per document
  uint64_t malformed = 0;                      // records skipped
  uint64_t bytes = 0;                          // input bytes read
  double seconds = 0;
  int threads = 0;
};

// Tokenizes every document with <|endoftext|> appended, streaming: a reader thread, `threads`
// tokenizer threads and bounded queues, so memory stays bounded whatever the corpus size; the
// output is the same for any number of threads. train.bin / val.bin are written under temporary
// names and renamed at the end. Malformed records (bad JSON, no "text" string, invalid UTF-8) are
// skipped, counted and reported. Throws UserError on unusable options or inputs.
OpenWebTextSummary prepare_openwebtext(const OpenWebTextOptions& opt, std::ostream& log);

}  // namespace dgpt
