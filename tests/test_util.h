// Helpers shared by the C++ test files: small models built from (perturbed) dense weights,
// gradients gathered to the dense layout, relative differences, a central finite-difference
// gradient check, and threads standing in for the processes of a tensor-parallel group.
#pragma once
#include <torch/torch.h>

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <condition_variable>
#include <functional>
#include <iomanip>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "comm/tensor_parallel.h"
#include "model/layout.h"
#include "model/model.h"
#include "model/model_args.h"

namespace dgpt::test {

// The device the C++ numerics build their models and batches on: DGPT_TEST_DEVICE (e.g. `cuda`;
// bench/gpu_check.sh sets it), the CPU by default. References computed in a test stay on the CPU,
// and the comparisons below bring both sides there.
inline torch::Device test_device() {
  static const torch::Device device = [] {
    const char* e = std::getenv("DGPT_TEST_DEVICE");
    return torch::Device(e && *e ? e : "cpu");
  }();
  return device;
}

inline std::string join(const std::vector<std::string>& v) {
  std::string s = "[";
  for (size_t i = 0; i < v.size(); ++i) s += (i ? "," : "") + v[i];
  return s + "]";
}

// A DistributedGPT with the given block types.
inline ModelArgs dist_args(std::vector<std::string> types, int64_t tp_size, int64_t n_head, int64_t n_embd,
                           bool bias, const std::string& merge = "sum", int64_t vocab_size = 50,
                           int64_t block_size = 8) {
  ModelArgs a;
  a.n_layer = int64_t(types.size());
  a.n_head = n_head;
  a.n_embd = n_embd;
  a.block_size = block_size;
  a.vocab_size = vocab_size;
  a.dropout = 0.0;
  a.bias = bias;
  a.model_type = "distributed_gpt";
  a.tp_size = tp_size;
  a.block_types = std::move(types);
  a.parallel_merge = merge;
  return a;
}

// The dense nanoGPT ('gpt') of the same shape.
inline ModelArgs dense_args_of(const ModelArgs& a) {
  ModelArgs d = a;
  d.model_type = "gpt";
  d.tp_size = 1;
  d.block_types.assign(size_t(a.n_layer), "tp");
  d.parallel_merge = "sum";
  return d;
}

inline bool is_bias_or_norm(const std::string& name) {
  const auto ends_with = [&](const std::string& suffix) {
    return name.size() >= suffix.size() && name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0;
  };
  return ends_with(".bias") || name.find("ln_") != std::string::npos;
}

// nanoGPT's init for `a` (dense layout, float32), with `noise`*N(0,1) added to every bias and
// LayerNorm tensor so that those parameters matter (the init has zero biases and unit LNs).
// The values are float32 numbers, so loading them into a float64 model is exact.
inline DenseState perturbed_weights(const ModelArgs& a, int64_t seed, double noise = 0.05) {
  DenseState dense = init_dense_weights(a, seed);
  auto gen = at::make_generator<at::CPUGeneratorImpl>(uint64_t(seed) * 7919 + 17);
  for (auto& [name, t] : dense)
    if (is_bias_or_norm(name)) t = t + noise * torch::randn(t.sizes(), gen, t.options());
  return dense;
}

inline DenseState to_dtype(const DenseState& s, torch::Dtype dtype) {
  DenseState out;
  for (auto& [k, v] : s) out[k] = v.to(dtype);
  return out;
}

// A model on a SimulatedGroup(args.tp_size), on test_device(), converted to `dtype` and then loaded with `dense`.
inline GPT make_model(const ModelArgs& a, const DenseState& dense, torch::Dtype dtype) {
  GPT model(a, std::make_shared<SimulatedGroup>(a.tp_size));
  model->to(test_device(), dtype);
  model->load_dense_state(dense);
  return model;
}

struct Batch {
  torch::Tensor idx, targets;
};
inline Batch random_batch(int64_t B, int64_t T, int64_t vocab, int64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(uint64_t(seed));
  auto opts = torch::TensorOptions().dtype(torch::kLong);
  auto idx = torch::randint(vocab, {B, T}, gen, opts), targets = torch::randint(vocab, {B, T}, gen, opts);
  return {idx.to(test_device()), targets.to(test_device())};  // drawn on the CPU: the same tokens everywhere
}

// Forward + backward + the replicated-gradient sync (what a training step does before reading grads).
inline torch::Tensor loss_and_grads(GPT& model, const Batch& b) {
  auto out = model->forward(b.idx, b.targets);
  out.loss.backward();
  model->sync_replicated_grads();
  return out.loss.detach();
}

// Every parameter's gradient in the dense nanoGPT layout (undefined where the parameter has none).
inline DenseState gathered_grads(GPT& model) {
  DenseState out;
  for (auto& s : model->param_slots()) {
    auto g = s.param.grad();
    out[s.dense_name] = g.defined() ? dense_from_shards(g.detach(), s.layout) : torch::Tensor();
  }
  return out;
}

// max|a - b| / max|b|: the error relative to the reference tensor's scale.
inline double rel_diff(const torch::Tensor& a, const torch::Tensor& b) {
  auto ad = a.detach().to(torch::kCPU).to(torch::kDouble), bd = b.detach().to(torch::kCPU).to(torch::kDouble);
  const double d = (ad - bd).abs().max().item<double>();
  const double s = bd.abs().max().item<double>();
  if (d == 0) return 0;
  return d / std::max(s, 1e-300);
}

inline double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.detach().to(torch::kCPU).to(torch::kDouble) - b.detach().to(torch::kCPU).to(torch::kDouble))
      .abs().max().item<double>();
}

struct Comparison {
  double worst = 0;        // largest rel_diff over the compared tensors
  std::string worst_name;  // where it is
  std::vector<std::string> problems;  // missing, extra, undefined or misshapen tensors
  int64_t compared = 0;
  std::string describe() const {
    std::ostringstream s;
    s << "worst rel diff " << std::scientific << std::setprecision(3) << worst << " at '" << worst_name
      << "' over " << compared << " tensors";
    for (auto& p : problems) s << "; " << p;
    return s.str();
  }
};

// Compares every tensor of `want` (except `skip`) with the same name in `got`; names of `got`
// that `want` lacks are problems too.
inline Comparison compare_states(const DenseState& got, const DenseState& want,
                                 const std::set<std::string>& skip = {}) {
  Comparison c;
  for (auto& [name, w] : want) {
    if (skip.count(name)) continue;
    auto it = got.find(name);
    if (it == got.end()) {
      c.problems.push_back("missing '" + name + "'");
      continue;
    }
    if (!it->second.defined() || !w.defined()) {
      c.problems.push_back("undefined '" + name + "'");
      continue;
    }
    if (it->second.sizes().vec() != w.sizes().vec()) {
      c.problems.push_back("shape of '" + name + "'");
      continue;
    }
    const double r = rel_diff(it->second, w);
    ++c.compared;
    if (!(r <= c.worst)) {  // also catches NaN
      c.worst = std::isnan(r) ? INFINITY : r;
      c.worst_name = name;
    }
  }
  for (auto& [name, g] : got)
    if (!want.count(name) && !skip.count(name)) c.problems.push_back("unexpected '" + name + "'");
  return c;
}

// Central finite differences (step eps) of a scalar function of float64 tensors against its
// autograd gradient. Returns max over all input elements of |analytic - numeric| / max(1, |numeric|).
using ScalarFn = std::function<torch::Tensor(const std::vector<torch::Tensor>&)>;
inline double fd_gradcheck(const ScalarFn& fn, const std::vector<torch::Tensor>& inputs, double eps = 1e-6) {
  std::vector<torch::Tensor> leaves;
  for (auto& t : inputs) leaves.push_back(t.detach().to(torch::kDouble).clone().requires_grad_(true));
  auto loss = fn(leaves);
  auto grads = torch::autograd::grad({loss}, leaves, {}, /*retain_graph=*/false, /*create_graph=*/false,
                                     /*allow_unused=*/true);
  torch::NoGradGuard no_grad;
  double worst = 0;
  for (size_t k = 0; k < leaves.size(); ++k) {
    auto analytic = grads[k].defined() ? grads[k].contiguous().view(-1) : torch::zeros({leaves[k].numel()}, torch::kDouble);
    std::vector<torch::Tensor> args;
    for (auto& l : leaves) args.push_back(l.detach().clone());
    auto flat = args[k].view(-1);
    for (int64_t j = 0; j < flat.numel(); ++j) {
      const double orig = flat[j].item<double>();
      flat[j] = orig + eps;
      const double up = fn(args).item<double>();
      flat[j] = orig - eps;
      const double down = fn(args).item<double>();
      flat[j] = orig;
      const double numeric = (up - down) / (2 * eps);
      const double err = std::abs(analytic[j].item<double>() - numeric) / std::max(1.0, std::abs(numeric));
      worst = std::max(worst, std::isnan(err) ? INFINITY : err);
    }
  }
  return worst;
}

// Threads as the W processes of a tensor-parallel group (L = N / W shards each): the all-reduce
// sums the W contributions in rank order, so every rank gets the same bits.
class ThreadRendezvous {
 public:
  explicit ThreadRendezvous(int64_t W) : W_(W), slots_(size_t(W)) {}
  torch::Tensor sum(int64_t rank, const torch::Tensor& t) {
    std::unique_lock<std::mutex> lock(m_);
    const int64_t round = round_;
    slots_[size_t(rank)] = t.clone();
    if (++arrived_ == W_) {
      result_ = slots_[0].clone();
      for (int64_t r = 1; r < W_; ++r) result_ += slots_[size_t(r)];
      arrived_ = 0;
      ++round_;
      cv_.notify_all();
    } else {
      cv_.wait(lock, [&] { return round_ != round; });
    }
    return result_.clone();  // under the lock: the next round cannot overwrite it before every rank has read it
  }

 private:
  int64_t W_;
  std::mutex m_;
  std::condition_variable cv_;
  std::vector<torch::Tensor> slots_;
  torch::Tensor result_;
  int64_t arrived_ = 0, round_ = 0;
};

// Rank `rank` of W such threads.
class ThreadGroup : public TensorParallelGroup {
 public:
  ThreadGroup(int64_t tp_size, int64_t W, int64_t rank, std::shared_ptr<ThreadRendezvous> r)
      : TensorParallelGroup(tp_size, W, rank), r_(std::move(r)) {}
  void all_reduce_sum_(torch::Tensor& t, CommKind kind) override {
    tally_.record(kind, t.numel() * t.element_size(), 0.0);
    t.copy_(r_->sum(rank_, t));
  }
  torch::Tensor gather_shards(const torch::Tensor& local) override {  // [L, ...] -> [N, ...]
    auto sizes = local.sizes().vec();
    sizes[0] = tp_size_;
    auto all = torch::zeros(sizes, local.options());
    all.narrow(0, first_shard(), local_shards()).copy_(local);
    return r_->sum(rank_, all);
  }

 private:
  std::shared_ptr<ThreadRendezvous> r_;
};

}  // namespace dgpt::test
