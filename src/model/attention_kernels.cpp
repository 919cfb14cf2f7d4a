#include "model/attention_kernels.h"

#include "model/cpu_blas.h"
#include "model/simd_math.h"

#include <algorithm>
#include <cmath>

namespace dgpt::attention_kernels {

namespace {

using namespace simd;

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void softmax_row_float(float* x,
                                                                                                     int n) {
  const int full = n - n % kLanes, rem = n - full;
  vf mv = splat(x[0]);
  for (int i = 0; i < full; i += kLanes) {
    const vf a = load(x + i);
    mv = a > mv ? a : mv;
  }
  float m = mv[0];
  for (int j = 1; j < kLanes; ++j) m = std::max(m, mv[j]);
  for (int i = full; i < n; ++i) m = std::max(m, x[i]);
  vf acc{};
  for (int i = 0; i < full; i += kLanes) {
    const vf e = exp_nonpositive(load(x + i) - m);
    store(x + i, e);
    acc += e;
  }
  if (rem > 0) {
    const vf e = exp_nonpositive(load_tail(x + full, rem, m) - m);
    store_tail(x + full, e, rem);
    for (int j = 0; j < rem; ++j) acc[j] += e[j];
  }
  const vf inv = splat(1.0f / lanes_sum(acc));
  for (int i = 0; i < full; i += kLanes) store(x + i, load(x + i) * inv);
  for (int i = full; i < n; ++i) x[i] *= inv[0];
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void softmax_backward_row_float(
    const float* p, float* dp, int n) {
  const int full = n - n % kLanes;
  vf acc{};
  for (int i = 0; i < full; i += kLanes) acc += load(p + i) * load(dp + i);
  float dot = lanes_sum(acc);
  for (int i = full; i < n; ++i) dot += p[i] * dp[i];
  const vf d = splat(dot);
  for (int i = 0; i < full; i += kLanes) store(dp + i, load(p + i) * (load(dp + i) - d));
  for (int i = full; i < n; ++i) dp[i] = p[i] * (dp[i] - dot);
}

// --- double rows: plain loops (the float64 reference runs; speed matters little there) ----------
void softmax_row_double(double* x, int n) {
  const double m = *std::max_element(x, x + n);
  double s = 0;
  for (int i = 0; i < n; ++i) s += (x[i] = std::exp(x[i] - m));
  const double inv = 1.0 / s;
  for (int i = 0; i < n; ++i) x[i] *= inv;
}

void softmax_backward_row_double(const double* p, double* dp, int n) {
  double dot = 0;
  for (int i = 0; i < n; ++i) dot += p[i] * dp[i];
  for (int i = 0; i < n; ++i) dp[i] = p[i] * (dp[i] - dot);
}

template <typename T>
void forward_impl(int t, int d, T scale, const T* q, int ldq, const T* k, int ldk, const T* v, int ldv, T* p, T* y,
                  int ldy) {
  for (int r0 = 0; r0 < t; r0 += kRowBlock) {
    const int r1 = std::min(t, r0 + kRowBlock), rows = r1 - r0, keys = r1;  // queries [r0, r1) see keys [0, r1)
    T* pb = p + int64_t(r0) * t;
    blas_gemm(false, true, rows, keys, d, scale, q + int64_t(r0) * ldq, ldq, k, ldk, T(0), pb, t);
    for (int r = r0; r < r1; ++r) {
      T* row = p + int64_t(r) * t;
      softmax_row(row, r + 1);
      std::fill(row + r + 1, row + t, T(0));  // masked, and the keys this block never computed
    }
    blas_gemm(false, false, rows, d, keys, T(1), pb, t, v, ldv, T(0), y + int64_t(r0) * ldy, ldy);
  }
}

// dP = dy v^T, dv = P^T dy, dS = P (dP - rowsum(P dP)), dq = scale dS k, dk = scale dS^T q, a row
// block at a time. Blocks run last to first: the last sees every key, so it writes all of dk and
// dv, and the earlier ones (fewer keys) add to their first rows.
template <typename T>
void backward_impl(int t, int d, T scale, const T* q, int ldq, const T* k, int ldk, const T* v, int ldv, const T* p,
                   const T* dy, int lddy, T* dq, int lddq, T* dk, int lddk, T* dv, int lddv, T* scratch) {
  const int blocks = (t + kRowBlock - 1) / kRowBlock;
  for (int b = blocks - 1; b >= 0; --b) {
    const int r0 = b * kRowBlock, r1 = std::min(t, r0 + kRowBlock), rows = r1 - r0, keys = r1;
    const T beta = b == blocks - 1 ? T(0) : T(1);
    const T* pb = p + int64_t(r0) * t;
    const T* dyb = dy + int64_t(r0) * lddy;
    T* ds = scratch;  // [rows, keys]: dP, then dS in place
    blas_gemm(false, true, rows, keys, d, T(1), dyb, lddy, v, ldv, T(0), ds, keys);
    blas_gemm(true, false, keys, d, rows, T(1), pb, t, dyb, lddy, beta, dv, lddv);
    for (int r = r0; r < r1; ++r) {
      T* row = ds + int64_t(r - r0) * keys;
      softmax_backward_row(p + int64_t(r) * t, row, r + 1);
      std::fill(row + r + 1, row + keys, T(0));
    }
    blas_gemm(false, false, rows, d, keys, scale, ds, keys, k, ldk, T(0), dq + int64_t(r0) * lddq, lddq);
    blas_gemm(true, false, keys, d, rows, scale, ds, keys, q + int64_t(r0) * ldq, ldq, beta, dk, lddk);
  }
}

}  // namespace

void softmax_row(float* x, int n) { softmax_row_float(x, n); }
void softmax_row(double* x, int n) { softmax_row_double(x, n); }
void softmax_backward_row(const float* p, float* dp, int n) { softmax_backward_row_float(p, dp, n); }
void softmax_backward_row(const double* p, double* dp, int n) { softmax_backward_row_double(p, dp, n); }

void head_forward(int t, int d, float scale, const float* q, int ldq, const float* k, int ldk, const float* v,
                  int ldv, float* p, float* y, int ldy) {
  forward_impl(t, d, scale, q, ldq, k, ldk, v, ldv, p, y, ldy);
}
void head_forward(int t, int d, double scale, const double* q, int ldq, const double* k, int ldk, const double* v,
                  int ldv, double* p, double* y, int ldy) {
  forward_impl(t, d, scale, q, ldq, k, ldk, v, ldv, p, y, ldy);
}

void head_backward(int t, int d, float scale, const float* q, int ldq, const float* k, int ldk, const float* v,
                   int ldv, const float* p, const float* dy, int lddy, float* dq, int lddq, float* dk, int lddk,
                   float* dv, int lddv, float* scratch) {
  backward_impl(t, d, scale, q, ldq, k, ldk, v, ldv, p, dy, lddy, dq, lddq, dk, lddk, dv, lddv, scratch);
}
void head_backward(int t, int d, double scale, const double* q, int ldq, const double* k, int ldk, const double* v,
                   int ldv, const double* p, const double* dy, int lddy, double* dq, int lddq, double* dk,
                   int lddk, double* dv, int lddv, double* scratch) {
  backward_impl(t, d, scale, q, ldq, k, ldk, v, ldv, p, dy, lddy, dq, lddq, dk, lddk, dv, lddv, scratch);
}

}  // namespace dgpt::attention_kernels
