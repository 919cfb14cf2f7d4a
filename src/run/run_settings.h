// Turning user-facing settings into what torch needs: device, dtype, model args.
#pragma once
#include <torch/torch.h>

#include <iosfwd>
#include <memory>
#include <string>

#include "config/config.h"
#include "base/human_format.h"
#include "model/model_args.h"

namespace dgpt {

// The device a string names, present or not; not a device at all is an error.
torch::Device configured_device(const std::string& device);
// 'cpu', 'cuda', 'cuda:1'. CUDA that is missing is an error when the user asked for it, and a
// notice with a fall-back to the CPU when it was only nanoGPT's default.
torch::Device resolve_device(const std::string& device, bool explicitly_set, std::ostream& notices);
// The CPU threads of this process's kernels (torch's intra-op threads, which OpenBLAS's OpenMP build
// shares): OMP_NUM_THREADS when set (dgpt launch and torchrun set it per rank), else the CPUs this
// process may run on divided by the ranks on this machine (LOCAL_WORLD_SIZE, else Slurm's
// SLURM_NTASKS_PER_NODE, else 1). LibTorch's own default is the physical cores, 1 on a 2-vCPU VM
// whose step then takes 1.5x as long (README "Performance notes"). Sets them; returns the count.
int64_t set_compute_threads();
// The ranks a launcher started on this machine: LOCAL_WORLD_SIZE, else SLURM_NTASKS_PER_NODE, else 1.
int64_t local_ranks();
// The model a config describes, with the dataset's vocabulary size.
ModelArgs model_args_from(const TrainConfig& cfg, int64_t vocab_size);

}  // namespace dgpt
