// parallel — a maximal run of consecutive parallel blocks keeps one residual stream per shard:
//   x_i <- x_i + z_i,  z_i = A_i(ln_1(x_i)) + M_i(ln_2(x_i + A_i(ln_1(x_i))))
// merged at the run's end by ResidualStream ('sum' or 'mean', SPEC §1). One all-reduce forward and
// one backward per run. No c_proj biases; ln_1 and ln_2 are used inside the shard region.
#include "blocks.h"
#include "sharded_layers.h"

namespace dgpt {

namespace {

class ParallelBlock : public BlockImpl {
 public:
  explicit ParallelBlock(const BlockContext& ctx)
      : args_(ctx.args),
        shard_local_(*ctx.shard_local_grads),
        w_(register_module("w", BlockWeights(ctx, /*proj_biases=*/false))) {}

  void forward(ResidualStream& stream) override {
    auto x = stream.per_shard();
    auto a = residual_dropout(w_->attn(w_->ln_1(x, &shard_local_)), args_, is_training());
    auto m = residual_dropout(w_->mlp(w_->ln_2(x + a, &shard_local_)), args_, is_training());
    stream.add_per_shard(a + m);
  }

  std::vector<ParamSlot> param_slots(const std::string& prefix) override { return w_->slots(prefix); }

 private:
  ModelArgs args_;
  ShardLocalGrads& shard_local_;
  BlockWeights w_;
};

}  // namespace

BlockType parallel_block_type() {
  return {"parallel", [](const BlockContext& ctx) { return std::make_shared<ParallelBlock>(ctx); },
          /*forward_allreduces=*/0, /*keeps_shard_streams=*/true,
          // ln_1 and ln_2, weight and bias
          [](const ModelArgs& a) -> int64_t { return a.n_embd * (a.bias ? 4 : 2); }};
}

}  // namespace dgpt
