#include "model/vocab_parallel.h"

#include <limits>

#include "model/layout.h"

namespace dgpt {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

VocabShards VocabShards::of(const ModelArgs& args, const TensorParallelGroup& group) {
  VocabShards v;
  v.vocab_size = args.vocab_size;
  v.tp_size = args.tp_size;
  v.shard_rows = dgpt::padded_vocab_size(args.vocab_size, args.tp_size) / args.tp_size;
  v.first_shard = group.first_shard();
  v.local_shards = group.local_shards();
  return v;
}

namespace {

// [L] -> [L,1,1]: the global first row of each local shard, as a broadcastable index tensor.
torch::Tensor shard_first_rows(const VocabShards& v, const torch::TensorOptions& long_opts) {
  return (torch::arange(v.local_shards, long_opts) * v.shard_rows + v.first_row()).view({v.local_shards, 1, 1});
}

int64_t group_handle(TensorParallelGroup& g) { return reinterpret_cast<intptr_t>(&g); }
TensorParallelGroup& group_from(const c10::IValue& v) {
  return *reinterpret_cast<TensorParallelGroup*>(static_cast<intptr_t>(v.toInt()));
}

// The loss of vocab_parallel_cross_entropy (see vocab_parallel.h for the formula). Forward and
// backward are written out rather than left to autograd: the three all-reduces are of quantities
// autograd must not differentiate through (the shift) or whose gradient is known in closed form.
struct VocabParallelCrossEntropy : torch::autograd::Function<VocabParallelCrossEntropy> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& logits, const torch::Tensor& targets,
                               int64_t group_id, int64_t vocab_size, int64_t first_shard, int64_t tp_size) {
    TensorParallelGroup& group = group_from(group_id);
    const int64_t L = logits.size(0), Vs = logits.size(-1);
    VocabShards v;
    v.vocab_size = vocab_size;
    v.shard_rows = Vs;
    v.tp_size = tp_size;
    v.first_shard = first_shard;
    v.local_shards = L;
    const auto compute = logits.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
    const auto long_opts = targets.options().dtype(torch::kLong);
    auto z = logits.to(compute);  // [L,B,T,Vs]
    // Padding columns (global column >= V) are not in the vocabulary: -inf drops them from the softmax.
    const bool padded = v.first_row() + L * Vs > vocab_size;
    if (padded) {
      auto cols = (torch::arange(L, long_opts) * Vs + v.first_row()).view({L, 1, 1, 1}) +
                  torch::arange(Vs, long_opts).view({1, 1, 1, Vs});  // [L,1,1,Vs]
      z = z.masked_fill(cols >= vocab_size, -std::numeric_limits<double>::infinity());
    }

    // 1. The shift c [B,T]: the mean of the shard maxima over the shards that have real rows.
    auto shard_max = std::get<0>(z.max(-1));  // [L,B,T]
    if (padded) {  // an all-padding shard's max is -inf: it adds 0 and is not counted
      auto has_rows = (torch::arange(L, long_opts) * Vs + v.first_row() < vocab_size).view({L, 1, 1});
      shard_max = shard_max.masked_fill(has_rows.logical_not(), 0.0);
    }
    auto shift = shard_max.sum(0);  // [B,T]
    group.all_reduce_sum_(shift, CommKind::VocabLossAllReduce);
    shift.div_(double(v.shards_with_rows()));

    // 2. S [B,T]: the sum of exp(z - c) over every column of every shard.
    auto exps = (z - shift.unsqueeze(0).unsqueeze(-1)).exp_();  // [L,B,T,Vs], 0 in padding columns
    auto sum_exp = exps.sum(-1).sum(0);                         // [B,T]
    group.all_reduce_sum_(sum_exp, CommKind::VocabLossAllReduce);

    // 3. zt [B,T]: the target's logit, from the one shard that owns the target (the others add 0).
    auto local_target = targets.unsqueeze(0) - shard_first_rows(v, long_opts);  // [L,B,T]
    auto owned = (local_target >= 0) & (local_target < Vs);                   // -1 (ignored) is owned by none
    auto column = local_target.clamp(0, Vs - 1);
    auto target_logit = z.gather(-1, column.unsqueeze(-1)).squeeze(-1).masked_fill(owned.logical_not(), 0.0).sum(0);
    group.all_reduce_sum_(target_logit, CommKind::VocabLossAllReduce);

    auto valid = targets.ne(-1);  // [B,T]
    const auto count = valid.sum().to(compute);
    auto per_position = (shift + sum_exp.log() - target_logit).masked_fill(valid.logical_not(), 0.0);
    auto loss = per_position.sum() / count;

    ctx->save_for_backward({exps, sum_exp, column, owned, valid, count});
    ctx->saved_data["dtype"] = int64_t(logits.scalar_type());
    return loss;  // float32 (or float64), as log_softmax's under autocast
  }

  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto saved = ctx->get_saved_variables();
    const auto &exps = saved[0], &sum_exp = saved[1], &column = saved[2], &owned = saved[3], &valid = saved[4],
               &count = saved[5];
    torch::NoGradGuard no_grad;
    // d loss / d z = (softmax(z) - onehot(target)) * [valid] / count, per shard over its own columns.
    auto grad = exps / sum_exp.unsqueeze(0).unsqueeze(-1);  // [L,B,T,Vs]
    grad.scatter_add_(-1, column.unsqueeze(-1), owned.unsqueeze(-1).to(grad.scalar_type()).neg());
    auto scale = valid.to(grad.scalar_type()) * (grads[0].to(grad.scalar_type()) / count);  // [B,T]
    grad.mul_(scale.unsqueeze(0).unsqueeze(-1));
    const auto dtype = at::ScalarType(ctx->saved_data["dtype"].toInt());
    return {grad.to(dtype), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor vocab_parallel_embedding(const torch::Tensor& wte, const torch::Tensor& idx, const VocabShards& v,
                                       TensorParallelGroup& group) {
  const int64_t L = wte.size(0), Vs = wte.size(1), C = wte.size(2);
  auto local = idx.unsqueeze(0) - shard_first_rows(v, idx.options().dtype(torch::kLong));  // [L,B,T]
  auto owned = (local >= 0) & (local < Vs);
  // Row of the flattened [L*Vs, C] wte: shard l's own row for the ids it owns, its row 0 (then zeroed) otherwise.
  auto row = local.clamp(0, Vs - 1) + (torch::arange(L, local.options()) * Vs).view({L, 1, 1});
  auto partial = torch::embedding(wte.reshape({L * Vs, C}), row)  // [L,B,T,C]
                     .masked_fill(owned.logical_not().unsqueeze(-1), 0.0);
  return reduce_from_shards(partial, group, CommKind::VocabForwardAllReduce);  // [B,T,C]
}

torch::Tensor vocab_parallel_logits(const torch::Tensor& x, const torch::Tensor& wte, TensorParallelGroup& group) {
  const int64_t B = x.size(0), T = x.size(1), C = x.size(2), L = wte.size(0), Vs = wte.size(1);
  auto shared = copy_to_shards(x, group, CommKind::VocabBackwardAllReduce);  // [1,B,T,C]
  // One batched GEMM over the shards: [1,B*T,C] x [L,C,Vs] -> [L,B*T,Vs].
  return torch::matmul(shared.reshape({1, B * T, C}), wte.transpose(1, 2)).view({L, B, T, Vs});
}

torch::Tensor vocab_parallel_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                           const VocabShards& v, TensorParallelGroup& group) {
  TORCH_CHECK(logits.dim() == 4 && logits.size(0) == v.local_shards && logits.size(-1) == v.shard_rows,
              "vocab-parallel logits must be [L, B, T, V/N], got ", logits.sizes());
  return VocabParallelCrossEntropy::apply(logits, targets, group_handle(group), v.vocab_size, v.first_shard,
                                          v.tp_size);
}

torch::Tensor gather_vocab_logits(const torch::Tensor& logits, const VocabShards& v, TensorParallelGroup& group) {
  const int64_t L = logits.size(0), B = logits.size(1), t = logits.size(2), Vs = logits.size(3);
  auto full = torch::zeros({B, t, v.padded_vocab_size()}, logits.options());  // [B,t,Vp]
  full.narrow(-1, v.first_row(), L * Vs).copy_(logits.permute({1, 2, 0, 3}).reshape({B, t, L * Vs}));
  group.all_reduce_sum_(full, CommKind::VocabLogitsAllReduce);
  return full.narrow(-1, 0, v.vocab_size);  // [B,t,V]
}

}  // namespace dgpt
