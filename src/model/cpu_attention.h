// Causal attention on the CPU for LibTorch without a fused kernel (1.13; 2.x has
// scaled_dot_product_attention): softmax(q k^T / sqrt(D)) v, forward and backward, head by head.
// The explicit form as ATen ops (matmul, scale, masked_fill, softmax, matmul) runs each of the
// model's tiny per-head matmuls ([T, D] x [D, T]) through ATen's batched loop, one mm call with
// its dispatch and views per head, and materialises q, k and v contiguously first; here each head
// is one job (model/attention_kernels.h) on the strided q, k, v where they lie: BLAS products with
// the scale folded in, only the keys a block of queries can see, the softmax and its backward row
// by row while the head is in cache. Issue 15 measured it (README "Performance notes").
#pragma once
#include <torch/torch.h>

namespace dgpt {

// Whether cpu_causal_attention can take these: CPU, float32 or float64, [N, H..., T, D] (one or more
// head dimensions) each with unit stride in D, as many keys as queries, and the process's BLAS found
// (sgemm_/dgemm_).
bool cpu_causal_attention_applies(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);
// q, k, v: [N, H, T, D] -> [N, H, T, D], a view of a contiguous [N, T, H, D] tensor (so its
// transpose(1, 2) is contiguous: heads side by side, as the output projection reads them). With
// several head dimensions, [N, G, H, T, D] -> a view of a contiguous [N, T, G, H, D] (the sharded
// blocks' [B, L, heads, T, hd]: every shard's heads side by side in each row).
torch::Tensor cpu_causal_attention(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v);

}  // namespace dgpt
