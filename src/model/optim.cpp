#include "model/optim.h"

#include "model/optim_kernels.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace dgpt {

AdamW::AdamW(std::vector<ParamSlot> slots, double weight_decay, double beta1, double beta2, double eps)
    : slots_(std::move(slots)), weight_decay_(weight_decay), beta1_(beta1), beta2_(beta2), eps_(eps) {
  for (auto& s : slots_)
    state_.push_back({torch::zeros_like(s.param, torch::MemoryFormat::Contiguous),
                      torch::zeros_like(s.param, torch::MemoryFormat::Contiguous), 0});
  flatten();
}

namespace {

bool decayed(const ParamSlot& s) { return s.dense_dim() >= 2; }

// Whether the flat buffers go through the CPU kernels of model/optim_kernels.h.
bool fused_kernels_apply(const torch::Tensor& flat) {
  return flat.device().is_cpu() && (flat.scalar_type() == torch::kFloat || flat.scalar_type() == torch::kDouble);
}

}  // namespace

void AdamW::flatten() {
  torch::NoGradGuard no_grad;
  flat_ = Flat();
  if (slots_.empty()) return;
  const auto opts = slots_.front().param.options();
  for (auto& s : slots_)
    if (s.param.device() != opts.device() || s.param.scalar_type() != opts.dtype().toScalarType()) return;
  // Groups in flat order: sharded & not decayed, sharded & decayed, replicated & decayed,
  // replicated & not decayed; so [0, sharded_end) is sharded and [decayed_begin, decayed_end) decayed.
  auto group_of = [](const ParamSlot& s) { return s.sharded() ? (decayed(s) ? 1 : 0) : (decayed(s) ? 2 : 3); };
  flat_.offset.assign(slots_.size(), 0);
  int64_t total = 0;
  for (int g = 0; g < 4; ++g) {
    if (g == 1) flat_.decayed_begin = total;
    if (g == 2) flat_.sharded_end = total;
    for (size_t i = 0; i < slots_.size(); ++i)
      if (group_of(slots_[i]) == g) {
        flat_.offset[i] = total;
        total += slots_[i].param.numel();
      }
    if (g == 2) flat_.decayed_end = total;
  }
  flat_.params = torch::empty({total}, opts);
  flat_.exp_avg = torch::empty({total}, opts);
  flat_.exp_avg_sq = torch::empty({total}, opts);
  flat_.grads = torch::empty({total}, opts);
  if (!fused_kernels_apply(flat_.params)) flat_.denom = torch::empty({total}, opts);
  for (size_t i = 0; i < slots_.size(); ++i) {
    auto& p = slots_[i].param;
    auto part = [&](const torch::Tensor& flat) { return flat.narrow(0, flat_.offset[i], p.numel()).view(p.sizes()); };
    part(flat_.params).copy_(p);
    part(flat_.exp_avg).copy_(state_[i].exp_avg);
    part(flat_.exp_avg_sq).copy_(state_[i].exp_avg_sq);
    // The parameter keeps its identity (module, autograd leaf) and now reads and writes its part,
    // as FSDP's flat parameters do.
    p.set_data(part(flat_.params));
    state_[i].exp_avg = part(flat_.exp_avg);
    state_[i].exp_avg_sq = part(flat_.exp_avg_sq);
  }
}

bool AdamW::flat_intact() const {
  if (!flat_.defined()) return false;
  const auto* base = static_cast<const char*>(flat_.params.data_ptr());
  const auto elem = flat_.params.element_size();
  for (size_t i = 0; i < slots_.size(); ++i) {
    const auto& p = slots_[i].param;
    if (p.device() != flat_.params.device() || p.scalar_type() != flat_.params.scalar_type() || !p.is_contiguous() ||
        static_cast<const char*>(p.data_ptr()) != base + flat_.offset[i] * elem)
      return false;
  }
  return true;
}

bool AdamW::pack_grads() {
  torch::NoGradGuard no_grad;
  flat_.grads_packed = false;
  flat_.grad_scale = torch::Tensor();
  if (!flat_intact()) flatten();  // something replaced a parameter's storage (moved it, say)
  if (!flat_.defined()) return false;
  std::vector<torch::Tensor> parts(slots_.size());
  for (size_t i = 0; i < slots_.size(); ++i) {
    const auto& g = slots_[i].param.grad();
    if (!g.defined() || g.scalar_type() != flat_.grads.scalar_type() || g.device() != flat_.grads.device()) return false;
  }
  // In flat order, so one cat writes the whole buffer.
  std::vector<size_t> order(slots_.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return flat_.offset[a] < flat_.offset[b]; });
  std::vector<torch::Tensor> grads;
  for (size_t i : order) grads.push_back(slots_[i].param.grad().reshape(-1));
  at::cat_out(flat_.grads, grads, 0);
  for (size_t i = 0; i < slots_.size(); ++i) {
    auto& p = slots_[i].param;
    p.mutable_grad() = flat_.grads.narrow(0, flat_.offset[i], p.numel()).view(p.sizes());
  }
  flat_.grads_packed = true;
  return true;
}

torch::Tensor AdamW::global_grad_norm(TensorParallelGroup& group) {
  if (!flat_.grads_packed) return dgpt::global_grad_norm(slots_, group);
  torch::NoGradGuard no_grad;
  const auto& g = flat_.grads;
  // As the per-tensor version: float64 squares, the sharded part summed over the group.
  auto sum_sq = [&](int64_t begin, int64_t end) -> torch::Tensor {
    if (!fused_kernels_apply(g)) return g.narrow(0, begin, end - begin).to(torch::kDouble).pow(2).sum();
    const double v = g.scalar_type() == torch::kFloat ? sum_of_squares(g.data_ptr<float>(), begin, end)
                                                      : sum_of_squares(g.data_ptr<double>(), begin, end);
    return torch::full({}, v, torch::TensorOptions().dtype(torch::kDouble));
  };
  auto shared = sum_sq(0, flat_.sharded_end).reshape({1});
  group.all_reduce_sum_(shared, CommKind::GradNormAllReduce);
  return (shared.reshape({}) + sum_sq(flat_.sharded_end, g.numel())).sqrt();
}

torch::Tensor AdamW::clip_grad_norm(TensorParallelGroup& group, double max_norm) {
  if (!flat_.grads_packed) return dgpt::clip_grad_norm(slots_, group, max_norm);
  const auto norm = global_grad_norm(group);
  const auto coef = (max_norm / (norm + 1e-6)).clamp_max(1.0);
  torch::NoGradGuard no_grad;
  if (fused_kernels_apply(flat_.grads))
    flat_.grad_scale = coef.to(flat_.grads.dtype());  // applied inside the fused update
  else
    flat_.grads.mul_(coef.to(flat_.grads.dtype()));
  return norm;
}

bool AdamW::flat_step_possible() const {
  if (!flat_.grads_packed || !flat_intact()) return false;
  for (auto& st : state_)
    if (st.step != state_.front().step) return false;  // moments loaded for some tensors only
  for (size_t i = 0; i < slots_.size(); ++i)  // the gradients are still the packed views
    if (!slots_[i].param.grad().defined() ||
        slots_[i].param.grad().data_ptr() != static_cast<char*>(flat_.grads.data_ptr()) + flat_.offset[i] * flat_.grads.element_size())
      return false;
  return true;
}

// PyTorch's AdamW over the flat buffers: on the CPU one fused pass, elsewhere the same ops as the
// per-tensor path below, each once.
void AdamW::flat_step(double lr) {
  for (auto& st : state_) st.step += 1;
  const double step = double(state_.front().step);
  auto& f = flat_;
  const double bias_correction1 = 1.0 - std::pow(beta1_, step);
  const double bias_correction2 = 1.0 - std::pow(beta2_, step);
  if (fused_kernels_apply(f.params)) {
    // the clip coefficient, rounded to the parameters' dtype as grads.mul_(coef) rounds it
    const double grad_scale = f.grad_scale.defined() ? f.grad_scale.item<double>() : 1.0;
    const bool decay = weight_decay_ != 0;
    const AdamScalars s{grad_scale, 1.0 - lr * weight_decay_, beta1_, beta2_, std::sqrt(bias_correction2), eps_,
                        -lr / bias_correction1, decay ? f.decayed_begin : 0, decay ? f.decayed_end : 0};
    if (f.params.scalar_type() == torch::kFloat)
      adamw_pass(f.params.data_ptr<float>(), f.grads.data_ptr<float>(), f.exp_avg.data_ptr<float>(),
                 f.exp_avg_sq.data_ptr<float>(), f.params.numel(), s);
    else
      adamw_pass(f.params.data_ptr<double>(), f.grads.data_ptr<double>(), f.exp_avg.data_ptr<double>(),
                 f.exp_avg_sq.data_ptr<double>(), f.params.numel(), s);
    return;
  }
  if (weight_decay_ != 0 && f.decayed_end > f.decayed_begin)
    f.params.narrow(0, f.decayed_begin, f.decayed_end - f.decayed_begin).mul_(1.0 - lr * weight_decay_);
  f.exp_avg.mul_(beta1_).add_(f.grads, 1.0 - beta1_);
  f.exp_avg_sq.mul_(beta2_).addcmul_(f.grads, f.grads, 1.0 - beta2_);
  at::sqrt_out(f.denom, f.exp_avg_sq).div_(std::sqrt(bias_correction2)).add_(eps_);
  f.params.addcdiv_(f.exp_avg, f.denom, -lr / bias_correction1);
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  if (flat_step_possible()) return flat_step(lr);
  for (size_t i = 0; i < slots_.size(); ++i) {
    auto& p = slots_[i].param;
    if (!p.grad().defined()) continue;
    const auto& grad = p.grad();
    auto& st = state_[i];
    st.step += 1;
    // PyTorch's AdamW (decoupled decay), element for element.
    if (decayed(slots_[i]) && weight_decay_ != 0) p.mul_(1.0 - lr * weight_decay_);
    st.exp_avg.mul_(beta1_).add_(grad, 1.0 - beta1_);
    st.exp_avg_sq.mul_(beta2_).addcmul_(grad, grad, 1.0 - beta2_);
    const double bias_correction1 = 1.0 - std::pow(beta1_, double(st.step));
    const double bias_correction2 = 1.0 - std::pow(beta2_, double(st.step));
    auto denom = (st.exp_avg_sq.sqrt() / std::sqrt(bias_correction2)).add_(eps_);
    p.addcdiv_(st.exp_avg, denom, -lr / bias_correction1);
  }
}

void AdamW::zero_grad() {
  for (auto& s : slots_) s.param.mutable_grad() = torch::Tensor();
  flat_.grads_packed = false;
  flat_.grad_scale = torch::Tensor();
}

std::map<std::string, AdamMoments> AdamW::dense_state(TensorParallelGroup& group) const {
  std::map<std::string, AdamMoments> dense;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const auto& s = slots_[i];
    auto to_dense = [&](const torch::Tensor& t) {
      return s.sharded() ? dense_from_shards(group.gather_shards(t), s.layout) : t.clone();
    };
    dense[s.dense_name] = {to_dense(state_[i].exp_avg), to_dense(state_[i].exp_avg_sq), state_[i].step};
  }
  return dense;
}

void AdamW::load_dense_state(const std::map<std::string, AdamMoments>& dense, int64_t tp_size,
                             int64_t first_shard, int64_t local_shards) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < slots_.size(); ++i) {
    const auto& s = slots_[i];
    auto it = dense.find(s.dense_name);
    if (it == dense.end()) continue;  // a tensor the optimizer has not stepped yet
    auto to_local = [&](const torch::Tensor& t) {
      return shards_from_dense(t, s.layout, tp_size, first_shard, local_shards).to(s.param.options());
    };
    auto exp_avg = to_local(it->second.exp_avg), exp_avg_sq = to_local(it->second.exp_avg_sq);
    TORCH_CHECK(exp_avg.sizes() == s.param.sizes(), "optimizer state of ", s.dense_name, " has the wrong shape");
    state_[i].exp_avg.copy_(exp_avg);
    state_[i].exp_avg_sq.copy_(exp_avg_sq);
    state_[i].step = it->second.step;
  }
}

int64_t AdamW::decayed_tensors() const {
  int64_t n = 0;
  for (auto& s : slots_) n += s.dense_dim() >= 2;
  return n;
}

int64_t AdamW::decayed_numel() const {
  int64_t n = 0;
  for (auto& s : slots_)
    if (s.dense_dim() >= 2) n += s.param.numel();
  return n;
}

torch::Tensor global_grad_norm(const std::vector<ParamSlot>& slots, TensorParallelGroup& group) {
  torch::NoGradGuard no_grad;
  torch::Tensor sharded_sq, replicated_sq;
  auto accumulate = [](torch::Tensor& acc, const torch::Tensor& g) {
    auto sq = g.to(torch::kDouble).pow(2).sum();
    acc = acc.defined() ? acc + sq : sq;
  };
  for (auto& s : slots) {
    if (!s.param.grad().defined()) continue;
    accumulate(s.sharded() ? sharded_sq : replicated_sq, s.param.grad());
  }
  auto opts = torch::TensorOptions().dtype(torch::kDouble).device(slots.front().param.device());
  if (!sharded_sq.defined()) sharded_sq = torch::zeros({}, opts);
  if (!replicated_sq.defined()) replicated_sq = torch::zeros({}, opts);
  auto shared = sharded_sq.reshape({1});
  group.all_reduce_sum_(shared, CommKind::GradNormAllReduce);
  return (shared.reshape({}) + replicated_sq).sqrt();
}

torch::Tensor clip_grad_norm(const std::vector<ParamSlot>& slots, TensorParallelGroup& group, double max_norm) {
  const auto norm = global_grad_norm(slots, group);
  // On the device, as torch's clip_grad_norm_: no host synchronisation in the step.
  const auto coef = (max_norm / (norm + 1e-6)).clamp_max(1.0);
  torch::NoGradGuard no_grad;
  for (auto& s : slots)
    if (s.param.grad().defined()) s.param.mutable_grad().mul_(coef.to(s.param.grad().dtype()));
  return norm;
}

}  // namespace dgpt
