// Environment variables as a launcher (dgpt launch, torchrun, Slurm) sets them.
#pragma once
#include <cstdlib>
#include <string>

namespace dgpt {

// The variable's value, or `fallback` when it is unset or empty.
inline std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

}  // namespace dgpt
