// Tensor-parallel communication (Megatron-LM's tensor_parallel mappings): the process group as the model sees it, the f and g operators
// (SPEC §2), the shard-local gradients of replicated parameters, and the tally of what is sent.
#pragma once
#include <torch/torch.h>

#include <array>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "base/clock.h"

namespace dgpt {

// The collectives of SPEC §3.
enum class CommKind : int {
  ForwardAllReduce = 0,  // g's forward
  BackwardAllReduce,     // f's backward
  ReplicatedGradSync,    // shard-local grads of replicated params, coalesced, per optimizer step
  GradNormAllReduce,     // global grad norm for clipping, per optimizer step
  DataParallelGrad,      // gradient average across data-parallel replicas
  LossAverage,           // the training loss averaged over data-parallel replicas, for the log line
  // vocab_parallel (SPEC §1, §3): the vocabulary-parallel embedding's g, the lm_head's f (its
  // backward), the loss's three all-reduces of [B,T] (shift, sum of exps, target logit), and in
  // generation the last position's logits [B,1,V] gathered for sampling (an all-reduce of the
  // zero-filled [B,1,V]: every process adds its own columns).
  VocabForwardAllReduce,
  VocabBackwardAllReduce,
  VocabLossAllReduce,
  VocabLogitsAllReduce,
  Count
};
constexpr int kCommKinds = static_cast<int>(CommKind::Count);
const char* comm_kind_name(CommKind kind);  // "forward_allreduce", ...

// What a group sent, per kind of collective. `seconds` is the time this process spent in them:
// blocked in a blocking one, or issuing and then waiting for an asynchronous one (a ladder g in a
// real run, SPEC §2), i.e. the time each exposed. Of `count`, `overlapped` were asynchronous, and
// `overlap_seconds` is the time between issuing them and waiting for them, while compute ran: the
// communication hidden is at most that (all of it, where the wait was not zero).
struct CommTally {
  std::array<int64_t, kCommKinds> count{};
  std::array<int64_t, kCommKinds> bytes{};
  std::array<double, kCommKinds> seconds{};
  std::array<int64_t, kCommKinds> overlapped{};
  std::array<double, kCommKinds> overlap_seconds{};

  void record(CommKind kind, int64_t nbytes, double secs) {
    count[int(kind)] += 1;
    bytes[int(kind)] += nbytes;
    seconds[int(kind)] += secs;
  }
  // The end of an asynchronous collective recorded (issued and counted) before: it was in flight
  // `in_flight` seconds before the wait, which took `waited`.
  void record_wait(CommKind kind, double in_flight, double waited) {
    overlapped[int(kind)] += 1;
    overlap_seconds[int(kind)] += in_flight;
    seconds[int(kind)] += waited;
  }
  int64_t total_overlapped() const;
  double total_overlap_seconds() const;
  int64_t count_of(CommKind k) const { return count[int(k)]; }
  int64_t bytes_of(CommKind k) const { return bytes[int(k)]; }
  int64_t total_count() const;
  int64_t total_bytes() const;
  double total_seconds() const;
  CommTally operator-(const CommTally& earlier) const;
};

class PendingAllReduce;

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
  // Whether all_reduce_sum_ writes into its tensor (other processes' parts arrive). When it does
  // not (simulated, solo rank, W = 1), f and g of a single local part pass it on without a copy.
  virtual bool all_reduce_writes() const { return true; }
  // Starts that sum and returns at once; `t` holds the sum only after the returned handle's
  // wait(). Only where SPEC §2 allows it (a ladder sub-layer's g). A group with nothing to send
  // (simulated, solo rank, W = 1), or with overlap off, completes it before returning; the
  // handle still measures the time until wait(), the compute that ran while it was in flight.
  PendingAllReduce all_reduce_sum_async_(torch::Tensor& t, CommKind kind);
  // Real runs: false makes every collective blocking (the config's overlap_comm), for measuring
  // what overlap hides.
  void set_overlap(bool on) { overlap_ = on; }
  // While on, the in-flight time of every asynchronous collective is also kept in order
  // (bench: a solo rank's T_next per collective, SPEC §5); take_overlap_log() returns and clears it.
  void log_overlaps(bool on) { log_overlaps_ = on; overlap_log_.clear(); }
  std::vector<double> take_overlap_log() { return std::exchange(overlap_log_, {}); }
  // All N shards from this process's L: [L, ...] -> [N, ...]. Every process of the group must
  // call it (checkpointing); not tallied, as it is no part of a training step.
  virtual torch::Tensor gather_shards(const torch::Tensor& local) = 0;

  CommTally& tally() { return tally_; }
  const CommTally& tally() const { return tally_; }

 protected:
  friend class PendingAllReduce;
  // What all_reduce_sum_async_ starts: by default the blocking all-reduce, and nothing to wait for.
  virtual std::function<void()> start_all_reduce_sum_(torch::Tensor& t, CommKind kind) {
    all_reduce_sum_(t, kind);
    return {};
  }
  int64_t tp_size_, tp_procs_, rank_;
  CommTally tally_;
  bool overlap_ = true;
  bool log_overlaps_ = false;
  std::vector<double> overlap_log_;
};

// A sum all-reduce in flight. wait() (once; later calls do nothing) returns when the sum is in
// the tensor and tallies the time it was in flight and the time waited. Movable, not copyable.
class PendingAllReduce {
 public:
  PendingAllReduce() = default;
  PendingAllReduce(TensorParallelGroup* group, CommKind kind, std::function<void()> wait_fn);
  PendingAllReduce(PendingAllReduce&& other) noexcept { *this = std::move(other); }
  PendingAllReduce& operator=(PendingAllReduce&& other) noexcept;
  PendingAllReduce(const PendingAllReduce&) = delete;
  PendingAllReduce& operator=(const PendingAllReduce&) = delete;
  void wait();

 private:
  TensorParallelGroup* group_ = nullptr;  // null: nothing to wait for
  CommKind kind_ = CommKind::ForwardAllReduce;
  std::function<void()> wait_;
  Clock::time_point issued_;
};

// W = 1: every shard is local, so nothing is sent. It tallies what a real run with W > 1 sends
// (SPEC §3), which is nothing when tp_size is 1.
class SimulatedGroup : public TensorParallelGroup {
 public:
  explicit SimulatedGroup(int64_t tp_size) : TensorParallelGroup(tp_size, 1, 0) {}
  void all_reduce_sum_(torch::Tensor& t, CommKind kind) override;
  bool all_reduce_writes() const override { return false; }
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
  bool all_reduce_writes() const override { return false; }
  torch::Tensor gather_shards(const torch::Tensor& local) override;
};

// f — copy to shards. Forward: the replicated [B,T,C] tensor becomes the shard-region tensor
// [1,B,T,C] that broadcasts against every local shard (no copy is made). Backward: autograd has
// already summed the local shards' gradients into that [1,...] shape; all-reduce over processes,
// tallied as `kind` (the lm_head of a vocab-parallel model: VocabBackwardAllReduce).
torch::Tensor copy_to_shards(const torch::Tensor& x, TensorParallelGroup& group,
                             CommKind kind = CommKind::BackwardAllReduce);

// g — reduce from shards. Forward: [L,B,T,C] partials summed over local shards, then all-reduced
// over processes, giving the replicated [B,T,C], tallied as `kind`. Backward: the gradient,
// replicated to every shard. Under autocast the sum is sent in the autocast dtype, except for the
// vocab-parallel embedding (VocabForwardAllReduce): that is the residual stream's start, which
// the replicated model keeps in the parameters' dtype, so it is sent in that dtype.
torch::Tensor reduce_from_shards(const torch::Tensor& partials, TensorParallelGroup& group,
                                 CommKind kind = CommKind::ForwardAllReduce);

// g with its all-reduce left in flight (SPEC §2: a ladder sub-layer's): `sum` is the autograd
// output, to be read only through result(), which waits. Its backward is g's.
struct PendingReduce {
  torch::Tensor sum;  // [B,T,C] in the communication dtype; incomplete until done.wait()
  PendingAllReduce done;
  at::ScalarType dtype = at::kFloat;  // of the partials: what result() returns
  torch::Tensor result();
};
PendingReduce reduce_from_shards_async(const torch::Tensor& partials, TensorParallelGroup& group);

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
