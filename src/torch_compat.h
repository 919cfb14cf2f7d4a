// Every difference between LibTorch 1.13 (Debian) and 2.x (CUDA builds) lives here.
#pragma once
#include <torch/torch.h>
#include <torch/version.h>

namespace dgpt::compat {

// Causal scaled-dot-product attention over [batch, heads, T, head_dim].
// LibTorch >= 2.0 has a fused kernel; 1.13 gets the explicit softmax(QK^T/sqrt(d))V.
inline torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k,
                                      const torch::Tensor& v, double dropout_p, bool training) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, training ? dropout_p : 0.0,
                                          /*is_causal=*/true);
#else
  const int64_t T = q.size(-2);
  auto att = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(q.size(-1))));
  auto mask = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool).device(q.device()))
                  .triu(1);
  att = att.masked_fill(mask, -std::numeric_limits<double>::infinity());
  att = torch::softmax(att, -1);
  if (training && dropout_p > 0) att = torch::dropout(att, dropout_p, true);
  return torch::matmul(att, v);
#endif
}

}  // namespace dgpt::compat
