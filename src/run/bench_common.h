// What both modes of `dgpt bench` (training steps in bench.cpp, generation in bench_generate.cpp) share.
#pragma once
#include <torch/torch.h>
#include <nlohmann/json.hpp>

#include <iosfwd>
#include <string>

#include "model/precision.h"
#include "run/bench.h"

namespace dgpt {

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
