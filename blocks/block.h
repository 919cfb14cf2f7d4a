// The interface every block type implements, and the residual stream that flows between blocks.
// A new strategy is a new file in blocks/ plus one line in blocks/registry.cpp.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm.h"
#include "layout.h"
#include "model_args.h"

namespace dgpt {

// The residual stream x between blocks. It is replicated ([B,T,C]) or, inside a run of blocks
// that keep one stream per shard, per-shard: x_i = x0 + delta_i, with delta_i = prev_i + last_i
// (last_i is the newest block's update). Converting between the two is where f and g happen:
// entering the per-shard form applies f once, leaving it applies g once (SPEC §1 merges).
class ResidualStream {
 public:
  ResidualStream(torch::Tensor x, TensorParallelGroup& group, bool mean_merge);

  // The replicated stream, merging per-shard streams first if needed (one g).
  const torch::Tensor& replicated();
  // Per-shard streams x_i as [L,B,T,C] (or [1,B,T,C] right after entering), entering if needed (one f).
  torch::Tensor per_shard();
  // x_i <- x_i + z_i for every shard i; z: [L,B,T,C].
  void add_per_shard(const torch::Tensor& z);
  // Replaces the replicated stream (a block that took replicated() and computed its output).
  void set_replicated(torch::Tensor x);

 private:
  void bring_streams_up_to_date();

  TensorParallelGroup& group_;
  bool mean_merge_;
  bool per_shard_ = false;
  torch::Tensor x_;      // replicated stream (x0 while per-shard)
  torch::Tensor streams_;  // x_i = f(x0) + prev_i + last_i (without last_i while stale)
  bool streams_stale_ = false;
  torch::Tensor prev_;   // sum of per-shard updates before the newest block (undefined if none)
  torch::Tensor last_;   // the newest block's per-shard update (undefined if none)
};

// What a block needs to know to build itself.
struct BlockContext {
  ModelArgs args;
  int64_t layer = 0;
  TensorParallelGroup* group = nullptr;
  ShardLocalGrads* shard_local_grads = nullptr;
};

class BlockImpl : public torch::nn::Module {
 public:
  virtual void forward(ResidualStream& stream) = 0;
  // Every parameter with its dense nanoGPT name under `prefix` ("transformer.h.3.").
  virtual std::vector<ParamSlot> param_slots(const std::string& prefix) = 0;
};

using BlockFactory = std::function<std::shared_ptr<BlockImpl>(const BlockContext&)>;

std::shared_ptr<BlockImpl> make_block(const std::string& type, const BlockContext& ctx);
std::vector<std::string> known_block_types();
// Which parameters, per block of this type, are replicated but used in the shard region (their
// element count): the payload of the replicated-gradient sync in the communication plan.
int64_t shard_local_replicated_numel(const std::string& type, const ModelArgs& args);
// Forward all-reduces of each block in one pass (SPEC §3: 2t + s + r in all); a run of blocks
// that keep per-shard streams is charged its one merge at its last block.
std::vector<int64_t> forward_allreduces_per_block(const std::vector<std::string>& block_types);

}  // namespace dgpt
