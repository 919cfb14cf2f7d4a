// Inference from checkpoints: `dgpt sample` (nanoGPT's sample.py) and `dgpt eval`.
#pragma once
#include <iosfwd>
#include <string>

#include "files/checkpoint.h"
#include "config/config.h"
#include "model/model.h"

namespace dgpt {

// A model for inference from a checkpoint, optionally at another tp_size or as the dense 'gpt'
// (both only for all-tp checkpoints: spd and parallel blocks are tied to their tp_size).
GPT model_from_checkpoint(const Checkpoint& ckpt, int64_t tp_size, const std::string& model_type,
                          torch::Device device, torch::Dtype dtype);

void sample(const SampleConfig& cfg, std::ostream& out, std::ostream& notices);

struct EvalOptions {
  std::string out_dir = "out";
  std::string tokens;       // a .bin token file
  int64_t block_size = 0;   // 0: the model's
  int64_t batch_size = 8;
  int64_t max_windows = 0;  // 0: all
  std::string device = "cpu";
  int64_t tp_size = 0;      // 0: the checkpoint's
};

// Mean cross-entropy over every predicted token of consecutive non-overlapping windows:
// window j has x = tokens[jT, jT+T), y = tokens[jT+1, jT+T+1). Prints progress and, last,
// `loss <value>`; returns the value.
double evaluate_tokens(const EvalOptions& opt, std::ostream& out, std::ostream& notices);

}  // namespace dgpt
