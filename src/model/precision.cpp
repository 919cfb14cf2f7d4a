#include "model/precision.h"

#include <cmath>
#include <ostream>

#include "base/human_format.h"
#include "base/torch_compat.h"

namespace dgpt {

int64_t Precision::activation_elem_bytes() const {
  return int64_t(c10::elementSize(autocast.value_or(param_dtype)));
}

int64_t Precision::param_elem_bytes() const { return int64_t(c10::elementSize(param_dtype)); }

namespace {

// The names of nanoGPT's dtype key.
std::string dtype_name(torch::Dtype d) {
  switch (d) {
    case torch::kFloat: return "float32";
    case torch::kDouble: return "float64";
    case torch::kBFloat16: return "bfloat16";
    case torch::kHalf: return "float16";
    default: return c10::toString(d);
  }
}

}  // namespace

std::string Precision::describe() const {
  const std::string params = dtype_name(param_dtype);
  if (!autocast) return params;
  return dtype_name(*autocast) + " autocast" + (loss_scaling() ? " with loss scaling" : "") + ", " + params +
         " parameters";
}

Precision resolve_precision(const std::string& dtype, torch::Device device, std::ostream& notices) {
  Precision p;
  p.device_type = device.type();
  if (dtype == "float64") {
    p.param_dtype = torch::kDouble;
  } else if (device.is_cuda() && (dtype == "bfloat16" || dtype == "float16")) {
    p.autocast = dtype == "bfloat16" ? torch::kBFloat16 : torch::kHalf;
  } else if (device.is_cuda() && dtype == "float32") {
    notices << "notice: dtype='float32' on CUDA: matmuls use TF32, as nanoGPT allows\n";
  }
  if (device.is_cuda()) {
    // nanoGPT's torch.backends.cuda.matmul.allow_tf32 = True and cudnn.allow_tf32 = True.
    at::globalContext().setAllowTF32CuBLAS(true);
    at::globalContext().setAllowTF32CuDNN(true);
  }
  return p;
}

AutocastScope::AutocastScope(const Precision& precision) {
  if (!precision.autocast) return;
  active_ = true;
  device_type_ = precision.device_type;
  was_enabled_ = compat::autocast_enabled(device_type_);
  previous_dtype_ = compat::autocast_dtype(device_type_);
  compat::set_autocast(device_type_, true, *precision.autocast);
  at::autocast::increment_nesting();
}

AutocastScope::~AutocastScope() {
  if (!active_) return;
  // As torch.autocast's __exit__: the cast weights cached for this pass are dropped with the
  // outermost scope, since the optimizer is about to change the float32 originals.
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  compat::set_autocast(device_type_, was_enabled_, previous_dtype_);
}

LossScaler::LossScaler(bool enabled, double init_scale, int64_t growth_interval)
    : enabled_(enabled), scale_(init_scale), growth_interval_(growth_interval) {}

void LossScaler::unscale(const std::vector<ParamSlot>& slots) const {
  if (!enabled_) return;
  torch::NoGradGuard no_grad;
  for (auto& s : slots)
    if (s.param.grad().defined()) s.param.mutable_grad().mul_(1.0 / scale_);
}

bool LossScaler::update(double grad_norm) {
  if (!enabled_) return true;
  if (!std::isfinite(grad_norm)) {
    scale_ *= 0.5;
    clean_steps_ = 0;
    skipped_ += 1;
    return false;
  }
  if (++clean_steps_ == growth_interval_) {
    scale_ *= 2.0;
    clean_steps_ = 0;
  }
  return true;
}

}  // namespace dgpt
