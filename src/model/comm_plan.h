// The communication plan of SPEC §3: what one training step sends, from the config alone.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "model/model_args.h"

namespace dgpt {

struct CommPlan {
  struct Row {
    int64_t layer;
    std::string type;
    int64_t forward_allreduce, backward_allreduce;
    int64_t overlapping_allreduce = 0;  // of the forward ones, those that may run during the next sub-layer
  };
  std::vector<Row> rows;
  int64_t tp_size = 1;
  int64_t micro_steps = 1;
  // Per micro-step: forward (g) and backward (f) all-reduces, each of activation_bytes.
  int64_t forward_allreduce = 0, backward_allreduce = 0;
  int64_t overlapping_allreduce = 0;  // of forward_allreduce (SPEC §3: the 2d of ladder blocks)
  int64_t activation_bytes = 0;
  // vocab_parallel (SPEC §3; model/vocab_parallel.h), per micro-step, bytes of each one: the
  // embedding's g and the lm_head's f (its backward), B*T*C elements each (the embedding's in the
  // parameters' dtype, the lm_head's in the activations'), and the loss's all-reduces of B*T
  // elements (shift, sum of exps, target logit) in float32 (float64 for a float64 model).
  int64_t vocab_forward_allreduce = 0, vocab_forward_bytes = 0;
  int64_t vocab_backward_allreduce = 0, vocab_backward_bytes = 0;
  int64_t vocab_loss_allreduce = 0, vocab_loss_bytes = 0;
  // Per optimizer step.
  int64_t replicated_grad_sync = 0, replicated_grad_bytes = 0;
  int64_t grad_norm_allreduce = 0, grad_norm_bytes = 0;

  int64_t collectives_per_step() const;
  int64_t bytes_per_step() const;
  // Inference (SPEC §3: the forward all-reduces only), per forward pass, when vocab_parallel: the
  // embedding's g and the gather of the last position's logits, an all-reduce of the zero-filled
  // [B,1,Vp]: logits_row_bytes per sequence of the batch (Vp elements of the activations' dtype).
  int64_t inference_vocab_allreduces() const { return vocab_forward_allreduce > 0 ? 2 : 0; }
  int64_t logits_row_bytes = 0;
};

// global_grad_norm: whether the step needs it (grad clipping, or float16 loss scaling, whose
// overflow check it is); activation_elem_bytes: bytes per element of the f/g all-reduces (4 for
// float32, 2 under bfloat16 autocast); param_elem_bytes: of the gradients. A tp_size of 1
// communicates nothing.
CommPlan plan_communications(const ModelArgs& args, int64_t batch_size, int64_t micro_steps, bool global_grad_norm,
                             int64_t activation_elem_bytes, int64_t param_elem_bytes);

}  // namespace dgpt
