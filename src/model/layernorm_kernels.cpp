#include "model/layernorm_kernels.h"

#include "model/simd_math.h"

#include <cmath>

namespace dgpt::layernorm_kernels {

namespace {

using namespace simd;

// Sum over a row of n, eight lanes at a time, the tail one by one.
template <typename F, typename G>
__attribute__((always_inline)) inline float row_sum(int64_t n, const F& term_vec, float tail_init,
                                                    const G& term_scalar) {
  const int64_t full = n - n % kLanes;
  vf acc{};
  for (int64_t i = 0; i < full; i += kLanes) acc += term_vec(i);
  float s = lanes_sum(acc) + tail_init;
  for (int64_t i = full; i < n; ++i) s += term_scalar(i);
  return s;
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void forward_impl(
    const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t rows, int64_t c,
    float eps) {
  const int64_t full = c - c % kLanes;
  for (int64_t r = 0; r < rows; ++r) {
    const float* xr = x + r * c;
    float* yr = y + r * c;
    const float mu = row_sum(c, [&](int64_t i) { return load(xr + i); }, 0.0f, [&](int64_t i) { return xr[i]; }) /
                     float(c);
    const float var = row_sum(c, [&](int64_t i) { const vf d = load(xr + i) - mu; return d * d; }, 0.0f,
                              [&](int64_t i) { const float d = xr[i] - mu; return d * d; }) /
                      float(c);
    const float rs = 1.0f / std::sqrt(var + eps);
    mean[r] = mu;
    rstd[r] = rs;
    for (int64_t i = 0; i < full; i += kLanes) {
      vf v = (load(xr + i) - mu) * rs * load(w + i);
      if (b != nullptr) v += load(b + i);
      store(yr + i, v);
    }
    for (int64_t i = full; i < c; ++i) yr[i] = (xr[i] - mu) * rs * w[i] + (b != nullptr ? b[i] : 0.0f);
  }
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void backward_impl(
    const float* dy, const float* x, const float* mean, const float* rstd, const float* w, float* dx, float* dw,
    float* db, int64_t rows, int64_t c) {
  const int64_t full = c - c % kLanes;
  const float inv_c = 1.0f / float(c);
  for (int64_t r = 0; r < rows; ++r) {
    const float *gr = dy + r * c, *xr = x + r * c;
    float* dxr = dx + r * c;
    const float mu = mean[r], rs = rstd[r];
    // a = sum g w, bsum = sum g w xhat; and dw += g xhat, db += g on the way
    vf acc_a{}, acc_b{};
    for (int64_t i = 0; i < full; i += kLanes) {
      const vf g = load(gr + i), xhat = (load(xr + i) - mu) * rs, gw = g * load(w + i);
      acc_a += gw;
      acc_b += gw * xhat;
      store(dw + i, load(dw + i) + g * xhat);
      if (db != nullptr) store(db + i, load(db + i) + g);
    }
    float a = lanes_sum(acc_a), bs = lanes_sum(acc_b);
    for (int64_t i = full; i < c; ++i) {
      const float g = gr[i], xhat = (xr[i] - mu) * rs, gw = g * w[i];
      a += gw;
      bs += gw * xhat;
      dw[i] += g * xhat;
      if (db != nullptr) db[i] += g;
    }
    const float ma = a * inv_c, mb = bs * inv_c;
    for (int64_t i = 0; i < full; i += kLanes) {
      const vf xhat = (load(xr + i) - mu) * rs;
      store(dxr + i, rs * (load(gr + i) * load(w + i) - ma - xhat * mb));
    }
    for (int64_t i = full; i < c; ++i) {
      const float xhat = (xr[i] - mu) * rs;
      dxr[i] = rs * (gr[i] * w[i] - ma - xhat * mb);
    }
  }
}

}  // namespace

void forward(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t rows,
             int64_t c, float eps) {
  forward_impl(x, w, b, y, mean, rstd, rows, c, eps);
}

void backward(const float* dy, const float* x, const float* mean, const float* rstd, const float* w, float* dx,
              float* dw, float* db, int64_t rows, int64_t c) {
  backward_impl(dy, x, mean, rstd, w, dx, dw, db, rows, c);
}

}  // namespace dgpt::layernorm_kernels
