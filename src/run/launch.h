// `dgpt launch`: torchrun's job for users without Python. Starts N ranks of a dgpt command on this
// machine, prefixes their output, forwards Ctrl-C, and fails fast.
#pragma once
#include <string>
#include <vector>

namespace dgpt {

struct LaunchOptions {
  int nproc = 2;
  int master_port = 0;  // 0: a free port on loopback
  double grace_seconds = 5;  // after a failure, how long the others get to stop before SIGKILL
};

// Runs `args` (a dgpt command line without the program name) as ranks 0..nproc-1 with RANK,
// LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, MASTER_ADDR and MASTER_PORT set. Returns 0 when every
// rank succeeds, else the exit code of the first rank that failed (after stopping the others).
// The ranks die with the launcher, however it ends (PR_SET_PDEATHSIG), and hold no descriptor
// of one another's.
int launch(const LaunchOptions& opt, const std::vector<std::string>& args);

}  // namespace dgpt
