// Float math eight lanes at a time for the CPU kernels (model/attention_kernels.cpp,
// model/gelu_kernels.cpp), in GCC vector types: SSE2 pairs in a default build, one AVX register in
// the x86-64-v3 / v4 clones those files compile their loops into (target_clones, chosen at run
// time). Header-only and torch-free; include it only from such kernel files (-Wno-psabi there: the
// 32-byte vector arguments of these inline helpers are no ABI anyone links against).
#pragma once
#include <cstdint>
#include <cstring>

namespace dgpt::simd {

using vf = float __attribute__((vector_size(32)));
using vi = int32_t __attribute__((vector_size(32)));
constexpr int kLanes = 8;

// Unaligned loads and stores of one vector (V: vf, or vf16 below).
template <typename V>
inline V load_vector(const float* x) {
  V a;
  std::memcpy(&a, x, sizeof a);
  return a;
}
template <typename V>
inline void store(float* x, V a) {
  std::memcpy(x, &a, sizeof a);
}
inline vf load(const float* x) { return load_vector<vf>(x); }
inline vf splat(float s) { return vf{} + s; }

// The last rem (< 8) entries as one padded vector (pad: `fill`), and back.
inline vf load_tail(const float* x, int rem, float fill) {
  float tmp[kLanes];
  for (int j = 0; j < kLanes; ++j) tmp[j] = j < rem ? x[j] : fill;
  return load(tmp);
}
inline void store_tail(float* x, vf a, int rem) {
  for (int j = 0; j < rem; ++j) x[j] = a[j];
}
// Pairwise: halves added, then quarters, then the last pair (three dependent adds, not eight).
inline float lanes_sum(vf a) {
  using v4 = float __attribute__((vector_size(16)));
  const v4 h = __builtin_shufflevector(a, a, 0, 1, 2, 3) + __builtin_shufflevector(a, a, 4, 5, 6, 7);
  return (h[0] + h[2]) + (h[1] + h[3]);
}

// Sixteen lanes: two AVX-512 halves' worth, for long passes (half the instructions per element,
// so the out-of-order window covers more of a long polynomial's latency).
using vf16 = float __attribute__((vector_size(64)));

// The integer vector of V's width (what comparing two V gives).
template <typename V>
using int_vector = decltype(V{} < V{});

// exp(x) for x <= 0 (a softmax's x - max, a Gaussian's -z^2): Cephes' expf, x = n ln2 + r with
// |r| <= ln2 / 2, a degree-6 polynomial for e^r and 2^n from the exponent bits; within 1.4 ulp of
// exp. Below -87 (where e^x < 1.7e-38) it returns e^-87 rather than a denormal. V: vf or vf16.
template <typename V>
__attribute__((always_inline)) inline V exp_nonpositive(V x) {
  using I = int_vector<V>;
  const V floor_x = V{} - 87.0f;
  x = x < floor_x ? floor_x : x;
  const V shifter = V{} + 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer in the low bits
  const V t = x * 1.44269504088896341f + shifter;
  const V n = t - shifter;
  const I two_n = ((I)t - 0x4B400000 + 127) << 23;  // the exponent field of 2^n
  const V r = (x - n * 0.693359375f) - n * -2.12194440e-4f;  // ln2 in two parts: exact first product
  V p = V{} + 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * (V)two_n;
}

}  // namespace dgpt::simd
