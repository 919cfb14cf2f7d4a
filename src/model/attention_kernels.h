// One attention head's causal attention on the CPU, forward and backward, on raw row-major
// pointers (model/cpu_attention.cpp runs every head of a batch through these, one head per job).
// A head's whole computation stays in one job: its scores, softmax and products touch only
// [T, T] + 3 [T, D] numbers, which stay in the core's cache, instead of three passes over all heads.
// Rows are taken in blocks of kRowBlock queries, and a block computes only the keys it can see
// (keys [0, r1) for queries [r0, r1)), so a long block skips most of the masked half.
// No torch here: a small file compiled without the precompiled header, its float softmax loops
// built for AVX2 and AVX-512 as well and chosen at run time.
#pragma once
#include <cstdint>

namespace dgpt::attention_kernels {

constexpr int kRowBlock = 64;

// Scratch a backward call needs: kRowBlock * t numbers.
inline int64_t backward_scratch(int t) { return int64_t(kRowBlock) * t; }

// y[t, d] = softmax(scale * q k^T, causal) v. q, k, v, y: [t, d] at row strides ldq, ldk, ldv, ldy;
// p: [t, t] contiguous, receives the probabilities (0 above the diagonal), which backward reads.
void head_forward(int t, int d, float scale, const float* q, int ldq, const float* k, int ldk, const float* v,
                  int ldv, float* p, float* y, int ldy);
void head_forward(int t, int d, double scale, const double* q, int ldq, const double* k, int ldk, const double* v,
                  int ldv, double* p, double* y, int ldy);

// dq, dk, dv [t, d] of the head above, given its p and the output's gradient dy [t, d].
void head_backward(int t, int d, float scale, const float* q, int ldq, const float* k, int ldk, const float* v,
                   int ldv, const float* p, const float* dy, int lddy, float* dq, int lddq, float* dk, int lddk,
                   float* dv, int lddv, float* scratch);
void head_backward(int t, int d, double scale, const double* q, int ldq, const double* k, int ldk, const double* v,
                   int ldv, const double* p, const double* dy, int lddy, double* dq, int lddq, double* dk,
                   int lddk, double* dv, int lddv, double* scratch);

// In place over x[0, n): softmax (max, exp(x - max), / sum), and its backward
// dx = p * (dp - sum(p * dp)) written over dp. Exposed for the tests.
void softmax_row(float* x, int n);
void softmax_row(double* x, int n);
void softmax_backward_row(const float* p, float* dp, int n);
void softmax_backward_row(const double* p, double* dp, int n);

}  // namespace dgpt::attention_kernels
