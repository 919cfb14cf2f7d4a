// The GPT: embeddings, a stack of blocks, final LayerNorm and the tied lm_head; model_type 'gpt'
// (nanoGPT's dense GPT) or 'distributed_gpt' (blocks of block_types, split into tp_size shards).
#pragma once
#include <torch/torch.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "comm/tensor_parallel.h"
#include "model/dropout.h"
#include "model/kv_cache.h"
#include "model/layout.h"
#include "model/model_args.h"

namespace dgpt {

class BlockImpl;

struct ModelOutput {
  // [B, T, V] with targets; [B, 1, V] (last position) without. A vocab-parallel model never forms
  // [B, T, V]: with targets it returns only the loss (logits undefined); without, the gathered [B, 1, V].
  torch::Tensor logits;
  torch::Tensor loss;    // mean cross-entropy, undefined without targets
};

using DenseState = std::map<std::string, torch::Tensor>;

// model_type 'gpt' is nanoGPT's dense GPT; 'distributed_gpt' builds each layer from
// block_types with tp_size shards, of which group->local_shards() live in this process.
class GPTImpl : public torch::nn::Module {
 public:
  GPTImpl(const ModelArgs& args, std::shared_ptr<TensorParallelGroup> group);

  // idx: [B, T] token ids. Without a cache they are positions [0, T); with one (generation, SPEC §6)
  // they are positions [P, P+T) after the P = cache->length() cached ones, every layer attends over
  // all P+T, and the cache grows by T. Positions beyond block_size are a UserError that leaves the
  // cache as it was (a caller that generates further clears it and prefills the last block_size
  // tokens again); a failure inside the layers (a collective, say) leaves it empty.
  ModelOutput forward(const torch::Tensor& idx, const torch::Tensor& targets = {}, KVCache* cache = nullptr);

  // Every trainable tensor once (the tied lm_head is wte), with its dense name and layout.
  std::vector<ParamSlot> param_slots();
  // Once per optimizer step, after the backward passes: the replicated-gradient sync (SPEC §2).
  void sync_replicated_grads();
  void discard_replicated_grads();
  // The dropout masks of the next forward passes: those of micro-step `micro` of iteration `iter`
  // of a run seeded `seed` (model/dropout.h).
  void set_dropout_step(int64_t seed, int64_t iter, int64_t micro);

  // Weights in nanoGPT's dense layout, including the lm_head.weight alias of the tied wte. In a
  // real run every process of the tensor-parallel group must call it (the shards are gathered).
  DenseState dense_state();
  // Loads dense weights into this process's shards. Throws UserError naming a missing, unexpected
  // or misshapen tensor.
  void load_dense_state(const DenseState& dense);

  // Sensitivity sweeps (run/sensitivity.cpp): the model with some blocks replaced, run from the
  // stream its unchanged prefix leaves, so that variants share that prefix. settled_streams(idx)
  // (no cache, no targets) returns, at index l, the replicated stream entering layer l where the
  // block before it leaves nothing per-shard or pending (index 0 always; undefined elsewhere), and
  // at index n_layer the stream after the last block. forward_from(x, first, substitutes, targets)
  // runs layers first.. from x (layer l's block taken from `substitutes` where it has one), then
  // ln_f and the head, as forward does. substitute_block builds a block of `type` for `layer` with
  // that layer's weights from `dense` (nanoGPT names; converted for that type), on this model's
  // device and dtype, in eval mode.
  std::vector<torch::Tensor> settled_streams(const torch::Tensor& idx);
  ModelOutput forward_from(const torch::Tensor& x, int64_t first,
                           const std::map<int64_t, std::shared_ptr<BlockImpl>>& substitutes,
                           const torch::Tensor& targets);
  std::shared_ptr<BlockImpl> substitute_block(int64_t layer, const std::string& type, const DenseState& dense);

  const ModelArgs& args() const { return args_; }
  TensorParallelGroup& group() { return *group_; }
  // Dense parameter count, without the position embedding (as nanoGPT reports it).
  int64_t num_params();

 private:
  ModelArgs args_;
  std::shared_ptr<TensorParallelGroup> group_;
  ReplicatedGradSync replicated_grads_;  // of the replicated params the blocks use in the shard region
  DropoutKey dropout_key_;               // read by every block's DropoutPlace
  torch::Tensor wte_;          // [V, C], tied with the lm_head; vocab_parallel: [L, Vp/N, C] (VocabParallel)
  torch::Tensor wpe_;          // [block_size, C]
  torch::Tensor ln_f_weight_;  // [C]
  torch::Tensor ln_f_bias_;    // [C], or undefined without bias
  std::vector<std::shared_ptr<BlockImpl>> blocks_;

  torch::Tensor embed(const torch::Tensor& idx, int64_t first_position);  // [B, T] -> x [B, T, C]
  ModelOutput head(const torch::Tensor& x, const torch::Tensor& targets);  // the last blocks' stream -> output
  bool settled_before(int64_t layer) const;  // whether the stream entering `layer` is replicated and complete
};
TORCH_MODULE(GPT);

// nanoGPT's initialisation in the dense layout, from `seed`: normal(0, 0.02) for matrices and
// embeddings, 0.02/sqrt(2*n_layer) for the residual projections (c_proj), zero biases, unit
// LayerNorm weights. Every model type and tp_size built from the same seed starts from these.
DenseState init_dense_weights(const ModelArgs& args, int64_t seed);

// A model of `args`, initialised from `seed`, on `device` in `dtype`.
GPT build_model(const ModelArgs& args, std::shared_ptr<TensorParallelGroup> group, int64_t seed,
                torch::Device device, torch::Dtype dtype);

}  // namespace dgpt
