// Real runs: the processes of a run (world = dp x W), their rendezvous over c10d's TCPStore, and
// the collectives of each group (c10d's ProcessGroupGloo on CPU), each bounded by comm_timeout.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <ostream>
#include <memory>
#include <string>

#include "comm/collectives.h"
#include "config/config.h"
#include "model/model_args.h"

namespace dgpt {

// Where this process stands, from the variables torchrun and `dgpt launch` set. Without them a
// run is one process (rank 0 of 1).
struct LaunchEnv {
  int64_t rank = 0, world = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool agent_store = false;  // torchrun already serves the TCPStore on MASTER_PORT
};
LaunchEnv read_launch_env();

// The process mesh of a run: the tensor-parallel group (W consecutive ranks) and the
// data-parallel group (ranks with the same position in their TP group).
struct ProcessMesh {
  int64_t world = 1, rank = 0;
  int64_t tp_procs = 1, tp_rank = 0;  // W, and this process's place in its TP group
  int64_t dp = 1, dp_rank = 0;
  std::shared_ptr<Collectives> tp_group, dp_group;
  bool is_main() const { return rank == 0; }
};

// What a rank prints: the main rank (0) writes to the given streams, every other rank to a sink
// that discards, so that a run's log is one rank's log.
class RankStreams {
  struct NullBuffer : std::streambuf {
    int overflow(int c) override { return c; }
  } null_buffer_;
  std::ostream null_{&null_buffer_};

 public:
  RankStreams(bool main_rank, std::ostream& out_stream, std::ostream& notice_stream)
      : out(main_rank ? out_stream : null_), notices(main_rank ? notice_stream : null_) {}
  RankStreams(const RankStreams&) = delete;
  std::ostream& out;
  std::ostream& notices;
};

// Rendezvous and groups for cfg.backend ('sim': one process, nothing to join). Checks the mesh
// (world divisible by tp_procs, tp_size by tp_procs, gradient_accumulation_steps by dp) and that
// every rank has the same effective config; throws UserError otherwise.
ProcessMesh make_process_mesh(const TrainConfig& cfg, const LaunchEnv& env, std::ostream& notices);

// The device of this rank: with backend 'nccl' every rank has its own GPU, cuda:LOCAL_RANK unless
// the config names one (then every rank uses that index: one rank per machine). Throws UserError.
torch::Device device_for_rank(torch::Device requested, const TrainConfig& cfg, const LaunchEnv& env);

// The tensor-parallel group a model of `args` uses in this run: simulated for backend 'sim' and for
// the dense model (nothing to split), else this process's share of the mesh's TP group.
std::shared_ptr<TensorParallelGroup> tensor_parallel_group(const ModelArgs& args, const TrainConfig& cfg,
                                                           const ProcessMesh& mesh);

}  // namespace dgpt
