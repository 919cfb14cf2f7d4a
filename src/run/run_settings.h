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
// The model a config describes, with the dataset's vocabulary size.
ModelArgs model_args_from(const TrainConfig& cfg, int64_t vocab_size);

}  // namespace dgpt
