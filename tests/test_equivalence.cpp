// Whole-model numerics: DistributedGPT against the dense GPT (tp blocks, and every type at
// tp_size 1), against a per-shard reference of SPEC §1 written here (spd, parallel, both merges),
// the communication counts of SPEC §3 (tally and plan), and determinism.
#include <catch2/catch.hpp>

#include <limits>
#include <random>

#include "model/comm_plan.h"
#include "model/optim.h"
#include "test_util.h"

using namespace dgpt;
using namespace dgpt::test;

namespace {

using Types = std::vector<std::string>;

bool has_proj_bias(const ModelArgs& a, size_t layer) { return a.bias && a.block_types[layer] != "parallel"; }

// ---------------------------------------------------------------------------------------------
// The reference: SPEC §1 written out with plain per-shard torch ops on dense weights.
// ---------------------------------------------------------------------------------------------
using Weights = std::map<std::string, torch::Tensor>;

torch::Tensor opt_w(const Weights& w, const std::string& name) {
  auto it = w.find(name);
  return it == w.end() ? torch::Tensor() : it->second;
}
torch::Tensor plus(const torch::Tensor& a, const torch::Tensor& b) { return b.defined() ? a + b : a; }

torch::Tensor ref_layer_norm(const torch::Tensor& x, const Weights& w, const std::string& name) {
  auto mu = x.mean(-1, true);
  auto xc = x - mu;
  auto var = (xc * xc).mean(-1, true);
  return plus(xc / torch::sqrt(var + 1e-5) * w.at(name + ".weight"), opt_w(w, name + ".bias"));
}

torch::Tensor ref_gelu(const torch::Tensor& x) { return 0.5 * x * (1.0 + torch::erf(x / std::sqrt(2.0))); }

// A_i(u): shard i's heads [i*H/N, (i+1)*H/N), c_proj columns of those heads, no c_proj bias.
torch::Tensor ref_attn_shard(const torch::Tensor& u, const Weights& w, const std::string& p, int64_t i, int64_t N,
                             int64_t H) {
  const int64_t B = u.size(0), T = u.size(1), C = u.size(2), cs = C / N, hs = H / N, hd = C / H;
  const auto& wa = w.at(p + "attn.c_attn.weight");
  const auto ba = opt_w(w, p + "attn.c_attn.bias");
  auto project = [&](int64_t which) {  // which: 0 = q, 1 = k, 2 = v
    auto y = u.matmul(wa.narrow(0, which * C + i * cs, cs).t());
    if (ba.defined()) y = y + ba.narrow(0, which * C + i * cs, cs);
    return y.view({B, T, hs, hd}).transpose(1, 2);
  };
  auto q = project(0), k = project(1), v = project(2);
  auto att = q.matmul(k.transpose(-2, -1)) / std::sqrt(double(hd));
  auto future = torch::ones({T, T}, torch::TensorOptions().dtype(torch::kBool)).triu(1);
  att = torch::softmax(att.masked_fill(future, -std::numeric_limits<double>::infinity()), -1);
  auto y = att.matmul(v).transpose(1, 2).reshape({B, T, cs});
  return y.matmul(w.at(p + "attn.c_proj.weight").narrow(1, i * cs, cs).t());
}

// M_i(u): rows [i*4C/N, (i+1)*4C/N) of c_fc, the matching c_proj columns, no c_proj bias.
torch::Tensor ref_mlp_shard(const torch::Tensor& u, const Weights& w, const std::string& p, int64_t i, int64_t N) {
  const int64_t hs = 4 * u.size(2) / N;
  auto h = u.matmul(w.at(p + "mlp.c_fc.weight").narrow(0, i * hs, hs).t());
  auto bf = opt_w(w, p + "mlp.c_fc.bias");
  if (bf.defined()) h = h + bf.narrow(0, i * hs, hs);
  return ref_gelu(h).matmul(w.at(p + "mlp.c_proj.weight").narrow(1, i * hs, hs).t());
}

torch::Tensor ref_loss(const Weights& w, const ModelArgs& a, const Batch& batch) {
  const int64_t N = a.tp_size, H = a.n_head, L = a.n_layer;
  const int64_t B = batch.idx.size(0), T = batch.idx.size(1), C = a.n_embd;
  const auto& wte = w.at("transformer.wte.weight");
  auto x = wte.index_select(0, batch.idx.reshape(-1)).view({B, T, C}) + w.at("transformer.wpe.weight").narrow(0, 0, T);
  auto prefix = [](int64_t l) { return "transformer.h." + std::to_string(l) + "."; };
  int64_t l = 0;
  while (l < L) {
    const std::string& type = a.block_types[size_t(l)];
    const std::string p = prefix(l);
    const auto b_attn = opt_w(w, p + "attn.c_proj.bias"), b_mlp = opt_w(w, p + "mlp.c_proj.bias");
    if (type == "tp") {
      // h = x + sum_i A_i(ln_1(x)) + b_attn; out = h + sum_i M_i(ln_2(h)) + b_mlp
      auto u = ref_layer_norm(x, w, p + "ln_1");
      auto h = x;
      for (int64_t i = 0; i < N; ++i) h = h + ref_attn_shard(u, w, p, i, N, H);
      h = plus(h, b_attn);
      auto v = ref_layer_norm(h, w, p + "ln_2");
      auto out = h;
      for (int64_t i = 0; i < N; ++i) out = out + ref_mlp_shard(v, w, p, i, N);
      x = plus(out, b_mlp);
      ++l;
    } else if (type == "spd") {
      // y_i = x + A_i(ln_1(x)) + b_attn; out = x + b_attn + b_mlp + sum_i [A_i + M_i(ln_2(y_i))]
      auto u = ref_layer_norm(x, w, p + "ln_1");
      auto out = plus(plus(x, b_attn), b_mlp);
      for (int64_t i = 0; i < N; ++i) {
        auto A = ref_attn_shard(u, w, p, i, N, H);
        auto y = plus(x + A, b_attn);
        out = out + A + ref_mlp_shard(ref_layer_norm(y, w, p + "ln_2"), w, p, i, N);
      }
      x = out;
      ++l;
    } else if (type == "parallel") {
      int64_t e = l;
      while (e < L && a.block_types[size_t(e)] == "parallel") ++e;
      const auto x0 = x;
      std::vector<torch::Tensor> xs(static_cast<size_t>(N), x0), before(static_cast<size_t>(N)), last_z(static_cast<size_t>(N));
      for (int64_t k = l; k < e; ++k) {
        const std::string pk = prefix(k);
        for (int64_t i = 0; i < N; ++i) {
          auto& xi = xs[size_t(i)];
          auto A = ref_attn_shard(ref_layer_norm(xi, w, pk + "ln_1"), w, pk, i, N, H);
          auto M = ref_mlp_shard(ref_layer_norm(xi + A, w, pk + "ln_2"), w, pk, i, N);
          before[size_t(i)] = xi;
          last_z[size_t(i)] = A + M;
          xi = xi + A + M;
        }
      }
      torch::Tensor out;
      if (a.parallel_merge == "sum") {  // x0 + sum_i (x_i - x0)
        out = x0;
        for (int64_t i = 0; i < N; ++i) out = out + (xs[size_t(i)] - x0);
      } else {  // mean_i(x_i before the last block) + sum_i z_i(last block)
        auto mean = before[0];
        for (int64_t i = 1; i < N; ++i) mean = mean + before[size_t(i)];
        out = mean / double(N);
        for (int64_t i = 0; i < N; ++i) out = out + last_z[size_t(i)];
      }
      x = out;
      l = e;
    } else if (type == "neox") {
      // out = x + sum_i [A_i(ln_1(x)) + M_i(ln_2(x))] + b_attn + b_mlp
      auto u = ref_layer_norm(x, w, p + "ln_1"), v = ref_layer_norm(x, w, p + "ln_2");
      auto out = plus(plus(x, b_attn), b_mlp);
      for (int64_t i = 0; i < N; ++i) out = out + ref_attn_shard(u, w, p, i, N, H) + ref_mlp_shard(v, w, p, i, N);
      x = out;
      ++l;
    } else if (type == "ladder") {
      // A run of k blocks = 2k sub-layers; x_m = x_{m-1} + S_m(LN_m(x_{m-2})) + b_m, x_0 = x_{-1} = x.
      int64_t e = l;
      while (e < L && a.block_types[size_t(e)] == "ladder") ++e;
      std::vector<torch::Tensor> xs{x, x};  // x_{-1}, x_0
      for (int64_t k = l; k < e; ++k) {
        const std::string pk = prefix(k);
        for (int sub = 0; sub < 2; ++sub) {
          const auto& read = xs[xs.size() - 2];  // x_{m-2}
          torch::Tensor s_m = torch::zeros_like(x);
          if (sub == 0) {
            auto u = ref_layer_norm(read, w, pk + "ln_1");
            for (int64_t i = 0; i < N; ++i) s_m = s_m + ref_attn_shard(u, w, pk, i, N, H);
            s_m = plus(s_m, opt_w(w, pk + "attn.c_proj.bias"));
          } else {
            auto u = ref_layer_norm(read, w, pk + "ln_2");
            for (int64_t i = 0; i < N; ++i) s_m = s_m + ref_mlp_shard(u, w, pk, i, N);
            s_m = plus(s_m, opt_w(w, pk + "mlp.c_proj.bias"));
          }
          xs.push_back(xs.back() + s_m);
        }
      }
      x = xs.back();
      l = e;
    } else {
      FAIL("unknown block type " << type);
    }
  }
  x = ref_layer_norm(x, w, "transformer.ln_f");
  auto logp = torch::log_softmax(x.matmul(wte.t()), -1).view({B * T, -1});
  return -logp.gather(1, batch.targets.reshape({-1, 1})).mean();
}

struct RefResult {
  torch::Tensor loss;
  DenseState grads;
};

RefResult reference(const DenseState& dense, const ModelArgs& a, const Batch& batch) {
  Weights leaves;
  for (auto& [name, t] : dense)
    if (name != "lm_head.weight") leaves[name] = t.to(torch::kDouble).detach().clone().requires_grad_(true);
  auto loss = ref_loss(leaves, a, Batch{batch.idx.cpu(), batch.targets.cpu()});  // the reference runs on the CPU
  loss.backward();
  RefResult r{loss.detach(), {}};
  for (auto& [name, t] : leaves) r.grads[name] = t.grad();
  return r;
}

double rel_scalar(const torch::Tensor& a, const torch::Tensor& b) {
  const double x = a.item<double>(), y = b.item<double>();
  return std::abs(x - y) / std::max(std::abs(y), 1e-300);
}

}  // namespace

// ---------------------------------------------------------------------------------------------

TEST_CASE("tp_size 1: every block type equals the dense GPT", "[equivalence][tp1]") {
  // Tolerance: float64, loss and every dense gradient to 1e-10 relative (max-abs measure).
  const double kTol = 1e-10;
  const std::vector<Types> patterns = {
      {"tp", "tp", "tp"},
      {"spd", "spd", "spd"},
      {"parallel", "parallel", "parallel"},
      {"tp", "parallel", "tp"},
      {"parallel", "parallel", "spd", "parallel"},
      {"spd", "parallel", "parallel", "tp"},
  };
  const Batch batch = random_batch(2, 8, 50, 11);
  int64_t seed = 600;
  for (const auto& types : patterns)
    for (const std::string merge : {"sum", "mean"})
      for (bool bias : {true, false}) {
        const auto a = dist_args(types, 1, 4, 16, bias, merge);
        INFO("pattern " << join(types) << ", merge " << merge << ", bias " << bias);
        const DenseState dense = perturbed_weights(a, ++seed);
        // The dense GPT has c_proj biases in every layer; a parallel block has none, which at
        // tp_size 1 is the dense block with those biases zero.
        DenseState dense_gpt = dense;
        std::set<std::string> zero_biases;
        for (size_t l = 0; l < types.size(); ++l)
          if (bias && !has_proj_bias(a, l))
            for (const char* which : {"attn", "mlp"}) {
              const std::string name = "transformer.h." + std::to_string(l) + "." + which + ".c_proj.bias";
              dense_gpt[name] = torch::zeros({a.n_embd});
              zero_biases.insert(name);
            }
        auto model = make_model(a, dense, torch::kDouble);
        auto gpt = make_model(dense_args_of(a), dense_gpt, torch::kDouble);
        const auto loss = loss_and_grads(model, batch);
        const auto want = loss_and_grads(gpt, batch);
        CHECK(rel_scalar(loss, want) <= kTol);
        const auto cmp = compare_states(gathered_grads(model), gathered_grads(gpt), zero_biases);
        INFO(cmp.describe());
        CHECK(cmp.problems.empty());
        CHECK(cmp.worst <= kTol);
        CHECK(model->group().tally().total_count() == 0);
      }
}

TEST_CASE("tp blocks equal the dense GPT for every tp_size", "[equivalence][tp]") {
  // Tolerance (max-abs relative measure, per tensor): float64 1e-10; float32 1e-5 (both models in
  // float32: only the summation order differs).
  const Types types = {"tp", "tp"};
  const Batch batch = random_batch(3, 16, 50, 21);
  const ModelArgs base = dist_args(types, 1, 12, 48, /*bias=*/true, "sum", 50, 16);
  const DenseState dense = perturbed_weights(base, 700);
  for (auto dtype : {torch::kDouble, torch::kFloat}) {
    const double kTol = dtype == torch::kDouble ? 1e-10 : 1e-5;
    auto gpt = make_model(dense_args_of(base), dense, dtype);
    const auto want = loss_and_grads(gpt, batch);
    const auto want_grads = gathered_grads(gpt);
    for (int64_t N : {1, 2, 3, 4, 6}) {
      INFO("tp_size " << N << ", dtype " << (dtype == torch::kDouble ? "float64" : "float32"));
      ModelArgs a = base;
      a.tp_size = N;
      auto model = make_model(a, dense, dtype);
      const auto loss = loss_and_grads(model, batch);
      CHECK(rel_scalar(loss, want) <= kTol);
      const auto cmp = compare_states(gathered_grads(model), want_grads);
      INFO(cmp.describe());
      CHECK(cmp.problems.empty());
      CHECK(cmp.worst <= kTol);
    }
  }
}

TEST_CASE("spd, parallel and mixed models match the per-shard reference of SPEC §1", "[equivalence][reference]") {
  // Tolerance: float64, loss 1e-10 relative; every dense gradient 1e-10 relative (max-abs measure).
  const double kTol = 1e-10;
  const std::vector<Types> patterns = {
      {"spd", "spd", "spd"},                                           // all spd
      {"parallel", "parallel", "parallel"},                            // all parallel (run = model)
      {"tp", "spd", "parallel", "tp", "spd"},                          // lone parallel in the middle
      {"parallel"},                                                    // lone parallel, whole model
      {"spd", "parallel", "parallel", "parallel", "parallel", "tp"},   // long run inside
      {"parallel", "parallel", "parallel", "tp"},                      // run at the start
      {"spd", "tp", "parallel", "parallel", "parallel"},               // run at the end
      {"parallel", "tp", "spd", "parallel", "parallel", "parallel"},   // mixed
      {"parallel", "parallel", "spd", "parallel", "tp", "parallel"},   // several runs
      {"tp", "tp", "tp"},                                              // tp against the same reference
  };
  const int64_t B = 2, T = 8;
  const Batch batch = random_batch(B, T, 50, 31);
  int64_t seed = 800;
  int64_t cases = 0;
  for (const auto& types : patterns)
    for (int64_t N : {2, 4})
      for (const std::string merge : {"sum", "mean"})
        for (bool bias : {true, false}) {
          const auto a = dist_args(types, N, 8, 32, bias, merge, 50, T);
          INFO("pattern " << join(types) << ", tp_size " << N << ", merge " << merge << ", bias " << bias);
          const DenseState dense = perturbed_weights(a, ++seed);
          auto model = make_model(a, dense, torch::kDouble);
          const auto loss = loss_and_grads(model, batch);
          const auto ref = reference(dense, a, batch);
          CHECK(rel_scalar(loss, ref.loss) <= kTol);
          const auto cmp = compare_states(gathered_grads(model), ref.grads);
          INFO(cmp.describe());
          CHECK(cmp.problems.empty());
          CHECK(cmp.worst <= kTol);
          ++cases;
        }
  CHECK(cases == int64_t(patterns.size()) * 8);
}

TEST_CASE("neox and ladder blocks match the per-shard reference of SPEC §1 at tp_size 1-6", "[equivalence][reference][neox][ladder]") {
  // Tolerance: float64, loss and every dense gradient 1e-10 relative (max-abs measure). Both types
  // compute the same function at every tp_size: each tp_size's model also equals tp_size 1's.
  const double kTol = 1e-10;
  const std::vector<Types> patterns = {
      {"neox", "neox", "neox"},                                         // all neox
      {"ladder", "ladder", "ladder"},                                   // one long ladder run
      {"ladder"},                                                       // a lone ladder block
      {"tp", "ladder", "tp"},                                           // lone ladder in the middle
      {"ladder", "ladder", "spd", "parallel", "parallel"},              // ladder run at the start, next to parallel
      {"parallel", "parallel", "ladder", "ladder"},                     // ladder run at the end, after parallel
      {"neox", "ladder", "parallel", "spd", "tp", "ladder", "neox"},    // all five types
  };
  const int64_t B = 2, T = 8;
  const Batch batch = random_batch(B, T, 50, 51);
  int64_t seed = 1500;
  for (const auto& types : patterns)
    for (bool bias : {true, false}) {
      const DenseState dense = perturbed_weights(dist_args(types, 1, 12, 24, bias, "sum", 50, T), ++seed);
      const bool n_independent = std::all_of(types.begin(), types.end(),
                                             [](const std::string& t) { return t == "neox" || t == "ladder" || t == "tp"; });
      torch::Tensor loss_at_1;
      for (int64_t N : {1, 2, 3, 4, 6}) {
        const auto a = dist_args(types, N, 12, 24, bias, "sum", 50, T);
        INFO("pattern " << join(types) << ", tp_size " << N << ", bias " << bias);
        auto model = make_model(a, dense, torch::kDouble);
        const auto loss = loss_and_grads(model, batch);
        const auto ref = reference(dense, a, batch);
        CHECK(rel_scalar(loss, ref.loss) <= kTol);
        const auto cmp = compare_states(gathered_grads(model), ref.grads);
        INFO(cmp.describe());
        CHECK(cmp.problems.empty());
        CHECK(cmp.worst <= kTol);
        if (N == 1) loss_at_1 = loss;
        if (n_independent) CHECK(rel_scalar(loss, loss_at_1) <= kTol);
      }
    }
}

TEST_CASE("the variants are different functions at tp_size > 1 (the reference checks are not vacuous)",
          "[equivalence][reference]") {
  // Tolerance: the losses must differ by more than 1e-8 relative (float64), far above rounding.
  const Batch batch = random_batch(2, 8, 50, 41);
  auto loss_of = [&](const Types& types, int64_t N, const std::string& merge) {
    const auto a = dist_args(types, N, 8, 32, true, merge);
    DenseState dense = perturbed_weights(dist_args(Types(types.size(), "tp"), N, 8, 32, true), 900);
    for (size_t l = 0; l < types.size(); ++l)
      if (types[l] == "parallel")
        for (const char* which : {"attn", "mlp"}) dense.erase("transformer.h." + std::to_string(l) + "." + which + ".c_proj.bias");
    auto m = make_model(a, dense, torch::kDouble);
    return m->forward(batch.idx, batch.targets).loss;
  };
  const Types run = {"parallel", "parallel", "parallel"};
  CHECK(rel_scalar(loss_of({"spd", "spd"}, 2, "sum"), loss_of({"tp", "tp"}, 2, "sum")) > 1e-8);
  CHECK(rel_scalar(loss_of(run, 2, "sum"), loss_of(run, 2, "mean")) > 1e-8);
  CHECK(rel_scalar(loss_of(run, 2, "sum"), loss_of(run, 4, "sum")) > 1e-8);
  CHECK(rel_scalar(loss_of({"spd", "spd"}, 2, "sum"), loss_of({"spd", "spd"}, 4, "sum")) > 1e-8);
  // neox and ladder are other architectures than tp (and than each other), whatever tp_size.
  CHECK(rel_scalar(loss_of({"neox", "neox"}, 2, "sum"), loss_of({"tp", "tp"}, 2, "sum")) > 1e-8);
  CHECK(rel_scalar(loss_of({"ladder", "ladder"}, 2, "sum"), loss_of({"tp", "tp"}, 2, "sum")) > 1e-8);
  CHECK(rel_scalar(loss_of({"ladder", "ladder"}, 2, "sum"), loss_of({"neox", "neox"}, 2, "sum")) > 1e-8);
  // A lone parallel block: both merges are the same function (mean of N identical copies is x0).
  CHECK(rel_scalar(loss_of({"tp", "parallel", "tp"}, 4, "sum"), loss_of({"tp", "parallel", "tp"}, 4, "mean")) <= 1e-12);
}

TEST_CASE("communication counts: tally of a training step equals SPEC §3 and the plan", "[equivalence][comms]") {
  // Exact integer counts and byte sizes.
  std::vector<Types> patterns = {
      {"tp"},
      {"spd"},
      {"parallel"},
      {"parallel", "parallel"},
      {"parallel", "tp", "parallel"},
      {"spd", "parallel", "spd", "parallel", "parallel"},
      {"tp", "tp", "spd", "spd"},
      {"parallel", "parallel", "parallel", "spd", "spd", "tp", "parallel", "parallel"},
  };
  patterns.push_back({"neox", "ladder", "ladder", "parallel", "ladder", "neox"});
  patterns.push_back({"ladder"});
  std::mt19937 rng(20240601);
  const std::vector<std::string> kinds = {"tp", "spd", "parallel", "neox", "ladder"};
  for (int k = 0; k < 60; ++k) {  // held-out patterns of all five types
    const int len = 1 + int(rng() % 8);
    Types t;
    for (int j = 0; j < len; ++j) t.push_back(kinds[rng() % kinds.size()]);
    patterns.push_back(t);
  }
  const int64_t B = 2, T = 8, C = 12;
  const Batch batch = random_batch(B, T, 30, 51);
  int64_t index = 0;
  for (const auto& types : patterns) {
    ++index;
    // SPEC §3, computed here: t tp blocks, s spd blocks, r maximal runs of parallel blocks, n neox
    // blocks, d ladder blocks (2d of the forward all-reduces may overlap compute).
    int64_t t = 0, s = 0, p = 0, r = 0, n = 0, d = 0;
    for (size_t l = 0; l < types.size(); ++l) {
      if (types[l] == "tp") ++t;
      if (types[l] == "spd") ++s;
      if (types[l] == "neox") ++n;
      if (types[l] == "ladder") ++d;
      if (types[l] == "parallel") {
        ++p;
        if (l == 0 || types[l - 1] != "parallel") ++r;
      }
    }
    const int64_t want_allreduces = 2 * t + s + r + n + 2 * d;
    for (int64_t N : {2, 3}) {
      const bool bias = index % 2 == 0;
      const auto dtype = (index + N) % 2 == 0 ? torch::kFloat : torch::kDouble;
      const int64_t elem = dtype == torch::kFloat ? 4 : 8;
      const auto a = dist_args(types, N, 6, C, bias, index % 3 == 0 ? "mean" : "sum", 30, T);
      INFO("pattern " << join(types) << ", tp_size " << N << ", bias " << bias << ", elem " << elem);
      auto model = make_model(a, perturbed_weights(a, 1000 + index), dtype);
      loss_and_grads(model, batch);  // forward, backward, replicated-gradient sync
      clip_grad_norm(model->param_slots(), model->group(), 1.0);
      const auto& tally = model->group().tally();

      // Replicated params used in the shard region: spd: ln_1, ln_2 (weight [+ bias]) and the
      // attention c_proj bias; parallel and neox: ln_1, ln_2.
      const int64_t want_sync_numel = s * C * (bias ? 5 : 2) + (p + n) * C * (bias ? 4 : 2);
      CHECK(tally.count_of(CommKind::ForwardAllReduce) == want_allreduces);
      CHECK(tally.count_of(CommKind::BackwardAllReduce) == want_allreduces);
      CHECK(tally.bytes_of(CommKind::ForwardAllReduce) == want_allreduces * B * T * C * elem);
      CHECK(tally.bytes_of(CommKind::BackwardAllReduce) == want_allreduces * B * T * C * elem);
      CHECK(tally.count_of(CommKind::ReplicatedGradSync) == (s + p + n > 0 ? 1 : 0));
      CHECK(tally.bytes_of(CommKind::ReplicatedGradSync) == want_sync_numel * elem);
      CHECK(tally.count_of(CommKind::GradNormAllReduce) == 1);
      CHECK(tally.bytes_of(CommKind::GradNormAllReduce) == 8);
      CHECK(tally.count_of(CommKind::DataParallelGrad) == 0);

      const CommPlan plan = plan_communications(a, B, 1, true, elem, elem);
      CHECK(plan.forward_allreduce == want_allreduces);
      CHECK(plan.backward_allreduce == want_allreduces);
      CHECK(plan.activation_bytes == B * T * C * elem);
      CHECK(plan.replicated_grad_sync == tally.count_of(CommKind::ReplicatedGradSync));
      CHECK(plan.replicated_grad_bytes == tally.bytes_of(CommKind::ReplicatedGradSync));
      CHECK(plan.grad_norm_allreduce == 1);
      CHECK(plan.grad_norm_bytes == tally.bytes_of(CommKind::GradNormAllReduce));
      CHECK(plan.collectives_per_step() == tally.total_count());
      CHECK(plan.bytes_per_step() == tally.total_bytes());
      int64_t row_sum = 0, overlapping = 0;
      for (auto& row : plan.rows) {
        row_sum += row.forward_allreduce;
        overlapping += row.overlapping_allreduce;
      }
      CHECK(row_sum == want_allreduces);
      CHECK(overlapping == 2 * d);
      CHECK(plan.overlapping_allreduce == 2 * d);
    }
  }
  SECTION("tp_size 1 communicates nothing") {
    for (const auto& types : patterns) {
      INFO("pattern " << join(types));
      const auto a = dist_args(types, 1, 6, C, true, "sum", 30, T);
      auto model = make_model(a, perturbed_weights(a, 77), torch::kDouble);
      loss_and_grads(model, batch);
      clip_grad_norm(model->param_slots(), model->group(), 1.0);
      CHECK(model->group().tally().total_count() == 0);
      CHECK(model->group().tally().total_bytes() == 0);
      const CommPlan plan = plan_communications(a, B, 1, true, 8, 8);
      CHECK(plan.collectives_per_step() == 0);
      CHECK(plan.bytes_per_step() == 0);
    }
  }
}

TEST_CASE("forward passes are deterministic", "[equivalence][determinism]") {
  // Tolerance: bitwise identical.
  const Batch batch = random_batch(2, 8, 50, 61);
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    const auto a = dist_args({"parallel", "tp", "spd", "parallel", "parallel"}, 2, 8, 32, true, "mean");
    const auto dense = perturbed_weights(a, 1100);
    auto model = make_model(a, dense, dtype);
    const auto first = model->forward(batch.idx, batch.targets);
    const auto second = model->forward(batch.idx, batch.targets);
    CHECK(torch::equal(first.loss, second.loss));
    CHECK(torch::equal(first.logits, second.logits));
    auto twin = make_model(a, dense, dtype);
    CHECK(torch::equal(twin->forward(batch.idx, batch.targets).loss, first.loss));
    model->discard_replicated_grads();
  }
}
