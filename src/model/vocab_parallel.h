// Vocabulary parallelism (SPEC §1, `vocab_parallel = True`): Megatron-LM's VocabParallelEmbedding
// and vocab_parallel_cross_entropy for the tied wte. Shard i of N owns rows [i*Vp/N, (i+1)*Vp/N)
// of wte, Vp = the vocabulary V padded up to a multiple of N (layout.h, Layout::VocabParallel).
// The padding rows (fewer than N) are zero, no token id or target is ever one of them, and their
// logits are left out of the softmax, of sampling and of the dense layout: the model computes the
// function of the replicated embedding at every N.
//
// What is sent (SPEC §3), each counted under its own CommKind:
//   embedding   one g of [B,T,C] (VocabForwardAllReduce; in the parameters' dtype, also under autocast)
//   lm_head     one f, whose backward all-reduces [B,T,C] (VocabBackwardAllReduce)
//   loss        three all-reduces of [B,T] (VocabLossAllReduce): the shift, the sum of exps, the
//               target logit
//   sampling    the last position's logits [B,1,V], gathered by one all-reduce of the zero-filled
//               [B,1,Vp] (VocabLogitsAllReduce)
#pragma once
#include <torch/torch.h>

#include "comm/tensor_parallel.h"
#include "model/model_args.h"

namespace dgpt {

// Which rows of the padded vocabulary this process's shards hold.
struct VocabShards {
  int64_t vocab_size = 0;    // V: real rows; rows [V, Vp) are padding
  int64_t shard_rows = 0;    // Vp / N
  int64_t tp_size = 1;       // N
  int64_t first_shard = 0;   // this process's shards are [first_shard, first_shard + local_shards)
  int64_t local_shards = 1;  // L

  static VocabShards of(const ModelArgs& args, const TensorParallelGroup& group);
  int64_t padded_vocab_size() const { return tp_size * shard_rows; }
  int64_t first_row() const { return first_shard * shard_rows; }
  // Shards that hold at least one real row (the last ones may be all padding when V < N*(N-1)).
  int64_t shards_with_rows() const { return (vocab_size + shard_rows - 1) / shard_rows; }
};

// The token embedding of idx [B,T] from the local shards wte [L, Vp/N, C]: each shard looks up the
// ids it owns (zero for the others), [L,B,T,C], and one g sums them: [B,T,C], replicated.
torch::Tensor vocab_parallel_embedding(const torch::Tensor& wte, const torch::Tensor& idx, const VocabShards& v,
                                       TensorParallelGroup& group);

// The logits of the local shards: x [B,T,C] (replicated, after ln_f) goes through one f and is
// multiplied by each shard's rows, wte [L, Vp/N, C] -> [L,B,T,Vp/N]. Padding columns hold 0.
torch::Tensor vocab_parallel_logits(const torch::Tensor& x, const torch::Tensor& wte, TensorParallelGroup& group);

// The mean cross-entropy over the whole vocabulary (targets [B,T]; -1 is ignored, as nanoGPT's
// ignore_index), from the local shards' logits [L,B,T,Vp/N], with three all-reduces of [B,T]:
//   c  = the mean over the N shards of each shard's max logit (the shift, see below)
//   S  = sum over all V columns of exp(z - c)
//   zt = the target's logit (only its owner adds a nonzero)
// loss per position = c + log S - zt. Megatron all-reduces the max for the shift; the group's one
// collective is a sum, so the shift is the mean of the shard maxima instead. Any common shift gives
// the same exact result; the mean is at most the max, so S >= 1 (no underflow to log 0), and exp
// overflows only if a logit exceeds the mean of the shard maxima by more than ~88 in float32 (709
// in float64), far beyond the logits of a language model. Computed in float32 (float64 for a
// float64 model), also under autocast. The backward gives softmax - onehot(target) per shard, with
// no communication (every shard has S and its own columns).
torch::Tensor vocab_parallel_cross_entropy(const torch::Tensor& logits, const torch::Tensor& targets,
                                           const VocabShards& v, TensorParallelGroup& group);

// The full logits [B,t,V] from the local shards' [L,B,t,Vp/N] on every process of the group (for
// sampling, t = 1): each process writes its columns into a zero [B,t,Vp], one all-reduce sums them
// (every column has exactly one nonzero addend, so every process gets the same bits), and the
// padding columns are dropped.
torch::Tensor gather_vocab_logits(const torch::Tensor& logits, const VocabShards& v, TensorParallelGroup& group);

}  // namespace dgpt
