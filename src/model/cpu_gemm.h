// The model's matmuls on the CPU, scheduled for few cores (issue 15; README "Performance notes").
// A small GEMM gains little from a second BLAS thread (OpenBLAS, [768,128] x [128,384]: 1.1-1.6x
// with two threads, at [768,128] x [128,128] two are slower than one), and ATen's bmm runs its batch
// one multi-threaded GEMM after another. Where the step has independent GEMMs at least as many as
// threads (the shards of a batched matmul, the two products of a Linear's backward), each thread
// here runs whole GEMMs, single-threaded. Everything else, and every other device, is ATen's.
#pragma once
#include <torch/torch.h>

#include "model/cpu_blas.h"

namespace dgpt {


// a [L, M, K] @ b [L, K, N] -> [L, M, N], with autograd (torch::matmul's values). On the CPU in
// float32/float64 with L >= the intra-op threads, one thread per product (forward and both
// backward products); otherwise torch::matmul. `interleaved`: the result's memory is [M, L, N]
// (strides N, L*N, 1), so that result.transpose(0, 1) is a contiguous [M, L*N] with item l's
// columns at [l*N, (l+1)*N) (where torch::matmul runs instead, it is contiguous [L, M, N]).
torch::Tensor batched_matmul(const torch::Tensor& a, const torch::Tensor& b, bool interleaved = false);
// x [..., K] @ w [N, K]^T (+ b [N]) -> [..., N], torch::linear's values; its backward computes dx
// and dw at once, one per thread, on the CPU with two intra-op threads (with more, each product
// gets them all, as ATen does).
torch::Tensor linear(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b = {});

}  // namespace dgpt
