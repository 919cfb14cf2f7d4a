// The exact GELU on the CPU in float32 through model/gelu_kernels (one vectorized pass forward
// and one backward, split over the intra-op threads), with autograd. Everything else (float64,
// the tanh form, other devices, autocast) stays with ATen's gelu (base/torch_compat.h chooses).
#pragma once
#include <torch/torch.h>

namespace dgpt {

bool cpu_gelu_applies(const torch::Tensor& x, bool tanh);
torch::Tensor cpu_gelu(const torch::Tensor& x);

}  // namespace dgpt
