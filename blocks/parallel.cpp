// parallel — a maximal run of consecutive parallel blocks keeps one residual stream per shard:
//   x_i <- x_i + z_i,  z_i = A_i(ln_1(x_i)) + M_i(ln_2(x_i + A_i(ln_1(x_i))))
// merged at the run's end by ResidualStream ('sum' or 'mean', SPEC §1). One all-reduce forward and
// one backward per run. No c_proj biases; ln_1 and ln_2 are used inside the shard region. With
// dropout, A_i and M_i are dropped with shard i's own masks (model/dropout.h).
#include "blocks/blocks.h"
#include "blocks/sharded_layers.h"

namespace dgpt {

namespace {

constexpr bool kCProjBiases = false;

class ParallelBlock : public ShardedBlock {
 public:
  explicit ParallelBlock(const BlockContext& ctx) : ShardedBlock(ctx, kCProjBiases) {}

  void forward(ResidualStream& stream, LayerKVCache* cache) override {
    auto x = stream.per_shard();  // x_i: [L or 1, B, T, C]
    // with a cache, shard i's keys and values are those of its own stream x_i
    const int64_t first = group_.first_shard();
    auto a = dropout_.per_shard(w_->attn->forward(w_->ln_1(x, &replicated_grads_), cache),
                                DropoutSite::AttentionOutput, first, is_training());  // [L, B, T, C]
    auto s = x + a;  // s_i = x_i + A_i: [L, B, T, C]
    auto m = dropout_.per_shard(w_->mlp(w_->ln_2(s, &replicated_grads_)), DropoutSite::MlpOutput, first,
                                is_training());  // [L, B, T, C]
    stream.set_per_shard(s + m);  // x_i + z_i with z_i = A_i + M_i
  }
};

}  // namespace

BlockType parallel_block_type() {
  BlockType t;
  t.name = "parallel";
  t.make = [](const BlockContext& ctx) { return std::make_shared<ParallelBlock>(ctx); };
  t.forward_allreduces = 0;  // its run's merge: one
  t.keeps_shard_streams = true;
  t.c_proj_biases = kCProjBiases;
  t.same_function_at_every_tp_size = false;  // one stream per shard
  t.differs_from_dense = "each shard keeps its own residual stream through a run of parallel blocks, merged at its end";
  // ln_1 and ln_2, weight and bias
  t.replicated_grad_sync_numel = [](const ModelArgs& a) -> int64_t { return a.n_embd * (a.bias ? 4 : 2); };
  return t;
}

}  // namespace dgpt
