// How each trainable tensor of a model maps to the dense nanoGPT layout (SPEC §1, §4).
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace dgpt {

// Megatron-LM's vocabulary for a Linear y = x W^T with W: [out, in]. Shard i of N owns:
//   ColumnParallel     rows [i*out/N, (i+1)*out/N) of W (its output features): c_fc, [4C, C] -> [L, 4C/N, C]
//   QkvColumnParallel  the same for c_attn's [q; k; v], split by heads within each of q, k and v:
//                      [3C, C] -> [L, 3C/N, C]
//   RowParallel        columns [i*in/N, (i+1)*in/N) of W (its input features): the c_proj matrices,
//                      [C, C] or [C, 4C] -> [L, C, C/N] or [L, C, 4C/N]; their outputs are partial sums
//   VocabParallel      rows [i*Vp/N, (i+1)*Vp/N) of the tied wte (vocab_parallel, SPEC §1), Vp = the
//                      vocabulary V padded up to a multiple of N: [V, C] -> [L, Vp/N, C]. The padding
//                      rows (at most N-1, at the end of the last shards) are zero in the shards and
//                      absent from the dense tensor, so the dense layout is the same at every N.
// A local sharded tensor has a leading dimension of L = local shards; replicated ones the dense shape.
enum class Layout { Replicated, ColumnParallel, RowParallel, QkvColumnParallel, VocabParallel };

// A Layout and what its conversions need besides the shards: for VocabParallel, the dense
// tensor's rows V (the shards hold Vp >= V of them). Converts to and from Layout, so slots and
// calls that name a plain Layout read as before.
struct TensorLayout {
  Layout kind = Layout::Replicated;
  int64_t dense_rows = 0;  // VocabParallel: V

  TensorLayout(Layout k = Layout::Replicated) : kind(k) {}  // NOLINT: implicit on purpose
  static TensorLayout vocab_parallel(int64_t vocab_size) {
    TensorLayout l(Layout::VocabParallel);
    l.dense_rows = vocab_size;
    return l;
  }
  operator Layout() const { return kind; }  // NOLINT: compare and switch as a Layout
};

// The vocabulary V padded up to a multiple of N (shard i of a VocabParallel tensor owns rows
// [i*Vp/N, (i+1)*Vp/N) of it).
inline int64_t padded_vocab_size(int64_t vocab_size, int64_t tp_size) {
  return (vocab_size + tp_size - 1) / tp_size * tp_size;
}

struct ParamSlot {
  std::string dense_name;  // nanoGPT's name, e.g. "transformer.h.3.attn.c_attn.weight"
  torch::Tensor param;
  TensorLayout layout = Layout::Replicated;

  bool sharded() const { return layout != Layout::Replicated; }
  // Rank of the dense tensor: AdamW decays matrices (dense rank >= 2) only.
  int64_t dense_dim() const { return param.dim() - (sharded() ? 1 : 0); }
};

// Shards [first, first + L) of a dense tensor, stacked on a new leading dimension.
torch::Tensor shards_from_dense(const torch::Tensor& dense, const TensorLayout& layout, int64_t tp_size,
                                int64_t first, int64_t local);
// The dense tensor from all N shards (a [N, ...] tensor).
torch::Tensor dense_from_shards(const torch::Tensor& shards, const TensorLayout& layout);

}  // namespace dgpt
