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

// On one device and dtype (always, in dgpt), the parameters and both moments live in one flat
// buffer each, every tensor a view of its part, and a step's gradients are packed into a fourth
// (pack_grads): clipping and the update are then a few passes over flat memory instead of about
// ten small ops per tensor (issue 15). The flat order groups the tensors so that the sharded ones
// and the decayed ones are each one contiguous range. The arithmetic is PyTorch's, element for element.
class AdamW {
 public:
  AdamW(std::vector<ParamSlot> slots, double weight_decay, double beta1, double beta2, double eps = 1e-8);

  // After the backward passes and the gradient syncs: copies every gradient into the flat gradient
  // buffer and makes each parameter's .grad() a view of its part. False (nothing changed) when some
  // parameter has no gradient, or the layout cannot be flat; the per-tensor path then runs.
  bool pack_grads();
  // clip_grad_norm / global_grad_norm below, over the packed gradients when pack_grads() succeeded.
  // On the CPU the flat path computes the norm in one pass and folds the clip coefficient into the
  // update (the gradients themselves are left as they are); the result is the same step.
  torch::Tensor clip_grad_norm(TensorParallelGroup& group, double max_norm);
  torch::Tensor global_grad_norm(TensorParallelGroup& group);
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
  // The flat layout, or none (defined() false) when the parameters differ in device or dtype.
  struct Flat {
    torch::Tensor params, exp_avg, exp_avg_sq, grads, denom;  // [P] each (denom: off the CPU only)
    std::vector<int64_t> offset;                              // of slot i's part
    int64_t sharded_end = 0;                                  // [0, sharded_end): sharded tensors
    int64_t decayed_begin = 0, decayed_end = 0;               // the weight-decayed ones
    bool grads_packed = false;
    // The CPU path's clip coefficient (0-dim), applied inside the fused update, not as a pass of its own.
    torch::Tensor grad_scale;
    bool defined() const { return params.defined(); }
  };
  void flatten();            // (re)builds flat_ from the current parameters and moments
  bool flat_intact() const;  // every parameter still a view of its part of flat_.params
  bool flat_step_possible() const;
  void flat_step(double lr);

  std::vector<ParamSlot> slots_;
  std::vector<AdamMoments> state_;
  double weight_decay_, beta1_, beta2_, eps_;
  Flat flat_;
};

// The L2 norm of all gradients of the N-shard model: the sharded parts' squares are summed over
// the group (one all-reduce of one element), replicated parts are counted once.
// A 0-dim float64 tensor on the parameters' device.
torch::Tensor global_grad_norm(const std::vector<ParamSlot>& slots, TensorParallelGroup& group);
// nanoGPT's clip_grad_norm_: scales gradients so the global norm is at most max_norm, without
// reading anything back to the host. Returns the norm (before clipping).
torch::Tensor clip_grad_norm(const std::vector<ParamSlot>& slots, TensorParallelGroup& group, double max_norm);

}  // namespace dgpt
