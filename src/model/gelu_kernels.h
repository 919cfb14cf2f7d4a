// The exact GELU, x Phi(x) with Phi the standard normal CDF (nanoGPT's nn.GELU), and its
// backward, in float32 on the CPU: one vectorized pass each (model/simd_math.h) where ATen's
// erf-based kernels ran 3-8x slower on the MLP's [B*T, 4C] here (issue 15). No torch here.
#pragma once
#include <cstdint>

namespace dgpt::gelu_kernels {

// y[i] = x[i] Phi(x[i]), i in [0, n).
void gelu_forward(const float* x, float* y, int64_t n);
// dx[i] = g[i] (Phi(x[i]) + x[i] phi(x[i])), phi the normal density. dx may be g.
void gelu_backward(const float* g, const float* x, float* dx, int64_t n);

}  // namespace dgpt::gelu_kernels
