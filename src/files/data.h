// nanoGPT's data files: uint16 token ids in train.bin / val.bin, memory-mapped, and batches drawn
// from them reproducibly.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>

namespace dgpt {

// A read-only memory map of a .bin token file. Rejects a missing, empty or odd-sized file, and one
// that is not a regular file (a FIFO, a directory, a device).
class TokenFile {
 public:
  explicit TokenFile(const std::string& path);
  ~TokenFile();
  TokenFile(const TokenFile&) = delete;
  TokenFile& operator=(const TokenFile&) = delete;

  int64_t size() const { return n_tokens_; }  // tokens
  const uint16_t* data() const { return tokens_; }
  const std::string& path() const { return path_; }
  // tokens[begin, begin + length) as int64.
  torch::Tensor slice(int64_t begin, int64_t length) const;

  // Token ids must be below vocab_size (default 65536: any uint16). A file of at most
  // kScanAtOpenTokens tokens is checked whole here; a bigger one window by window as
  // sample_batch reads it (check_range). Either way the error names the file, the id and its position.
  void set_vocab_size(int64_t vocab_size, const std::string& vocabulary);
  int64_t vocab_size() const { return vocab_size_; }
  // Throws UserError if an id in tokens[begin, begin + length) is >= vocab_size.
  void check_range(int64_t begin, int64_t length) const;
  static constexpr int64_t kScanAtOpenTokens = int64_t{1} << 26;  // 128 MiB of ids, ~0.1 s

 private:
  std::string path_;
  const uint16_t* tokens_ = nullptr;
  int64_t n_tokens_ = 0;
  size_t mapped_bytes_ = 0;
  int64_t vocab_size_ = 65536;
  std::string vocabulary_;  // where vocab_size_ comes from, for messages
  bool scanned_ = false;    // the whole file was checked against vocab_size_
};

// A 64-bit seed from a tuple of integers (splitmix64 chained), for independent, reproducible streams.
uint64_t mix_seed(std::initializer_list<uint64_t> parts);

struct Batch {
  torch::Tensor x, y;  // [B, T] int64
};

// nanoGPT's get_batch: B random windows of T+1 tokens, each checked against the file's vocab_size. The offsets come from a generator seeded by
// `stream_seed` alone (use mix_seed(seed, split, step, micro)), so micro-batch k of step s is the
// same in any run, resumed or split across data-parallel ranks.
Batch sample_batch(const TokenFile& file, int64_t batch_size, int64_t block_size, uint64_t stream_seed,
                   torch::Device device);

// Train and val splits of a dataset folder, checked for the block size, and their token ids against
// the dataset's vocabulary (dataset_vocab_size: meta.json, else GPT-2's padded 50304).
struct Dataset {
  std::unique_ptr<TokenFile> train, val;
  int64_t vocab_size = 0;
  static Dataset open(const std::string& dir, int64_t block_size);
  const TokenFile& split(const std::string& name) const { return name == "train" ? *train : *val; }
};

}  // namespace dgpt
