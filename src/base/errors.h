// Bad user input (config files, overrides, data, checkpoints, the environment): one message,
// printed as `error: ...`, exit code 2. Every layer throws it; only main() catches it.
#pragma once
#include <stdexcept>

namespace dgpt {

struct UserError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

}  // namespace dgpt
