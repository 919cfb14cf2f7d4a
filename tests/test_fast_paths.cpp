// The step's fast paths (issue 15) against LibTorch's own ops and optimizer: model/cpu_gemm's
// linear and batched_matmul against torch::linear and torch::matmul, model/cpu_attention's causal
// attention against the explicit softmax((q k^T)/sqrt(d), masked) v written here with ATen ops,
// the flat AdamW against torch::optim::AdamW with torch's clip_grad_norm_, and checkpoints of
// tensors that are views into the optimizer's flat buffers; model/cpu_allocator's block cache.
#include <catch2/catch.hpp>

#include <ATen/Parallel.h>

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <thread>
#include <vector>

#include "test_util.h"
#include "files/checkpoint.h"
#include "files/torch_pickle.h"
#include "model/cpu_allocator.h"
#include <c10/core/CPUAllocator.h>
#include "model/attention_kernels.h"
#include "model/cpu_attention.h"
#include "model/cpu_gemm.h"
#include "model/cpu_layer_norm.h"
#include "model/gelu_kernels.h"
#include "model/optim.h"

using namespace dgpt;
using namespace dgpt::test;

namespace {

// The intra-op threads for one scope: the fast paths choose by them (two: paired products).
struct Threads {
  int before = at::get_num_threads();
  explicit Threads(int n) { at::set_num_threads(n); }
  ~Threads() { at::set_num_threads(before); }
};

double max_rel(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>() /
         std::max(b.to(torch::kDouble).abs().max().item<double>(), 1e-300);
}

// Gradients of sum(out * G) w.r.t. `inputs` (fresh leaves each call).
std::vector<torch::Tensor> grads_of(const torch::Tensor& out, const torch::Tensor& G, std::vector<torch::Tensor> inputs) {
  return torch::autograd::grad({(out * G).sum()}, inputs);
}

}  // namespace

TEST_CASE("cpu_gemm linear equals torch::linear, values and gradients, with and without bias", "[fast][linear]") {
  // Tolerance: float64 1e-12 relative to the largest entry (the same products, BLAS either way);
  // float32 1e-5. Two threads run the paired backward, one thread and three run ATen's; 129 rows
  // (two uneven halves) run the forward's rows split between the two threads, 15 rows ATen's mm.
  REQUIRE(cpu_blas_available());
  for (int64_t T : {5, 43})
  for (int threads : {1, 2, 3}) {
    for (auto dtype : {torch::kDouble, torch::kFloat}) {
      for (bool bias : {false, true}) {
        CAPTURE(T, threads, dtype, bias);
        Threads scope(threads);
        const double tol = dtype == torch::kDouble ? 1e-12 : 1e-5;
        torch::manual_seed(7);
        const auto o = torch::TensorOptions().dtype(dtype);
        auto x = torch::randn({3, T, 16}, o).requires_grad_(true);
        auto w = torch::randn({24, 16}, o).requires_grad_(true);
        auto b = bias ? torch::randn({24}, o).requires_grad_(true) : torch::Tensor();
        auto G = torch::randn({3, T, 24}, o);
        auto ours = dgpt::linear(x, w, b), ref = torch::linear(x, w, b);
        CHECK(ours.sizes() == ref.sizes());
        CHECK(max_rel(ours, ref) < tol);
        std::vector<torch::Tensor> leaves{x, w};
        if (bias) leaves.push_back(b);
        auto g1 = grads_of(ours, G, leaves), g2 = grads_of(ref, G, leaves);
        for (size_t i = 0; i < g1.size(); ++i) CHECK(max_rel(g1[i], g2[i]) < tol);
      }
    }
  }
}

TEST_CASE("cpu_gemm batched_matmul equals torch::matmul for strided, transposed and contiguous operands, "
          "its result contiguous or interleaved",
          "[fast][bmm]") {
  // Tolerance: float64 1e-12 relative to the largest entry.
  REQUIRE(cpu_blas_available());
  Threads scope(2);
  const auto o = torch::TensorOptions().dtype(torch::kDouble);
  for (int64_t L : {1, 2, 5}) {
    for (int layout = 0; layout < 3; ++layout) {
      CAPTURE(L, layout);
      torch::manual_seed(11 + L);
      torch::Tensor a, b;
      if (layout == 0) {  // contiguous
        a = torch::randn({L, 7, 9}, o);
        b = torch::randn({L, 9, 4}, o);
      } else if (layout == 1) {  // b as a transposed view (the per-shard weights' w^T)
        a = torch::randn({L, 7, 9}, o);
        b = torch::randn({L, 4, 9}, o).transpose(1, 2);
      } else {  // a sliced out of a wider tensor (row stride > columns), b permuted
        a = torch::randn({L, 7, 20}, o).narrow(2, 3, 9);
        b = torch::randn({9, L, 4}, o).permute({1, 0, 2});
      }
      a = a.detach().requires_grad_(true);
      b = b.detach().requires_grad_(true);
      auto G = torch::randn({L, 7, 4}, o);
      auto ref = torch::matmul(a, b);
      auto g2 = grads_of(ref, G, {a, b});
      for (bool interleaved : {false, true}) {
        CAPTURE(interleaved);
        auto ours = batched_matmul(a, b, interleaved);
        CHECK(max_rel(ours, ref) < 1e-12);
        if (interleaved && L > 1) {  // memory [M, L, N]: the [M, L*N] view of shard l's columns at l*N
          CHECK(ours.strides() == torch::IntArrayRef({4, L * 4, 1}));
          CHECK(ours.transpose(0, 1).is_contiguous());
        }
        auto g1 = grads_of(ours, G, {a, b});
        CHECK(max_rel(g1[0], g2[0]) < 1e-12);
        CHECK(max_rel(g1[1], g2[1]) < 1e-12);
        // a gradient that arrives in the interleaved layout (as after the permute to [M, L*N])
        auto Gi = G.transpose(0, 1).contiguous().transpose(0, 1);
        auto g3 = grads_of(batched_matmul(a, b, interleaved), Gi, {a, b});
        CHECK(max_rel(g3[0], g2[0]) < 1e-12);
        CHECK(max_rel(g3[1], g2[1]) < 1e-12);
      }
    }
  }
}

TEST_CASE("cpu_attention: causal attention on strided q, k, v equals the explicit ATen formula", "[fast][attention]") {
  // Tolerance: float64 1e-12, float32 1e-5 relative to the largest entry. q, k, v are the head
  // views of one [B, T, 3C] tensor, as the dense block hands them over. T = 150 spans three of the
  // kernel's row blocks (64 queries each; the last one partial), T = 7 less than one.
  for (auto [B, T, H, D] : {std::array<int64_t, 4>{2, 7, 3, 4}, {1, 150, 2, 8}}) {
  const int64_t C = H * D;
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    for (int threads : {1, 2}) {
      CAPTURE(T, dtype, threads);
      Threads scope(threads);
      const double tol = dtype == torch::kDouble ? 1e-12 : 1e-5;
      torch::manual_seed(3);
      auto qkv = torch::randn({B, T, 3 * C}, torch::TensorOptions().dtype(dtype)).requires_grad_(true);
      auto heads = [&](const torch::Tensor& x, int i) {
        return x.narrow(2, i * C, C).view({B, T, H, D}).transpose(1, 2);  // [B, H, T, D], row stride 3C
      };
      auto q = heads(qkv, 0), k = heads(qkv, 1), v = heads(qkv, 2);
      REQUIRE(cpu_causal_attention_applies(q, k, v));
      auto ours = cpu_causal_attention(q, k, v);
      CHECK(ours.transpose(1, 2).is_contiguous());  // heads side by side, as c_proj reads them
      auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(double(D));
      auto mask = torch::ones({T, T}, torch::kBool).triu(1);
      auto ref = torch::matmul(torch::softmax(scores.masked_fill(mask, -std::numeric_limits<double>::infinity()), -1), v);
      CHECK(max_rel(ours, ref) < tol);
      auto G = torch::randn({B, H, T, D}, torch::TensorOptions().dtype(dtype));
      auto g1 = grads_of(ours, G, {qkv}), g2 = grads_of(ref, G, {qkv});
      CHECK(max_rel(g1[0], g2[0]) < tol);
      // A non-unit stride in D is not taken (the explicit path serves it).
      CHECK_FALSE(cpu_causal_attention_applies(q.transpose(2, 3), k.transpose(2, 3), v.transpose(2, 3)));
    }
  }
  }
}

TEST_CASE("cpu_attention: the sharded blocks' [B, L, heads, T, hd] views equal the explicit ATen formula",
          "[fast][attention]") {
  // The views a sharded block hands over: its c_attn output [L, B, T, 3w] (w = heads*hd per shard)
  // split into q, k, v and viewed [B, L, heads, T, hd], no copy. The output's memory is
  // [B, T, L, heads, hd] (every shard's heads side by side per position); values and the
  // gradient of the c_attn output within float64 1e-12 / float32 1e-5; threads 1 and 3.
  const int64_t L = 3, B = 2, T = 70, h = 2, hd = 4, w = h * hd;
  for (auto dtype : {torch::kDouble, torch::kFloat})
  for (int threads : {1, 3}) {
    CAPTURE(dtype, threads);
    Threads scope(threads);
    const double tol = dtype == torch::kDouble ? 1e-12 : 1e-5;
    torch::manual_seed(4);
    auto qkv = torch::randn({L, B, T, 3 * w}, torch::TensorOptions().dtype(dtype)).requires_grad_(true);
    auto heads5 = [&](int i) { return qkv.narrow(3, i * w, w).view({L, B, T, h, hd}).permute({1, 0, 3, 2, 4}); };
    auto q = heads5(0), k = heads5(1), v = heads5(2);
    REQUIRE(cpu_causal_attention_applies(q, k, v));
    auto ours = cpu_causal_attention(q, k, v);
    REQUIRE(ours.sizes() == q.sizes());
    CHECK(ours.permute({0, 3, 1, 2, 4}).is_contiguous());  // [B, T, L, heads, hd]
    auto scores = torch::matmul(q, k.transpose(-2, -1)) / std::sqrt(double(hd));
    auto mask = torch::ones({T, T}, torch::kBool).triu(1);
    auto ref = torch::matmul(torch::softmax(scores.masked_fill(mask, -std::numeric_limits<double>::infinity()), -1), v);
    CHECK(max_rel(ours, ref) < tol);
    auto G = torch::randn(q.sizes(), torch::TensorOptions().dtype(dtype));
    auto g1 = grads_of(ours, G, {qkv}), g2 = grads_of(ref, G, {qkv});
    CHECK(max_rel(g1[0], g2[0]) < tol);
  }
}

TEST_CASE("attention_kernels: the float softmax row against exp in double", "[fast][attention]") {
  // The float rows' exp is a polynomial (model/attention_kernels.cpp): each probability within
  // 4 float ulps (2^-23 relative) of the softmax computed in double from the same inputs, for
  // every row length 1..40 (full vectors and every tail), spreads from tiny to 100 (most entries
  // then underflow against the row's maximum), and the backward row likewise.
  std::mt19937 gen(7);
  for (double spread : {1e-3, 1.0, 10.0, 100.0}) {
    std::normal_distribution<double> dist(0.0, spread);
    for (int n = 1; n <= 40; ++n) {
      CAPTURE(spread, n);
      std::vector<float> x(static_cast<size_t>(n)), dp(static_cast<size_t>(n));
      std::vector<double> ref(static_cast<size_t>(n)), tol(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) x[size_t(i)] = float(dist(gen)), dp[size_t(i)] = float(dist(gen));
      const double m = *std::max_element(x.begin(), x.end());
      double sum = 0;
      for (int i = 0; i < n; ++i) {
        sum += (ref[size_t(i)] = std::exp(double(x[size_t(i)]) - m));
        // 4 ulps, plus what rounding x - m to float costs any float softmax: |x - m| 2^-24
        tol[size_t(i)] = 4 * 0x1p-23 + std::abs(double(x[size_t(i)]) - m) * 0x1p-24;
      }
      for (auto& r : ref) r /= sum;
      attention_kernels::softmax_row(x.data(), n);
      for (int i = 0; i < n; ++i) {
        if (ref[size_t(i)] < 1e-30)  // compared absolutely: e^-87 stands in for what underflows
          CHECK(x[size_t(i)] < 1e-30f);
        else
          CHECK(std::abs(double(x[size_t(i)]) - ref[size_t(i)]) / ref[size_t(i)] < tol[size_t(i)]);
      }
      // backward: dx = p (dp - sum p dp), from the kernel's own p, in double; each entry within
      // 8 ulps of the magnitudes it is computed from, p (|dp| + sum p |dp|) (the difference
      // cancels where p is one-hot, in any float implementation)
      double dot = 0, abs_dot = 0;
      for (int i = 0; i < n; ++i) {
        dot += double(x[size_t(i)]) * double(dp[size_t(i)]);
        abs_dot += double(x[size_t(i)]) * std::abs(double(dp[size_t(i)]));
      }
      std::vector<double> dref(static_cast<size_t>(n)), bound(static_cast<size_t>(n));
      for (int i = 0; i < n; ++i) {
        dref[size_t(i)] = double(x[size_t(i)]) * (double(dp[size_t(i)]) - dot);
        bound[size_t(i)] = 8 * 0x1p-23 * double(x[size_t(i)]) * (std::abs(double(dp[size_t(i)])) + abs_dot) + 1e-37;
      }
      attention_kernels::softmax_backward_row(x.data(), dp.data(), n);
      for (int i = 0; i < n; ++i) CHECK(std::abs(double(dp[size_t(i)]) - dref[size_t(i)]) <= bound[size_t(i)]);
    }
  }
}

TEST_CASE("gelu_kernels: the float GELU and its backward against erf in double", "[fast][gelu]") {
  // Every x on a grid over [-16, 16] (both fits of the normal CDF, their seam at |x| = 0.75 sqrt 2,
  // the negative tail where x Phi(x) is tiny), each length 0..20 (every tail), and the specials.
  // Each result within 1e-6 + x^2 2^-23 of the double value, relative to itself (forward) or to
  // the magnitude of its terms |g| (Phi + |x| phi) (backward): the second term is what rounding
  // x / sqrt 2 to float costs e^(-x^2 / 2) in the negative tail (4.8e-6 at x = -9), where ATen's
  // float GELU, 1 + erf(x / sqrt 2) cancelling, is off by far more (checked below as well).
  std::vector<float> x;
  for (double v = -16.0; v <= 16.0; v += 1.0 / 512) x.push_back(float(v));
  for (float v : {0.0f, -0.0f, 1e-30f, -1e-30f, 1.0606601f, -1.0606601f}) x.push_back(v);
  const int64_t n = int64_t(x.size());
  std::vector<float> y(x.size()), g(x.size()), dx(x.size());
  std::mt19937 gen(11);
  std::normal_distribution<float> dist;
  for (auto& v : g) v = dist(gen);
  gelu_kernels::gelu_forward(x.data(), y.data(), n);
  gelu_kernels::gelu_backward(g.data(), x.data(), dx.data(), n);
  double worst_fwd = 0, worst_bwd = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double xv = x[size_t(i)], cdf = 0.5 * std::erfc(-xv / std::sqrt(2.0));
    const double pdf = std::exp(-0.5 * xv * xv) / std::sqrt(2.0 * M_PI);
    const double want = xv * cdf, dwant = double(g[size_t(i)]) * (cdf + xv * pdf);
    const double scale = std::abs(double(g[size_t(i)])) * (cdf + std::abs(xv) * pdf);
    const double tol = 1e-6 + xv * xv * 0x1p-23;
    if (std::abs(want) > 1e-36)
      worst_fwd = std::max(worst_fwd, std::abs(double(y[size_t(i)]) - want) / std::abs(want) / tol);
    else
      CHECK(std::abs(double(y[size_t(i)])) < 1e-35);
    if (scale > 1e-36) worst_bwd = std::max(worst_bwd, std::abs(double(dx[size_t(i)]) - dwant) / scale / tol);
  }
  CHECK(worst_fwd < 1.0);  // in units of each x's tolerance
  CHECK(worst_bwd < 1.0);
  // every tail length, against the full-vector results of the same inputs
  for (int len = 0; len <= 20; ++len) {
    std::vector<float> part(size_t(len) + 1, 42.0f);
    gelu_kernels::gelu_forward(x.data() + 1000, part.data(), len);
    for (int i = 0; i < len; ++i) CHECK(part[size_t(i)] == y[size_t(1000 + i)]);
    CHECK(part[size_t(len)] == 42.0f);  // nothing written past n
  }
  // infinities and NaN as ATen's formula gives them
  float special[3] = {INFINITY, 3.0f, NAN}, out[3];
  gelu_kernels::gelu_forward(special, out, 3);
  CHECK(out[0] == INFINITY);
  CHECK(std::isnan(out[2]));
  // the negative tail, x in [-9, -5]: ours within 1e-5 relative, ATen's float GELU at least 100x worse
  const auto xs = torch::linspace(-9, -5, 401), aten = torch::gelu(xs).to(torch::kDouble);
  const auto xd = xs.to(torch::kDouble), truth = xd * 0.5 * torch::erfc(-xd / std::sqrt(2.0));
  std::vector<float> ours(401);
  gelu_kernels::gelu_forward(xs.data_ptr<float>(), ours.data(), 401);
  const auto ours_t = torch::from_blob(ours.data(), {401}).to(torch::kDouble);
  const double ours_err = ((ours_t - truth).abs() / truth.abs()).max().item<double>();
  const double aten_err = ((aten - truth).abs() / truth.abs()).max().item<double>();
  CAPTURE(ours_err, aten_err);
  CHECK(ours_err < 1e-5);
  CHECK(aten_err > 100 * ours_err);
}

TEST_CASE("cpu_layer_norm equals torch::layer_norm, values and gradients, with and without bias", "[fast][layernorm]") {
  // Tolerance: 1e-5 relative to the largest entry, float32 (ATen's and dgpt's sums in different
  // orders). 300 rows split unevenly among the threads; widths 128 (whole vectors) and 37 (a tail).
  for (int64_t C : {128, 37})
  for (int threads : {1, 2, 3})
  for (bool bias : {false, true}) {
    CAPTURE(C, threads, bias);
    Threads scope(threads);
    torch::manual_seed(5);
    auto x = (torch::randn({3, 100, C}) * 3 + 1).requires_grad_(true);
    auto w = (torch::randn({C}) + 1).requires_grad_(true);
    auto b = bias ? torch::randn({C}).requires_grad_(true) : torch::Tensor();
    auto G = torch::randn({3, 100, C});
    REQUIRE(cpu_layer_norm_applies(x, w, b));
    auto ours = cpu_layer_norm(x, w, b, 1e-5), ref = torch::layer_norm(x, {C}, w, b, 1e-5);
    CHECK(max_rel(ours, ref) < 1e-5);
    std::vector<torch::Tensor> leaves{x, w};
    if (bias) leaves.push_back(b);
    auto g1 = grads_of(ours, G, leaves), g2 = grads_of(ref, G, leaves);
    for (size_t i = 0; i < g1.size(); ++i) CHECK(max_rel(g1[i], g2[i]) < 1e-5);
    // a non-contiguous input (a permuted view) gives the same
    auto xt = x.detach().transpose(0, 1).contiguous().transpose(0, 1);
    CHECK(max_rel(cpu_layer_norm(xt, w, b, 1e-5), ref) < 1e-5);
  }
  // float64 and a mismatched weight are not taken
  CHECK_FALSE(cpu_layer_norm_applies(torch::randn({4, 8}, torch::kDouble), torch::ones({8}, torch::kDouble), {}));
  CHECK_FALSE(cpu_layer_norm_applies(torch::randn({4, 8}), torch::ones({7}), {}));
}

namespace {

// Three "layers" of parameters: matrices (decayed), vectors (not), one sharded-layout matrix.
struct Params {
  std::vector<torch::Tensor> tensors;
  std::vector<ParamSlot> slots;
};

Params make_params(uint64_t seed) {
  torch::manual_seed(int64_t(seed));
  const auto o = torch::TensorOptions().dtype(torch::kDouble);
  Params p;
  p.tensors = {torch::randn({6, 4}, o), torch::randn({4}, o), torch::randn({2, 3, 4}, o), torch::randn({5}, o),
               torch::randn({4, 6}, o)};
  const std::vector<TensorLayout> layouts{Layout::Replicated, Layout::Replicated, Layout::ColumnParallel,
                                          Layout::Replicated, Layout::Replicated};
  for (size_t i = 0; i < p.tensors.size(); ++i) {
    p.tensors[i].requires_grad_(true);
    p.slots.push_back({"t" + std::to_string(i), p.tensors[i], layouts[i]});
  }
  return p;
}

torch::Tensor loss_of(const std::vector<torch::Tensor>& t, int64_t step) {
  // a smooth function of every parameter, different each step
  auto s = torch::zeros({}, torch::kDouble);
  for (size_t i = 0; i < t.size(); ++i) s = s + (t[i] * (double(i) + 1.0 + 0.1 * double(step))).sin().sum() * 3.0;
  return s;
}

}  // namespace

TEST_CASE("flat AdamW equals torch::optim::AdamW with torch's clip_grad_norm_, over several steps",
          "[fast][adamw]") {
  // Tolerance: float64 1e-12 relative per tensor. The reference is LibTorch's own AdamW (nanoGPT's
  // groups: decay on tensors of dense dimension >= 2), clipping by torch::nn::utils::clip_grad_norm_
  // (whose norm is over the dense model: with a SimulatedGroup every shard is here, so the plain
  // norm over all tensors). The norms fall from about 68 to 62 over the six steps: max norm 66
  // clips some steps and not others.
  const double lr = 0.05, wd = 0.1, max_norm = 66.0;
  auto ours = make_params(5), theirs = make_params(5);
  SimulatedGroup group(2);
  AdamW opt(ours.slots, wd, 0.9, 0.95);
  std::vector<torch::Tensor> decay, no_decay;
  for (auto& s : theirs.slots) (s.dense_dim() >= 2 ? decay : no_decay).push_back(s.param);
  torch::optim::AdamW ref({torch::optim::OptimizerParamGroup(decay, std::make_unique<torch::optim::AdamWOptions>(
                                                                         torch::optim::AdamWOptions(lr).betas({0.9, 0.95}).weight_decay(wd))),
                           torch::optim::OptimizerParamGroup(no_decay, std::make_unique<torch::optim::AdamWOptions>(
                                                                            torch::optim::AdamWOptions(lr).betas({0.9, 0.95}).weight_decay(0.0)))});
  int clipped = 0;
  for (int64_t step = 0; step < 6; ++step) {
    CAPTURE(step);
    loss_of(ours.tensors, step).backward();
    loss_of(theirs.tensors, step).backward();
    REQUIRE(opt.pack_grads());
    const double norm = opt.clip_grad_norm(group, max_norm).item<double>();
    const double ref_norm = torch::nn::utils::clip_grad_norm_(theirs.tensors, max_norm);
    CHECK(std::abs(norm - ref_norm) <= 1e-12 * ref_norm);
    clipped += ref_norm > max_norm;
    opt.step(lr);
    ref.step();
    opt.zero_grad();
    ref.zero_grad();
    for (size_t i = 0; i < ours.tensors.size(); ++i) CHECK(max_rel(ours.tensors[i], theirs.tensors[i]) < 1e-12);
  }
  CHECK(clipped >= 1);
  CHECK(clipped < 6);
  // (The moments are not compared directly: LibTorch keys its state differently in 1.13 and 2.x;
  // six steps of parameters equal to 1e-12 leave no room for different moments.)
  for (auto& [name, m] : opt.dense_state(group)) CHECK(m.step == 6);
}

TEST_CASE("flat AdamW: a parameter without a gradient is skipped as PyTorch skips it; a moved parameter is re-flattened",
          "[fast][adamw]") {
  const double lr = 0.05;
  auto ours = make_params(9);
  AdamW opt(ours.slots, 0.1, 0.9, 0.95);
  // step 1: every tensor but t1 gets a gradient -> the per-tensor path; t1 stays as it was
  const auto t1_before = ours.tensors[1].detach().clone();
  auto partial = [](const std::vector<torch::Tensor>& t) {
    return (t[0].sin().sum() + t[2].cos().sum() + t[3].sum() * 2 + (t[4] * t[4]).sum());
  };
  partial(ours.tensors).backward();
  CHECK_FALSE(opt.pack_grads());
  opt.step(lr);
  opt.zero_grad();
  CHECK(torch::equal(ours.tensors[1].detach(), t1_before));
  // step 2: a parameter's storage is replaced (as Module::to would); the next pack re-flattens and
  // the update still lands in the parameter
  {
    torch::NoGradGuard no_grad;
    ours.tensors[4].set_data(ours.tensors[4].detach().clone());
  }
  const auto t4_before = ours.tensors[4].detach().clone();
  loss_of(ours.tensors, 1).backward();
  CHECK(opt.pack_grads());
  opt.step(lr);
  CHECK_FALSE(torch::equal(ours.tensors[4].detach(), t4_before));
}

TEST_CASE("a checkpoint holds only the elements of tensors that are views into larger storages", "[fast][checkpoint]") {
  // The optimizer's flat buffers make every parameter (and, at tp_size 1, some dense-layout
  // tensors) a view into one storage; torch.save writes whole storages, so dgpt copies them out.
  auto big = torch::arange(1000, torch::kFloat);
  Checkpoint ck;
  ck.model["a"] = big.narrow(0, 10, 6).view({2, 3});
  ck.model["b"] = big.narrow(0, 500, 4);
  ck.model_args.vocab_size = 65;
  char dir[] = "/tmp/dgpt_test_fast_XXXXXX";
  REQUIRE(::mkdtemp(dir) != nullptr);
  const std::string path = std::string(dir) + "/ckpt.pt";
  save_checkpoint(ck, path);
  const auto root = read_torch_save(path).toGenericDict();
  const auto model = root.at("model").toGenericDict();
  const auto a = model.at("a").toTensor(), b = model.at("b").toTensor();
  CHECK(torch::equal(a, big.narrow(0, 10, 6).view({2, 3})));
  CHECK(torch::equal(b, big.narrow(0, 500, 4)));
  CHECK(a.storage().nbytes() == 6 * sizeof(float));
  CHECK(b.storage().nbytes() == 4 * sizeof(float));
  std::remove(path.c_str());
  ::rmdir(dir);
}

TEST_CASE("the caching CPU allocator hands a freed large block out again, aligned, and zeros what it must",
          "[fast][allocator]") {
  install_caching_cpu_allocator();
  install_caching_cpu_allocator();  // once per process, whoever calls
  const int64_t n = int64_t(kMinCachedBytes) / 4 * 3 + 5;  // floats: a large block, not a whole page
  void* first = nullptr;
  {
    auto t = torch::full({n}, 7.0f);
    first = t.data_ptr();
    CHECK(reinterpret_cast<uintptr_t>(first) % 64 == 0);
  }
  const auto before = cpu_allocator_stats();
  CHECK(before.cached_bytes >= int64_t(n) * 4);
  auto z = torch::zeros({n});  // the same size again: the cached block, written over with zeros
  CHECK(z.data_ptr() == first);
  const auto after = cpu_allocator_stats();
  CHECK(after.hits == before.hits + 1);
  CHECK(after.cached_bytes == before.cached_bytes - (int64_t(n) * 4 + 4095) / 4096 * 4096);
  CHECK(z.abs().max().item<float>() == 0.0f);
  auto y = torch::ones({n}) * 3;  // a second live block of that size: another allocation
  CHECK(y.data_ptr() != z.data_ptr());
  CHECK(y.sum().item<double>() == Approx(3.0 * double(n)).epsilon(1e-6));

  // small blocks are LibTorch's own, freed through the same deleter
  auto small = torch::arange(100, torch::kFloat);
  CHECK(reinterpret_cast<uintptr_t>(small.data_ptr()) % 64 == 0);
  CHECK(small.sum().item<double>() == 4950.0);

  // raw_allocate / raw_deallocate, as some LibTorch code calls them, for both kinds of block
  auto* alloc = c10::GetCPUAllocator();
  for (size_t bytes : {size_t(64), kMinCachedBytes * 2}) {
    void* p = alloc->raw_allocate(bytes);
    REQUIRE(p != nullptr);
    std::memset(p, 1, bytes);
    alloc->raw_deallocate(p);
  }
}

TEST_CASE("the caching CPU allocator under allocations and frees from several threads", "[fast][allocator]") {
  install_caching_cpu_allocator();
  std::vector<std::thread> threads;
  std::vector<int> failures(4, 0);
  for (int w = 0; w < 4; ++w) {
    threads.emplace_back([w, &failures] {
      for (int i = 0; i < 200; ++i) {
        const int64_t n = int64_t(kMinCachedBytes) / 4 * (1 + (i + w) % 3);  // three sizes, shared by all
        auto t = torch::full({n}, float(w + 1));
        auto u = torch::full({n / 2 + 17}, float(i));
        if (t.sum().item<double>() != double(w + 1) * double(n) || u[0].item<float>() != float(i)) ++failures[w];
      }
    });
  }
  for (auto& t : threads) t.join();
  for (int w = 0; w < 4; ++w) CHECK(failures[w] == 0);
  const auto s = cpu_allocator_stats();
  CHECK(s.hits > s.misses);  // the sizes recur: most allocations come from the cache
}
