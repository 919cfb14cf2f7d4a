#include "comm/interconnect.h"

#include <fmt/format.h>

#include <algorithm>
#include <sstream>

#include "base/errors.h"

namespace dgpt {

const std::vector<Interconnect>& interconnect_profiles() {
  // Bandwidths are the links' published per-direction rates; latencies are typical per-step
  // latencies of NCCL/MPI rings on such links (order of magnitude: set your own with NAME:US:GBPS).
  static const std::vector<Interconnect> profiles = {
      {"nvlink", 3e-6, 450e9,
       "NVIDIA H100 SXM datasheet: NVLink 4, 900 GB/s bidirectional = 450 GB/s per direction; ~3 us per step"},
      {"pcie", 10e-6, 64e9,
       "PCI-SIG PCIe 5.0 base specification: 32 GT/s x 16 lanes = ~64 GB/s per direction; ~10 us per step"},
      {"ib", 5e-6, 50e9,
       "NVIDIA ConnectX-7 / Quantum-2: InfiniBand NDR 400 Gb/s = 50 GB/s per direction; ~5 us per step"},
      {"100gbe", 20e-6, 12.5e9, "IEEE 802.3 100 Gigabit Ethernet: 100 Gb/s = 12.5 GB/s; ~20 us per step (RoCE/TCP)"},
  };
  return profiles;
}

Interconnect parse_interconnect(const std::string& spec) {
  for (auto& p : interconnect_profiles())
    if (p.name == spec) return p;
  std::vector<std::string> parts;
  std::stringstream ss(spec);
  for (std::string part; std::getline(ss, part, ':');) parts.push_back(part);
  std::string known;
  for (auto& p : interconnect_profiles()) known += (known.empty() ? "" : ", ") + p.name;
  if (parts.size() != 3)
    throw UserError(fmt::format("unknown interconnect '{}': use one of {} or NAME:ALPHA_US:GBPS (e.g. mynet:8:25)",
                                spec, known));
  try {
    Interconnect net{parts[0], std::stod(parts[1]) * 1e-6, std::stod(parts[2]) * 1e9, "user-given"};
    if (net.alpha_s < 0 || net.bandwidth_Bps <= 0) throw std::invalid_argument("range");
    return net;
  } catch (const std::exception&) {
    throw UserError(fmt::format("bad interconnect '{}': ALPHA_US must be >= 0 and GBPS > 0, e.g. mynet:8:25", spec));
  }
}

std::vector<Interconnect> parse_interconnects(const std::string& specs) {
  std::vector<Interconnect> nets;
  std::stringstream ss(specs);
  for (std::string spec; std::getline(ss, spec, ',');)
    if (!spec.empty()) nets.push_back(parse_interconnect(spec));
  return nets;
}

double ring_allreduce_seconds(const Interconnect& net, int64_t n, double bytes) {
  if (n <= 1) return 0;
  const double steps = 2.0 * double(n - 1);
  return steps * net.alpha_s + steps / double(n) * bytes / net.bandwidth_Bps;
}

double exposed_seconds(const StepCollective& c, const Interconnect& net, int64_t n) {
  const double t = ring_allreduce_seconds(net, n, c.bytes_each);
  return double(c.count) * (c.overlaps ? std::max(0.0, t - c.overlap_compute_s) : t);
}

double projected_step_seconds(double rank_seconds, const std::vector<StepCollective>& collectives,
                              const Interconnect& net, int64_t n) {
  double s = rank_seconds;
  for (auto& c : collectives) s += exposed_seconds(c, net, n);
  return s;
}

double model_flops_utilisation(double flops_per_step, int64_t devices, double seconds, double peak_flops) {
  return flops_per_step / (double(devices) * seconds * peak_flops);
}

AlphaBetaFit fit_alpha_beta(const std::string& name, int64_t n, const std::vector<std::pair<double, double>>& samples) {
  if (n < 2 || samples.size() < 2) throw UserError("fitting alpha and beta needs n >= 2 and two or more sizes");
  // Least squares of t = a + b * bytes in relative terms (weights 1/t^2): sizes span four orders
  // of magnitude, and plain least squares would fit the largest and ignore the latency term.
  double sw = 0, sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (auto& [x, y] : samples) {
    if (!(y > 0)) throw UserError("fitting alpha and beta needs positive times");
    const double w = 1.0 / (y * y);
    sw += w;
    sx += w * x;
    sy += w * y;
    sxx += w * x * x;
    sxy += w * x * y;
  }
  const double b = (sw * sxy - sx * sy) / (sw * sxx - sx * sx);
  const double a = (sy - b * sx) / sw;
  const double m = double(samples.size());
  sy = 0;
  for (auto& s : samples) sy += s.second;
  double ss_res = 0, ss_tot = 0;
  for (auto& [x, y] : samples) {
    ss_res += (y - (a + b * x)) * (y - (a + b * x));
    ss_tot += (y - sy / m) * (y - sy / m);
  }
  const double steps = 2.0 * double(n - 1);
  AlphaBetaFit fit;
  fit.model = {name, std::max(0.0, a) / steps, b > 0 ? steps / double(n) / b : 0, "fitted"};
  fit.r2 = ss_tot > 0 ? 1 - ss_res / ss_tot : 1;
  return fit;
}

}  // namespace dgpt
