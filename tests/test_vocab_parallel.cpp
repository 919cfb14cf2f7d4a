// Vocabulary parallelism (SPEC §1, vocab_parallel = True): the VocabParallel layout and its
// padding; loss and every gradient equal the replicated embedding's at tp_size 1..6, with and
// without padding rows (float64, 1e-10); the collectives counted under their own names equal SPEC
// §3 and the plan; checkpoints and AdamW moments in the dense layout move between tp_sizes and
// between vocab_parallel on and off; generation (logits, KV cache, greedy and drawn tokens) equals
// the replicated model's; and L < N shards per process (threads standing in for processes).
#include <catch2/catch.hpp>

#include <condition_variable>
#include <exception>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <regex>
#include <sstream>
#include <thread>

#include "config/config.h"
#include "model/comm_plan.h"
#include "model/optim.h"
#include "model/precision.h"
#include "model/vocab_parallel.h"
#include "run/generate.h"
#include "run/run_settings.h"
#include "test_util.h"

namespace {

using namespace dgpt;
using namespace dgpt::test;
using Types = std::vector<std::string>;

constexpr double kTol = 1e-10;  // float64 throughout, unless a case says otherwise

// n_head = 60 so that every tp_size 1..6 divides it (head dim 2); n_embd 120, 4C = 480.
ModelArgs vocab_args(const Types& types, int64_t N, int64_t V, bool vocab_parallel, bool bias = true,
                     int64_t n_head = 60, int64_t n_embd = 120, int64_t T = 8) {
  ModelArgs a = dist_args(types, N, n_head, n_embd, bias, "sum", V, T);
  a.vocab_parallel = vocab_parallel;
  return a;
}

ModelArgs with_vocab_parallel(ModelArgs a, bool on) {
  a.vocab_parallel = on;
  return a;
}

// Random ids and targets, plus the rows that matter for the split: the first and last rows of
// every shard of the padded vocabulary that are real rows, and the last row V-1 (in the last shard
// that has real rows, next to the padding).
Batch boundary_batch(int64_t B, int64_t T, int64_t V, int64_t N, int64_t seed) {
  Batch b = random_batch(B, T, V, seed);
  const int64_t rows = padded_vocab_size(V, N) / N;
  std::vector<int64_t> special;
  for (int64_t i = 0; i < N; ++i)
    for (int64_t r : {i * rows, (i + 1) * rows - 1})
      if (r < V) special.push_back(r);
  special.push_back(V - 1);
  auto idx = b.idx.view(-1), tgt = b.targets.view(-1);
  for (size_t k = 0; k < special.size() && int64_t(k) < idx.numel(); ++k) {
    idx[int64_t(k)] = special[k];
    tgt[idx.numel() - 1 - int64_t(k)] = special[k];
  }
  tgt[0] = V - 1;
  return b;
}

double rel_scalar(const torch::Tensor& a, const torch::Tensor& b) {
  const double x = a.item<double>(), y = b.item<double>();
  return std::abs(x - y) / std::max(std::abs(y), 1e-300);
}

const ParamSlot& slot_named(const std::vector<ParamSlot>& slots, const std::string& name) {
  for (auto& s : slots)
    if (s.dense_name == name) return s;
  FAIL("no slot " << name);
  return slots.front();
}

// ---------------------------------------------------------------------------------------------
// fn on W threads, each rank r of a ThreadGroup (test_util.h) of N shards; rethrows a rank's failure.

void on_threads(int64_t N, int64_t W, const std::function<void(int64_t, std::shared_ptr<ThreadGroup>)>& fn) {
  auto rendezvous = std::make_shared<ThreadRendezvous>(W);
  std::vector<std::exception_ptr> errors(static_cast<size_t>(W));
  std::vector<std::thread> ranks;
  for (int64_t r = 0; r < W; ++r)
    ranks.emplace_back([&, r] {
      try {
        fn(r, std::make_shared<ThreadGroup>(N, W, r, rendezvous));
      } catch (...) {
        errors[size_t(r)] = std::current_exception();
      }
    });
  for (auto& t : ranks) t.join();
  for (auto& e : errors)
    if (e) std::rethrow_exception(e);
}

Precision cpu_bf16() {
  Precision p;
  p.param_dtype = torch::kFloat;
  p.autocast = torch::kBFloat16;
  return p;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("VocabParallel layout: shard i owns rows [i*Vp/N, (i+1)*Vp/N), padding rows are zero and leave no trace",
          "[vocab][layout]") {
  // Exact (bitwise) throughout.
  const int64_t C = 3;
  for (int64_t V : {7, 12, 13, 60, 61})
    for (int64_t N = 1; N <= 6; ++N) {
      INFO("V " << V << ", N " << N);
      const auto dense = torch::randn({V, C}, torch::kDouble);
      const auto layout = TensorLayout::vocab_parallel(V);
      const int64_t Vp = padded_vocab_size(V, N), rows = Vp / N;
      CHECK(Vp % N == 0);
      CHECK(Vp - V < N);
      const auto shards = shards_from_dense(dense, layout, N, 0, N);
      REQUIRE(shards.sizes() == torch::IntArrayRef({N, rows, C}));
      for (int64_t i = 0; i < N; ++i)
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t row = i * rows + r;
          CHECK(torch::equal(shards[i][r], row < V ? dense[row] : torch::zeros({C}, torch::kDouble)));
        }
      CHECK(torch::equal(dense_from_shards(shards, layout), dense));
      for (int64_t first = 0; first < N; ++first)
        for (int64_t L = 1; first + L <= N; ++L)
          CHECK(torch::equal(shards_from_dense(dense, layout, N, first, L), shards.narrow(0, first, L)));
      // a TensorLayout compares and converts as its Layout
      const ParamSlot slot{"transformer.wte.weight", shards, layout};
      CHECK(slot.sharded());
      CHECK(slot.layout == Layout::VocabParallel);
      CHECK(slot.dense_dim() == 2);
    }
}

TEST_CASE("vocab_parallel: loss and every gradient equal the replicated embedding's at tp_size 1..6",
          "[vocab][equivalence]") {
  // Tolerance: float64, loss and every dense gradient (gathered from the shards) 1e-10 relative.
  // V = 60 divides every N; V = 61 pads (N - 61 % N rows); V = 7 at N >= 4 leaves whole shards of
  // padding. The batch's ids and targets include the first and last real rows of every shard and
  // V - 1, the last real row before the padding.
  const int64_t B = 3, T = 8;
  int64_t seed = 100;
  int64_t cases = 0;
  double worst_loss = 0, worst_grad = 0;  // reported at the end
  for (int64_t V : {60, 61, 7})
    for (int64_t N = 1; N <= 6; ++N) {
      if (V == 7 && N < 4) continue;
      const Batch batch = boundary_batch(B, T, V, N, ++seed);
      const auto a = vocab_args({"tp", "tp"}, N, V, true);
      INFO("V " << V << ", tp_size " << N << " (" << padded_vocab_size(V, N) - V << " padding rows)");
      const DenseState w = perturbed_weights(a, ++seed);
      auto model = make_model(a, w, torch::kDouble);
      auto replicated = make_model(with_vocab_parallel(a, false), w, torch::kDouble);
      auto gpt = make_model(dense_args_of(a), w, torch::kDouble);
      const auto loss = loss_and_grads(model, batch);
      const auto want = loss_and_grads(replicated, batch);
      CHECK(rel_scalar(loss, want) <= kTol);
      worst_loss = std::max(worst_loss, rel_scalar(loss, want));
      CHECK(rel_scalar(loss, loss_and_grads(gpt, batch)) <= kTol);
      const auto grads = gathered_grads(model);
      for (auto* other : {&replicated, &gpt}) {
        const auto cmp = compare_states(grads, gathered_grads(*other));
        worst_grad = std::max(worst_grad, cmp.worst);
        INFO(cmp.describe());
        CHECK(cmp.problems.empty());
        CHECK(cmp.worst <= kTol);
      }
      // both uses of the tied wte reached the one sharded tensor; the padding rows got nothing
      const auto& wte = slot_named(model->param_slots(), "transformer.wte.weight");
      REQUIRE(wte.layout == Layout::VocabParallel);
      const auto g = wte.param.grad().reshape({-1, a.n_embd});
      CHECK(g.size(0) == padded_vocab_size(V, N));
      if (g.size(0) > V) CHECK(g.narrow(0, V, g.size(0) - V).abs().max().item<double>() == 0.0);
      CHECK(model->num_params() == replicated->num_params());
      ++cases;
    }
  CHECK(cases == 15);
  WARN("measured over " << cases << " cases: loss " << worst_loss << ", gradients " << worst_grad
                        << " relative (tolerance 1e-10)");

  SECTION("spd and parallel blocks, no bias, ignored targets (-1), dropout in training mode") {
    const int64_t V = 61;
    for (int64_t N : {2, 3, 4}) {
      for (const Types& types : {Types{"spd", "parallel", "parallel", "tp"}, Types{"parallel", "spd"}}) {
        INFO(join(types) << ", tp_size " << N);
        Batch batch = boundary_batch(B, T, V, N, ++seed);
        batch.targets[1][2] = -1;
        batch.targets[2][7] = -1;
        auto a = vocab_args(types, N, V, true, /*bias=*/false, 12, 48);
        a.dropout = 0.2;
        const DenseState w = perturbed_weights(a, ++seed);
        auto model = make_model(a, w, torch::kDouble);
        auto replicated = make_model(with_vocab_parallel(a, false), w, torch::kDouble);
        model->set_dropout_step(5, 3, 1);
        replicated->set_dropout_step(5, 3, 1);
        const auto loss = loss_and_grads(model, batch);
        CHECK(rel_scalar(loss, loss_and_grads(replicated, batch)) <= kTol);
        const auto cmp = compare_states(gathered_grads(model), gathered_grads(replicated));
        INFO(cmp.describe());
        CHECK(cmp.problems.empty());
        CHECK(cmp.worst <= kTol);
      }
    }
  }
}

TEST_CASE("vocab_parallel: the collectives of a step, a forward pass and under autocast equal SPEC §3 and the plan",
          "[vocab][comms]") {
  // Exact integer counts and bytes.
  const int64_t B = 2, T = 8, C = 24, H = 12;
  int64_t index = 0;
  for (int64_t N : {2, 3, 4})
    for (int64_t V : {30, 31})
      for (const Types& types : {Types{"tp"}, Types{"spd", "parallel", "parallel", "tp"}}) {
        ++index;
        const auto dtype = index % 2 ? torch::kDouble : torch::kFloat;
        const int64_t elem = dtype == torch::kDouble ? 8 : 4;
        INFO(join(types) << ", tp_size " << N << ", V " << V << ", elem " << elem);
        const auto a = vocab_args(types, N, V, true, true, H, C, T);
        const Batch batch = boundary_batch(B, T, V, N, 300 + index);
        auto model = make_model(a, perturbed_weights(a, 400 + index), dtype);
        auto replicated = make_model(with_vocab_parallel(a, false), perturbed_weights(a, 400 + index), dtype);
        loss_and_grads(model, batch);
        clip_grad_norm(model->param_slots(), model->group(), 1.0);
        loss_and_grads(replicated, batch);
        clip_grad_norm(replicated->param_slots(), replicated->group(), 1.0);
        const auto& tally = model->group().tally();
        const auto& base = replicated->group().tally();
        // SPEC §3: the vocab-parallel embedding's g, the lm_head's f, 3 loss all-reduces of B*T; the rest as before.
        CHECK(tally.count_of(CommKind::VocabForwardAllReduce) == 1);
        CHECK(tally.bytes_of(CommKind::VocabForwardAllReduce) == B * T * C * elem);
        CHECK(tally.count_of(CommKind::VocabBackwardAllReduce) == 1);
        CHECK(tally.bytes_of(CommKind::VocabBackwardAllReduce) == B * T * C * elem);
        CHECK(tally.count_of(CommKind::VocabLossAllReduce) == 3);
        CHECK(tally.bytes_of(CommKind::VocabLossAllReduce) == 3 * B * T * elem);
        CHECK(tally.count_of(CommKind::VocabLogitsAllReduce) == 0);
        for (auto kind : {CommKind::ForwardAllReduce, CommKind::BackwardAllReduce, CommKind::ReplicatedGradSync,
                          CommKind::GradNormAllReduce}) {
          CHECK(tally.count_of(kind) == base.count_of(kind));
          CHECK(tally.bytes_of(kind) == base.bytes_of(kind));
        }
        const CommPlan plan = plan_communications(a, B, 1, true, elem, elem);
        CHECK(plan.vocab_forward_allreduce == 1);
        CHECK(plan.vocab_forward_bytes == B * T * C * elem);
        CHECK(plan.vocab_backward_allreduce == 1);
        CHECK(plan.vocab_backward_bytes == B * T * C * elem);
        CHECK(plan.vocab_loss_allreduce == 3);
        CHECK(plan.vocab_loss_bytes == B * T * elem);
        CHECK(plan.collectives_per_step() == tally.total_count());
        CHECK(plan.bytes_per_step() == tally.total_bytes());
        CHECK(plan_communications(with_vocab_parallel(a, false), B, 1, true, elem, elem).collectives_per_step() ==
              tally.total_count() - 5);
        // several micro-steps: 5 more collectives per micro-step
        CHECK(plan_communications(a, B, 3, true, elem, elem).collectives_per_step() ==
              plan_communications(with_vocab_parallel(a, false), B, 3, true, elem, elem).collectives_per_step() + 15);

        // A forward pass without targets (sampling): the embedding's g and one gather of [B,1,Vp].
        const CommTally before = tally;
        {
          torch::NoGradGuard no_grad;
          const auto out = model->forward(batch.idx);
          CHECK(out.logits.sizes() == torch::IntArrayRef({B, 1, V}));
        }
        const CommTally pass = model->group().tally() - before;
        CHECK(pass.count_of(CommKind::VocabForwardAllReduce) == 1);
        CHECK(pass.count_of(CommKind::VocabLogitsAllReduce) == 1);
        CHECK(pass.bytes_of(CommKind::VocabLogitsAllReduce) == B * padded_vocab_size(V, N) * elem);
        CHECK(pass.count_of(CommKind::VocabBackwardAllReduce) + pass.count_of(CommKind::VocabLossAllReduce) == 0);
        CHECK(plan.inference_vocab_allreduces() == 2);
        CHECK(plan.logits_row_bytes == padded_vocab_size(V, N) * elem);
      }

  SECTION("bfloat16 autocast: the embedding's g in float32, the lm_head's f in bfloat16, the loss in float32") {
    const int64_t N = 3, V = 31;
    const auto a = vocab_args({"tp", "tp"}, N, V, true, true, H, C, T);
    const Batch batch = boundary_batch(B, T, V, N, 9);
    auto model = make_model(a, perturbed_weights(a, 10), torch::kFloat);
    torch::Tensor loss;
    {
      AutocastScope scope(cpu_bf16());
      loss = model->forward(batch.idx, batch.targets).loss;
    }
    CHECK(loss.scalar_type() == torch::kFloat);
    loss.backward();
    const auto& wte = slot_named(model->param_slots(), "transformer.wte.weight");
    CHECK(wte.param.grad().scalar_type() == torch::kFloat);
    const auto& tally = model->group().tally();
    CHECK(tally.bytes_of(CommKind::VocabForwardAllReduce) == B * T * C * 4);
    CHECK(tally.bytes_of(CommKind::VocabBackwardAllReduce) == B * T * C * 2);
    CHECK(tally.bytes_of(CommKind::VocabLossAllReduce) == 3 * B * T * 4);
    const CommPlan plan = plan_communications(a, B, 1, false, 2, 4);
    CHECK(plan.bytes_per_step() == tally.total_bytes());
    CHECK(plan.collectives_per_step() == tally.total_count());
    // within bfloat16's precision of the replicated model under the same autocast
    auto replicated = make_model(with_vocab_parallel(a, false), perturbed_weights(a, 10), torch::kFloat);
    torch::Tensor want;
    {
      AutocastScope scope(cpu_bf16());
      want = replicated->forward(batch.idx, batch.targets).loss;
    }
    CHECK(std::abs(loss.item<double>() - want.item<double>()) / want.item<double>() < 1e-2);
  }

  SECTION("tp_size 1 and the dense model send nothing") {
    const auto a = vocab_args({"tp", "spd"}, 1, 31, true, true, H, C, T);
    auto model = make_model(a, perturbed_weights(a, 11), torch::kDouble);
    loss_and_grads(model, boundary_batch(B, T, 31, 1, 12));
    CHECK(model->group().tally().total_count() == 0);
    CHECK(plan_communications(a, B, 1, true, 8, 8).collectives_per_step() == 0);
    CHECK(plan_communications(dense_args_of(a), B, 1, true, 8, 8).collectives_per_step() == 0);
  }
}

TEST_CASE("vocab_parallel: weights and AdamW moments stay dense, move between tp_sizes and vocab_parallel on/off",
          "[vocab][checkpoint]") {
  // Tolerance: float64, 1e-10 relative per tensor. Two AdamW steps with weight decay and clipping
  // that clips, vocab-parallel at tp_size 4 (V = 61: 3 padding rows) against the replicated model;
  // then both states are loaded into tp_size 3 (2 padding rows) and tp_size 1 and trained one more step.
  const int64_t V = 61, B = 3, T = 8;
  const auto a = vocab_args({"tp", "spd"}, 4, V, true, true, 12, 48, T);
  const DenseState w = perturbed_weights(a, 500);
  auto step = [&](GPT& model, AdamW& opt, int64_t k) {
    const Batch batch = boundary_batch(B, T, V, 4, 600 + k);
    loss_and_grads(model, batch);
    const auto norm = clip_grad_norm(model->param_slots(), model->group(), 0.05);
    opt.step(1e-2);
    opt.zero_grad();
    return norm;
  };
  auto model = make_model(a, w, torch::kDouble);
  auto replicated = make_model(with_vocab_parallel(a, false), w, torch::kDouble);
  AdamW opt(model->param_slots(), 0.1, 0.9, 0.95), opt_rep(replicated->param_slots(), 0.1, 0.9, 0.95);
  for (int64_t k = 0; k < 2; ++k) {
    const auto norm = step(model, opt, k), want = step(replicated, opt_rep, k);
    CHECK(rel_scalar(norm, want) <= kTol);
    CHECK(want.item<double>() > 0.05);  // clipped
  }
  auto compare_moments = [&](const std::map<std::string, AdamMoments>& got, const std::map<std::string, AdamMoments>& want) {
    REQUIRE(got.size() == want.size());
    for (auto& [name, m] : want) {
      INFO(name);
      REQUIRE(got.count(name));
      CHECK(got.at(name).exp_avg.sizes() == m.exp_avg.sizes());
      CHECK(rel_diff(got.at(name).exp_avg, m.exp_avg) <= kTol);
      CHECK(rel_diff(got.at(name).exp_avg_sq, m.exp_avg_sq) <= kTol);
      CHECK(got.at(name).step == m.step);
    }
  };
  const DenseState weights = model->dense_state();
  CHECK(weights.at("transformer.wte.weight").sizes() == torch::IntArrayRef({V, a.n_embd}));
  CHECK(torch::equal(weights.at("lm_head.weight"), weights.at("transformer.wte.weight")));
  {
    const auto cmp = compare_states(weights, replicated->dense_state());
    INFO(cmp.describe());
    CHECK(cmp.problems.empty());
    CHECK(cmp.worst <= kTol);
  }
  const auto moments = opt.dense_state(model->group());
  CHECK(moments.at("transformer.wte.weight").exp_avg.sizes() == torch::IntArrayRef({V, a.n_embd}));
  compare_moments(moments, opt_rep.dense_state(replicated->group()));

  // Resume elsewhere: vocab-parallel at tp_size 3, and the replicated model at tp_size 1, from the
  // vocab-parallel state; the replicated run from its own state. One more step each.
  ModelArgs a3 = a;
  a3.tp_size = 3;
  a3.block_types = {"tp", "tp"};  // spd is another function at another tp_size: all-tp from here
  ModelArgs a1 = with_vocab_parallel(a3, false);
  a1.tp_size = 1;
  DenseState tp_weights = weights;
  auto m3 = make_model(a3, tp_weights, torch::kDouble);
  auto m1 = make_model(a1, tp_weights, torch::kDouble);
  AdamW o3(m3->param_slots(), 0.1, 0.9, 0.95), o1(m1->param_slots(), 0.1, 0.9, 0.95);
  o3.load_dense_state(moments, 3, 0, 3);
  o1.load_dense_state(moments, 1, 0, 1);
  compare_moments(o3.dense_state(m3->group()), moments);
  const auto n3 = step(m3, o3, 7), n1 = step(m1, o1, 7);
  CHECK(rel_scalar(n3, n1) <= kTol);
  const auto cmp = compare_states(m3->dense_state(), m1->dense_state());
  INFO(cmp.describe());
  CHECK(cmp.problems.empty());
  CHECK(cmp.worst <= kTol);
  compare_moments(o3.dense_state(m3->group()), o1.dense_state(m1->group()));
  // the padding rows stayed zero through AdamW (no gradient, so no moment and no decay)
  const auto& wte = slot_named(m3->param_slots(), "transformer.wte.weight");
  const auto rows = wte.param.reshape({-1, a.n_embd});
  CHECK(rows.narrow(0, V, rows.size(0) - V).abs().max().item<double>() == 0.0);
}

TEST_CASE("vocab_parallel: generation gathers the logits [B,1,V]; cached, greedy and drawn tokens are the replicated model's",
          "[vocab][generate]") {
  // Tolerance: float64 logits 1e-10 relative; tokens exactly equal.
  const int64_t V = 61, T = 16;
  const auto base = vocab_args({"tp", "tp"}, 1, V, false, true, 12, 48, T);
  DenseState w = perturbed_weights(base, 700, 0.1);
  for (auto& [name, t] : w)
    if (t.dim() == 2) t = t * 6.0;  // a model whose greedy choices vary
  w["lm_head.weight"] = w["transformer.wte.weight"];
  auto reference = make_model(base, w, torch::kDouble);
  reference->eval();
  const auto idx = boundary_batch(2, T, V, 4, 701).idx;
  torch::NoGradGuard no_grad;
  const Precision float32;
  const std::vector<int64_t> prompt{3, 60, 59, 0, 16};
  const SamplingOptions greedy{0.0, 0, 1.0}, drawn{1.0, 12, 0.9};
  const auto want_greedy = generate(reference, prompt, 24, greedy, torch::kCPU, float32);
  torch::manual_seed(5);
  const auto want_drawn = generate(reference, prompt, 24, drawn, torch::kCPU, float32);
  CHECK(std::set<int64_t>(want_drawn.begin() + 5, want_drawn.end()).size() > 5);
  for (int64_t N : {1, 2, 3, 4, 6}) {
    INFO("tp_size " << N);
    ModelArgs a = base;
    a.tp_size = N;
    a.vocab_parallel = true;
    auto model = make_model(a, w, torch::kDouble);
    model->eval();
    // last-position logits of every prefix, without and with the KV cache
    KVCache cache;
    for (int64_t t = 1; t <= T; ++t) {
      const auto want = reference->forward(idx.narrow(1, 0, t)).logits;
      const auto got = model->forward(idx.narrow(1, 0, t)).logits;
      REQUIRE(got.sizes() == torch::IntArrayRef({2, 1, V}));
      CHECK(rel_diff(got, want) <= kTol);
      const auto cached = model->forward(idx.narrow(1, t - 1, 1), {}, &cache).logits;
      CHECK(rel_diff(cached, want) <= kTol);
    }
    CHECK(generate(model, prompt, 24, greedy, torch::kCPU, float32) == want_greedy);  // past block_size too
    torch::manual_seed(5);
    CHECK(generate(model, prompt, 24, drawn, torch::kCPU, float32) == want_drawn);
  }

  SECTION("a vocab-parallel checkpoint at tp_size 4 runs at any tp_size, with vocab_parallel on or off, and the reverse") {
    for (bool trained_vocab : {true, false}) {
      Checkpoint ckpt;
      ckpt.model_args = base;
      ckpt.model_args.tp_size = 4;
      ckpt.model_args.vocab_parallel = trained_vocab;
      ckpt.model = w;
      for (int64_t N : {1, 2, 4})
        for (int on : {-1, 0, 1}) {
          INFO("trained vocab_parallel " << trained_vocab << ", run at tp_size " << N << ", vocab_parallel " << on);
          GPT m = model_from_checkpoint(ckpt, N, "", torch::kCPU, torch::kDouble, on);
          CHECK(m->args().vocab_parallel == (on < 0 ? trained_vocab : on == 1));
          CHECK(generate(m, prompt, 24, greedy, torch::kCPU, float32) == want_greedy);
        }
      GPT dense = model_from_checkpoint(ckpt, 0, "gpt", torch::kCPU, torch::kDouble);
      CHECK_FALSE(dense->args().vocab_parallel);
      CHECK(generate(dense, prompt, 24, greedy, torch::kCPU, float32) == want_greedy);
    }
  }
}

TEST_CASE("vocab_parallel with L < N shards per process (threads as processes): the simulation's loss, gradients, "
          "counts and logits",
          "[vocab][real_layout]") {
  // Tolerance: float64 1e-10; every rank's generation logits bit for bit the same.
  const int64_t V = 61, B = 2, T = 8;
  struct Mesh {
    int64_t n, W;
  };
  for (const Mesh mesh : {Mesh{4, 2}, Mesh{2, 2}, Mesh{3, 3}, Mesh{6, 2}}) {
    for (const Types& types : {Types{"tp", "tp"}, Types{"spd", "parallel"}}) {
      INFO(join(types) << ": tp_size " << mesh.n << " over " << mesh.W << " processes");
      const auto a = vocab_args(types, mesh.n, V, true, true, 12, 48, T);
      const DenseState w = perturbed_weights(a, 800 + mesh.n);
      const Batch batch = boundary_batch(B, T, V, mesh.n, 900 + mesh.n);
      auto sim = make_model(a, w, torch::kDouble);
      const auto want_loss = loss_and_grads(sim, batch);
      const auto want_grads = gathered_grads(sim);
      const auto want_norm = global_grad_norm(sim->param_slots(), sim->group());
      torch::Tensor want_logits;
      {
        torch::NoGradGuard no_grad;
        want_logits = sim->forward(batch.idx).logits;
      }
      std::vector<torch::Tensor> losses(size_t(mesh.W)), logits(size_t(mesh.W)), norms(size_t(mesh.W));
      std::vector<DenseState> grads(size_t(mesh.W));
      std::vector<CommTally> tallies(size_t(mesh.W));
      on_threads(mesh.n, mesh.W, [&](int64_t r, std::shared_ptr<ThreadGroup> group) {
        GPT model(a, group);
        model->to(torch::kDouble);
        model->load_dense_state(w);
        losses[size_t(r)] = loss_and_grads(model, batch);
        for (auto& s : model->param_slots()) {
          const auto g = s.param.grad();
          grads[size_t(r)][s.dense_name] = s.sharded() ? dense_from_shards(group->gather_shards(g), s.layout) : g;
        }
        norms[size_t(r)] = global_grad_norm(model->param_slots(), *group);
        torch::NoGradGuard no_grad;
        logits[size_t(r)] = model->forward(batch.idx).logits;
        tallies[size_t(r)] = group->tally();
      });
      for (int64_t r = 0; r < mesh.W; ++r) {
        INFO("rank " << r);
        CHECK(rel_scalar(losses[size_t(r)], want_loss) <= kTol);
        CHECK(rel_scalar(norms[size_t(r)], want_norm) <= kTol);
        const auto cmp = compare_states(grads[size_t(r)], want_grads);
        INFO(cmp.describe());
        CHECK(cmp.problems.empty());
        CHECK(cmp.worst <= kTol);
        CHECK(rel_diff(logits[size_t(r)], want_logits) <= kTol);
        CHECK(torch::equal(logits[size_t(r)], logits[0]));
        // what a real process sends: the simulation's tally (plus the gather of the logits), kind by kind
        for (int k = 0; k < kCommKinds; ++k) {
          if (CommKind(k) == CommKind::GradNormAllReduce) continue;  // the test's own extra call
          INFO(comm_kind_name(CommKind(k)));
          CHECK(tallies[size_t(r)].count[size_t(k)] == sim->group().tally().count[size_t(k)]);
          CHECK(tallies[size_t(r)].bytes[size_t(k)] == sim->group().tally().bytes[size_t(k)]);
        }
      }
    }
  }
}

TEST_CASE("configs/train_gpt2_tp_vocab.py states its vocab-parallel counts, and they are the plan's", "[vocab][config]") {
  const auto path = std::filesystem::path(__FILE__).parent_path().parent_path() / "configs" / "train_gpt2_tp_vocab.py";
  REQUIRE(std::filesystem::is_regular_file(path));
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  const std::string source = text.str();
  std::smatch m;
  REQUIRE(std::regex_search(source, m,
                            std::regex(R"(# vocab-parallel comms per micro-step: embedding all-reduce (\d+), lm_head )"
                                       R"(all-reduce (\d+), loss all-reduce (\d+))")));
  std::ostringstream notices;
  const TrainConfig cfg = load_train_config({path.string()}, {}, notices);
  CHECK(cfg.vocab_parallel);
  const ModelArgs args = model_args_from(cfg, 50304);
  CHECK(args.vocab_size % args.tp_size == 0);  // 12576 rows per shard, no padding
  const CommPlan plan = plan_communications(args, cfg.batch_size, cfg.gradient_accumulation_steps, true, 2, 4);
  CHECK(std::stoll(m[1].str()) == plan.vocab_forward_allreduce);
  CHECK(std::stoll(m[2].str()) == plan.vocab_backward_allreduce);
  CHECK(std::stoll(m[3].str()) == plan.vocab_loss_allreduce);
  CHECK(plan.vocab_forward_bytes == 12 * 1024 * 768 * 4);
  CHECK(plan.vocab_backward_bytes == 12 * 1024 * 768 * 2);
  CHECK(plan.vocab_loss_bytes == 12 * 1024 * 4);
  CHECK(plan.collectives_per_step() == 2121);  // as the header says (train_gpt2_tp.py: 1921)
}
