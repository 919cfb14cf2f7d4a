#include "model/cpu_attention.h"

#include "model/cpu_gemm.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

#include <cmath>
#include <limits>

namespace dgpt {

namespace {

// Row-major gemm through the process's BLAS (model/cpu_gemm.h).
template <typename T>
void gemm(bool ta, bool tb, int m, int n, int k, T alpha, const T* a, int lda, const T* b, int ldb, T beta, T* c,
          int ldc) {
  blas_gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc);
}

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

// Every head in parallel (BLAS runs single-threaded inside the parallel region).
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
  const int t = int(Tn), d = int(D);
  const T scale = T(1.0 / std::sqrt(double(D)));
  // scores, masked: S = q k^T / sqrt(D), -inf above the diagonal: [N, H, T, T]
  auto scores = torch::empty({N, H, Tn, Tn}, q.options());
  const HeadView<T> Q(q), K(k), V(v);
  T* s = scores.data_ptr<T>();
  for_each_head(N * H, [&](int64_t i) {
    T* si = s + i * Tn * Tn;
    gemm<T>(false, true, t, t, d, scale, Q.at(i, H), Q.row, K.at(i, H), K.row, T(0), si, t);
    for (int r = 0; r < t; ++r)
      for (int c = r + 1; c < t; ++c) si[r * t + c] = -std::numeric_limits<T>::infinity();
  });
  auto probs = at::_softmax(scores, -1, false);  // [N, H, T, T]
  // y = probs v, written as [N, T, H, D]: each head's rows at stride H*D
  auto y = torch::empty({N, Tn, H, D}, q.options());
  const T* p = probs.data_ptr<T>();
  T* yp = y.data_ptr<T>();
  for_each_head(N * H, [&](int64_t i) {
    gemm<T>(false, false, t, d, t, T(1), p + i * Tn * Tn, t, V.at(i, H), V.row, T(0),
            yp + (i / H) * Tn * H * D + (i % H) * D, int(H * D));
  });
  return {y.transpose(1, 2), probs};
}

template <typename T>
torch::autograd::tensor_list backward_impl(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                           const torch::Tensor& probs, torch::Tensor dy) {
  const int64_t N = q.size(0), H = q.size(1), Tn = q.size(2), D = q.size(3);
  const int t = int(Tn), d = int(D);
  const T scale = T(1.0 / std::sqrt(double(D)));
  if (dy.stride(3) != 1) dy = dy.contiguous();
  const HeadView<T> Q(q), K(k), V(v), dY(dy);
  // [N, T, H, D] like the forward's output; returned as [N, H, T, D] views
  auto dq = torch::empty({N, Tn, H, D}, q.options()), dk = torch::empty_like(dq), dv = torch::empty_like(dq);
  auto dprobs = torch::empty({N, H, Tn, Tn}, q.options());
  const T* p = probs.data_ptr<T>();
  T* dp = dprobs.data_ptr<T>();
  const HeadView<T> dQ(dq.transpose(1, 2)), dK(dk.transpose(1, 2)), dV(dv.transpose(1, 2));
  for_each_head(N * H, [&](int64_t i) {
    // dP = dy v^T; dv = P^T dy
    gemm<T>(false, true, t, t, d, T(1), dY.at(i, H), dY.row, V.at(i, H), V.row, T(0), dp + i * Tn * Tn, t);
    gemm<T>(true, false, t, d, t, T(1), p + i * Tn * Tn, t, dY.at(i, H), dY.row, T(0), dV.at(i, H), dV.row);
  });
  auto dscores = at::_softmax_backward_data(dprobs, probs, -1, probs.scalar_type());  // [N, H, T, T]
  const T* ds = dscores.data_ptr<T>();
  for_each_head(N * H, [&](int64_t i) {
    // dq = dS k / sqrt(D); dk = dS^T q / sqrt(D)
    gemm<T>(false, false, t, d, t, scale, ds + i * Tn * Tn, t, K.at(i, H), K.row, T(0), dQ.at(i, H), dQ.row);
    gemm<T>(true, false, t, d, t, scale, ds + i * Tn * Tn, t, Q.at(i, H), Q.row, T(0), dK.at(i, H), dK.row);
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
  if (!cpu_blas_available()) return false;
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
