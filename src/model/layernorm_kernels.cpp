#include "model/layernorm_kernels.h"

#include "model/simd_math.h"

#include <algorithm>
#include <cmath>

namespace dgpt::layernorm_kernels {

namespace {

using namespace simd;

// Sum over a row of n: four independent vector accumulators (one chain of dependent adds would
// make the row's sum as slow as its add latency allows, about 4x slower at C = 128), then eight
// lanes at a time, then the tail one by one.
template <typename F, typename G>
__attribute__((always_inline)) inline float row_sum(int64_t n, const F& term_vec, const G& term_scalar) {
  vf a0{}, a1{}, a2{}, a3{};
  int64_t i = 0;
  for (; i + 4 * kLanes <= n; i += 4 * kLanes) {
    a0 += term_vec(i);
    a1 += term_vec(i + kLanes);
    a2 += term_vec(i + 2 * kLanes);
    a3 += term_vec(i + 3 * kLanes);
  }
  for (; i + kLanes <= n; i += kLanes) a0 += term_vec(i);
  float s = lanes_sum((a0 + a1) + (a2 + a3));
  for (; i < n; ++i) s += term_scalar(i);
  return s;
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void forward_impl(
    const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t rows, int64_t c,
    float eps) {
  const int64_t full = c - c % kLanes;
  // The statistics of a chunk of rows first, then their outputs: one row's mean, variance and rstd
  // form a chain of dependent steps, and rows side by side let the core overlap the chains.
  constexpr int64_t kChunk = 16;
  for (int64_t r0 = 0; r0 < rows; r0 += kChunk) {
    const int64_t r1 = std::min(rows, r0 + kChunk);
    for (int64_t r = r0; r < r1; ++r) {
      const float* xr = x + r * c;
      const float mu = row_sum(c, [&](int64_t i) { return load(xr + i); }, [&](int64_t i) { return xr[i]; }) /
                       float(c);
      const float var = row_sum(c, [&](int64_t i) { const vf d = load(xr + i) - mu; return d * d; },
                                [&](int64_t i) { const float d = xr[i] - mu; return d * d; }) /
                        float(c);
      mean[r] = mu;
      rstd[r] = 1.0f / std::sqrt(var + eps);
    }
    for (int64_t r = r0; r < r1; ++r) {
      const float *xr = x + r * c, mu = mean[r], rs = rstd[r];
      float* yr = y + r * c;
      for (int64_t i = 0; i < full; i += kLanes) {
        vf v = (load(xr + i) - mu) * rs * load(w + i);
        if (b != nullptr) v += load(b + i);
        store(yr + i, v);
      }
      for (int64_t i = full; i < c; ++i) yr[i] = (xr[i] - mu) * rs * w[i] + (b != nullptr ? b[i] : 0.0f);
    }
  }
}

__attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"))) void backward_impl(
    const float* dy, const float* x, const float* mean, const float* rstd, const float* w, float* dx, float* dw,
    float* db, int64_t rows, int64_t c) {
  const int64_t full = c - c % kLanes, pairs = c - c % (2 * kLanes);
  const float inv_c = 1.0f / float(c);
  // A chunk of rows at a time: first each row's two sums (a row pass), then dx, dw and db column
  // by column down the chunk, dw and db of a column held in registers over its rows (added in row
  // order, as one row after another would) instead of loaded and stored once per row.
  constexpr int64_t kChunk = 16;
  float ma[kChunk], mb[kChunk];
  for (int64_t r0 = 0; r0 < rows; r0 += kChunk) {
    const int64_t n = std::min(kChunk, rows - r0);
    for (int64_t k = 0; k < n; ++k) {
      const int64_t r = r0 + k;
      const float *gr = dy + r * c, *xr = x + r * c, mu = mean[r], rs = rstd[r];
      // a = sum g w, bsum = sum g w xhat: two accumulators each, two chains of dependent adds
      vf acc_a0{}, acc_a1{}, acc_b0{}, acc_b1{};
      auto step = [&](int64_t i, vf& acc_a, vf& acc_b) {
        const vf xhat = (load(xr + i) - mu) * rs, gw = load(gr + i) * load(w + i);
        acc_a += gw;
        acc_b += gw * xhat;
      };
      int64_t i = 0;
      for (; i < pairs; i += 2 * kLanes) {
        step(i, acc_a0, acc_b0);
        step(i + kLanes, acc_a1, acc_b1);
      }
      for (; i < full; i += kLanes) step(i, acc_a0, acc_b0);
      float a = lanes_sum(acc_a0 + acc_a1), bs = lanes_sum(acc_b0 + acc_b1);
      for (; i < c; ++i) {
        const float xhat = (xr[i] - mu) * rs, gw = gr[i] * w[i];
        a += gw;
        bs += gw * xhat;
      }
      ma[k] = a * inv_c;
      mb[k] = bs * inv_c;
    }
    // two columns at a time: two independent chains through the chunk's rows
    auto columns = [&](int64_t i, int64_t width) {
      vf wv[2], dwv[2], dbv[2];
      for (int64_t j = 0; j < width; ++j) {
        wv[j] = load(w + i + j * kLanes);
        dwv[j] = load(dw + i + j * kLanes);
        dbv[j] = db != nullptr ? load(db + i + j * kLanes) : vf{};
      }
      for (int64_t k = 0; k < n; ++k) {
        const int64_t r = r0 + k;
        const float rs = rstd[r], mu = mean[r];
        for (int64_t j = 0; j < width; ++j) {
          const int64_t at = r * c + i + j * kLanes;
          const vf g = load(dy + at), xhat = (load(x + at) - mu) * rs;
          dwv[j] += g * xhat;
          dbv[j] += g;
          store(dx + at, rs * (g * wv[j] - ma[k] - xhat * mb[k]));
        }
      }
      for (int64_t j = 0; j < width; ++j) {
        store(dw + i + j * kLanes, dwv[j]);
        if (db != nullptr) store(db + i + j * kLanes, dbv[j]);
      }
    };
    int64_t i = 0;
    for (; i < pairs; i += 2 * kLanes) columns(i, 2);
    for (; i < full; i += kLanes) columns(i, 1);
    for (int64_t i = full; i < c; ++i) {
      for (int64_t k = 0; k < n; ++k) {
        const int64_t r = r0 + k;
        const float rs = rstd[r], g = dy[r * c + i], xhat = (x[r * c + i] - mean[r]) * rs;
        dw[i] += g * xhat;
        if (db != nullptr) db[i] += g;
        dx[r * c + i] = rs * (g * w[i] - ma[k] - xhat * mb[k]);
      }
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
