#include "run/run_settings.h"

#include <fmt/format.h>

#include <sched.h>

#include <cstdlib>
#include <ostream>
#include <thread>

namespace dgpt {

int64_t local_ranks() {
  for (const char* var : {"LOCAL_WORLD_SIZE", "SLURM_NTASKS_PER_NODE"}) {  // Slurm's may read "4(x2)"
    const char* v = std::getenv(var);
    if (v != nullptr && std::atoll(v) > 0) return std::atoll(v);
  }
  return 1;
}

int64_t set_compute_threads() {
  const char* omp = std::getenv("OMP_NUM_THREADS");
  if (omp != nullptr && *omp != '\0') return at::get_num_threads();  // OpenMP and torch already read it
  int64_t cpus = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) cpus = CPU_COUNT(&set);
  if (cpus <= 0) cpus = int64_t(std::thread::hardware_concurrency());
  const int64_t threads = std::max<int64_t>(1, cpus / local_ranks());
  at::set_num_threads(int(threads));
  return threads;
}

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
