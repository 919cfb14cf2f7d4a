// Turning user-facing settings into what torch needs: device, dtype, model args.
#pragma once
#include <torch/torch.h>

#include <iosfwd>
#include <memory>
#include <string>

#include "config.h"
#include "human_format.h"
#include "model_args.h"

namespace dgpt {

// 'cpu', 'cuda', 'cuda:1'. CUDA that is missing is an error when the user asked for it, and a
// notice with a fall-back to the CPU when it was only nanoGPT's default.
torch::Device resolve_device(const std::string& device, bool explicitly_set, std::ostream& notices);
// Parameter/compute dtype: float64 when asked for, else float32 (on the CPU nanoGPT ignores dtype
// too; mixed precision on CUDA is not implemented yet, and that is noted).
torch::Dtype resolve_dtype(const std::string& dtype, torch::Device device, std::ostream& notices);
// The model a config describes, with the dataset's vocabulary size.
ModelArgs model_args_from(const TrainConfig& cfg, int64_t vocab_size);

}  // namespace dgpt
