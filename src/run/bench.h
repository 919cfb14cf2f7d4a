// `dgpt bench`: nanoGPT's bench.py and more. Three times per strategy (SPEC §5), never mixed up:
//   simulated  all N shards computed one after another on one device: what simulating costs;
//   per rank   T_rank(N), a solo rank's step (rank r of N run alone, L = 1 shard): what one of N
//              devices computes;
//   projected  T_rank(N) + the alpha-beta time of the collectives the step sends: an N-device step.
// In a real run (backend gloo/nccl under a launcher) the measured step and its time in collectives
// stand beside them, per rank, so the time model can be checked against the real thing.
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
  std::string ranks = "0";     // solo ranks timed: "0", "all", or a comma-separated list ("0,3")
  // --mode=generate: inference with the KV cache instead of training steps.
  std::string mode = "train";  // 'train' | 'generate'
  int64_t prompt_len = 64;     // generate: tokens prefilled
  int64_t new_tokens = 32;     // generate: tokens decoded one at a time
  int64_t gen_batch = 1;       // generate: sequences decoded together
};

void bench(const TrainConfig& cfg, const BenchOptions& opt, std::ostream& out, std::ostream& notices);

}  // namespace dgpt
