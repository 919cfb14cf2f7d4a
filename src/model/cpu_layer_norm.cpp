#include "model/cpu_layer_norm.h"

#include "base/torch_compat.h"
#include "model/cpu_blas.h"
#include "model/layernorm_kernels.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

namespace dgpt {

namespace {

constexpr int64_t kGrainRows = 64;

// Forward: y and the rows' mean and rstd, saved for the backward.
torch::Tensor forward_rows(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                           const torch::Tensor& b, double eps) {
  RECORD_FUNCTION("dgpt::layer_norm", std::vector<c10::IValue>());  // for the profiler: no ATen op inside
  const auto xc = x.contiguous(), wc = w.contiguous(), bc = b.defined() ? b.contiguous() : b;
  const int64_t C = w.numel(), rows = xc.numel() / C;
  auto y = torch::empty_like(xc);
  auto mean = torch::empty({rows}, xc.options()), rstd = torch::empty({rows}, xc.options());
  const float *xp = xc.data_ptr<float>(), *wp = wc.data_ptr<float>(), *bp = bc.defined() ? bc.data_ptr<float>() : nullptr;
  float *yp = y.data_ptr<float>(), *mp = mean.data_ptr<float>(), *rp = rstd.data_ptr<float>();
  at::parallel_for(0, rows, kGrainRows, [&](int64_t r0, int64_t r1) {
    layernorm_kernels::forward(xp + r0 * C, wp, bp, yp + r0 * C, mp + r0, rp + r0, r1 - r0, C, float(eps));
  });
  ctx->save_for_backward({xc, wc, mean, rstd});
  return y;
}

// Backward: dx, and dw (db) as the sum of each job's partial sums, in job order.
std::tuple<torch::Tensor, torch::Tensor, torch::Tensor> backward_rows(torch::autograd::AutogradContext* ctx,
                                                                      torch::Tensor dy, bool with_bias) {
  const auto saved = ctx->get_saved_variables();
  const auto &x = saved[0], &w = saved[1], &mean = saved[2], &rstd = saved[3];
  dy = dy.contiguous();
  const int64_t C = w.numel(), rows = x.numel() / C;
  auto dx = torch::empty_like(x);
  // one partial row of dw (and db) per job; jobs fixed by the row count and thread count
  const int64_t threads = std::max<int64_t>(1, std::min<int64_t>(at::get_num_threads(), (rows + kGrainRows - 1) / kGrainRows));
  const int64_t per_job = (rows + threads - 1) / threads;
  auto dw_parts = torch::zeros({threads, C}, x.options());
  auto db_parts = with_bias ? torch::zeros({threads, C}, x.options()) : torch::Tensor();
  const float *gp = dy.data_ptr<float>(), *xp = x.data_ptr<float>(), *wp = w.data_ptr<float>(),
              *mp = mean.data_ptr<float>(), *rp = rstd.data_ptr<float>();
  float *dxp = dx.data_ptr<float>(), *dwp = dw_parts.data_ptr<float>(), *dbp = with_bias ? db_parts.data_ptr<float>() : nullptr;
  at::parallel_for(0, threads, 1, [&](int64_t j0, int64_t j1) {
    for (int64_t j = j0; j < j1; ++j) {
      const int64_t r0 = j * per_job, r1 = std::min(rows, r0 + per_job);
      if (r0 >= r1) continue;
      layernorm_kernels::backward(gp + r0 * C, xp + r0 * C, mp + r0, rp + r0, wp, dxp + r0 * C, dwp + j * C,
                                  dbp != nullptr ? dbp + j * C : nullptr, r1 - r0, C);
    }
  });
  return {dx, dw_parts.sum(0), with_bias ? db_parts.sum(0) : torch::Tensor()};
}

struct CpuLayerNorm : torch::autograd::Function<CpuLayerNorm> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               double eps) {
    return forward_rows(ctx, x, w, {}, eps);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto [dx, dw, db] = backward_rows(ctx, grads[0], false);
    return {dx, dw, torch::Tensor()};
  }
};

// (A second Function for the bias: LibTorch 1.13's take no undefined tensor as an input.)
struct CpuLayerNormWithBias : torch::autograd::Function<CpuLayerNormWithBias> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x, const torch::Tensor& w,
                               const torch::Tensor& b, double eps) {
    return forward_rows(ctx, x, w, b, eps);
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    auto [dx, dw, db] = backward_rows(ctx, grads[0], true);
    return {dx, dw, db, torch::Tensor()};
  }
};

}  // namespace

bool cpu_layer_norm_applies(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  auto cpu_float = [](const torch::Tensor& t) { return t.device().is_cpu() && t.scalar_type() == torch::kFloat; };
  return cpu_kernels_enabled() && cpu_float(x) && w.defined() && cpu_float(w) && w.dim() == 1 && x.dim() >= 1 &&
         x.size(-1) == w.size(0) && w.size(0) > 0 && (!b.defined() || (cpu_float(b) && b.sizes() == w.sizes())) &&
         !compat::autocast_enabled(torch::kCPU);
}

torch::Tensor cpu_layer_norm(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b, double eps) {
  return b.defined() ? CpuLayerNormWithBias::apply(x, w, b, eps) : CpuLayerNorm::apply(x, w, eps);
}

}  // namespace dgpt
