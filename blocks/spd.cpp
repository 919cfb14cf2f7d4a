// spd — Sync-Point Drop (arXiv 2502.20727): the all-reduce after attention is dropped, and each
// shard feeds its own partial attention output into its MLP:
//   y_i = x + A_i(ln_1(x)) + b_attn
//   out = x + b_attn + b_mlp + sum_i [A_i(ln_1(x)) + M_i(ln_2(y_i))]
// One all-reduce forward, one backward. ln_1, ln_2 and b_attn are used inside the shard region.
#include "blocks.h"
#include "sharded_layers.h"

namespace dgpt {

namespace {

class SpdBlock : public BlockImpl {
 public:
  explicit SpdBlock(const BlockContext& ctx)
      : args_(ctx.args),
        group_(*ctx.group),
        shard_local_(*ctx.shard_local_grads),
        w_(register_module("w", BlockWeights(ctx, true))) {}

  void forward(ResidualStream& stream) override {
    const auto& x = stream.replicated();
    auto x_shards = copy_to_shards(x, group_);
    auto a = residual_dropout(w_->attn(w_->ln_1(x_shards, &shard_local_)), args_, is_training());
    auto bias_in_shards = w_->attn_bias.defined() ? shard_local_.use(w_->attn_bias) : torch::Tensor();
    auto y = add_bias(x_shards + a, bias_in_shards);
    auto v = w_->ln_2(y, &shard_local_);
    // Without dropout the M_i are only ever summed: one GEMM over the shards' concatenated c_proj
    // columns gives their sum, as in the tp block, instead of L partial outputs summed after.
    const bool per_shard_dropout = is_training() && args_.dropout > 0;
    auto partials = per_shard_dropout ? a + residual_dropout(w_->mlp(v), args_, true)
                                      : a.sum(0, /*keepdim=*/true) + w_->mlp->forward_summed(v);
    auto out = x + reduce_from_shards(partials, group_);
    stream.set_replicated(add_bias(add_bias(out, w_->attn_bias), w_->mlp_bias));
  }

  std::vector<ParamSlot> param_slots(const std::string& prefix) override { return w_->slots(prefix); }

 private:
  ModelArgs args_;
  TensorParallelGroup& group_;
  ShardLocalGrads& shard_local_;
  BlockWeights w_;
};

}  // namespace

BlockType spd_block_type() {
  return {"spd", [](const BlockContext& ctx) { return std::make_shared<SpdBlock>(ctx); },
          /*forward_allreduces=*/1, /*keeps_shard_streams=*/false,
          // ln_1 and ln_2 (weight, bias) and the attention c_proj bias
          [](const ModelArgs& a) -> int64_t { return a.n_embd * (a.bias ? 5 : 2); }};
}

}  // namespace dgpt
