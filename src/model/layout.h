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
// A local sharded tensor has a leading dimension of L = local shards; replicated ones the dense shape.
enum class Layout { Replicated, ColumnParallel, RowParallel, QkvColumnParallel };

struct ParamSlot {
  std::string dense_name;  // nanoGPT's name, e.g. "transformer.h.3.attn.c_attn.weight"
  torch::Tensor param;
  Layout layout = Layout::Replicated;

  bool sharded() const { return layout != Layout::Replicated; }
  // Rank of the dense tensor: AdamW decays matrices (dense rank >= 2) only.
  int64_t dense_dim() const { return param.dim() - (sharded() ? 1 : 0); }
};

// Shards [first, first + L) of a dense tensor, stacked on a new leading dimension.
torch::Tensor shards_from_dense(const torch::Tensor& dense, Layout layout, int64_t tp_size,
                                int64_t first, int64_t local);
// The dense tensor from all N shards (a [N, ...] tensor).
torch::Tensor dense_from_shards(const torch::Tensor& shards, Layout layout);

}  // namespace dgpt
