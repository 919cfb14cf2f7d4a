// The architecture of a model: what a checkpoint's model_args records.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dgpt {

struct ModelArgs {
  int64_t n_layer = 12;
  int64_t n_head = 12;
  int64_t n_embd = 768;
  int64_t block_size = 1024;
  int64_t vocab_size = 50304;
  double dropout = 0.0;
  bool bias = false;
  std::string model_type = "gpt";  // 'gpt' (nanoGPT's dense GPT) | 'distributed_gpt' (built from block_types)
  int64_t tp_size = 1;
  std::vector<std::string> block_types;  // n_layer entries (the baseline type for 'gpt')
  std::string parallel_merge = "sum";

  // nanoGPT's dense GPT: every block is the dense reference block, and nothing is sharded.
  bool dense() const { return model_type == kDenseModelType; }
  static constexpr const char* kDenseModelType = "gpt";
  static constexpr const char* kShardedModelType = "distributed_gpt";
};

}  // namespace dgpt
