#include "model/comm_plan.h"

#include "blocks/block.h"
#include "model/layout.h"
#include "model/vocab_parallel.h"

namespace dgpt {

int64_t CommPlan::collectives_per_step() const {
  return micro_steps * (forward_allreduce + backward_allreduce + vocab_forward_allreduce + vocab_backward_allreduce +
                        vocab_loss_allreduce) +
         replicated_grad_sync + grad_norm_allreduce;
}

int64_t CommPlan::bytes_per_step() const {
  return micro_steps * ((forward_allreduce + backward_allreduce) * activation_bytes +
                        vocab_forward_allreduce * vocab_forward_bytes + vocab_backward_allreduce * vocab_backward_bytes +
                        vocab_loss_allreduce * vocab_loss_bytes) +
         replicated_grad_bytes + grad_norm_bytes;
}

CommPlan plan_communications(const ModelArgs& args, int64_t batch_size, int64_t micro_steps, bool global_grad_norm,
                             int64_t activation_elem_bytes, int64_t param_elem_bytes) {
  CommPlan plan;
  plan.tp_size = args.tp_size;
  plan.micro_steps = micro_steps;
  const bool communicates = !args.dense() && args.tp_size > 1;
  const auto per_block = !args.dense() ? forward_allreduces_per_block(args.block_types)
                                                              : std::vector<int64_t>(size_t(args.n_layer), 0);
  int64_t replicated_numel = 0;
  for (int64_t l = 0; l < args.n_layer; ++l) {
    const std::string& type = args.block_types[size_t(l)];
    const int64_t n = communicates ? per_block[size_t(l)] : 0;
    const int64_t overlapping = communicates ? block_type(type).overlapping_allreduces : 0;
    plan.rows.push_back({l, type, n, n, overlapping});  // every g has its f: f's backward mirrors g's forward
    plan.forward_allreduce += n;
    plan.overlapping_allreduce += overlapping;
    plan.backward_allreduce += n;
    if (communicates) replicated_numel += block_type(type).replicated_grad_sync_numel(args);
  }
  plan.activation_bytes = batch_size * args.block_size * args.n_embd * activation_elem_bytes;
  if (communicates && args.vocab_sharded()) {
    const int64_t positions = batch_size * args.block_size;
    plan.vocab_forward_allreduce = 1;  // the embedding's g, in the parameters' dtype
    plan.vocab_forward_bytes = positions * args.n_embd * param_elem_bytes;
    plan.vocab_backward_allreduce = 1;  // the lm_head's f
    plan.vocab_backward_bytes = positions * args.n_embd * activation_elem_bytes;
    plan.vocab_loss_allreduce = 3;  // shift, sum of exps, target logit; float32 unless float64
    plan.vocab_loss_bytes = positions * param_elem_bytes;
    plan.logits_row_bytes = padded_vocab_size(args.vocab_size, args.tp_size) * activation_elem_bytes;
  }
  if (replicated_numel > 0) {
    plan.replicated_grad_sync = 1;
    plan.replicated_grad_bytes = replicated_numel * param_elem_bytes;
  }
  if (communicates && global_grad_norm) {
    plan.grad_norm_allreduce = 1;
    plan.grad_norm_bytes = 8;  // one float64
  }
  return plan;
}

}  // namespace dgpt
