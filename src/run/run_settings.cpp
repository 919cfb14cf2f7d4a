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
#define DGPT_COPY_MODEL_KEY(type, name, default_value, kind, help) a.name = cfg.name;
  DGPT_MODEL_KEYS(DGPT_COPY_MODEL_KEY)
#undef DGPT_COPY_MODEL_KEY
  a.block_size = cfg.block_size;
  a.vocab_size = vocab_size;
  a.tp_size = cfg.dense() ? 1 : cfg.tp_size;
  a.block_types = cfg.resolved_block_types();
  return a;
}

}  // namespace dgpt
