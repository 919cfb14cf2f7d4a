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

// Where this process stands, from the variables torchrun and `dgpt launch` set (RANK, WORLD_SIZE,
// LOCAL_RANK, MASTER_ADDR, MASTER_PORT), or, without RANK, Slurm's (SLURM_PROCID, SLURM_NTASKS,
// SLURM_LOCALID; MASTER_ADDR defaults to the first host of SLURM_JOB_NODELIST, MASTER_PORT to
// slurm_master_port). Without either a run is one process (rank 0 of 1). Under torchrun the
// process is also tied to the agent's life (PR_SET_PDEATHSIG), which torchrun does not do itself.
struct LaunchEnv {
  int64_t rank = 0, world = 1, local_rank = 0;
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;
  bool agent_store = false;  // torchrun already serves the TCPStore on MASTER_PORT
  std::string store_prefix;  // of the keys in the agent's store: "/worker/attempt_<restart>"
  std::string world_var = "WORLD_SIZE";  // the variable the world size came from, for messages
};
LaunchEnv read_launch_env();

// The first host of a Slurm hostlist: "node[01-04,07],gpu1" -> "node01", "a1,b2" -> "a1",
// "gpu-[3-5]" -> "gpu-3", "r[1-2]-n[08-09]" -> "r1-n08". Throws UserError on a malformed list.
std::string first_slurm_host(const std::string& nodelist);
// MASTER_PORT under Slurm when it is unset: 20000 + SLURM_JOB_ID % 10000 (29500 without a job id),
// so that two jobs sharing a node rarely collide.
int slurm_master_port(const std::string& job_id);

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
