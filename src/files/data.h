// nanoGPT's data files: uint16 token ids in train.bin / val.bin, memory-mapped, and batches drawn
// from them reproducibly.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <memory>
#include <string>

namespace dgpt {

// A read-only memory map of a .bin token file. Rejects a missing, empty or odd-sized file.
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

 private:
  std::string path_;
  const uint16_t* tokens_ = nullptr;
  int64_t n_tokens_ = 0;
  size_t mapped_bytes_ = 0;
};

// A 64-bit seed from a tuple of integers (splitmix64 chained), for independent, reproducible streams.
uint64_t mix_seed(std::initializer_list<uint64_t> parts);

struct Batch {
  torch::Tensor x, y;  // [B, T] int64
};

// nanoGPT's get_batch: B random windows of T+1 tokens. The offsets come from a generator seeded by
// `stream_seed` alone (use mix_seed(seed, split, step, micro)), so micro-batch k of step s is the
// same in any run, resumed or split across data-parallel ranks.
Batch sample_batch(const TokenFile& file, int64_t batch_size, int64_t block_size, uint64_t stream_seed,
                   torch::Device device);

// Train and val splits of a dataset folder, checked for the block size.
struct Dataset {
  std::unique_ptr<TokenFile> train, val;
  static Dataset open(const std::string& dir, int64_t block_size);
  const TokenFile& split(const std::string& name) const { return name == "train" ? *train : *val; }
};

}  // namespace dgpt
