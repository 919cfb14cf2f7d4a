// Every difference between LibTorch 1.13 (Debian) and 2.x (CUDA builds) lives here.
#pragma once
#include <ATen/autocast_mode.h>
#include <torch/torch.h>
#include <torch/version.h>

#ifdef DGPT_WITH_CUDA
#include <c10/cuda/CUDACachingAllocator.h>
#endif
#if TORCH_VERSION_MAJOR < 2
#include "model/cpu_attention.h"
#include "model/cpu_gelu.h"
#endif

#define DGPT_TORCH_AT_LEAST(major, minor) \
  (TORCH_VERSION_MAJOR > (major) || (TORCH_VERSION_MAJOR == (major) && TORCH_VERSION_MINOR >= (minor)))

// c10::Allocator::allocate is const through LibTorch 2.2 and not from 2.3 on (model/cpu_allocator.cpp).
#if DGPT_TORCH_AT_LEAST(2, 3)
#define DGPT_ALLOCATOR_ALLOCATE_CONST
#else
#define DGPT_ALLOCATOR_ALLOCATE_CONST const
#endif

namespace dgpt::compat {

#if TORCH_VERSION_MAJOR < 2
// LibTorch 1.13 has no fused attention: the explicit softmax(QK^T/sqrt(d))V of t queries at positions
// [P, P+t) over n = P+t keys, query i seeing keys 0..P+i (a single query sees every key: no mask).
inline torch::Tensor explicit_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                               double dropout_p, bool training) {
  const int64_t t = q.size(-2), n = k.size(-2), past = n - t;
  auto att = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(q.size(-1))));
  if (t > 1) {
    auto mask = torch::ones({t, n}, torch::TensorOptions().dtype(torch::kBool).device(q.device())).triu(past + 1);
    att = att.masked_fill(mask, -std::numeric_limits<double>::infinity());
  }
  att = torch::softmax(att, -1);
  if (training && dropout_p > 0) att = torch::dropout(att, dropout_p, true);
  return torch::matmul(att, v);
}
#endif

// Causal scaled-dot-product attention over [batch, heads, T, head_dim].
// LibTorch >= 2.0 has a fused kernel; 1.13 gets the explicit softmax(QK^T/sqrt(d))V.
inline torch::Tensor causal_attention(const torch::Tensor& q, const torch::Tensor& k,
                                      const torch::Tensor& v, double dropout_p, bool training) {
#if TORCH_VERSION_MAJOR >= 2
  return at::scaled_dot_product_attention(q, k, v, /*attn_mask=*/{}, training ? dropout_p : 0.0,
                                          /*is_causal=*/true);
#else
  // 1.13: head-by-head BLAS on the CPU (model/cpu_attention.h), else the explicit ATen ops.
  if (!(training && dropout_p > 0) && cpu_causal_attention_applies(q, k, v)) return cpu_causal_attention(q, k, v);
  return explicit_causal_attention(q, k, v, dropout_p, training);
#endif
}

// Causal attention over views with several head dimensions, [N, G, H, T, D] (a sharded block's
// [B, L, heads, T, hd], where c_attn wrote them), returned as a view of memory [N, T, G, H, D]; an
// undefined tensor where only causal_attention's [N*G, H, T, D] form runs: LibTorch >= 2 (its
// SDPA, as the dense block uses), other devices and dtypes (model/cpu_attention.h).
inline torch::Tensor grouped_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v) {
#if TORCH_VERSION_MAJOR < 2
  if (cpu_causal_attention_applies(q, k, v)) return cpu_causal_attention(q, k, v);
#else
  (void)q, (void)k, (void)v;
#endif
  return {};
}

// Attention of the t newest positions over every position so far (the KV cache's): q is
// [batch, heads, t, head_dim] for positions [P, P+t), k and v are [batch, heads, P+t, head_dim]
// for positions [0, P+t). Query i sees keys 0..P+i. P = 0 (a prefill) is causal_attention; a single
// query (a decode step) sees every key and needs no mask; a chunk of t > 1 after a prefix needs the
// causal mask shifted by P.
inline torch::Tensor attention_after_prefix(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                            double dropout_p, bool training) {
  const int64_t t = q.size(-2), n = k.size(-2), past = n - t;
  TORCH_CHECK(past >= 0, "attention_after_prefix: ", t, " queries but only ", n, " keys");
  if (past == 0) return causal_attention(q, k, v, dropout_p, training);
#if TORCH_VERSION_MAJOR >= 2
  // SDPA's is_causal aligns its mask to the top-left corner when t < n (in 2.x before 2.5 at
  // least), so the shifted mask is given explicitly (true: may attend).
  c10::optional<at::Tensor> allowed;  // none for a single query
  if (t > 1) allowed = torch::ones({t, n}, torch::TensorOptions().dtype(torch::kBool).device(q.device())).tril(past);
  return at::scaled_dot_product_attention(q, k, v, allowed, training ? dropout_p : 0.0, /*is_causal=*/false);
#else
  return explicit_causal_attention(q, k, v, dropout_p, training);
#endif
}

#if TORCH_VERSION_MAJOR < 2
// LibTorch 1.13's CPU gelu_backward returns zeros or garbage when the incoming gradient is not
// contiguous, as it is after a permute (tests/test_ops.cpp shows it). This GELU hands it a
// contiguous one.
struct GeluWithContiguousGrad : torch::autograd::Function<GeluWithContiguousGrad> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, bool tanh) {
    ctx->save_for_backward({x});
    ctx->saved_data["tanh"] = tanh;
    return at::gelu(x, tanh ? "tanh" : "none");
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto x = ctx->get_saved_variables()[0];
    const bool tanh = ctx->saved_data["tanh"].toBool();
    return {at::gelu_backward(grads[0].contiguous(), x, tanh ? "tanh" : "none"), torch::Tensor()};
  }
};
#endif

// The MLP's GELU: exact (erf, nanoGPT's nn.GELU) or, with `tanh`, the tanh approximation (GPT-2's gelu_new).
// float32 on the CPU, exact: one vectorized pass (model/cpu_gelu.h); otherwise ATen's.
inline torch::Tensor gelu(const torch::Tensor& x, bool tanh = false) {
  if (cpu_gelu_applies(x, tanh)) return cpu_gelu(x);
#if TORCH_VERSION_MAJOR < 2
  return GeluWithContiguousGrad::apply(x, tanh);
#else
  return torch::gelu(x, tanh ? "tanh" : "none");
#endif
}

// Autocast state of the calling thread for one device type (CPU or CUDA). 2.4 replaced the
// per-device functions with ones taking the device type.
inline bool autocast_enabled(c10::DeviceType type) {
#if DGPT_TORCH_AT_LEAST(2, 4)
  return at::autocast::is_autocast_enabled(type);
#else
  return type == c10::DeviceType::CUDA ? at::autocast::is_enabled() : at::autocast::is_cpu_enabled();
#endif
}

inline at::ScalarType autocast_dtype(c10::DeviceType type) {
#if DGPT_TORCH_AT_LEAST(2, 4)
  return at::autocast::get_autocast_dtype(type);
#else
  return type == c10::DeviceType::CUDA ? at::autocast::get_autocast_gpu_dtype() : at::autocast::get_autocast_cpu_dtype();
#endif
}

inline void set_autocast(c10::DeviceType type, bool enabled, at::ScalarType dtype) {
#if DGPT_TORCH_AT_LEAST(2, 4)
  at::autocast::set_autocast_enabled(type, enabled);
  at::autocast::set_autocast_dtype(type, dtype);
#else
  if (type == c10::DeviceType::CUDA) {
    at::autocast::set_enabled(enabled);
    at::autocast::set_autocast_gpu_dtype(dtype);
  } else {
    at::autocast::set_cpu_enabled(enabled);
    at::autocast::set_autocast_cpu_dtype(dtype);
  }
#endif
}

// Peak bytes held by tensors on a CUDA device since the last reset; -1 without CUDA.
inline int64_t cuda_peak_allocated_bytes(c10::DeviceIndex device) {
#ifdef DGPT_WITH_CUDA
  const auto stats = c10::cuda::CUDACachingAllocator::getDeviceStats(device);
  return stats.allocated_bytes[0].peak;  // [0]: the aggregate over pool kinds
#else
  (void)device;
  return -1;
#endif
}

inline void cuda_reset_peak_memory(c10::DeviceIndex device) {
#ifdef DGPT_WITH_CUDA
  c10::cuda::CUDACachingAllocator::resetPeakStats(device);
#else
  (void)device;
#endif
}

}  // namespace dgpt::compat
