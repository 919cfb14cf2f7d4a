#include "model/optim.h"

#include <cmath>

namespace dgpt {

AdamW::AdamW(std::vector<ParamSlot> slots, double weight_decay, double beta1, double beta2, double eps)
    : slots_(std::move(slots)), weight_decay_(weight_decay), beta1_(beta1), beta2_(beta2), eps_(eps) {
  for (auto& s : slots_)
    state_.push_back({torch::zeros_like(s.param, torch::MemoryFormat::Contiguous),
                      torch::zeros_like(s.param, torch::MemoryFormat::Contiguous), 0});
}

void AdamW::step(double lr) {
  torch::NoGradGuard no_grad;
  for (size_t i = 0; i < slots_.size(); ++i) {
    auto& p = slots_[i].param;
    if (!p.grad().defined()) continue;
    const auto& grad = p.grad();
    auto& st = state_[i];
    st.step += 1;
    // PyTorch's AdamW (decoupled decay), element for element.
    if (slots_[i].dense_dim() >= 2 && weight_decay_ != 0) p.mul_(1.0 - lr * weight_decay_);
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
