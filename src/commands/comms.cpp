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
    j["precision"] = precision.describe();
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
  out << fmt::format("communication plan: {} model, tp_size {}, parallel_merge '{}', {} on {}\n", args.model_type,
                     args.tp_size, args.parallel_merge, precision.describe(), cfg.device);
  out << fmt::format("{:>5}  {:<10} {:>10} {:>10}\n", "layer", "type", "fwd AR", "bwd AR");
  for (auto& r : plan.rows)
    out << fmt::format("{:>5}  {:<10} {:>10} {:>10}\n", r.layer, r.type, r.forward_allreduce, r.backward_allreduce);
  out << fmt::format("per micro-step: {} forward + {} backward all-reduces of {} each ({} x {} x {} x {} bytes)\n",
                     plan.forward_allreduce, plan.backward_allreduce, human_bytes(double(plan.activation_bytes)),
                     cfg.batch_size, cfg.block_size, cfg.n_embd, precision.activation_elem_bytes());
  out << fmt::format("per optimizer step ({} micro-steps): {} replicated-gradient sync ({}), {} grad-norm all-reduce\n",
                     plan.micro_steps, plan.replicated_grad_sync, human_bytes(double(plan.replicated_grad_bytes)),
                     plan.grad_norm_allreduce);
  out << fmt::format("total per optimizer step: {} collectives, {}\n", plan.collectives_per_step(),
                     human_bytes(double(plan.bytes_per_step())));
  out << fmt::format("inference: {} forward all-reduces per forward pass\n", plan.forward_allreduce);
}

}  // namespace dgpt
