// tp — Megatron-LM: each sublayer is f, the shards' partial outputs, then g.
//   h = x + sum_i A_i(ln_1(x)) + b_attn;   out = h + sum_i M_i(ln_2(h)) + b_mlp
// Two all-reduces forward, two backward; identical to the dense block for every tp_size.
#include "blocks.h"
#include "sharded_layers.h"

namespace dgpt {

namespace {

class TpBlock : public BlockImpl {
 public:
  explicit TpBlock(const BlockContext& ctx)
      : args_(ctx.args), group_(*ctx.group), w_(register_module("w", BlockWeights(ctx, true))) {}

  void forward(ResidualStream& stream) override {
    const auto& x = stream.replicated();
    // Nothing but g uses the partial outputs: each sublayer hands g its local shards' sum.
    auto a = add_bias(reduce_from_shards(w_->attn->forward_summed(copy_to_shards(w_->ln_1(x), group_)), group_),
                      w_->attn_bias);
    auto h = x + residual_dropout(a, args_, is_training());
    auto m = add_bias(reduce_from_shards(w_->mlp->forward_summed(copy_to_shards(w_->ln_2(h), group_)), group_),
                      w_->mlp_bias);
    stream.set_replicated(h + residual_dropout(m, args_, is_training()));
  }

  std::vector<ParamSlot> param_slots(const std::string& prefix) override { return w_->slots(prefix); }

 private:
  ModelArgs args_;
  TensorParallelGroup& group_;
  BlockWeights w_;
};

}  // namespace

BlockType tp_block_type() {
  return {"tp", [](const BlockContext& ctx) { return std::make_shared<TpBlock>(ctx); },
          /*forward_allreduces=*/2, /*keeps_shard_streams=*/false,
          /*shard_local_replicated_numel=*/[](const ModelArgs&) -> int64_t { return 0; }};
}

}  // namespace dgpt
