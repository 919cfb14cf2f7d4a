#include "model/cpu_attention.h"

#include "model/attention_kernels.h"
#include "model/cpu_blas.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <cmath>
#include <limits>
#include <vector>

namespace dgpt {

namespace {

// One head of a [N, H..., T, D] tensor (unit stride in D): its first element and its row stride;
// heads numbered over the leading dimensions in row-major order.
template <typename T>
struct HeadView {
  T* base;
  int row;
  std::vector<std::pair<int64_t, int64_t>> dims;  // (size, stride) of each leading dimension
  explicit HeadView(const torch::Tensor& t) : base(t.data_ptr<T>()), row(int(t.stride(-2))) {
    for (int64_t d = 0; d < t.dim() - 2; ++d) dims.push_back({t.size(d), t.stride(d)});
  }
  T* at(int64_t head) const {
    int64_t offset = 0;
    for (size_t j = dims.size(); j-- > 0;) {
      offset += (head % dims[j].first) * dims[j].second;
      head /= dims[j].first;
    }
    return base + offset;
  }
};

// A new tensor of q's shape [N, H..., T, D] whose memory is [N, T, H..., D]: each row of a head at
// stride H...*D, every head of a position side by side.
torch::Tensor heads_side_by_side(const torch::Tensor& q) {
  const int64_t d = q.dim();
  std::vector<int64_t> sizes{q.size(0), q.size(d - 2)}, perm{0};
  for (int64_t i = 1; i < d - 2; ++i) sizes.push_back(q.size(i));
  sizes.push_back(q.size(d - 1));
  for (int64_t i = 2; i < d - 1; ++i) perm.push_back(i);
  perm.push_back(1);
  perm.push_back(d - 1);
  return torch::empty(sizes, q.options()).permute(perm);
}

// Every head a job of its own (BLAS runs single-threaded inside the parallel region).
template <typename F>
void for_each_head(int64_t heads, const F& f) {
  at::parallel_for(0, heads, 1, [&](int64_t begin, int64_t end) {
    for (int64_t i = begin; i < end; ++i) f(i);
  });
}

template <typename T>
std::pair<torch::Tensor, torch::Tensor> forward_impl(const torch::Tensor& q, const torch::Tensor& k,
                                                     const torch::Tensor& v) {
  const int64_t Tn = q.size(-2), D = q.size(-1), heads = q.numel() / (Tn * D);
  const T scale = T(1.0 / std::sqrt(double(D)));
  auto probs = torch::empty({heads, Tn, Tn}, q.options());  // saved for the backward
  auto y = heads_side_by_side(q);
  const HeadView<T> Q(q), K(k), V(v), Y(y);
  T* p = probs.data_ptr<T>();
  for_each_head(heads, [&](int64_t i) {
    attention_kernels::head_forward(int(Tn), int(D), scale, Q.at(i), Q.row, K.at(i), K.row, V.at(i), V.row,
                                    p + i * Tn * Tn, Y.at(i), Y.row);
  });
  return {y, probs};
}

template <typename T>
torch::autograd::tensor_list backward_impl(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                           const torch::Tensor& probs, torch::Tensor dy) {
  const int64_t Tn = q.size(-2), D = q.size(-1), heads = q.numel() / (Tn * D);
  const T scale = T(1.0 / std::sqrt(double(D)));
  if (dy.stride(-1) != 1) dy = dy.contiguous();
  // laid out like the forward's output
  auto dq = heads_side_by_side(q), dk = heads_side_by_side(q), dv = heads_side_by_side(q);
  const HeadView<T> Q(q), K(k), V(v), dY(dy), dQ(dq), dK(dk), dV(dv);
  const T* p = probs.data_ptr<T>();
  const int64_t scratch = attention_kernels::backward_scratch(int(Tn));
  at::parallel_for(0, heads, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> ds(static_cast<size_t>(scratch));  // one per job, reused across its heads
    for (int64_t i = begin; i < end; ++i)
      attention_kernels::head_backward(int(Tn), int(D), scale, Q.at(i), Q.row, K.at(i), K.row, V.at(i), V.row,
                                       p + i * Tn * Tn, dY.at(i), dY.row, dQ.at(i), dQ.row, dK.at(i), dK.row,
                                       dV.at(i), dV.row, ds.data());
  });
  return {dq, dk, dv};
}

struct CpuCausalAttention : torch::autograd::Function<CpuCausalAttention> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& q, const torch::Tensor& k,
                               const torch::Tensor& v) {
    RECORD_FUNCTION("dgpt::cpu_causal_attention", std::vector<c10::IValue>());  // its BLAS calls are no ATen ops
    auto [y, probs] = q.scalar_type() == torch::kFloat ? forward_impl<float>(q, k, v) : forward_impl<double>(q, k, v);
    ctx->save_for_backward({q, k, v, probs});
    return y;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto saved = ctx->get_saved_variables();
    const auto& q = saved[0];
    return q.scalar_type() == torch::kFloat ? backward_impl<float>(q, saved[1], saved[2], saved[3], grads[0])
                                            : backward_impl<double>(q, saved[1], saved[2], saved[3], grads[0]);
  }
};

}  // namespace

bool cpu_causal_attention_applies(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  if (!cpu_kernels_enabled() || !cpu_blas_available()) return false;
  for (const auto* t : {&q, &k, &v})
    if (!t->device().is_cpu() || t->scalar_type() != q.scalar_type() || t->dim() < 4 || t->sizes() != q.sizes() ||
        t->stride(-1) != 1 || t->stride(-2) > std::numeric_limits<int>::max())
      return false;
  return (q.scalar_type() == torch::kFloat || q.scalar_type() == torch::kDouble) && q.size(-2) > 0 &&
         q.size(-1) > 0 && q.size(-2) * q.size(-2) < std::numeric_limits<int>::max();
}

torch::Tensor cpu_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  return CpuCausalAttention::apply(q, k, v);
}

}  // namespace dgpt
