// Real runs: the processes of a run (world = dp x W), their rendezvous over c10d's TCPStore, and
// the collectives of each group (c10d's ProcessGroupGloo on CPU), each bounded by comm_timeout.
#pragma once
#include <torch/torch.h>

#include <chrono>
#include <iosfwd>
#include <memory>
#include <string>

#include "comm.h"
#include "config.h"
#include "model_args.h"

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

// Sum all-reduce and all-gather over one group of processes. A failure or a wait longer than the
// timeout throws a UserError naming the collective (`what`), this rank and the cause.
class Collectives {
 public:
  virtual ~Collectives() = default;
  virtual int64_t size() const = 0;
  virtual int64_t rank() const = 0;
  virtual void all_reduce_sum_(torch::Tensor& t, const std::string& what) = 0;
  // Every member's `t`, stacked on a new leading dimension in rank order.
  virtual torch::Tensor all_gather(const torch::Tensor& t, const std::string& what) = 0;
};

// The process mesh of a run: the tensor-parallel group (W consecutive ranks) and the
// data-parallel group (ranks with the same position in their TP group).
struct ProcessMesh {
  int64_t world = 1, rank = 0;
  int64_t tp_procs = 1, tp_rank = 0;  // W, and this process's place in its TP group
  int64_t dp = 1, dp_rank = 0;
  std::shared_ptr<Collectives> tp, dp_group;
  bool is_main() const { return rank == 0; }
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

// The tensor-parallel group of a real run: L = tp_size / W shards here, the rest in the other W-1
// processes. Tallies what it sends, with the wall time of each collective.
class ProcessTensorParallelGroup : public TensorParallelGroup {
 public:
  ProcessTensorParallelGroup(int64_t tp_size, std::shared_ptr<Collectives> tp);
  void all_reduce_sum_(torch::Tensor& t, CommKind kind) override;
  torch::Tensor gather_shards(const torch::Tensor& local) override;

 private:
  std::shared_ptr<Collectives> tp_;
};

}  // namespace dgpt
