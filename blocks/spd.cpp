// spd — Sync-Point Drop (arXiv 2502.20727): the all-reduce after attention is dropped, and each
// shard feeds its own partial attention output into its MLP:
//   y_i = x + A_i(ln_1(x)) + b_attn
//   out = x + b_attn + b_mlp + sum_i [A_i(ln_1(x)) + M_i(ln_2(y_i))]
// With dropout, A_i and M_i are each dropped with shard i's own mask (model/dropout.h), the biases
// not at all: drop_i(A_i) is what shard i's MLP reads and what is summed.
// One all-reduce forward, one backward. ln_1, ln_2 and b_attn are used inside the shard region.
#include "blocks/blocks.h"
#include "blocks/sharded_layers.h"

namespace dgpt {

namespace {

constexpr bool kCProjBiases = true;

class SpdBlock : public ShardedBlock {
 public:
  explicit SpdBlock(const BlockContext& ctx) : ShardedBlock(ctx, kCProjBiases) {}

  void forward(ResidualStream& stream, LayerKVCache* cache) override {
    const auto& x = stream.replicated();             // [B, T, C]
    auto x_shards = copy_to_shards(x, group_);       // [1, B, T, C]
    auto a = dropout_.per_shard(w_->attn->forward(w_->ln_1(x_shards, &replicated_grads_), cache),
                                DropoutSite::AttentionOutput, group_.first_shard(), is_training());  // [L, B, T, C]
    auto bias_in_shards = w_->attn_bias.defined() ? replicated_grads_.use(w_->attn_bias) : torch::Tensor();
    auto y = add_bias(x_shards + a, bias_in_shards);  // y_i: [L, B, T, C]
    auto v = w_->ln_2(y, &replicated_grads_);
    // Without dropout the M_i are only ever summed: one GEMM over the shards' concatenated c_proj
    // columns gives their sum, as in the tp block, instead of L partial outputs summed after.
    auto partials = dropout_.active(is_training())
                        ? a + dropout_.per_shard(w_->mlp(v), DropoutSite::MlpOutput, group_.first_shard(), true)  // [L, B, T, C]
                        : a.sum(0, /*keepdim=*/true) + w_->mlp->forward_summed(v);  // [1, B, T, C]
    auto out = x + reduce_from_shards(partials, group_);
    stream.set_replicated(add_bias(add_bias(out, w_->attn_bias), w_->mlp_bias));
  }
};

}  // namespace

BlockType spd_block_type() {
  BlockType t;
  t.name = "spd";
  t.make = [](const BlockContext& ctx) { return std::make_shared<SpdBlock>(ctx); };
  t.forward_allreduces = 1;
  t.c_proj_biases = kCProjBiases;
  t.same_function_at_every_tp_size = false;  // each shard's MLP sees only its own heads
  t.differs_from_dense = "each shard's MLP reads its own partial attention output, not their all-reduced sum";
  // ln_1 and ln_2 (weight, bias) and the attention c_proj bias
  t.replicated_grad_sync_numel = [](const ModelArgs& a) -> int64_t { return a.n_embd * (a.bias ? 5 : 2); };
  return t;
}

}  // namespace dgpt
