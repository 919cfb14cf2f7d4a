// Collectives over groups of processes: the interface the training loop and the process
// tensor-parallel group use, and c10d's Gloo (CPU) and NCCL (GPU) process groups behind it.
#pragma once
#include <torch/torch.h>
#include <torch/csrc/distributed/c10d/Store.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "comm/tensor_parallel.h"

namespace dgpt {

// Sum all-reduce and all-gather over one group of processes. A failure or a wait longer than the
// timeout throws a UserError naming the collective (`what`), this rank and the cause.
class Collectives {
 public:
  virtual ~Collectives() = default;
  virtual int64_t size() const = 0;
  virtual int64_t rank() const = 0;
  virtual void all_reduce_sum_(torch::Tensor& t, const std::string& what) = 0;
  // Starts it and returns the wait: `t` holds the sum once that has returned (by default the
  // blocking one, nothing to wait for). The wait throws as all_reduce_sum_ does.
  virtual std::function<void()> all_reduce_sum_start_(torch::Tensor& t, const std::string& what) {
    all_reduce_sum_(t, what);
    return {};
  }
  // Every member's `t`, stacked on a new leading dimension in rank order.
  virtual torch::Tensor all_gather(const torch::Tensor& t, const std::string& what) = 0;
};

// A group of one process: nothing to send.
std::shared_ptr<Collectives> make_solo_collectives();
// c10d's ProcessGroupGloo over `store` (rank of size), bounded by `timeout`. Gloo's device: the
// interface GLOO_SOCKET_IFNAME names; else loopback when `master_addr` is loopback (every rank on
// this machine); else, as PyTorch, the address this machine's hostname resolves to.
std::shared_ptr<Collectives> make_gloo_collectives(c10::intrusive_ptr<c10d::Store> store, int64_t rank, int64_t size,
                                                   std::chrono::milliseconds timeout, const std::string& master_addr,
                                                   int64_t world_rank);
#ifdef DGPT_WITH_NCCL
// c10d's ProcessGroupNCCL: one GPU per rank.
std::shared_ptr<Collectives> make_nccl_collectives(c10::intrusive_ptr<c10d::Store> store, int64_t rank, int64_t size,
                                                   std::chrono::milliseconds timeout, int64_t world_rank);
#endif

// The tensor-parallel group of a real run: L = tp_size / W shards here, the rest in the other W-1
// processes. Tallies what it sends, with the wall time of each collective.
class ProcessTensorParallelGroup : public TensorParallelGroup {
 public:
  ProcessTensorParallelGroup(int64_t tp_size, std::shared_ptr<Collectives> tp);
  void all_reduce_sum_(torch::Tensor& t, CommKind kind) override;
  bool all_reduce_writes() const override { return tp_procs_ > 1; }
  torch::Tensor gather_shards(const torch::Tensor& local) override;

 protected:
  std::function<void()> start_all_reduce_sum_(torch::Tensor& t, CommKind kind) override;

 private:
  std::shared_ptr<Collectives> tp_;
};

}  // namespace dgpt
