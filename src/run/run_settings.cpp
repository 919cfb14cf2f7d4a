#include "run/run_settings.h"

#include <fmt/format.h>

#include <ostream>

namespace dgpt {

torch::Device configured_device(const std::string& device) {
  try {
    return torch::Device(device);
  } catch (const std::exception&) {
    throw UserError("device='" + device + "' is not a device (use 'cpu', 'cuda' or 'cuda:N')");
  }
}

torch::Device resolve_device(const std::string& device, bool explicitly_set, std::ostream& notices) {
  const torch::Device dev = configured_device(device);
  if (dev.is_cuda() && !torch::cuda::is_available()) {
    if (explicitly_set)
      throw UserError("device='" + device + "' but no CUDA device is available to this LibTorch (use --device=cpu)");
    notices << "notice: no CUDA device available; running on the CPU (set device='cpu' to silence this)\n";
    return torch::Device(torch::kCPU);
  }
  if (!dev.is_cpu() && !dev.is_cuda()) throw UserError("device='" + device + "' is not supported (use 'cpu' or 'cuda')");
  return dev;
}

ModelArgs model_args_from(const TrainConfig& cfg, int64_t vocab_size) {
  ModelArgs a;
  a.n_layer = cfg.n_layer;
  a.n_head = cfg.n_head;
  a.n_embd = cfg.n_embd;
  a.block_size = cfg.block_size;
  a.vocab_size = vocab_size;
  a.dropout = cfg.dropout;
  a.bias = cfg.bias;
  a.model_type = cfg.model_type;
  a.tp_size = cfg.dense() ? 1 : cfg.tp_size;
  a.block_types = cfg.resolved_block_types();
  a.parallel_merge = cfg.parallel_merge;
  return a;
}

}  // namespace dgpt
