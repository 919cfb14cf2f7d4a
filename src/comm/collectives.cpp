#include "comm/collectives.h"

#include <fmt/format.h>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#ifdef DGPT_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include "base/clock.h"
#include "base/env.h"
#include "base/errors.h"

namespace dgpt {

namespace {

// c10d's collectives over one process group (ProcessGroupGloo, or ProcessGroupNCCL where LibTorch
// has CUDA): the same calls in LibTorch 1.13, where they derive from ProcessGroup, and 2.x, where
// they derive from Backend.
template <class ProcessGroup>
class C10dCollectives : public Collectives {
 public:
  C10dCollectives(c10::intrusive_ptr<ProcessGroup> pg, int64_t rank, int64_t size, std::chrono::milliseconds timeout,
                  int64_t world_rank)
      : pg_(std::move(pg)), rank_(rank), size_(size), world_rank_(world_rank), timeout_(timeout) {}

  int64_t size() const override { return size_; }
  int64_t rank() const override { return rank_; }

  void all_reduce_sum_(torch::Tensor& t, const std::string& what) override {
    std::vector<torch::Tensor> tensors{t};
    run(what, [&] { return pg_->allreduce(tensors); });
  }

  std::function<void()> all_reduce_sum_start_(torch::Tensor& t, const std::string& what) override {
    std::vector<torch::Tensor> tensors{t};
    auto work = issue(what, [&] { return pg_->allreduce(tensors); });
    return [this, work, what] {
      try {
        work->wait(timeout_);
      } catch (const std::exception& e) {
        fail(what, e);
      }
    };
  }

  torch::Tensor all_gather(const torch::Tensor& t, const std::string& what) override {
    auto input = t.contiguous();
    std::vector<torch::Tensor> inputs{input};
    std::vector<std::vector<torch::Tensor>> outputs(1);
    for (int64_t r = 0; r < size_; ++r) outputs[0].push_back(torch::empty_like(input));
    run(what, [&] { return pg_->allgather(outputs, inputs); });
    return torch::stack(outputs[0]);
  }

 private:
  // Gloo's wait returns when the data is there; NCCL's orders the current CUDA stream after the
  // collective (the host does not wait, and the tally's time is the time to enqueue it).
  template <class Start>
  void run(const std::string& what, Start start) {
    try {
      auto work = start();
      work->wait(timeout_);
    } catch (const std::exception& e) {
      fail(what, e);
    }
  }
  template <class Start>
  auto issue(const std::string& what, Start start) {
    try {
      return start();
    } catch (const std::exception& e) {
      fail(what, e);
    }
  }
  [[noreturn]] void fail(const std::string& what, const std::exception& e) const {
    throw UserError(fmt::format("rank {}: {} failed ({}); a peer process may have died or hung", world_rank_, what,
                                first_line(e.what())));
  }

  c10::intrusive_ptr<ProcessGroup> pg_;
  int64_t rank_, size_, world_rank_;
  std::chrono::milliseconds timeout_;
};

}  // namespace

std::shared_ptr<Collectives> make_gloo_collectives(c10::intrusive_ptr<c10d::Store> store, int64_t rank, int64_t size,
                                                   std::chrono::milliseconds timeout, const std::string& master_addr,
                                                   int64_t world_rank) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  const std::string ifname = env_or("GLOO_SOCKET_IFNAME", "");
  // Not the master's address on every rank: on another machine that address is not ours to bind.
  const bool loopback = master_addr == "localhost" || master_addr.rfind("127.", 0) == 0 || master_addr == "::1";
  options->devices.push_back(
      !ifname.empty() ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
      : loopback      ? c10d::ProcessGroupGloo::createDeviceForHostname(master_addr == "localhost" ? "127.0.0.1"
                                                                                                   : master_addr)
                      : c10d::ProcessGroupGloo::createDefaultDevice());
  options->threads = 1;
  auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, int(rank), int(size), options);
  return std::make_shared<C10dCollectives<c10d::ProcessGroupGloo>>(pg, rank, size, timeout, world_rank);
}

#ifdef DGPT_WITH_NCCL
std::shared_ptr<Collectives> make_nccl_collectives(c10::intrusive_ptr<c10d::Store> store, int64_t rank, int64_t size,
                                                   std::chrono::milliseconds timeout, int64_t world_rank) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, int(rank), int(size), options);
  return std::make_shared<C10dCollectives<c10d::ProcessGroupNCCL>>(pg, rank, size, timeout, world_rank);
}
#endif

// A group of one process: nothing to send.
namespace {
class SoloCollectives : public Collectives {
 public:
  int64_t size() const override { return 1; }
  int64_t rank() const override { return 0; }
  void all_reduce_sum_(torch::Tensor&, const std::string&) override {}
  torch::Tensor all_gather(const torch::Tensor& t, const std::string&) override { return t.unsqueeze(0); }
};
}  // namespace

std::shared_ptr<Collectives> make_solo_collectives() { return std::make_shared<SoloCollectives>(); }

ProcessTensorParallelGroup::ProcessTensorParallelGroup(int64_t tp_size, std::shared_ptr<Collectives> tp)
    : TensorParallelGroup(tp_size, tp->size(), tp->rank()), tp_(std::move(tp)) {}

void ProcessTensorParallelGroup::all_reduce_sum_(torch::Tensor& t, CommKind kind) {
  if (tp_procs_ == 1) {  // every shard is here: nothing is sent, and it reports what W > 1 would send,
    if (tp_size_ > 1) tally_.record(kind, t.numel() * t.element_size(), 0.0);  // as the simulated group does
    return;
  }
  const auto t0 = Clock::now();
  tp_->all_reduce_sum_(t, comm_kind_name(kind));
  tally_.record(kind, t.numel() * t.element_size(), seconds_since(t0));
}

std::function<void()> ProcessTensorParallelGroup::start_all_reduce_sum_(torch::Tensor& t, CommKind kind) {
  if (tp_procs_ == 1) return TensorParallelGroup::start_all_reduce_sum_(t, kind);  // nothing to send
  const auto t0 = Clock::now();
  auto wait = tp_->all_reduce_sum_start_(t, comm_kind_name(kind));
  tally_.record(kind, t.numel() * t.element_size(), seconds_since(t0));  // the wait adds its own time
  return wait;
}

torch::Tensor ProcessTensorParallelGroup::gather_shards(const torch::Tensor& local) {
  if (tp_procs_ == 1) return local;
  auto all = tp_->all_gather(local, "gather of shards for a checkpoint");  // [W, L, ...]
  auto sizes = local.sizes().vec();
  sizes[0] = tp_size_;
  return all.reshape(sizes);
}

}  // namespace dgpt
