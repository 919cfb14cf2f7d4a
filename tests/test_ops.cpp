// The tensor-parallel primitives on their own (SPEC §2): f = copy_to_shards, g = reduce_from_shards,
// ReplicatedGradSync, and the dense <-> shard layouts (SPEC §1's ownership of rows and columns).
#include <catch2/catch.hpp>

#include "test_util.h"
#include "base/torch_compat.h"

using namespace dgpt;
using namespace dgpt::test;

namespace {
const auto kF64 = torch::TensorOptions().dtype(torch::kDouble);
}  // namespace

TEST_CASE("f (copy_to_shards): forward replicates, backward sums the shards' gradients", "[ops][f]") {
  // Tolerance: float64; the backward is a plain sum of N values, checked to 1e-12 absolute
  // (values are O(1)); forward copies are checked for exact equality.
  const int64_t B = 2, T = 3, C = 5;
  for (int64_t N : {1, 2, 3, 4}) {
    CAPTURE(N);
    SimulatedGroup group(N);
    torch::manual_seed(100 + N);
    auto x = torch::randn({B, T, C}, kF64).requires_grad_(true);
    auto y = copy_to_shards(x, group);
    REQUIRE(y.sizes().vec() == std::vector<int64_t>{1, B, T, C});
    auto ys = y.expand({N, B, T, C});
    for (int64_t i = 0; i < N; ++i) CHECK(torch::equal(ys[i], x));
    CHECK(group.tally().total_count() == 0);  // f's forward sends nothing

    auto G = torch::randn({N, B, T, C}, kF64);  // per-shard upstream gradients G_i
    (ys * G).sum().backward();
    REQUIRE(x.grad().defined());
    CHECK(max_abs_diff(x.grad(), G.sum(0)) <= 1e-12);

    const auto& tally = group.tally();
    CHECK(tally.count_of(CommKind::BackwardAllReduce) == (N > 1 ? 1 : 0));
    CHECK(tally.bytes_of(CommKind::BackwardAllReduce) == (N > 1 ? B * T * C * 8 : 0));
    CHECK(tally.count_of(CommKind::ForwardAllReduce) == 0);
    CHECK(tally.total_count() == (N > 1 ? 1 : 0));
  }
  SECTION("float32 payload is 4 bytes an element") {
    SimulatedGroup group(2);
    auto x = torch::randn({B, T, C}).requires_grad_(true);
    copy_to_shards(x, group).expand({2, B, T, C}).sum().backward();
    CHECK(group.tally().bytes_of(CommKind::BackwardAllReduce) == B * T * C * 4);
    CHECK(torch::equal(x.grad(), torch::full({B, T, C}, 2.0f)));
  }
}

TEST_CASE("g (reduce_from_shards): forward sums the partials, backward replicates the gradient", "[ops][g]") {
  // Tolerance: float64 sum of N values checked to 1e-12 absolute; backward copies exactly.
  const int64_t B = 2, T = 3, C = 5;
  for (int64_t N : {1, 2, 3, 4}) {
    CAPTURE(N);
    SimulatedGroup group(N);
    torch::manual_seed(200 + N);
    auto P = torch::randn({N, B, T, C}, kF64).requires_grad_(true);
    auto out = reduce_from_shards(P, group);
    REQUIRE(out.sizes().vec() == std::vector<int64_t>{B, T, C});
    CHECK(max_abs_diff(out, P.sum(0)) <= 1e-12);

    const auto& tally = group.tally();
    CHECK(tally.count_of(CommKind::ForwardAllReduce) == (N > 1 ? 1 : 0));
    CHECK(tally.bytes_of(CommKind::ForwardAllReduce) == (N > 1 ? B * T * C * 8 : 0));

    auto G = torch::randn({B, T, C}, kF64);
    (out * G).sum().backward();
    REQUIRE(P.grad().defined());
    REQUIRE(P.grad().sizes().vec() == std::vector<int64_t>{N, B, T, C});
    for (int64_t i = 0; i < N; ++i) CHECK(torch::equal(P.grad()[i], G));
    CHECK(tally.count_of(CommKind::BackwardAllReduce) == 0);  // g's backward sends nothing
    CHECK(tally.total_count() == (N > 1 ? 1 : 0));
  }
}

TEST_CASE("f, g and g∘(per-shard nonlinearity)∘f pass a finite-difference gradient check", "[ops][gradcheck]") {
  // Tolerance: central differences with eps 1e-6 in float64; |analytic - numeric| <= 1e-7 * max(1, |numeric|)
  // (truncation error ~eps^2, rounding ~1e-16/eps = 1e-10).
  const double kTol = 1e-7;
  const int64_t B = 2, T = 3, C = 4;
  for (int64_t N : {1, 2, 3}) {
    CAPTURE(N);
    SimulatedGroup group(N);
    torch::manual_seed(300 + N);
    auto x = torch::randn({B, T, C}, kF64);
    auto P = torch::randn({N, B, T, C}, kF64);
    auto R_shards = torch::randn({N, B, T, C}, kF64);
    auto R = torch::randn({B, T, C}, kF64);
    auto W = 0.7 * torch::randn({N, 1, C, C}, kF64);  // shard i's own matrix
    auto b = 0.3 * torch::randn({N, 1, 1, C}, kF64);

    const double err_f = fd_gradcheck(
        [&](const std::vector<torch::Tensor>& in) {
          return (copy_to_shards(in[0], group).expand({N, B, T, C}) * R_shards).sum();
        },
        {x});
    CHECK(err_f <= kTol);

    const double err_g = fd_gradcheck(
        [&](const std::vector<torch::Tensor>& in) {
          auto out = reduce_from_shards(in[0], group);
          return (out * R + 0.5 * out * out).sum();
        },
        {P});
    CHECK(err_g <= kTol);

    // z_i = tanh(x W_i + b_i) per shard; out = sum_i z_i; loss = sum(sin(out) * R).
    auto composite = [&](const std::vector<torch::Tensor>& in) {
      auto u = copy_to_shards(in[0], group);                 // [1,B,T,C]
      auto z = torch::tanh(torch::matmul(u, in[1]) + in[2]);  // [N,B,T,C]
      return (torch::sin(reduce_from_shards(z, group)) * R).sum();
    };
    const double err_fg = fd_gradcheck(composite, {x, W, b});
    CHECK(err_fg <= kTol);

    // The composite's value is the formula written without f and g.
    torch::Tensor direct = torch::zeros({B, T, C}, kF64);
    for (int64_t i = 0; i < N; ++i) direct = direct + torch::tanh(torch::matmul(x, W[i][0]) + b[i][0]);
    CHECK(std::abs(composite({x, W, b}).item<double>() - (torch::sin(direct) * R).sum().item<double>()) <= 1e-12);
  }
}

TEST_CASE("ReplicatedGradSync routes shard-region gradients of replicated params through one sync", "[ops][shard_local]") {
  // Tolerance: float64, analytic gradient vs autograd + sync, 1e-12 relative (max-abs measure).
  const double kTol = 1e-12;
  const int64_t B = 2, T = 3, C = 4;
  for (int64_t N : {1, 3}) {
    CAPTURE(N);
    SimulatedGroup group(N);
    ReplicatedGradSync slg;
    torch::manual_seed(400 + N);
    auto x = torch::randn({B, T, C}, kF64);
    auto W = torch::randn({N, 1, 1, C}, kF64);
    auto G = torch::randn({B, T, C}, kF64);
    // p: used inside the shard region (via use) and once outside, after g; q: inside only.
    auto p = (0.3 * torch::randn({C}, kF64)).requires_grad_(true);
    auto q = (1.0 + 0.3 * torch::randn({C}, kF64)).requires_grad_(true);

    auto step = [&] {
      auto xs = copy_to_shards(x, group);
      auto z = torch::tanh(xs * W + slg.use(p)) * slg.use(q);  // [N,B,T,C]
      auto out = reduce_from_shards(z, group) + p;
      (out * G).sum().backward();
    };
    step();

    // Analytic: th_i = tanh(x W_i + p)
    //   dL/dp = sum_{i,b,t} G q (1 - th_i^2) + sum_{b,t} G,   dL/dq = sum_{i,b,t} G th_i.
    auto th = torch::tanh(x.unsqueeze(0) * W + p.detach());
    auto outside_p = G.sum(std::vector<int64_t>{0, 1});
    auto want_p = (G.unsqueeze(0) * q.detach() * (1 - th * th)).sum(std::vector<int64_t>{0, 1, 2}) + outside_p;
    auto want_q = (G.unsqueeze(0) * th).sum(std::vector<int64_t>{0, 1, 2});

    // Before the sync only the outside use has reached .grad.
    REQUIRE(p.grad().defined());
    CHECK(rel_diff(p.grad(), outside_p) <= kTol);
    CHECK_FALSE(q.grad().defined());
    CHECK(group.tally().count_of(CommKind::ReplicatedGradSync) == 0);

    slg.sync(group);
    REQUIRE(q.grad().defined());
    CHECK(rel_diff(p.grad(), want_p) <= kTol);
    CHECK(rel_diff(q.grad(), want_q) <= kTol);
    CHECK(slg.numel() == 2 * C);
    CHECK(group.tally().count_of(CommKind::ReplicatedGradSync) == (N > 1 ? 1 : 0));  // coalesced: one for both
    CHECK(group.tally().bytes_of(CommKind::ReplicatedGradSync) == (N > 1 ? 2 * C * 8 : 0));

    // The pending parts were consumed: a second step + sync accumulates exactly once more.
    step();
    slg.sync(group);
    CHECK(rel_diff(p.grad(), 2 * want_p) <= kTol);
    CHECK(rel_diff(q.grad(), 2 * want_q) <= kTol);
    CHECK(group.tally().count_of(CommKind::ReplicatedGradSync) == (N > 1 ? 2 : 0));

    // reset() drops pending parts: a step, reset, sync adds nothing.
    auto p_before = p.grad().clone(), q_before = q.grad().clone();
    step();
    slg.reset();
    slg.sync(group);
    CHECK(rel_diff(p.grad(), p_before + outside_p) <= kTol);
    CHECK(torch::equal(q.grad(), q_before));
  }
}

TEST_CASE("shards_from_dense / dense_from_shards round trip and own what SPEC §1 assigns", "[ops][layout]") {
  // Tolerance: exact (pure data movement; integer-valued float64 data).
  const int64_t C = 12;
  struct Case {
    const char* what;
    Layout layout;
    std::vector<int64_t> shape;
  };
  const std::vector<Case> cases = {
      {"c_attn.weight", Layout::QkvColumnParallel, {3 * C, C}}, {"c_attn.bias", Layout::QkvColumnParallel, {3 * C}},
      {"c_fc.weight", Layout::ColumnParallel, {4 * C, C}},      {"c_fc.bias", Layout::ColumnParallel, {4 * C}},
      {"attn.c_proj.weight", Layout::RowParallel, {C, C}},   {"mlp.c_proj.weight", Layout::RowParallel, {C, 4 * C}},
      {"ln.weight", Layout::Replicated, {C}},         {"wte", Layout::Replicated, {7, C}},
  };
  for (auto& c : cases) {
    for (int64_t N : {1, 2, 3, 4, 6}) {
      CAPTURE(c.what, N);
      int64_t numel = 1;
      for (auto s : c.shape) numel *= s;
      auto d = torch::arange(numel, kF64).view(c.shape);
      auto shards = shards_from_dense(d, c.layout, N, 0, N);
      if (c.layout == Layout::Replicated) {
        CHECK(torch::equal(shards, d));
        CHECK(torch::equal(dense_from_shards(shards, c.layout), d));
        continue;
      }
      REQUIRE(shards.size(0) == N);
      CHECK(torch::equal(dense_from_shards(shards, c.layout), d));
      for (int64_t i = 0; i < N; ++i) {
        CAPTURE(i);
        torch::Tensor want;
        switch (c.layout) {
          case Layout::QkvColumnParallel: {  // q rows, then k rows, then v rows of heads [i*H/N, (i+1)*H/N)
            const int64_t w = C / N;
            want = torch::cat({d.narrow(0, i * w, w), d.narrow(0, C + i * w, w), d.narrow(0, 2 * C + i * w, w)});
            break;
          }
          case Layout::ColumnParallel: {
            const int64_t w = d.size(0) / N;
            want = d.narrow(0, i * w, w);
            break;
          }
          case Layout::RowParallel: {
            const int64_t w = d.size(1) / N;
            want = d.narrow(1, i * w, w);
            break;
          }
          case Layout::Replicated: break;
        }
        CHECK(torch::equal(shards[i], want));
        // A process holding shards [i, i+L) of a hybrid layout gets exactly those.
        for (int64_t L = 1; i + L <= N; ++L)
          if (N % L == 0 && i % L == 0) CHECK(torch::equal(shards_from_dense(d, c.layout, N, i, L), shards.narrow(0, i, L)));
      }
    }
  }
  SECTION("QkvColumnParallel by heads: shard i of c_attn holds exactly its heads' q, k, v rows") {
    // H = 6 heads of size 2 (C = 12), N = 3: shard 1 owns heads 2 and 3 -> rows 4..7 of q, k and v.
    auto d = torch::arange(3 * C, kF64).view({3 * C, 1}).expand({3 * C, C}).contiguous();
    auto s = shards_from_dense(d, Layout::QkvColumnParallel, 3, 1, 1)[0].select(1, 0);
    auto want = torch::tensor({4., 5., 6., 7., 16., 17., 18., 19., 28., 29., 30., 31.}, kF64);
    CHECK(torch::equal(s, want));
  }
}

TEST_CASE("compat::gelu: the same gradient whatever the incoming gradient's layout", "[ops][gelu]") {
  // LibTorch 1.13's CPU gelu_backward gets a non-contiguous gradient wrong (zeros or garbage);
  // the sharded MLP permutes right after GELU, so compat::gelu must not depend on it.
  auto gen = at::make_generator<at::CPUGeneratorImpl>(7);
  const auto x0 = torch::randn({2, 3, 8, 32}, gen);
  const auto grad = torch::randn({3, 8, 2, 32}, gen).permute({2, 0, 1, 3});  // x's shape, permuted strides
  REQUIRE_FALSE(grad.is_contiguous());
  auto x = x0.clone().requires_grad_(true);
  compat::gelu(x).backward(grad);
  auto x_ref = x0.to(torch::kDouble).requires_grad_(true);
  (0.5 * x_ref * (1.0 + torch::erf(x_ref / std::sqrt(2.0)))).backward(grad.to(torch::kDouble));
  CHECK(rel_diff(x.grad(), x_ref.grad()) < 1e-6);
  // float32: dgpt's own kernel (model/gelu_kernels.h), as close to the double truth as ATen's
  const auto truth = 0.5 * x0.to(torch::kDouble) * (1.0 + torch::erf(x0.to(torch::kDouble) / std::sqrt(2.0)));
  CHECK(rel_diff(compat::gelu(x0), truth) < 1e-6);
  CHECK(rel_diff(torch::gelu(x0), truth) < 1e-6);
  // activation 'gelu_tanh' (GPT-2's gelu_new): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), in float64
  auto xt = x0.clone().requires_grad_(true);
  compat::gelu(xt, /*tanh=*/true).backward(grad);
  auto xt_ref = x0.to(torch::kDouble).requires_grad_(true);
  const auto gelu_new = 0.5 * xt_ref * (1.0 + torch::tanh(std::sqrt(2.0 / M_PI) * (xt_ref + 0.044715 * xt_ref.pow(3))));
  gelu_new.backward(grad.to(torch::kDouble));
  CHECK(rel_diff(compat::gelu(x0, true), gelu_new.detach()) < 1e-6);
  CHECK(rel_diff(xt.grad(), xt_ref.grad()) < 1e-6);
  CHECK(rel_diff(compat::gelu(x0, true), compat::gelu(x0)) > 1e-4);  // the two are different functions
}

TEST_CASE("SoloRankGroup: rank r of N alone holds rank r's shard, sends nothing, tallies a real rank's plan",
          "[ops][solo_rank]") {
  const int64_t N = 4;
  auto args = dgpt::test::dist_args({"tp", "spd", "parallel", "parallel"}, N, 4, 16, /*bias=*/true);
  const auto dense = init_dense_weights(args, 7);
  for (int64_t r = 0; r < N; ++r) {
    auto group = std::make_shared<SoloRankGroup>(N, r);
    CHECK(group->local_shards() == 1);
    CHECK(group->first_shard() == r);
    GPT model(args, group);
    model->load_dense_state(dense);
    for (auto& slot : model->param_slots()) {
      const auto& d = dense.at(slot.dense_name);
      // exactly what a real rank r of W = N processes loads: its own shard, L = 1
      CHECK(torch::equal(slot.param, shards_from_dense(d, slot.layout, N, r, 1)));
    }
    // An all-reduce leaves this rank's part as it is and tallies its bytes.
    auto t = torch::arange(6, torch::kFloat);
    const auto before = t.clone();
    group->all_reduce_sum_(t, CommKind::ForwardAllReduce);
    CHECK(torch::equal(t, before));
    CHECK(group->tally().count_of(CommKind::ForwardAllReduce) == 1);
    CHECK(group->tally().bytes_of(CommKind::ForwardAllReduce) == 24);
  }
  // A training forward and backward tallies exactly the plan's f and g (SPEC §3: 2t + s + r = 2 + 1 + 1).
  auto group = std::make_shared<SoloRankGroup>(N, 2);
  GPT model(args, group);
  model->load_dense_state(dense);
  auto idx = torch::randint(args.vocab_size, {2, args.block_size}, torch::kLong);
  model->forward(idx, idx).loss.backward();
  CHECK(group->tally().count_of(CommKind::ForwardAllReduce) == 4);
  CHECK(group->tally().count_of(CommKind::BackwardAllReduce) == 4);
  CHECK(group->tally().bytes_of(CommKind::ForwardAllReduce) == 4 * 2 * args.block_size * args.n_embd * 4);
  // gather_shards (checkpoints of a solo rank mean nothing) keeps the shapes of a gathered tensor.
  CHECK(group->gather_shards(torch::ones({1, 3, 5})).sizes() == torch::IntArrayRef({N, 3, 5}));
}
