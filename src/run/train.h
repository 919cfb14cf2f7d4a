// `dgpt train`: nanoGPT's train.py loop, for the dense and the tensor-parallel GPT.
#pragma once
#include <functional>
#include <iosfwd>

#include "config/config.h"
#include "files/data.h"
#include "model/model.h"
#include "model/optim.h"
#include "model/precision.h"

namespace dgpt {

// nanoGPT's learning-rate schedule: linear warmup, cosine decay to min_lr, then min_lr.
double learning_rate_at(const TrainConfig& cfg, int64_t iter);

class Collectives;

// One optimizer step, with what stays fixed across a run: micro-batches [first_micro,
// first_micro + micro_count) of step `iter` forward (under autocast when the precision asks) and
// backward (dropout seeded by (seed, iter, micro)), the replicated-gradient sync, the
// data-parallel gradient average when `data_parallel` is set, loss unscaling, grad clipping,
// AdamW (skipped when float16 gradients overflowed). Returns the summed micro-batch losses (each
// divided by gradient_accumulation_steps), over every replica, without reading them back.
struct OptimizerStep {
  GPT& model;
  AdamW& optimizer;
  const TrainConfig& cfg;
  const Precision& precision;
  LossScaler& scaler;
  Collectives* data_parallel = nullptr;

  torch::Tensor operator()(int64_t iter, double lr, int64_t first_micro, int64_t micro_count,
                           const std::function<Batch(int64_t micro)>& batch_for);
};

// Runs training to completion; progress to `out`, notices to `notices`. Throws UserError on bad input.
void train(const TrainConfig& cfg, std::ostream& out, std::ostream& notices);

}  // namespace dgpt
