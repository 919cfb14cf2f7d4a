// Wall-clock intervals for logs, measured communication and benchmarks.
#pragma once
#include <chrono>

namespace dgpt {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

}  // namespace dgpt
