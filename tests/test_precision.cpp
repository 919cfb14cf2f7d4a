// Mixed precision: autocast scopes, what f and g send under autocast, the plan's bytes, and float16
// loss scaling. nanoGPT (and dgpt's CLI) autocast on CUDA only; these tests drive the same code
// with the CPU's bfloat16 autocast, so they run everywhere (with DGPT_TEST_DEVICE=cuda, the
// models run under CUDA's bfloat16 autocast instead: tests/test_util.h).
#include <catch2/catch.hpp>

#include "model/comm_plan.h"
#include "model/optim.h"
#include "model/precision.h"
#include "test_util.h"
#include "base/torch_compat.h"
#include "run/train.h"

using namespace dgpt;
using namespace dgpt::test;

namespace {

// bfloat16 autocast on the device the models are on (the CPU unless DGPT_TEST_DEVICE says otherwise).
Precision device_bfloat16() {
  Precision p;
  p.device_type = test_device().type();
  p.param_dtype = torch::kFloat;
  p.autocast = torch::kBFloat16;
  return p;
}

torch::Tensor loss_under(const Precision& precision, GPT& model, const test::Batch& b) {
  torch::Tensor loss;
  {
    AutocastScope scope(precision);
    loss = model->forward(b.idx, b.targets).loss;
  }
  loss.backward();
  model->sync_replicated_grads();
  return loss.detach();
}

}  // namespace

TEST_CASE("resolve_precision follows nanoGPT: autocast on CUDA only", "[precision]") {
  std::ostringstream notices;
  auto cpu = resolve_precision("bfloat16", torch::Device("cpu"), notices);
  CHECK_FALSE(cpu.autocast.has_value());
  CHECK(cpu.param_dtype == torch::kFloat);
  CHECK(cpu.activation_elem_bytes() == 4);
  auto cuda = resolve_precision("bfloat16", torch::Device("cuda"), notices);  // need not be present
  REQUIRE(cuda.autocast.has_value());
  CHECK(*cuda.autocast == torch::kBFloat16);
  CHECK(cuda.param_dtype == torch::kFloat);
  CHECK(cuda.activation_elem_bytes() == 2);
  CHECK(cuda.param_elem_bytes() == 4);
  CHECK_FALSE(cuda.loss_scaling());
  CHECK(resolve_precision("float16", torch::Device("cuda"), notices).loss_scaling());
  CHECK(resolve_precision("float64", torch::Device("cuda"), notices).param_dtype == torch::kDouble);
  CHECK_FALSE(resolve_precision("float32", torch::Device("cuda"), notices).autocast.has_value());
}

TEST_CASE("AutocastScope turns autocast on for its lifetime and restores the previous state", "[precision]") {
  REQUIRE_FALSE(compat::autocast_enabled(test_device().type()));
  const auto a = torch::randn({8, 8}, torch::TensorOptions().device(test_device())),
             b = torch::randn({8, 8}, torch::TensorOptions().device(test_device()));
  {
    AutocastScope scope(device_bfloat16());
    CHECK(compat::autocast_enabled(test_device().type()));
    CHECK(torch::matmul(a, b).scalar_type() == torch::kBFloat16);
  }
  CHECK_FALSE(compat::autocast_enabled(test_device().type()));
  CHECK(torch::matmul(a, b).scalar_type() == torch::kFloat);
  {
    AutocastScope none(Precision{});  // float32: a no-op
    CHECK_FALSE(compat::autocast_enabled(test_device().type()));
  }
}

TEST_CASE("under autocast f and g send the autocast dtype, and the plan says so", "[precision][comms]") {
  const int64_t B = 2, T = 8, C = 12, N = 3;
  const test::Batch batch = random_batch(B, T, 30, 5);
  for (const auto& types : std::vector<std::vector<std::string>>{
           {"tp", "tp"}, {"spd", "parallel", "parallel", "tp"}, {"parallel", "spd", "parallel"}}) {
    INFO("pattern " << join(types));
    const auto a = dist_args(types, N, 6, C, true, "sum", 30, T);
    auto model = make_model(a, perturbed_weights(a, 3), torch::kFloat);
    loss_under(device_bfloat16(), model, batch);
    clip_grad_norm(model->param_slots(), model->group(), 1.0);
    for (auto& s : model->param_slots()) {
      INFO(s.dense_name);
      CHECK(s.param.scalar_type() == torch::kFloat);
      CHECK(s.param.grad().scalar_type() == torch::kFloat);
    }
    const auto& tally = model->group().tally();
    const CommPlan plan = plan_communications(a, B, 1, true, 2, 4);
    CHECK(tally.count_of(CommKind::ForwardAllReduce) == plan.forward_allreduce);
    CHECK(tally.bytes_of(CommKind::ForwardAllReduce) == plan.forward_allreduce * B * T * C * 2);
    CHECK(tally.bytes_of(CommKind::BackwardAllReduce) == plan.backward_allreduce * B * T * C * 2);
    CHECK(tally.bytes_of(CommKind::ReplicatedGradSync) == plan.replicated_grad_bytes);
    CHECK(plan.bytes_per_step() == tally.total_bytes());
  }
}

TEST_CASE("under bfloat16 autocast the simulation stays as close to the dense model as bfloat16 allows",
          "[precision][equivalence]") {
  // The sharded and dense models round at different places (per-shard GEMMs, the g sum), so
  // they agree to bfloat16's precision, not bitwise: the loss within 1%, gradients within 5%
  // of their scale. That autocast did compute in bfloat16 is checked against float32.
  const int64_t B = 4, T = 8, C = 24;
  const test::Batch batch = random_batch(B, T, 40, 11);
  const auto a = dist_args({"tp", "tp", "tp"}, 4, 4, C, true, "sum", 40, T);
  const DenseState w = perturbed_weights(a, 21);
  auto dense = make_model(dense_args_of(a), w, torch::kFloat);
  auto sharded = make_model(a, w, torch::kFloat);
  auto reference = make_model(dense_args_of(a), w, torch::kFloat);
  const double dense_loss = loss_under(device_bfloat16(), dense, batch).item<double>();
  const double sharded_loss = loss_under(device_bfloat16(), sharded, batch).item<double>();
  const double fp32_loss = loss_under(Precision{}, reference, batch).item<double>();
  INFO("dense " << dense_loss << ", sharded " << sharded_loss << ", float32 " << fp32_loss);
  CHECK(std::abs(dense_loss - fp32_loss) > 1e-6);  // autocast was on
  CHECK(std::abs(sharded_loss - dense_loss) / dense_loss < 1e-2);
  const auto cmp = compare_states(gathered_grads(sharded), gathered_grads(dense));
  INFO(cmp.describe());
  CHECK(cmp.problems.empty());
  CHECK(cmp.worst < 5e-2);
}

TEST_CASE("LossScaler: GradScaler's dynamic scale", "[precision][scaler]") {
  LossScaler off(false);
  CHECK(off.scale() == 1.0);
  CHECK(off.update(std::numeric_limits<double>::infinity()));  // disabled: never skips
  CHECK(off.skipped_steps() == 0);

  LossScaler s(true, 1024.0, /*growth_interval=*/3);
  CHECK(s.scale() == 1024.0);
  CHECK(s.update(1.0));
  CHECK(s.update(2.0));
  CHECK(s.scale() == 1024.0);
  CHECK(s.update(3.0));  // third clean step in a row
  CHECK(s.scale() == 2048.0);
  CHECK_FALSE(s.update(std::numeric_limits<double>::infinity()));
  CHECK(s.scale() == 1024.0);
  CHECK_FALSE(s.update(std::nan("")));
  CHECK(s.scale() == 512.0);
  CHECK(s.skipped_steps() == 2);
  CHECK(s.update(1.0));
  CHECK(s.update(1.0));
  CHECK(s.scale() == 512.0);  // an overflow restarts the count
  CHECK(s.update(1.0));
  CHECK(s.scale() == 1024.0);

  auto p = torch::ones({3}).requires_grad_(true);
  p.mutable_grad() = torch::full({3}, 8.0);
  LossScaler eight(true, 8.0);
  eight.unscale({ParamSlot{"p", p}});
  CHECK(torch::equal(p.grad(), torch::ones({3})));
}

TEST_CASE("a loss-scaled optimizer step equals the unscaled one, and an overflowing one is skipped",
          "[precision][scaler]") {
  // Scaling by a power of two is exact in binary floating point, so with scale 2^10 the step is
  // bitwise the unscaled step; with 2^127 the float32 gradients overflow and nothing changes. The
  // overflowing run starts from weights whose ln_f gain is 1e4 times larger, so every gradient
  // below ln_f is 1e4 times larger too: at 2^127 they overflow whatever order a kernel sums in
  // (at the plain weights whether they reach infinity depends on it: dgpt's LayerNorm backward
  // stays finite where ATen's overflows).
  const int64_t T = 8;
  const auto a = dist_args({"spd", "tp", "parallel"}, 2, 4, 16, false, "sum", 40, T);
  const DenseState w = perturbed_weights(a, 8);
  TrainConfig cfg;
  cfg.batch_size = 3;
  cfg.block_size = T;
  cfg.gradient_accumulation_steps = 2;
  cfg.grad_clip = 1.0;
  const test::Batch data = random_batch(cfg.batch_size * 2, T, 40, 9);
  auto batch_for = [&](int64_t micro) {
    return dgpt::Batch{data.idx.narrow(0, micro * cfg.batch_size, cfg.batch_size),
                       data.targets.narrow(0, micro * cfg.batch_size, cfg.batch_size)};
  };
  DenseState w_loud = w;
  REQUIRE(w_loud.count("transformer.ln_f.weight") == 1);
  w_loud["transformer.ln_f.weight"] = w.at("transformer.ln_f.weight") * 1e4;
  auto step_from = [&](LossScaler& scaler, const DenseState& start) {
    auto model = make_model(a, start, torch::kFloat);
    AdamW optimizer(model->param_slots(), 0.1, 0.9, 0.95);
    const Precision fp32;
    OptimizerStep step{model, optimizer, cfg, fp32, scaler, nullptr};
    const double loss = step(0, 1e-3, 0, 2, batch_for).item<double>();
    return std::make_pair(loss, model->dense_state());
  };
  LossScaler none(false), loud_none(false), scaled(true, 1024.0), overflowing(true, std::ldexp(1.0, 127));
  const auto [loss_plain, after_plain] = step_from(none, w);
  const auto [loss_scaled, after_scaled] = step_from(scaled, w);
  const auto [loss_loud, after_loud] = step_from(loud_none, w_loud);
  const auto [loss_overflow, after_overflow] = step_from(overflowing, w_loud);
  CHECK(loss_scaled == loss_plain);  // the reported loss is unscaled
  CHECK(loss_overflow == loss_loud);
  CHECK(compare_states(after_loud, w_loud).worst > 0);  // unscaled, the loud weights do take a step
  const auto same = compare_states(after_scaled, after_plain);
  INFO(same.describe());
  CHECK(same.problems.empty());
  CHECK(same.worst == 0.0);
  CHECK(scaled.skipped_steps() == 0);
  const auto untouched = compare_states(after_overflow, w_loud);
  INFO(untouched.describe());
  CHECK(untouched.worst == 0.0);
  CHECK(overflowing.skipped_steps() == 1);
  CHECK(overflowing.scale() == std::ldexp(1.0, 126));
  CHECK(compare_states(after_plain, w).worst > 0);  // the plain step did move the weights
}
