// The interface every block type implements, and the residual stream that flows between blocks.
// A new strategy is a new file in blocks/ plus one line in blocks/registry.cpp.
#pragma once
#include <torch/torch.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "comm/tensor_parallel.h"
#include "model/dropout.h"
#include "model/kv_cache.h"
#include "model/layout.h"
#include "model/model_args.h"

namespace dgpt {

// The residual stream x between blocks. It is replicated ([B,T,C]) or, inside a run of blocks
// that keep one stream per shard, per-shard: x_i = x0 + delta_i, delta_i the sum of the run's
// updates so far (the merge takes delta_i = x_i - x0). Converting between the two is where f and g happen:
// entering the per-shard form applies f once, leaving it applies g once (SPEC §1 merges). Inside
// a ladder run the replicated stream lags by one sub-layer output (pending), added when a
// later sub-layer or any other block reads the stream.
class ResidualStream {
 public:
  ResidualStream(torch::Tensor x, TensorParallelGroup& group, bool mean_merge);

  // The replicated stream, merging per-shard streams first if needed (one g).
  const torch::Tensor& replicated();
  // Per-shard streams x_i as [L,B,T,C] (or [1,B,T,C] right after entering), entering if needed (one f).
  torch::Tensor per_shard();
  // x_i <- the block's new stream x_i' for every shard i; x: [L,B,T,C]. (The block forms x_i' = s_i + m_i
  // from the s_i = x_i + a_i it computed anyway: one [L,B,T,C] addition per block, not an update
  // added to the streams and to a running sum of updates.)
  void set_per_shard(torch::Tensor x);
  // Replaces the replicated stream (a block that took replicated() and computed its output).
  void set_replicated(torch::Tensor x);
  // The lagged stream of a ladder run (SPEC §1): what the next sub-layer reads, x_{m-2}, i.e. the
  // replicated stream without the pending output of the previous sub-layer; entering the run
  // (x_0 = x_{-1} = the input) if needed.
  const torch::Tensor& ladder_input();
  // Adds the pending sub-layer output to the lagged stream and makes S_m's the pending one:
  // x_{m-2} <- x_{m-1}, pending <- finish(the g of S_m). The g may still be in flight (SPEC §2):
  // it is waited for, and `finish` (bias, dropout: [B,T,C] -> [B,T,C]) applied, only when a later
  // sub-layer's ladder_add or any other reader needs x_m.
  using Finish = std::function<torch::Tensor(const torch::Tensor&)>;
  void ladder_add(PendingReduce update, Finish finish);

 private:
  TensorParallelGroup& group_;
  bool mean_merge_;
  bool per_shard_ = false;
  torch::Tensor x_;      // replicated stream (x0 while per-shard)
  torch::Tensor entry_;    // f(x0): the streams on entering the per-shard region, [1,B,T,C]
  torch::Tensor streams_;  // x_i, [L,B,T,C] (entry_ until a block updates them)
  torch::Tensor prev_streams_;  // the streams before the newest block's update (undefined if none yet)
  void add_pending();  // x_ <- x_ + the pending sub-layer output (waiting for its g), if any
  // A ladder run's newest sub-layer output, not yet in x_ (pending_finish_ empty if none).
  PendingReduce pending_;
  Finish pending_finish_;
};

// What a block needs to know to build itself.
struct BlockContext {
  ModelArgs args;
  TensorParallelGroup* group = nullptr;
  ReplicatedGradSync* replicated_grads = nullptr;  // where shard-region uses of replicated params go
  int64_t layer = 0;                               // the block's index in the model
  const DropoutKey* dropout_key = nullptr;         // the current micro-step's (model/dropout.h)
  DropoutPlace dropout() const { return {dropout_key, layer, args.dropout}; }
};

class BlockImpl : public torch::nn::Module {
 public:
  // One block on the stream. `cache`: this layer's part of the generation KV cache (SPEC §6), which
  // its attention reads and extends by the stream's T positions; nullptr without a cache.
  virtual void forward(ResidualStream& stream, LayerKVCache* cache) = 0;
  void forward(ResidualStream& stream) { forward(stream, nullptr); }
  // Every parameter with its dense nanoGPT name under `prefix` ("transformer.h.3.").
  virtual std::vector<ParamSlot> param_slots(const std::string& prefix) = 0;
};

using BlockFactory = std::function<std::shared_ptr<BlockImpl>(const BlockContext&)>;

// Everything the rest of dgpt may know about a block type, stated once by the type's own file in
// blocks/ and registered by one line in blocks/registry.cpp. Nothing outside blocks/ names a type.
struct BlockType {
  std::string name;
  BlockFactory make;
  // The communication plan (SPEC §3): all-reduces per forward pass of one block. A block that
  // keeps per-shard streams costs nothing itself; its whole run costs one (at the merge).
  int64_t forward_allreduces = 0;
  bool keeps_shard_streams = false;
  // Of forward_allreduces, how many may run while the next sub-layer computes (SPEC §3's 2d).
  int64_t overlapping_allreduces = 0;
  // Whether its sub-layers read the stream one update behind (ladder): ResidualStream keeps the
  // newest sub-layer output pending and adds it before the next-but-one reads the stream.
  bool lags_stream = false;
  // Whether the block has the replicated attn.c_proj.bias and mlp.c_proj.bias (when `bias`).
  bool c_proj_biases = true;
  // Whether it computes the same function at every tp_size (so its weights may be run, resumed
  // or evaluated at another tp_size, or as the dense model).
  bool same_function_at_every_tp_size = false;
  // How its function differs from nanoGPT's dense block (GPT-2's), in a few words, for messages
  // (GPT-2 weights loaded into it, `dgpt export`); empty for the baseline, which computes it.
  std::string differs_from_dense;
  // Elements of its replicated parameters used inside the shard region: the block's share of the
  // replicated-gradient sync (SPEC §2).
  std::function<int64_t(const ModelArgs&)> replicated_grad_sync_numel;
};

// The registered type of this name; throws UserError for an unknown one.
const BlockType& block_type(const std::string& name);
std::vector<std::string> known_block_types();
// Megatron-LM's block, the baseline every strategy is compared with (and nanoGPT's dense block
// at every tp_size).
const std::string& baseline_block_type();

std::shared_ptr<BlockImpl> make_block(const BlockContext& ctx, const std::string& type);
// Forward all-reduces of each block in one pass (SPEC §3: 2t + s + r in all); a run of blocks
// that keep per-shard streams is charged its one merge at its last block.
std::vector<int64_t> forward_allreduces_per_block(const std::vector<std::string>& block_types);
// Whether every block of the model computes the same function at every tp_size (dense models do).
bool same_function_at_every_tp_size(const ModelArgs& args);
// Whether every block of the model is the baseline type (Megatron's all-tp pattern).
bool is_baseline_pattern(const ModelArgs& args);

}  // namespace dgpt
