// `dgpt train`: nanoGPT's train.py loop for GPT and DistributedGPT.
#pragma once
#include <iosfwd>

#include "config.h"

namespace dgpt {

// nanoGPT's learning-rate schedule: linear warmup, cosine decay to min_lr, then min_lr.
double learning_rate_at(const TrainConfig& cfg, int64_t iter);

// Runs training to completion; progress to `out`, notices to `notices`. Throws UserError on bad input.
void train(const TrainConfig& cfg, std::ostream& out, std::ostream& notices);

}  // namespace dgpt
