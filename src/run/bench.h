// `dgpt bench`: nanoGPT's bench.py and more — timed training steps of one or several
// block_types patterns (and the dense model) in one process, MFU, communication per step, and
// projections of the communication time onto real interconnects.
#pragma once
#include <iosfwd>
#include <string>

#include "config/config.h"

namespace dgpt {

struct BenchOptions {
  int64_t burnin = 5;          // untimed steps first
  int64_t iters = 20;          // timed steps
  bool real_data = false;      // batches from data/<dataset>/train.bin instead of random tokens
  double peak_flops = 0;       // the device's peak for MFU; 0: measure a matmul
  std::string compare;         // "['tp']*12; ['spd']*12; dense": several patterns in one table
  std::string project;         // "nvlink,ib,100gbe,NAME:ALPHA_US:GBPS": projected step times
  std::string json;            // write the results here ("-": stdout)
  bool fit_alpha_beta = false; // backend 'gloo': fit the alpha-beta model to this machine's all-reduces
};

void bench(const TrainConfig& cfg, const BenchOptions& opt, std::ostream& out, std::ostream& notices);

}  // namespace dgpt
