#include "model/cpu_gelu.h"

#include "base/torch_compat.h"
#include "model/cpu_blas.h"
#include "model/gelu_kernels.h"

#include <ATen/Parallel.h>
#include <ATen/record_function.h>

namespace dgpt {

namespace {

constexpr int64_t kGrain = int64_t(1) << 14;  // elements per job at least: a pass this small is not worth a thread

struct CpuGelu : torch::autograd::Function<CpuGelu> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& x) {
    RECORD_FUNCTION("dgpt::gelu", std::vector<c10::IValue>());  // for the profiler: no ATen op inside
    const auto xc = x.contiguous();
    auto y = torch::empty_like(xc);
    const float* in = xc.data_ptr<float>();
    float* out = y.data_ptr<float>();
    at::parallel_for(0, xc.numel(), kGrain, [&](int64_t begin, int64_t end) {
      gelu_kernels::gelu_forward(in + begin, out + begin, end - begin);
    });
    ctx->save_for_backward({xc});
    return y;
  }
  static torch::autograd::tensor_list backward(torch::autograd::AutogradContext* ctx,
                                               torch::autograd::tensor_list grads) {
    const auto x = ctx->get_saved_variables()[0];
    const auto g = grads[0].contiguous();  // a permuted gradient arrives from the sharded MLPs
    auto dx = torch::empty_like(x);
    const float *gp = g.data_ptr<float>(), *xp = x.data_ptr<float>();
    float* out = dx.data_ptr<float>();
    at::parallel_for(0, x.numel(), kGrain, [&](int64_t begin, int64_t end) {
      gelu_kernels::gelu_backward(gp + begin, xp + begin, out + begin, end - begin);
    });
    return {dx};
  }
};

}  // namespace

bool cpu_gelu_applies(const torch::Tensor& x, bool tanh) {
  return cpu_kernels_enabled() && !tanh && x.device().is_cpu() && x.scalar_type() == torch::kFloat && !x.is_sparse() &&
         !compat::autocast_enabled(torch::kCPU);
}

torch::Tensor cpu_gelu(const torch::Tensor& x) { return CpuGelu::apply(x); }

}  // namespace dgpt
