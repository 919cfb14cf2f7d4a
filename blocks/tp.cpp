// tp — Megatron-LM: each sublayer is f, the shards' partial outputs, then g.
//   h = x + sum_i A_i(ln_1(x)) + b_attn;   out = h + sum_i M_i(ln_2(h)) + b_mlp
// Two all-reduces forward, two backward; identical to the dense block for every tp_size.
#include "blocks/blocks.h"
#include "blocks/sharded_layers.h"

namespace dgpt {

namespace {

constexpr bool kCProjBiases = true;

class TpBlock : public ShardedBlock {
 public:
  explicit TpBlock(const BlockContext& ctx) : ShardedBlock(ctx, kCProjBiases) {}

  void forward(ResidualStream& stream, LayerKVCache* cache) override {
    const auto& x = stream.replicated();  // [B, T, C]
    // Nothing but g uses the partial outputs: each sublayer hands g its local shards' sum.
    auto a = add_bias(
        reduce_from_shards(w_->attn->forward_summed(copy_to_shards(w_->ln_1(x), group_), cache), group_),
        w_->attn_bias);
    auto h = x + dropout_.replicated(a, DropoutSite::AttentionOutput, is_training());
    auto m = add_bias(reduce_from_shards(w_->mlp->forward_summed(copy_to_shards(w_->ln_2(h), group_)), group_),
                      w_->mlp_bias);
    stream.set_replicated(h + dropout_.replicated(m, DropoutSite::MlpOutput, is_training()));
  }
};

}  // namespace

BlockType tp_block_type() {
  BlockType t;
  t.name = "tp";
  t.make = [](const BlockContext& ctx) { return std::make_shared<TpBlock>(ctx); };
  t.forward_allreduces = 2;
  t.c_proj_biases = kCProjBiases;
  t.same_function_at_every_tp_size = true;  // the dense block, for every tp_size
  t.replicated_grad_sync_numel = [](const ModelArgs&) -> int64_t { return 0; };
  return t;
}

}  // namespace dgpt
