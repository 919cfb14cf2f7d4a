// neox — GPT-NeoX's parallel residual (GPT-J / PaLM "parallel layers"): attention and MLP read the
// same input, and their partial outputs are summed before one all-reduce:
//   out = x + drop(sum_i [A_i(ln_1(x)) + M_i(ln_2(x))] + b_attn + b_mlp)
// f is applied to x before both LayerNorms, so ln_1 and ln_2 run inside the shard region (their
// gradients are shard-local and go through the replicated-gradient sync). One all-reduce forward,
// one backward; the same function at every tp_size. One dropout on the sum (unit 0, the block's
// output), so that a single all-reduce suffices.
#include "blocks/blocks.h"
#include "blocks/sharded_layers.h"

namespace dgpt {

namespace {

constexpr bool kCProjBiases = true;

class NeoxBlock : public ShardedBlock {
 public:
  explicit NeoxBlock(const BlockContext& ctx) : ShardedBlock(ctx, kCProjBiases) {}

  void forward(ResidualStream& stream, LayerKVCache* cache) override {
    const auto& x = stream.replicated();        // [B, T, C]
    auto x_shards = copy_to_shards(x, group_);  // [1, B, T, C]
    // Nothing else reads the partial outputs: each sub-layer hands over its local shards' sum.
    auto partials = w_->attn->forward_summed(w_->ln_1(x_shards, &replicated_grads_), cache) +
                    w_->mlp->forward_summed(w_->ln_2(x_shards, &replicated_grads_));  // [1, B, T, C]
    auto y = add_bias(add_bias(reduce_from_shards(partials, group_), w_->attn_bias), w_->mlp_bias);  // [B, T, C]
    stream.set_replicated(x + dropout_.replicated(y, DropoutSite::BlockOutput, is_training()));
  }
};

}  // namespace

BlockType neox_block_type() {
  BlockType t;
  t.name = "neox";
  t.make = [](const BlockContext& ctx) { return std::make_shared<NeoxBlock>(ctx); };
  t.forward_allreduces = 1;
  t.c_proj_biases = kCProjBiases;
  t.same_function_at_every_tp_size = true;  // the shards' sum is the dense sub-layers' sum
  t.differs_from_dense = "attention and MLP read the same input (GPT-NeoX's parallel residual)";
  // ln_1 and ln_2 (weight, bias): used after f
  t.replicated_grad_sync_numel = [](const ModelArgs& a) -> int64_t { return a.n_embd * (a.bias ? 4 : 2); };
  return t;
}

}  // namespace dgpt
