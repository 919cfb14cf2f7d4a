// The pieces blocks are built from: the attention and MLP sublayers split into shards (computed
// for all L local shards at once by batched matmuls), and LayerNorm with an optional bias.
#pragma once
#include "blocks/block.h"

namespace dgpt {

// LayerNorm(C) with nanoGPT's optional bias. In the shard region its parameters' gradients are
// shard-local and go through ReplicatedGradSync.
class LayerNormImpl : public torch::nn::Module {
 public:
  LayerNormImpl(int64_t n_embd, bool bias);
  torch::Tensor forward(const torch::Tensor& x, ReplicatedGradSync* replicated_grads = nullptr);
  void add_slots(std::vector<ParamSlot>& slots, const std::string& prefix);
  torch::Tensor weight;  // [C]
  torch::Tensor bias;    // [C], or undefined without bias
};
TORCH_MODULE(LayerNorm);

// Attention sublayer of the L local shards: A_i(u) = c_proj[:, cols_i] · SDPA(q_i, k_i, v_i), no
// c_proj bias (the block owns it, replicated).
class ShardedAttentionImpl : public torch::nn::Module {
 public:
  explicit ShardedAttentionImpl(const BlockContext& ctx);
  // u: [1 or L, B, T, C] -> partial outputs [L, B, T, C]. With a cache, u holds the T positions after
  // the cached ones: their keys and values are appended, and they attend over every cached position.
  torch::Tensor forward(const torch::Tensor& u, LayerKVCache* cache = nullptr);
  // The local shards' partial outputs summed, [1, B, T, C]: one GEMM over the shards' concatenated
  // c_proj columns, as the dense layer computes it (what g needs when nothing else uses the partials).
  torch::Tensor forward_summed(const torch::Tensor& u, LayerKVCache* cache = nullptr);
  void add_slots(std::vector<ParamSlot>& slots, const std::string& prefix);  // prefix "...attn."
  torch::Tensor c_attn_weight;  // [L, 3C/N, C]: each shard's q, k, v rows (QkvColumnParallel)
  torch::Tensor c_attn_bias;    // [L, 3C/N], or undefined without bias
  torch::Tensor c_proj_weight;  // [L, C, C/N]: each shard's columns (RowParallel)

 private:
  torch::Tensor attend(const torch::Tensor& u, LayerKVCache* cache);  // -> [L, B, heads, T, head_dim]
  int64_t heads_per_shard_, head_dim_;
  int64_t first_head_;     // global index of the first local shard's first head
  DropoutPlace dropout_;   // of the attention probabilities
};
TORCH_MODULE(ShardedAttention);

// MLP sublayer of the L local shards: M_i(u) = c_proj[:, cols_i] · gelu(c_fc_i · u + b_fc_i).
class ShardedMLPImpl : public torch::nn::Module {
 public:
  explicit ShardedMLPImpl(const BlockContext& ctx);
  torch::Tensor forward(const torch::Tensor& u);  // [1 or L, B, T, C] -> [L, B, T, C]
  torch::Tensor forward_summed(const torch::Tensor& u);  // -> [1, B, T, C], as in ShardedAttention
  void add_slots(std::vector<ParamSlot>& slots, const std::string& prefix);  // prefix "...mlp."
  torch::Tensor c_fc_weight;    // [L, 4C/N, C] (ColumnParallel)
  torch::Tensor c_fc_bias;      // [L, 4C/N], or undefined without bias
  torch::Tensor c_proj_weight;  // [L, C, 4C/N] (RowParallel)

 private:
  bool tanh_gelu_ = false;  // activation 'gelu_tanh' (GPT-2's gelu_new)
};
TORCH_MODULE(ShardedMLP);

// The weights of one block, named as nanoGPT names them: ln_1, attn (sharded), ln_2, mlp (sharded)
// and the replicated c_proj biases (absent without `bias`, or when the block type has none).
class BlockWeightsImpl : public torch::nn::Module {
 public:
  BlockWeightsImpl(const BlockContext& ctx, bool proj_biases);
  std::vector<ParamSlot> slots(const std::string& prefix);  // prefix "transformer.h.3."
  LayerNorm ln_1{nullptr}, ln_2{nullptr};
  ShardedAttention attn{nullptr};
  ShardedMLP mlp{nullptr};
  torch::Tensor attn_bias, mlp_bias;  // [C] each, replicated; undefined without them
};
TORCH_MODULE(BlockWeights);
// What every sharded block holds: the model's args, the group behind f and g, where shard-region
// uses of replicated parameters send their gradients, and the block's weights.
class ShardedBlock : public BlockImpl {
 public:
  ShardedBlock(const BlockContext& ctx, bool c_proj_biases)
      : args_(ctx.args),
        group_(*ctx.group),
        replicated_grads_(*ctx.replicated_grads),
        dropout_(ctx.dropout()),
        w_(register_module("w", BlockWeights(ctx, c_proj_biases))) {}
  std::vector<ParamSlot> param_slots(const std::string& prefix) override { return w_->slots(prefix); }

 protected:
  ModelArgs args_;
  TensorParallelGroup& group_;
  ReplicatedGradSync& replicated_grads_;
  DropoutPlace dropout_;  // of the block's sub-layer outputs
  BlockWeights w_;
};

// t + b, or t when b is undefined.
torch::Tensor add_bias(const torch::Tensor& t, const torch::Tensor& b);

}  // namespace dgpt
