// AdamW as PyTorch computes it, with nanoGPT's grouping (weight decay on matrices only, decided by
// the dense shape), and the global gradient norm for clipping across shards.
#pragma once
#include <torch/torch.h>

#include <map>
#include <string>
#include <vector>

#include "comm/tensor_parallel.h"
#include "model/layout.h"

namespace dgpt {

struct AdamMoments {
  torch::Tensor exp_avg, exp_avg_sq;  // dense layout in checkpoints, local layout in the optimizer
  int64_t step = 0;
};

class AdamW {
 public:
  AdamW(std::vector<ParamSlot> slots, double weight_decay, double beta1, double beta2, double eps = 1e-8);

  void step(double lr);
  void zero_grad();

  // Moments in dense layout, keyed by dense name; every process of `group` must call it.
  std::map<std::string, AdamMoments> dense_state(TensorParallelGroup& group) const;
  // Loads dense-layout moments into this process's shards.
  void load_dense_state(const std::map<std::string, AdamMoments>& dense, int64_t tp_size, int64_t first_shard,
                        int64_t local_shards);

  int64_t decayed_tensors() const;
  int64_t decayed_numel() const;
  const std::vector<ParamSlot>& slots() const { return slots_; }

 private:
  std::vector<ParamSlot> slots_;
  std::vector<AdamMoments> state_;
  double weight_decay_, beta1_, beta2_, eps_;
};

// The L2 norm of all gradients of the N-shard model: the sharded parts' squares are summed over
// the group (one all-reduce of one element), replicated parts are counted once.
// A 0-dim float64 tensor on the parameters' device.
torch::Tensor global_grad_norm(const std::vector<ParamSlot>& slots, TensorParallelGroup& group);
// nanoGPT's clip_grad_norm_: scales gradients so the global norm is at most max_norm, without
// reading anything back to the host. Returns the norm (before clipping).
torch::Tensor clip_grad_norm(const std::vector<ParamSlot>& slots, TensorParallelGroup& group, double max_norm);

}  // namespace dgpt
