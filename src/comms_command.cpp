#include "comms_command.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <ostream>

#include "comm_plan.h"
#include "runtime.h"
#include "tokenizer.h"

namespace dgpt {

void print_comm_plan(const TrainConfig& cfg, bool as_json, std::ostream& out) {
  // Bytes as a CPU run sends them: float32 (float64 when asked for) activations and gradients.
  const int64_t elem = cfg.dtype == "float64" ? 8 : 4;
  const ModelArgs args = model_args_from(cfg, dataset_vocab_size(cfg.resolved_data_dir()));
  const CommPlan plan = plan_communications(args, cfg.batch_size, cfg.gradient_accumulation_steps, cfg.grad_clip,
                                            elem, elem);
  if (as_json) {
    nlohmann::json j;
    j["model_type"] = args.model_type;
    j["tp_size"] = args.tp_size;
    j["block_types"] = args.block_types;
    j["parallel_merge"] = args.parallel_merge;
    j["micro_steps_per_step"] = plan.micro_steps;
    j["forward_allreduce"] = plan.forward_allreduce;
    j["backward_allreduce"] = plan.backward_allreduce;
    j["allreduce_bytes"] = plan.activation_bytes;
    j["replicated_grad_sync"] = plan.replicated_grad_sync;
    j["replicated_grad_bytes"] = plan.replicated_grad_bytes;
    j["grad_norm_allreduce"] = plan.grad_norm_allreduce;
    j["grad_norm_bytes"] = plan.grad_norm_bytes;
    j["collectives_per_step"] = plan.collectives_per_step();
    j["bytes_per_step"] = plan.bytes_per_step();
    j["inference_forward_allreduce"] = plan.forward_allreduce;
    j["blocks"] = nlohmann::json::array();
    for (auto& r : plan.rows)
      j["blocks"].push_back({{"layer", r.layer}, {"type", r.type}, {"forward_allreduce", r.forward_allreduce},
                             {"backward_allreduce", r.backward_allreduce}});
    out << j.dump(2) << "\n";
    return;
  }
  out << fmt::format("communication plan: {} model, tp_size {}, parallel_merge '{}'\n", args.model_type, args.tp_size,
                     args.parallel_merge);
  out << fmt::format("{:>5}  {:<10} {:>10} {:>10}\n", "layer", "type", "fwd AR", "bwd AR");
  for (auto& r : plan.rows)
    out << fmt::format("{:>5}  {:<10} {:>10} {:>10}\n", r.layer, r.type, r.forward_allreduce, r.backward_allreduce);
  out << fmt::format("per micro-step: {} forward + {} backward all-reduces of {} each ({} x {} x {} x {} bytes)\n",
                     plan.forward_allreduce, plan.backward_allreduce, human_bytes(double(plan.activation_bytes)),
                     cfg.batch_size, cfg.block_size, cfg.n_embd, elem);
  out << fmt::format("per optimizer step ({} micro-steps): {} replicated-gradient sync ({}), {} grad-norm all-reduce\n",
                     plan.micro_steps, plan.replicated_grad_sync, human_bytes(double(plan.replicated_grad_bytes)),
                     plan.grad_norm_allreduce);
  out << fmt::format("total per optimizer step: {} collectives, {}\n", plan.collectives_per_step(),
                     human_bytes(double(plan.bytes_per_step())));
  out << fmt::format("inference: {} forward all-reduces per forward pass\n", plan.forward_allreduce);
}

}  // namespace dgpt
