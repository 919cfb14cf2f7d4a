// `dgpt train`: nanoGPT's train.py loop for GPT and DistributedGPT.
#pragma once
#include <functional>
#include <iosfwd>

#include "config.h"
#include "data.h"
#include "model.h"
#include "optim.h"

namespace dgpt {

// nanoGPT's learning-rate schedule: linear warmup, cosine decay to min_lr, then min_lr.
double learning_rate_at(const TrainConfig& cfg, int64_t iter);

class Collectives;

// One optimizer step: micro-batches [first_micro, first_micro + micro_count) of step `iter`
// forward and backward (dropout seeded by (seed, iter, micro)), the replicated-gradient sync, the
// data-parallel gradient average when `data_parallel` is given, grad clipping, AdamW. Returns the
// summed micro-batch losses (each divided by gradient_accumulation_steps), over every replica.
torch::Tensor optimizer_step(GPT& model, AdamW& optimizer, const TrainConfig& cfg, int64_t iter, double lr,
                             int64_t first_micro, int64_t micro_count,
                             const std::function<Batch(int64_t micro)>& batch_for, Collectives* data_parallel);

// Runs training to completion; progress to `out`, notices to `notices`. Throws UserError on bad input.
void train(const TrainConfig& cfg, std::ostream& out, std::ostream& notices);

}  // namespace dgpt
