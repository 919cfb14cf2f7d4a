// Bad user input (config files, overrides, data, checkpoints, the environment): one message,
// printed as `error: ...`, exit code 2. Every layer throws it; only main() catches it.
#pragma once
#include <stdexcept>
#include <string>

namespace dgpt {

struct UserError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// The first line of a message (LibTorch's exceptions append a C++ backtrace to theirs).
inline std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

}  // namespace dgpt
