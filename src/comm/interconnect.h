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

// One kind of collective of a training step, as a projection sees it (SPEC §5).
struct StepCollective {
  std::string name;        // "forward_allreduce", ...
  int64_t count = 0;       // per step
  double bytes_each = 0;   // payload of one
  // A collective that may be in flight while compute runs (the ladder block's g): the solo rank's
  // measured time of that compute, T_next, per collective. Blocking collectives have none.
  bool overlaps = false;
  double overlap_compute_s = 0;
};

// Exposed time of `count` such collectives over n ranks: t(c) each, or max(0, t(c) - T_next) each
// for an overlapping one.
double exposed_seconds(const StepCollective& c, const Interconnect& net, int64_t n);
// SPEC §5's projected step of an N-device run: T_rank(N) + the exposed time of every collective.
double projected_step_seconds(double rank_seconds, const std::vector<StepCollective>& collectives,
                              const Interconnect& net, int64_t n);
// Model FLOPs utilisation of a run on `devices` devices taking `seconds` per step.
double model_flops_utilisation(double flops_per_step, int64_t devices, double seconds, double peak_flops);

// Least-squares fit of t = 2(n-1)·alpha + 2(n-1)/n · bytes / bandwidth to (bytes, seconds) samples.
struct AlphaBetaFit {
  Interconnect model;
  double r2 = 0;  // coefficient of determination of the fit
};
AlphaBetaFit fit_alpha_beta(const std::string& name, int64_t n, const std::vector<std::pair<double, double>>& samples);

}  // namespace dgpt
