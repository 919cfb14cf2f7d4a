// Tensor-parallel communication (Megatron-LM's tensor_parallel mappings): the process group as the model sees it, the f and g operators
// (SPEC §2), the shard-local gradients of replicated parameters, and the tally of what is sent.
#pragma once
#include <torch/torch.h>

#include <array>
#include <string>
#include <vector>

namespace dgpt {

// The collectives of SPEC §3.
enum class CommKind : int {
  ForwardAllReduce = 0,  // g's forward
  BackwardAllReduce,     // f's backward
  ReplicatedGradSync,    // shard-local grads of replicated params, coalesced, per optimizer step
  GradNormAllReduce,     // global grad norm for clipping, per optimizer step
  DataParallelGrad,      // gradient average across data-parallel replicas
  LossAverage,           // the training loss averaged over data-parallel replicas, for the log line
  Count
};
constexpr int kCommKinds = static_cast<int>(CommKind::Count);
const char* comm_kind_name(CommKind kind);  // "forward_allreduce", ...

struct CommTally {
  std::array<int64_t, kCommKinds> count{};
  std::array<int64_t, kCommKinds> bytes{};
  std::array<double, kCommKinds> seconds{};

  void record(CommKind kind, int64_t nbytes, double secs) {
    count[int(kind)] += 1;
    bytes[int(kind)] += nbytes;
    seconds[int(kind)] += secs;
  }
  int64_t count_of(CommKind k) const { return count[int(k)]; }
  int64_t bytes_of(CommKind k) const { return bytes[int(k)]; }
  int64_t total_count() const;
  int64_t total_bytes() const;
  double total_seconds() const;
  CommTally operator-(const CommTally& earlier) const;
};

// The tensor-parallel group: tp_size() = N shards in all, local_shards() = L of them held by this
// process, which is rank() of tp_procs() = W processes (N = W * L; W is the config's tp_procs). Only this class knows whether
// the other shards live in this process or elsewhere.
class TensorParallelGroup {
 public:
  TensorParallelGroup(int64_t tp_size, int64_t procs, int64_t rank);
  virtual ~TensorParallelGroup() = default;

  int64_t tp_size() const { return tp_size_; }
  int64_t tp_procs() const { return tp_procs_; }
  int64_t rank() const { return rank_; }
  int64_t local_shards() const { return tp_size_ / tp_procs_; }
  int64_t first_shard() const { return rank_ * local_shards(); }

  // Sums `t` in place over the group's processes, and tallies it under `kind`.
  virtual void all_reduce_sum_(torch::Tensor& t, CommKind kind) = 0;
  // All N shards from this process's L: [L, ...] -> [N, ...]. Every process of the group must
  // call it (checkpointing); not tallied, as it is no part of a training step.
  virtual torch::Tensor gather_shards(const torch::Tensor& local) = 0;

  CommTally& tally() { return tally_; }
  const CommTally& tally() const { return tally_; }

 protected:
  int64_t tp_size_, tp_procs_, rank_;
  CommTally tally_;
};

// W = 1: every shard is local, so nothing is sent. It tallies what a real run with W > 1 sends
// (SPEC §3), which is nothing when tp_size is 1.
class SimulatedGroup : public TensorParallelGroup {
 public:
  explicit SimulatedGroup(int64_t tp_size) : TensorParallelGroup(tp_size, 1, 0) {}
  void all_reduce_sum_(torch::Tensor& t, CommKind kind) override;
  torch::Tensor gather_shards(const torch::Tensor& local) override { return local; }
};

// Rank `rank` of an N-rank tensor-parallel group (W = N, L = 1), run alone (SPEC §5): the shapes
// and kernels of a real rank, collectives that send nothing (t keeps this rank's own part) but are
// tallied as a real rank's. Its numbers mean nothing; its time is the per-rank compute T_rank(N).
// Only for timing: gather_shards replicates this rank's shard, so its checkpoints mean nothing too.
class SoloRankGroup : public TensorParallelGroup {
 public:
  SoloRankGroup(int64_t tp_size, int64_t rank) : TensorParallelGroup(tp_size, tp_size, rank) {}
  void all_reduce_sum_(torch::Tensor& t, CommKind kind) override;
  torch::Tensor gather_shards(const torch::Tensor& local) override;
};

// f — copy to shards. Forward: the replicated [B,T,C] tensor becomes the shard-region tensor
// [1,B,T,C] that broadcasts against every local shard (no copy is made). Backward: autograd has
// already summed the local shards' gradients into that [1,...] shape; all-reduce over processes.
torch::Tensor copy_to_shards(const torch::Tensor& x, TensorParallelGroup& group);

// g — reduce from shards. Forward: [L,B,T,C] partials summed over local shards, then all-reduced
// over processes, giving the replicated [B,T,C]. Backward: the gradient, replicated to every shard.
torch::Tensor reduce_from_shards(const torch::Tensor& partials, TensorParallelGroup& group);

// Replicated parameters used inside the shard region (SPEC §2) get a shard-local gradient there.
// use() routes that part into a pending buffer instead of the parameter's .grad, so that the
// part every rank computes identically is never counted N times; sync() sums the pending parts
// of all parameters across the group in one coalesced all-reduce and adds them to .grad.
class ReplicatedGradSync {
 public:
  torch::Tensor use(const torch::Tensor& param);
  void sync(TensorParallelGroup& group);
  int64_t numel() const;  // elements sent by sync()
  void reset();           // drop pending parts (after an evaluation pass, say)

 private:
  int64_t slot_for(const torch::Tensor& param);
  std::vector<torch::Tensor> params_;
  std::vector<torch::Tensor> pending_;
};

}  // namespace dgpt
