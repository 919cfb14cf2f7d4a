// How each trainable tensor of a model maps to the dense nanoGPT layout (SPEC §1, §4).
#pragma once
#include <torch/torch.h>

#include <string>
#include <vector>

namespace dgpt {

// Shard i of N owns: heads [i*H/N, (i+1)*H/N) of q, k and v (QkvRows), rows [i*R/N, ...) of
// c_fc (Rows), the matching columns of the c_proj matrices (Cols). A local sharded tensor has a
// leading dimension of L = local shards. Replicated tensors have the dense shape.
enum class Layout { Replicated, Rows, Cols, QkvRows };

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
