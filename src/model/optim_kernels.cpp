#include "model/optim_kernels.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <tuple>
#include <vector>

namespace dgpt {

namespace {

template <typename T>
double sum_of_squares_impl(const T* x, int64_t begin, int64_t end) {
  constexpr int64_t kBlock = int64_t(1) << 15;
  const int64_t blocks = std::max<int64_t>(0, (end - begin + kBlock - 1) / kBlock);
  std::vector<double> partial(size_t(blocks), 0.0);
  at::parallel_for(0, blocks, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) {
      double acc = 0;
      for (int64_t i = begin + b * kBlock, e = std::min(end, i + kBlock); i < e; ++i) acc += double(x[i]) * double(x[i]);
      partial[size_t(b)] = acc;
    }
  });
  double total = 0;
  for (double v : partial) total += v;
  return total;
}

// Elements [begin, end); d is the decay factor of this run (1 outside the decayed range: p * 1 is p).
template <typename T>
void adamw_run(T* __restrict p, const T* __restrict grad, T* __restrict m, T* __restrict v, int64_t begin,
               int64_t end, T scale, T d, T b1, T one_minus_b1, T b2, T one_minus_b2, T bc2, T eps, T step) {
  for (int64_t i = begin; i < end; ++i) {
    const T g = grad[i] * scale;
    const T mi = m[i] * b1 + one_minus_b1 * g;
    const T vi = v[i] * b2 + one_minus_b2 * g * g;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * d + step * (mi / (std::sqrt(vi) / bc2 + eps));
  }
}

template <typename T>
void adamw_pass_impl(T* p, const T* grad, T* m, T* v, int64_t n, const AdamScalars& s) {
  const T scale = T(s.grad_scale), decay = T(s.decay), b1 = T(s.beta1), one_minus_b1 = T(1.0 - s.beta1),
          b2 = T(s.beta2), one_minus_b2 = T(1.0 - s.beta2), bc2 = T(s.bias_correction2_sqrt), eps = T(s.eps),
          step = T(s.step_size);
  at::parallel_for(0, n, int64_t(1) << 14, [&](int64_t begin, int64_t end) {
    // three runs: before, inside and after the decayed range, each a plain SIMD loop
    const int64_t a = std::clamp(s.decayed_begin, begin, end), b = std::clamp(s.decayed_end, a, end);
    for (auto [lo, hi, d] : {std::tuple{begin, a, T(1)}, {a, b, decay}, {b, end, T(1)}})
      adamw_run(p, grad, m, v, lo, hi, scale, d, b1, one_minus_b1, b2, one_minus_b2, bc2, eps, step);
  });
}

}  // namespace

double sum_of_squares(const float* x, int64_t begin, int64_t end) { return sum_of_squares_impl(x, begin, end); }
double sum_of_squares(const double* x, int64_t begin, int64_t end) { return sum_of_squares_impl(x, begin, end); }

void adamw_pass(float* p, const float* grad, float* m, float* v, int64_t n, const AdamScalars& s) {
  adamw_pass_impl(p, grad, m, v, n, s);
}
void adamw_pass(double* p, const double* grad, double* m, double* v, int64_t n, const AdamScalars& s) {
  adamw_pass_impl(p, grad, m, v, n, s);
}

}  // namespace dgpt
