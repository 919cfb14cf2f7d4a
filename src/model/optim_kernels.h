// The flat AdamW's CPU kernels (model/optim.h): memory-bound loops over plain arrays, one pass each
// where ATen would take one op, and one pass over memory, per arithmetic step. Their own
// translation unit, compiled with -fno-math-errno (CMakeLists.txt) so that sqrt vectorizes.
#pragma once
#include <cstdint>

namespace dgpt {

// sum(x^2) over [begin, end) in float64, in fixed blocks summed in order: the same bits whatever
// the thread count.
double sum_of_squares(const float* x, int64_t begin, int64_t end);
double sum_of_squares(const double* x, int64_t begin, int64_t end);

struct AdamScalars {
  double grad_scale;             // the clip coefficient (1 without clipping), in the gradients' dtype
  double decay;                  // 1 - lr * weight_decay, applied in [decayed_begin, decayed_end)
  double beta1, beta2;
  double bias_correction2_sqrt;  // sqrt(1 - beta2^step)
  double eps;
  double step_size;              // -lr / (1 - beta1^step)
  int64_t decayed_begin = 0, decayed_end = 0;
};

// PyTorch's AdamW over n elements in one pass, each element as its ops compute it in the dtype:
// g = grad * grad_scale; p *= decay (decayed range); m = m*b1 + (1-b1)*g; v = v*b2 + (1-b2)*g*g;
// p += step_size * m / (sqrt(v)/bias_correction2_sqrt + eps).
void adamw_pass(float* p, const float* grad, float* m, float* v, int64_t n, const AdamScalars& s);
void adamw_pass(double* p, const double* grad, double* m, double* v, int64_t n, const AdamScalars& s);

}  // namespace dgpt
