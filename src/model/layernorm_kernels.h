// LayerNorm over the last dimension in float32 on the CPU, forward and backward, on raw row-major
// rows (model/cpu_layer_norm.cpp splits the rows among the threads). One pass per row each way
// while the row is in cache; a sharded run's N per-shard streams make LayerNorm N times the
// dense model's memory traffic (issue 15), where ATen's kernels ran 2-3x slower. No torch here.
#pragma once
#include <cstdint>

namespace dgpt::layernorm_kernels {

// y[r] = (x[r] - mean) * rstd * w + b (b may be null) for rows [0, rows) of width c; writes each
// row's mean and rstd = 1 / sqrt(var + eps), var the biased variance (as torch.layer_norm).
void forward(const float* x, const float* w, const float* b, float* y, float* mean, float* rstd, int64_t rows,
             int64_t c, float eps);
// dx of the rows above given dy, and the rows' contributions added into dw[c] and db[c] (db may be null).
void backward(const float* dy, const float* x, const float* mean, const float* rstd, const float* w, float* dx,
              float* dw, float* db, int64_t rows, int64_t c);

}  // namespace dgpt::layernorm_kernels
