// How a run computes: nanoGPT's `dtype` key turned into parameter dtype, autocast and loss scaling.
#pragma once
#include <torch/torch.h>

#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "model/layout.h"

namespace dgpt {

// float32 / float64: parameters and every op in that dtype. bfloat16 / float16 on CUDA: float32
// parameters and optimizer, matmuls and attention under autocast (nanoGPT's torch.amp.autocast);
// f and g then communicate in the autocast dtype, as Megatron's bf16 training does; float16 adds
// dynamic loss scaling. On the CPU nanoGPT computes in float32 whatever dtype says, and so do we.
struct Precision {
  torch::DeviceType device_type = torch::kCPU;
  torch::Dtype param_dtype = torch::kFloat;
  std::optional<torch::Dtype> autocast;  // the lower-precision dtype of matmuls, when set

  bool loss_scaling() const { return autocast == torch::kHalf; }
  // Bytes per element of the f/g all-reduces, and of the gradients.
  int64_t activation_elem_bytes() const;
  int64_t param_elem_bytes() const;
  std::string describe() const;  // "float32", "bfloat16 autocast, float32 parameters", ...
};

// What `dtype` means on `device` (which need not be present: `dgpt comms` asks without one).
// A non-default device-specific choice is explained on `notices`.
Precision resolve_precision(const std::string& dtype, torch::Device device, std::ostream& notices);

// Autocast on for the calling thread while it lives, when `precision` asks for it; the previous
// state after. Forward passes run inside one (backward follows the dtypes they recorded).
class AutocastScope {
 public:
  explicit AutocastScope(const Precision& precision);
  ~AutocastScope();
  AutocastScope(const AutocastScope&) = delete;
  AutocastScope& operator=(const AutocastScope&) = delete;

 private:
  bool active_ = false;
  torch::DeviceType device_type_ = torch::kCPU;
  bool was_enabled_ = false;
  at::ScalarType previous_dtype_ = at::kFloat;
};

// Dynamic loss scaling for float16, with torch.amp.GradScaler's defaults: losses are multiplied
// by scale() before backward; a step whose unscaled gradients hold an inf or NaN is skipped and
// halves the scale; 2000 clean steps in a row double it. Disabled, it scales by 1 and skips nothing.
class LossScaler {
 public:
  explicit LossScaler(bool enabled, double init_scale = 65536.0, int64_t growth_interval = 2000);
  bool enabled() const { return enabled_; }
  double scale() const { return enabled_ ? scale_ : 1.0; }
  // Divides every gradient by scale(), on the device.
  void unscale(const std::vector<ParamSlot>& slots) const;
  // After a step's global gradient norm is known (the same on every rank): whether to apply the
  // step; adjusts the scale.
  bool update(double grad_norm);
  int64_t skipped_steps() const { return skipped_; }

 private:
  bool enabled_;
  double scale_;
  int64_t growth_interval_, clean_steps_ = 0, skipped_ = 0;
};

}  // namespace dgpt
