#include "comm/tensor_parallel.h"

#include <torch/torch.h>

#include "base/torch_compat.h"

namespace dgpt {

using torch::autograd::AutogradContext;
using torch::autograd::tensor_list;

const char* comm_kind_name(CommKind kind) {
  switch (kind) {
    case CommKind::ForwardAllReduce: return "forward_allreduce";
    case CommKind::BackwardAllReduce: return "backward_allreduce";
    case CommKind::ReplicatedGradSync: return "replicated_grad_sync";
    case CommKind::GradNormAllReduce: return "grad_norm_allreduce";
    case CommKind::DataParallelGrad: return "data_parallel_grad";
    case CommKind::LossAverage: return "loss_average";
    case CommKind::VocabForwardAllReduce: return "vocab_forward_allreduce";
    case CommKind::VocabBackwardAllReduce: return "vocab_backward_allreduce";
    case CommKind::VocabLossAllReduce: return "vocab_loss_allreduce";
    case CommKind::VocabLogitsAllReduce: return "vocab_logits_allreduce";
    case CommKind::Count: break;
  }
  return "?";
}

int64_t CommTally::total_count() const {
  int64_t n = 0;
  for (auto c : count) n += c;
  return n;
}
int64_t CommTally::total_bytes() const {
  int64_t n = 0;
  for (auto b : bytes) n += b;
  return n;
}
double CommTally::total_seconds() const {
  double s = 0;
  for (auto x : seconds) s += x;
  return s;
}
int64_t CommTally::total_overlapped() const {
  int64_t n = 0;
  for (auto c : overlapped) n += c;
  return n;
}
double CommTally::total_overlap_seconds() const {
  double s = 0;
  for (auto x : overlap_seconds) s += x;
  return s;
}
CommTally CommTally::operator-(const CommTally& earlier) const {
  CommTally d;
  for (int k = 0; k < kCommKinds; ++k) {
    d.count[k] = count[k] - earlier.count[k];
    d.bytes[k] = bytes[k] - earlier.bytes[k];
    d.seconds[k] = seconds[k] - earlier.seconds[k];
    d.overlapped[k] = overlapped[k] - earlier.overlapped[k];
    d.overlap_seconds[k] = overlap_seconds[k] - earlier.overlap_seconds[k];
  }
  return d;
}

PendingAllReduce TensorParallelGroup::all_reduce_sum_async_(torch::Tensor& t, CommKind kind) {
  std::function<void()> wait_fn;
  if (overlap_)
    wait_fn = start_all_reduce_sum_(t, kind);
  else
    all_reduce_sum_(t, kind);
  return PendingAllReduce(this, kind, std::move(wait_fn));
}

PendingAllReduce::PendingAllReduce(TensorParallelGroup* group, CommKind kind, std::function<void()> wait_fn)
    : group_(group), kind_(kind), wait_(std::move(wait_fn)), issued_(Clock::now()) {}

PendingAllReduce& PendingAllReduce::operator=(PendingAllReduce&& other) noexcept {
  group_ = std::exchange(other.group_, nullptr);
  kind_ = other.kind_;
  wait_ = std::move(other.wait_);
  other.wait_ = nullptr;
  issued_ = other.issued_;
  return *this;
}

void PendingAllReduce::wait() {
  if (group_ == nullptr) return;
  TensorParallelGroup* group = std::exchange(group_, nullptr);
  const auto t0 = Clock::now();
  const double in_flight = std::chrono::duration<double>(t0 - issued_).count();
  if (wait_) std::exchange(wait_, nullptr)();
  // Counted as overlapped whenever overlap is on, also where nothing is sent (simulated, solo
  // rank): the tally is what a real rank with W > 1 does. With overlap off, that rank blocks.
  if (group->log_overlaps_) group->overlap_log_.push_back(in_flight);
  if (group->overlap_ && group->tp_size() > 1) group->tally_.record_wait(kind_, in_flight, seconds_since(t0));
}

TensorParallelGroup::TensorParallelGroup(int64_t tp_size, int64_t procs, int64_t rank)
    : tp_size_(tp_size), tp_procs_(procs), rank_(rank) {
  TORCH_CHECK(tp_size >= 1 && procs >= 1 && tp_size % procs == 0 && rank >= 0 && rank < procs,
              "bad tensor-parallel layout: tp_size ", tp_size, ", ", procs, " processes, rank ", rank);
}

void SimulatedGroup::all_reduce_sum_(torch::Tensor& t, CommKind kind) {
  if (tp_size_ > 1) tally_.record(kind, t.numel() * t.element_size(), 0.0);
}

void SoloRankGroup::all_reduce_sum_(torch::Tensor& t, CommKind kind) {
  if (tp_size_ > 1) tally_.record(kind, t.numel() * t.element_size(), 0.0);
}

torch::Tensor SoloRankGroup::gather_shards(const torch::Tensor& local) {
  auto sizes = local.sizes().vec();  // [1, ...] -> [N, ...]
  sizes[0] = tp_size_;
  return local.expand(sizes).contiguous();
}

namespace {

// Autograd functions carry the group as an integer: saved_data holds IValues only.
int64_t group_handle(TensorParallelGroup& g) { return reinterpret_cast<intptr_t>(&g); }
TensorParallelGroup& group_from(const c10::IValue& v) {
  return *reinterpret_cast<TensorParallelGroup*>(static_cast<intptr_t>(v.toInt()));
}

// Under autocast, f and g send its lower-precision dtype, as Megatron's bf16 all-reduces do; what
// comes out has the dtype that went in. Decided in the forward pass, where autocast is visible.
at::ScalarType communication_dtype(const torch::Tensor& t) {
  const auto type = t.device().type();
  if (t.is_floating_point() && t.scalar_type() != at::kDouble && compat::autocast_enabled(type))
    return compat::autocast_dtype(type);
  return t.scalar_type();
}

struct CopyToShards : torch::autograd::Function<CopyToShards> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& x, int64_t group, int64_t kind) {
    ctx->saved_data["group"] = group;
    ctx->saved_data["kind"] = kind;
    ctx->saved_data["comm_dtype"] = int64_t(communication_dtype(x));
    return x.unsqueeze(0);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const auto comm_dtype = at::ScalarType(ctx->saved_data["comm_dtype"].toInt());
    auto& group = group_from(ctx->saved_data["group"]);
    // already [1,...]: sum(0) drops the shard dimension (a view where nothing will be written into it)
    auto g = (group.all_reduce_writes() ? grads[0].sum(0) : grads[0].squeeze(0)).to(comm_dtype);
    group.all_reduce_sum_(g, CommKind(ctx->saved_data["kind"].toInt()));
    return {g.to(grads[0].scalar_type()), torch::Tensor(), torch::Tensor()};
  }
};

struct ReduceFromShards : torch::autograd::Function<ReduceFromShards> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& partials, int64_t group, int64_t kind) {
    ctx->saved_data["local_shards"] = partials.size(0);
    const bool keep_dtype = CommKind(kind) == CommKind::VocabForwardAllReduce;  // see tensor_parallel.h
    auto& g = group_from(group);
    // a single local part (summed already, by a GEMM over the shards' columns) where nothing will be
    // written into it: the sum is the part itself, not a copy
    const bool pass = partials.size(0) == 1 && !g.all_reduce_writes();
    auto sum = (pass ? partials.squeeze(0) : partials.sum(0))
                   .to(keep_dtype ? partials.scalar_type() : communication_dtype(partials));
    g.all_reduce_sum_(sum, CommKind(kind));
    return sum.to(partials.scalar_type());
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const int64_t L = ctx->saved_data["local_shards"].toInt();
    auto sizes = grads[0].sizes().vec();
    sizes.insert(sizes.begin(), L);
    return {grads[0].unsqueeze(0).expand(sizes), torch::Tensor(), torch::Tensor()};
  }
};

// g's forward with the all-reduce left in flight: `pending` (a PendingAllReduce*, as an integer)
// receives the handle. The output is the communication-dtype sum, being written until the wait.
struct ReduceFromShardsAsync : torch::autograd::Function<ReduceFromShardsAsync> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& partials, int64_t group, int64_t pending) {
    ctx->saved_data["local_shards"] = partials.size(0);
    ctx->saved_data["dtype"] = int64_t(partials.scalar_type());
    auto sum = partials.sum(0).to(communication_dtype(partials));
    *reinterpret_cast<PendingAllReduce*>(static_cast<intptr_t>(pending)) =
        group_from(group).all_reduce_sum_async_(sum, CommKind::ForwardAllReduce);
    return sum;
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    const int64_t L = ctx->saved_data["local_shards"].toInt();
    auto g = grads[0].to(at::ScalarType(ctx->saved_data["dtype"].toInt()));
    auto sizes = g.sizes().vec();
    sizes.insert(sizes.begin(), L);
    return {g.unsqueeze(0).expand(sizes), torch::Tensor(), torch::Tensor()};
  }
};

// Identity forward; backward adds the gradient to a pending buffer and gives the parameter none.
struct RouteGradToPending : torch::autograd::Function<RouteGradToPending> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& param,
                               const torch::Tensor& pending) {
    ctx->saved_data["pending"] = pending;
    return param.view_as(param);
  }
  static tensor_list backward(AutogradContext* ctx, tensor_list grads) {
    auto pending = ctx->saved_data["pending"].toTensor();
    torch::NoGradGuard no_grad;
    pending.add_(grads[0]);
    return {torch::Tensor(), torch::Tensor()};
  }
};

}  // namespace

torch::Tensor copy_to_shards(const torch::Tensor& x, TensorParallelGroup& group, CommKind kind) {
  return CopyToShards::apply(x, group_handle(group), int64_t(kind));
}

torch::Tensor reduce_from_shards(const torch::Tensor& partials, TensorParallelGroup& group, CommKind kind) {
  return ReduceFromShards::apply(partials, group_handle(group), int64_t(kind));
}

PendingReduce reduce_from_shards_async(const torch::Tensor& partials, TensorParallelGroup& group) {
  PendingReduce r;
  r.dtype = partials.scalar_type();
  r.sum = ReduceFromShardsAsync::apply(partials, group_handle(group), int64_t(reinterpret_cast<intptr_t>(&r.done)));
  return r;
}

torch::Tensor PendingReduce::result() {
  done.wait();
  return sum.to(dtype);
}

int64_t ReplicatedGradSync::slot_for(const torch::Tensor& param) {
  for (size_t i = 0; i < params_.size(); ++i)
    if (params_[i].is_same(param)) return int64_t(i);
  params_.push_back(param);
  pending_.push_back(torch::zeros_like(param, torch::MemoryFormat::Contiguous));
  return int64_t(params_.size()) - 1;
}

torch::Tensor ReplicatedGradSync::use(const torch::Tensor& param) {
  if (!param.requires_grad() || !torch::GradMode::is_enabled()) return param;
  return RouteGradToPending::apply(param, pending_[slot_for(param)]);
}

int64_t ReplicatedGradSync::numel() const {
  int64_t n = 0;
  for (auto& p : params_) n += p.numel();
  return n;
}

void ReplicatedGradSync::sync(TensorParallelGroup& group) {
  if (params_.empty()) return;
  torch::NoGradGuard no_grad;
  std::vector<torch::Tensor> flat_parts;
  for (auto& p : pending_) flat_parts.push_back(p.reshape(-1));
  auto flat = torch::cat(flat_parts);
  group.all_reduce_sum_(flat, CommKind::ReplicatedGradSync);
  int64_t offset = 0;
  for (size_t i = 0; i < params_.size(); ++i) {
    auto& p = params_[i];
    auto part = flat.narrow(0, offset, p.numel()).view_as(p);
    offset += p.numel();
    if (p.grad().defined())
      p.mutable_grad().add_(part);
    else
      p.mutable_grad() = part.clone();
    pending_[i].zero_();
  }
}

void ReplicatedGradSync::reset() {
  for (auto& p : pending_) p.zero_();
}

}  // namespace dgpt
