// The alpha-beta model of a ring all-reduce, named interconnect profiles, and fitting the model
// to measured all-reduces: how long a strategy's communication would take on a given network.
#pragma once
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace dgpt {

struct Interconnect {
  std::string name;
  double alpha_s = 0;        // latency per ring step
  double bandwidth_Bps = 0;  // per direction, per GPU
  std::string source;        // where the numbers come from
};

// nvlink (H100 NVLink 4), pcie (5.0 x16), ib (InfiniBand NDR), 100gbe.
const std::vector<Interconnect>& interconnect_profiles();
// A profile name, or a user profile "NAME:ALPHA_US:GBPS" (e.g. "mynet:8:25"). Throws UserError.
Interconnect parse_interconnect(const std::string& spec);
// Several, comma-separated.
std::vector<Interconnect> parse_interconnects(const std::string& specs);

// Ring all-reduce of `bytes` over n ranks: 2(n-1)·alpha + 2(n-1)/n · bytes / bandwidth. 0 for n <= 1.
double ring_allreduce_seconds(const Interconnect& net, int64_t n, double bytes);

// Least-squares fit of t = 2(n-1)·alpha + 2(n-1)/n · bytes / bandwidth to (bytes, seconds) samples.
struct AlphaBetaFit {
  Interconnect model;
  double r2 = 0;  // coefficient of determination of the fit
};
AlphaBetaFit fit_alpha_beta(const std::string& name, int64_t n, const std::vector<std::pair<double, double>>& samples);

}  // namespace dgpt
