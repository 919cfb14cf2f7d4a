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

// One head of a [N, H, T, D] tensor (unit stride in D): its first element and its row stride.
template <typename T>
struct HeadView {
  T* base;
  int64_t s0, s1;
  int row;
  explicit HeadView(const torch::Tensor& t)
      : base(t.data_ptr<T>()), s0(t.stride(0)), s1(t.stride(1)), row(int(t.stride(2))) {}
  T* at(int64_t head, int64_t H) const { return base + (head / H) * s0 + (head % H) * s1; }
};

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
  const int64_t N = q.size(0), H = q.size(1), Tn = q.size(2), D = q.size(3);
  const T scale = T(1.0 / std::sqrt(double(D)));
  auto probs = torch::empty({N, H, Tn, Tn}, q.options());  // saved for the backward
  auto y = torch::empty({N, Tn, H, D}, q.options());       // each head's rows at stride H*D
  const HeadView<T> Q(q), K(k), V(v), Y(y.transpose(1, 2));
  T* p = probs.data_ptr<T>();
  for_each_head(N * H, [&](int64_t i) {
    attention_kernels::head_forward(int(Tn), int(D), scale, Q.at(i, H), Q.row, K.at(i, H), K.row, V.at(i, H), V.row,
                                    p + i * Tn * Tn, Y.at(i, H), Y.row);
  });
  return {y.transpose(1, 2), probs};
}

template <typename T>
torch::autograd::tensor_list backward_impl(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                           const torch::Tensor& probs, torch::Tensor dy) {
  const int64_t N = q.size(0), H = q.size(1), Tn = q.size(2), D = q.size(3);
  const T scale = T(1.0 / std::sqrt(double(D)));
  if (dy.stride(3) != 1) dy = dy.contiguous();
  // [N, T, H, D] like the forward's output; returned as [N, H, T, D] views
  auto dq = torch::empty({N, Tn, H, D}, q.options()), dk = torch::empty_like(dq), dv = torch::empty_like(dq);
  const HeadView<T> Q(q), K(k), V(v), dY(dy), dQ(dq.transpose(1, 2)), dK(dk.transpose(1, 2)), dV(dv.transpose(1, 2));
  const T* p = probs.data_ptr<T>();
  const int64_t scratch = attention_kernels::backward_scratch(int(Tn));
  at::parallel_for(0, N * H, 1, [&](int64_t begin, int64_t end) {
    std::vector<T> ds(static_cast<size_t>(scratch));  // one per job, reused across its heads
    for (int64_t i = begin; i < end; ++i)
      attention_kernels::head_backward(int(Tn), int(D), scale, Q.at(i, H), Q.row, K.at(i, H), K.row, V.at(i, H),
                                       V.row, p + i * Tn * Tn, dY.at(i, H), dY.row, dQ.at(i, H), dQ.row, dK.at(i, H),
                                       dK.row, dV.at(i, H), dV.row, ds.data());
  });
  return {dq.transpose(1, 2), dk.transpose(1, 2), dv.transpose(1, 2)};
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
    if (!t->device().is_cpu() || t->scalar_type() != q.scalar_type() || t->dim() != 4 || t->sizes() != q.sizes() ||
        t->stride(3) != 1 || t->stride(2) > std::numeric_limits<int>::max())
      return false;
  return (q.scalar_type() == torch::kFloat || q.scalar_type() == torch::kDouble) && q.size(2) > 0 &&
         q.size(3) > 0 && q.size(2) * q.size(2) < std::numeric_limits<int>::max();
}

torch::Tensor cpu_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
  return CpuCausalAttention::apply(q, k, v);
}

}  // namespace dgpt
