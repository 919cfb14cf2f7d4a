// ladder — Ladder Residual (arXiv 2501.06589): a maximal run of k ladder blocks is a chain of 2k
// sub-layers S_1..S_2k (block j's attention S_{2j-1} with ln_1 and b_attn, its MLP S_{2j} with ln_2
// and b_mlp). With x_0 = x_{-1} = the run's input,
//   x_m = x_{m-1} + drop(S_m(LN_m(x_{m-2})) + b_m),
// and the run's output is x_{2k}: each sub-layer reads the stream without its predecessor's output,
// so the all-reduce of S_m may be in flight while S_{m+1} computes; ResidualStream holds it as the
// pending update and adds it before S_{m+2} reads x_m, or at the run's end. In a real run that g is
// asynchronous (SPEC §2): waited for only there. Two all-reduces forward,
// two backward per block, as tp; the same function at every tp_size (LayerNorms on the replicated
// stream, before f). Dropout as tp's: each sub-layer's output after g (bias included), unit 0.
#include "blocks/blocks.h"
#include "blocks/sharded_layers.h"

namespace dgpt {

namespace {

constexpr bool kCProjBiases = true;

class LadderBlock : public ShardedBlock {
 public:
  explicit LadderBlock(const BlockContext& ctx) : ShardedBlock(ctx, kCProjBiases) {}

  void forward(ResidualStream& stream, LayerKVCache* cache) override {
    // S_{2j-1}: the attention reads x_{m-2} (the pending update is the previous sub-layer's output).
    auto a = w_->attn->forward_summed(copy_to_shards(w_->ln_1(stream.ladder_input()), group_), cache);
    // Its g stays in flight while the MLP computes; bias and dropout follow the wait.
    stream.ladder_add(reduce_from_shards_async(a, group_), [this](const torch::Tensor& u) {
      return dropout_.replicated(add_bias(u, w_->attn_bias), DropoutSite::AttentionOutput, is_training());
    });  // [B, T, C]
    // S_{2j}: the MLP reads the stream without the attention's output, which is pending now.
    auto m = w_->mlp->forward_summed(copy_to_shards(w_->ln_2(stream.ladder_input()), group_));
    stream.ladder_add(reduce_from_shards_async(m, group_), [this](const torch::Tensor& u) {
      return dropout_.replicated(add_bias(u, w_->mlp_bias), DropoutSite::MlpOutput, is_training());
    });  // [B, T, C]
  }
};

}  // namespace

BlockType ladder_block_type() {
  BlockType t;
  t.name = "ladder";
  t.make = [](const BlockContext& ctx) { return std::make_shared<LadderBlock>(ctx); };
  t.forward_allreduces = 2;
  t.overlapping_allreduces = 2;  // each may run while the next sub-layer computes
  t.lags_stream = true;
  t.c_proj_biases = kCProjBiases;
  t.same_function_at_every_tp_size = true;  // each sub-layer is the dense one; only the wiring differs
  t.differs_from_dense = "each sub-layer reads the residual stream without its predecessor's output (Ladder Residual)";
  t.replicated_grad_sync_numel = [](const ModelArgs&) -> int64_t { return 0; };
  return t;
}

}  // namespace dgpt
