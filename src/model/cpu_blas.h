// The process's BLAS, row-major, for the CPU kernels that call it directly (model/cpu_gemm.cpp,
// model/attention_kernels.cpp). No torch here, so kernel files can include it without the heavy headers.
#pragma once

namespace dgpt {

// Whether dgpt's own CPU kernels run where they apply (the per-thread GEMMs of model/cpu_gemm.h,
// the attention of model/cpu_attention.h, the GELU of model/cpu_gelu.h), else ATen's ops
// everywhere: for A/B measurements (bench/train_step's `--aten_row`) and for telling a kernel's
// effect from the model's. On unless the environment sets DGPT_CPU_KERNELS=0.
bool cpu_kernels_enabled();
void set_cpu_kernels_enabled(bool on);

// Whether the process's Fortran BLAS (sgemm_/dgemm_, which LibTorch's CPU library links) was found.
bool cpu_blas_available();
// Row-major C[m, n] = alpha * op(A)[m, k] * op(B)[k, n] + beta * C, each with its row stride;
// op(A) = A^T when ta (A then lies as [k, m]). Single-threaded inside a parallel region.
void blas_gemm(bool ta, bool tb, int m, int n, int k, float alpha, const float* a, int lda, const float* b, int ldb,
               float beta, float* c, int ldc);
void blas_gemm(bool ta, bool tb, int m, int n, int k, double alpha, const double* a, int lda, const double* b,
               int ldb, double beta, double* c, int ldc);

}  // namespace dgpt
