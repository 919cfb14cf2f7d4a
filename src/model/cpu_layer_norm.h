// LayerNorm over the last dimension in float32 on the CPU through model/layernorm_kernels (rows
// split among the intra-op threads; the weight's and bias's gradients summed per thread, then
// over threads), with autograd. Everything else stays with torch::layer_norm (dense_block.h's
// layer_norm chooses).
#pragma once
#include <torch/torch.h>

namespace dgpt {

bool cpu_layer_norm_applies(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);
// b may be undefined.
torch::Tensor cpu_layer_norm(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, double eps);

}  // namespace dgpt
