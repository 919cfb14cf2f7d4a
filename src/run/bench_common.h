// What both modes of `dgpt bench` (training steps in bench.cpp, generation in bench_generate.cpp) share.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <iosfwd>
#include <string>

#include "comm/interconnect.h"
#include "comm/tensor_parallel.h"
#include "model/model_args.h"
#include "model/precision.h"
#include "run/bench.h"

namespace dgpt {

// One pattern to time: a label and its model.
struct BenchPattern {
  std::string label;
  ModelArgs args;
};
// The config's pattern, or each ';'-separated item of --compare ("dense" is the dense model, anything
// else a Python list for block_types); the dense model is added to a comparison, and the all-tp
// baseline when projections need it.
std::vector<BenchPattern> bench_patterns(const TrainConfig& cfg, const BenchOptions& opt, int64_t vocab);
// Which solo ranks to time: "0", "all", "0,3" (ranks a model does not have are skipped).
std::vector<int64_t> solo_ranks(const std::string& spec, int64_t tp_size);

// What a tally holds, as a projection's collectives: every collective of a kind has the same size.
// The overlapping ones (ladder's g) each with `windows`' compute measured while it was in flight,
// in order; without those they count as blocking.
std::vector<StepCollective> step_collectives(const CommTally& tally, const std::vector<double>& windows = {});

// Waits for the device's queued work (CUDA); nothing on the CPU.
void synchronize_device(torch::Device device);
// The device's matmul throughput (FLOP/s), in the dtype its matmuls run in.
double measure_peak_flops(torch::Device device, const Precision& precision);
// The results as JSON to a file, or to stdout for "-".
void write_bench_json(const nlohmann::json& j, const std::string& where, std::ostream& stdout_stream,
                      std::ostream& table);
// --mode=generate: prefill and per-token decode with the KV cache, per strategy (bench_generate.cpp).
void bench_generate(const TrainConfig& cfg, const BenchOptions& opt, std::ostream& out, std::ostream& notices);

}  // namespace dgpt
