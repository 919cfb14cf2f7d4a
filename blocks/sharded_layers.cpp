#include "blocks/sharded_layers.h"

#include "base/torch_compat.h"
#include "model/cpu_gemm.h"
#include "model/dense_block.h"

namespace dgpt {

namespace {

// u [L, M, in] @ per-shard weight [L, out, in]^T -> [L, M, out]: one Linear when L = 1, else one
// batched matmul (model/cpu_gemm.h schedules both for the CPU; `interleaved`: see batched_matmul).
torch::Tensor per_shard_matmul(const torch::Tensor& u, const torch::Tensor& weight, bool interleaved = false) {
  if (weight.size(0) == 1) return dgpt::linear(u[0], weight[0]).unsqueeze(0);
  return batched_matmul(u, weight.transpose(1, 2), interleaved);
}

// u: [1 or L, B, T, in], weight: [L, out, in], bias: [L, out] or undefined -> [L, B, T, out].
// `interleaved`: per-shard inputs' products laid out [B, T, L, out] in memory where the CPU kernels
// run, so that the caller's permute to [B*T, L*out] is a view, not a copy.
torch::Tensor shard_linear(const torch::Tensor& u, const torch::Tensor& weight,
                           const torch::Tensor& bias, bool interleaved = false) {
  const int64_t L = weight.size(0), out = weight.size(1), in = weight.size(2);
  const int64_t B = u.size(1), T = u.size(2);
  torch::Tensor y;
  if (u.size(0) == 1) {
    // Replicated input (right after f): one GEMM against the rows of every local shard.
    y = dgpt::linear(u.reshape({B * T, in}), weight.reshape({L * out, in}));
    y = y.view({B * T, L, out}).permute({1, 0, 2});  // [B*T, L*out] -> [B*T, L, out] -> [L, B*T, out]
  } else {
    y = per_shard_matmul(u.reshape({L, B * T, in}), weight, interleaved);
  }
  if (bias.defined()) y = y + bias.unsqueeze(1);
  return y.reshape({L, B, T, out});
}

// [L, B, T, in] @ per-shard [L, C, in]^T -> [L, B, T, C]: the row-parallel c_proj, no bias.
torch::Tensor shard_projection(const torch::Tensor& h, const torch::Tensor& weight) {
  const int64_t L = h.size(0), B = h.size(1), T = h.size(2);
  return per_shard_matmul(h.reshape({L, B * T, h.size(3)}), weight).view({L, B, T, weight.size(1)});
}

// sum_i h_i @ W_i^T for h: [B*T, L*in] (shard i's columns at [i*in, (i+1)*in)) and W: [L, C, in]:
// one GEMM against the shards' concatenated columns -> [1, B, T, C].
torch::Tensor summed_projection(const torch::Tensor& h, const torch::Tensor& weight, int64_t B, int64_t T) {
  const int64_t L = weight.size(0), C = weight.size(1), in = weight.size(2);
  auto w = weight.permute({1, 0, 2}).reshape({C, L * in});  // [L, C, in] -> [C, L, in] -> [C, L*in]
  return dgpt::linear(h, w).view({1, B, T, C});
}

torch::Tensor sharded_param(torch::nn::Module& owner, const std::string& name,
                            std::vector<int64_t> shape) {
  return owner.register_parameter(name, torch::zeros(shape));
}

}  // namespace

LayerNormImpl::LayerNormImpl(int64_t n_embd, bool with_bias) {
  weight = register_parameter("weight", torch::ones({n_embd}));
  if (with_bias) bias = register_parameter("bias", torch::zeros({n_embd}));
}

torch::Tensor LayerNormImpl::forward(const torch::Tensor& x, ReplicatedGradSync* replicated_grads) {
  auto w = replicated_grads ? replicated_grads->use(weight) : weight;
  auto b = bias.defined() && replicated_grads ? replicated_grads->use(bias) : bias;
  return dgpt::layer_norm(x, w, b);  // model/dense_block.h: the same LayerNorm as the dense model's
}

void LayerNormImpl::add_slots(std::vector<ParamSlot>& slots, const std::string& prefix) {
  slots.push_back({prefix + "weight", weight, Layout::Replicated});
  if (bias.defined()) slots.push_back({prefix + "bias", bias, Layout::Replicated});
}

ShardedAttentionImpl::ShardedAttentionImpl(const BlockContext& ctx) : dropout_(ctx.dropout()) {
  const auto& a = ctx.args;
  const int64_t L = ctx.group->local_shards(), N = a.tp_size, C = a.n_embd;
  heads_per_shard_ = a.n_head / N;
  head_dim_ = C / a.n_head;
  first_head_ = ctx.group->first_shard() * heads_per_shard_;
  c_attn_weight = sharded_param(*this, "c_attn_weight", {L, 3 * C / N, C});
  if (a.bias) c_attn_bias = sharded_param(*this, "c_attn_bias", {L, 3 * C / N});
  c_proj_weight = sharded_param(*this, "c_proj_weight", {L, C, C / N});
}

torch::Tensor ShardedAttentionImpl::attend(const torch::Tensor& u, LayerKVCache* cache) {
  const int64_t L = c_attn_weight.size(0), B = u.size(1), T = u.size(2);
  const int64_t width = heads_per_shard_ * head_dim_;
  auto qkv = shard_linear(u, c_attn_weight, c_attn_bias).split(width, -1);
  if (!cache && !dropout_.active(is_training())) {
    // Where it runs (dgpt's CPU kernel), every shard's heads are taken where c_attn wrote them,
    // [L, B, T, h*hd] viewed as [B, L, h, T, hd] (no copy), and the output comes back as memory
    // [B, T, L, h, hd]: the layout both projections read (forward_summed's [B*T, L*h*hd] is a view).
    auto heads5 = [&](const torch::Tensor& t) {
      return t.view({L, B, T, heads_per_shard_, head_dim_}).permute({1, 0, 3, 2, 4});
    };
    auto y = compat::grouped_causal_attention(heads5(qkv[0]), heads5(qkv[1]), heads5(qkv[2]));
    if (y.defined()) return y.permute({1, 0, 2, 3, 4});  // [B, L, h, T, hd] -> [L, B, h, T, hd]
  }
  // [L, B, T, h*hd] -> [L, B, T, h, hd] -> [L, B, h, T, hd] -> [L*B, h, T, hd]: SDPA's batch of
  // L*B sequences, h = heads per shard, hd = head dim.
  auto to_heads = [&](const torch::Tensor& t) {
    return t.reshape({L, B, T, heads_per_shard_, head_dim_})
        .permute({0, 1, 3, 2, 4})
        .reshape({L * B, heads_per_shard_, T, head_dim_});
  };
  torch::Tensor y;
  if (cache) {  // the keys and values of every position so far: [L*B, h, P+T, hd]
    auto [k, v] = cache->append(to_heads(qkv[1]), to_heads(qkv[2]));
    y = compat::attention_after_prefix(to_heads(qkv[0]), k, v, 0.0, false);  // generation: no dropout
  } else if (dropout_.active(is_training())) {
    y = attention_with_dropout(to_heads(qkv[0]), to_heads(qkv[1]), to_heads(qkv[2]), L, dropout_, first_head_);
  } else {
    y = compat::causal_attention(to_heads(qkv[0]), to_heads(qkv[1]), to_heads(qkv[2]), 0.0, false);
  }
  return y.view({L, B, heads_per_shard_, T, head_dim_});  // [L*B, h, T, hd] -> [L, B, h, T, hd]
}

torch::Tensor ShardedAttentionImpl::forward(const torch::Tensor& u, LayerKVCache* cache) {
  const int64_t L = c_attn_weight.size(0), B = u.size(1), T = u.size(2);
  // [L, B, h, T, hd] -> [L, B, T, h, hd] -> [L, B, T, h*hd]: each shard's heads side by side
  auto y = attend(u, cache).permute({0, 1, 3, 2, 4}).reshape({L, B, T, heads_per_shard_ * head_dim_});
  return shard_projection(y, c_proj_weight);
}

torch::Tensor ShardedAttentionImpl::forward_summed(const torch::Tensor& u, LayerKVCache* cache) {
  const int64_t L = c_attn_weight.size(0), B = u.size(1), T = u.size(2);
  // [L, B, heads, T, hd] -> [B, T, L, heads, hd]: shard i's columns at [i*width, (i+1)*width)
  auto y = attend(u, cache).permute({1, 3, 0, 2, 4}).reshape({B * T, L * heads_per_shard_ * head_dim_});
  return summed_projection(y, c_proj_weight, B, T);
}

void ShardedAttentionImpl::add_slots(std::vector<ParamSlot>& slots, const std::string& prefix) {
  slots.push_back({prefix + "c_attn.weight", c_attn_weight, Layout::QkvColumnParallel});
  if (c_attn_bias.defined()) slots.push_back({prefix + "c_attn.bias", c_attn_bias, Layout::QkvColumnParallel});
  slots.push_back({prefix + "c_proj.weight", c_proj_weight, Layout::RowParallel});
}

ShardedMLPImpl::ShardedMLPImpl(const BlockContext& ctx) : tanh_gelu_(ctx.args.tanh_gelu()) {
  const auto& a = ctx.args;
  const int64_t L = ctx.group->local_shards(), N = a.tp_size, C = a.n_embd;
  c_fc_weight = sharded_param(*this, "c_fc_weight", {L, 4 * C / N, C});
  if (a.bias) c_fc_bias = sharded_param(*this, "c_fc_bias", {L, 4 * C / N});
  c_proj_weight = sharded_param(*this, "c_proj_weight", {L, C, 4 * C / N});
}

torch::Tensor ShardedMLPImpl::forward(const torch::Tensor& u) {
  return shard_projection(compat::gelu(shard_linear(u, c_fc_weight, c_fc_bias), tanh_gelu_), c_proj_weight);
}

torch::Tensor ShardedMLPImpl::forward_summed(const torch::Tensor& u) {
  const int64_t L = c_fc_weight.size(0), F = c_fc_weight.size(1), B = u.size(1), T = u.size(2);
  const int64_t C = u.size(3);
  torch::Tensor h;
  if (u.size(0) == 1) {  // replicated input: both GEMMs are the dense layer's, over the local columns
    h = dgpt::linear(u.reshape({B * T, C}), c_fc_weight.reshape({L * F, C}));
    if (c_fc_bias.defined()) h = h + c_fc_bias.reshape({L * F});
    h = compat::gelu(h, tanh_gelu_);
  } else {
    // [L, B, T, F] -> [B, T, L, F] -> [B*T, L*F]: shard i's hidden units at columns [i*F, (i+1)*F)
    // (the products written interleaved: the permute is a view, and the GELU runs on a contiguous tensor)
    h = shard_linear(u, c_fc_weight, c_fc_bias, /*interleaved=*/true).permute({1, 2, 0, 3}).reshape({B * T, L * F});
    h = compat::gelu(h, tanh_gelu_);
  }
  return summed_projection(h, c_proj_weight, B, T);
}

void ShardedMLPImpl::add_slots(std::vector<ParamSlot>& slots, const std::string& prefix) {
  slots.push_back({prefix + "c_fc.weight", c_fc_weight, Layout::ColumnParallel});
  if (c_fc_bias.defined()) slots.push_back({prefix + "c_fc.bias", c_fc_bias, Layout::ColumnParallel});
  slots.push_back({prefix + "c_proj.weight", c_proj_weight, Layout::RowParallel});
}

BlockWeightsImpl::BlockWeightsImpl(const BlockContext& ctx, bool proj_biases) {
  const auto& a = ctx.args;
  ln_1 = register_module("ln_1", LayerNorm(a.n_embd, a.bias));
  attn = register_module("attn", ShardedAttention(ctx));
  ln_2 = register_module("ln_2", LayerNorm(a.n_embd, a.bias));
  mlp = register_module("mlp", ShardedMLP(ctx));
  if (a.bias && proj_biases) {
    attn_bias = register_parameter("attn_c_proj_bias", torch::zeros({a.n_embd}));
    mlp_bias = register_parameter("mlp_c_proj_bias", torch::zeros({a.n_embd}));
  }
}

std::vector<ParamSlot> BlockWeightsImpl::slots(const std::string& prefix) {
  std::vector<ParamSlot> s;
  ln_1->add_slots(s, prefix + "ln_1.");
  attn->add_slots(s, prefix + "attn.");
  if (attn_bias.defined()) s.push_back({prefix + "attn.c_proj.bias", attn_bias, Layout::Replicated});
  ln_2->add_slots(s, prefix + "ln_2.");
  mlp->add_slots(s, prefix + "mlp.");
  if (mlp_bias.defined()) s.push_back({prefix + "mlp.c_proj.bias", mlp_bias, Layout::Replicated});
  return s;
}

torch::Tensor add_bias(const torch::Tensor& t, const torch::Tensor& b) {
  return b.defined() ? t + b : t;
}

}  // namespace dgpt
