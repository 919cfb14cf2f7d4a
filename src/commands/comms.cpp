#include "commands/comms.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <ostream>
#include <sstream>

#include "model/comm_plan.h"
#include "model/precision.h"
#include "run/run_settings.h"
#include "files/tokenizer.h"

namespace dgpt {

void print_comm_plan(const TrainConfig& cfg, bool as_json, std::ostream& out) {
  // Bytes as a run on the config's device sends them (bfloat16 autocast halves the activations'
  // on CUDA; the CPU computes in float32), whether or not that device is here.
  std::ostringstream ignored;
  const Precision precision = resolve_precision(cfg.dtype, configured_device(cfg.device), ignored);
  const ModelArgs args = model_args_from(cfg, dataset_vocab_size(cfg.resolved_data_dir()));
  const CommPlan plan =
      plan_communications(args, cfg.batch_size, cfg.gradient_accumulation_steps,
                          cfg.grad_clip > 0 || precision.loss_scaling(), precision.activation_elem_bytes(),
                          precision.param_elem_bytes());
  if (as_json) {
    nlohmann::json j;
    j["model_type"] = args.model_type;
    j["tp_size"] = args.tp_size;
    j["block_types"] = args.block_types;
    j["parallel_merge"] = args.parallel_merge;
    j["vocab_parallel"] = args.vocab_parallel;
    j["precision"] = precision.describe();
    j["micro_steps_per_step"] = plan.micro_steps;
    j["forward_allreduce"] = plan.forward_allreduce;
    j["overlapping_allreduce"] = plan.overlapping_allreduce;
    j["backward_allreduce"] = plan.backward_allreduce;
    j["allreduce_bytes"] = plan.activation_bytes;
    j["vocab_forward_allreduce"] = plan.vocab_forward_allreduce;
    j["vocab_forward_bytes"] = plan.vocab_forward_bytes;
    j["vocab_backward_allreduce"] = plan.vocab_backward_allreduce;
    j["vocab_backward_bytes"] = plan.vocab_backward_bytes;
    j["vocab_loss_allreduce"] = plan.vocab_loss_allreduce;
    j["vocab_loss_bytes"] = plan.vocab_loss_bytes;
    j["replicated_grad_sync"] = plan.replicated_grad_sync;
    j["replicated_grad_bytes"] = plan.replicated_grad_bytes;
    j["grad_norm_allreduce"] = plan.grad_norm_allreduce;
    j["grad_norm_bytes"] = plan.grad_norm_bytes;
    j["collectives_per_step"] = plan.collectives_per_step();
    j["bytes_per_step"] = plan.bytes_per_step();
    j["inference_forward_allreduce"] = plan.forward_allreduce;
    j["inference_vocab_forward_allreduce"] = plan.inference_vocab_allreduces() / 2;
    j["inference_vocab_logits_allreduce"] = plan.inference_vocab_allreduces() / 2;
    j["inference_vocab_logits_bytes_per_sequence"] = plan.logits_row_bytes;
    j["blocks"] = nlohmann::json::array();
    for (auto& r : plan.rows)
      j["blocks"].push_back({{"layer", r.layer}, {"type", r.type}, {"forward_allreduce", r.forward_allreduce},
                             {"backward_allreduce", r.backward_allreduce},
                             {"overlapping_allreduce", r.overlapping_allreduce}});
    out << j.dump(2) << "\n";
    return;
  }
  out << fmt::format("communication plan: {} model, tp_size {}, parallel_merge '{}'{}, {} on {}\n", args.model_type,
                     args.tp_size, args.parallel_merge, args.vocab_sharded() ? ", vocab_parallel" : "",
                     precision.describe(), cfg.device);
  const bool overlaps = plan.overlapping_allreduce > 0;
  out << fmt::format("{:>5}  {:<10} {:>10} {:>10}{}\n", "layer", "type", "fwd AR", "bwd AR",
                     overlaps ? fmt::format(" {:>12}", "overlapping") : "");
  for (auto& r : plan.rows)
    out << fmt::format("{:>5}  {:<10} {:>10} {:>10}{}\n", r.layer, r.type, r.forward_allreduce, r.backward_allreduce,
                       overlaps ? fmt::format(" {:>12}", r.overlapping_allreduce) : "");
  out << fmt::format("per micro-step: {} forward + {} backward all-reduces of {} each ({} x {} x {} x {} bytes){}\n",
                     plan.forward_allreduce, plan.backward_allreduce, human_bytes(double(plan.activation_bytes)),
                     cfg.batch_size, cfg.block_size, cfg.n_embd, precision.activation_elem_bytes(),
                     overlaps ? fmt::format("; {} of the forward ones may run while the next sub-layer computes "
                                            "(ladder's g, asynchronous in real runs)",
                                            plan.overlapping_allreduce)
                              : "");
  if (plan.vocab_forward_allreduce > 0)
    out << fmt::format("per micro-step, vocab_parallel: {} embedding all-reduce (g, {}), {} lm_head all-reduce (f's "
                       "backward, {}), {} loss all-reduces of {} each ({} x {} positions: shift, sum of exps, target "
                       "logit)\n",
                       plan.vocab_forward_allreduce, human_bytes(double(plan.vocab_forward_bytes)),
                       plan.vocab_backward_allreduce, human_bytes(double(plan.vocab_backward_bytes)),
                       plan.vocab_loss_allreduce, human_bytes(double(plan.vocab_loss_bytes)), cfg.batch_size,
                       cfg.block_size);
  out << fmt::format("per optimizer step ({} micro-steps): {} replicated-gradient sync ({}), {} grad-norm all-reduce\n",
                     plan.micro_steps, plan.replicated_grad_sync, human_bytes(double(plan.replicated_grad_bytes)),
                     plan.grad_norm_allreduce);
  out << fmt::format("total per optimizer step: {} collectives, {}\n", plan.collectives_per_step(),
                     human_bytes(double(plan.bytes_per_step())));
  out << fmt::format("inference: {} forward all-reduces per forward pass{}\n", plan.forward_allreduce,
                     plan.inference_vocab_allreduces() > 0
                         ? fmt::format(", + 1 vocab-parallel embedding all-reduce and 1 gather of the last position's "
                                       "logits ({} per sequence)",
                                       human_bytes(double(plan.logits_row_bytes)))
                         : "");
}

}  // namespace dgpt
