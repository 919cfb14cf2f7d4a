// The training step, end to end, per block type and tp_size, as ratios to the dense model measured
// in the same run, with the step's GEMM floor measured alongside (issue 15; README "Performance
// notes"). Every row is dgpt's own step: forward, backward, grad clip, AdamW, zero_grad, through
// the OptimizerStep that `dgpt train` runs, on random tokens. With backend 'sim' all N shards run
// on this one device, so a row's time is SIMULATED time: what simulating N shards costs here.
//
//   train_step [--shapes=small|gpt2] [--types=dense,tp,spd,parallel,neox,ladder] [--tp=1,2,4,8]
//              [--n_head=H] [--rounds=R] [--iters=I] [--burnin=B] [--json=FILE]
//              [--profile=TYPE:TP] [--profile_steps=S] [--profile_parents=0|1] [--alloc_cache=0|1]
//              [--aten_row=0|1]
//
// small: issue 15's config (4 layers, 128 wide, block 64, batch 12, vocab 65, float32; 8 heads so
// that tp_size 8 divides them; --n_head=4 for nanoGPT's shakespeare_char CPU run).
// gpt2: GPT-2 124M's shapes (12 layers, 768 wide, 12 heads, vocab 50257), block 128, batch 2.
// Rows are interleaved: each round times every row in turn, so a drift of the machine's speed
// moves all of them alike; a row's time is the median of all its timed steps. --aten_row=1 (the
// default) adds the dense model with dgpt's own CPU kernels off (model/cpu_blas.h: ATen's ops
// throughout, as DGPT_CPU_KERNELS=0 runs), so their effect is a ratio of the same run.
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>

#include "base/clock.h"
#include "base/errors.h"
#include "base/torch_compat.h"
#include "blocks/block.h"
#include "config/config.h"
#include "model/cpu_allocator.h"
#include "model/cpu_blas.h"
#include "model/model.h"
#include "model/optim.h"
#include "model/precision.h"
#include "run/run_settings.h"
#include "run/train.h"

#include <torch/csrc/autograd/profiler_legacy.h>

namespace dgpt {
namespace {

struct Options {
  std::string shapes = "small";
  std::vector<std::string> types{"dense", "tp", "spd", "parallel", "neox", "ladder"};
  std::vector<int64_t> tp{1, 2, 4, 8};
  int64_t n_head = 0;  // 0: the shapes' own
  int64_t rounds = 10, iters = 6, burnin = 3;
  std::string json, profile;
  int64_t profile_steps = 20;
  bool alloc_cache = true;  // model/cpu_allocator.h, as dgpt runs; 0: LibTorch's own CPU allocator
  bool aten_row = true;     // a dense row with dgpt's CPU kernels off
  bool profile_parents = false;  // the profile's op table keyed by "enclosing span > op"
};

std::vector<std::string> split_list(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');)
    if (!item.empty()) out.push_back(item);
  return out;
}

int64_t to_int(const std::string& flag, const std::string& v) {
  try {
    size_t used = 0;
    const long long n = std::stoll(v, &used);
    if (used == v.size() && n >= 0) return n;
  } catch (const std::exception&) {
  }
  throw UserError(flag + "=" + v + " is not a non-negative integer");
}

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const auto eq = a.find('=');
    const std::string key = a.substr(0, eq), v = eq == std::string::npos ? "" : a.substr(eq + 1);
    if (key == "--shapes" && (v == "small" || v == "gpt2")) o.shapes = v;
    else if (key == "--types") o.types = split_list(v);
    else if (key == "--tp") {
      o.tp.clear();
      for (auto& t : split_list(v)) o.tp.push_back(to_int(key, t));
    } else if (key == "--n_head") o.n_head = to_int(key, v);
    else if (key == "--rounds") o.rounds = to_int(key, v);
    else if (key == "--iters") o.iters = to_int(key, v);
    else if (key == "--burnin") o.burnin = to_int(key, v);
    else if (key == "--json") o.json = v;
    else if (key == "--profile") o.profile = v;
    else if (key == "--profile_steps") o.profile_steps = to_int(key, v);
    else if (key == "--profile_parents") o.profile_parents = to_int(key, v) != 0;
    else if (key == "--alloc_cache" && (v == "0" || v == "1")) o.alloc_cache = v == "1";
    else if (key == "--aten_row" && (v == "0" || v == "1")) o.aten_row = v == "1";
    else throw UserError("unknown or malformed argument '" + a + "' (see the comment atop bench/train_step.cpp)");
  }
  if (o.rounds < 1 || o.iters < 1) throw UserError("--rounds and --iters must be at least 1");
  return o;
}

TrainConfig base_config(const Options& o) {
  TrainConfig c;
  c.device = "cpu";
  c.device_was_set = true;
  c.dtype = "float32";
  c.dropout = 0.0;
  c.bias = false;
  c.gradient_accumulation_steps = 1;
  c.learning_rate = 1e-3;
  c.beta2 = 0.99;
  c.decay_lr = false;
  if (o.shapes == "small") {
    c.n_layer = 4, c.n_embd = 128, c.n_head = 8, c.block_size = 64, c.batch_size = 12;
  } else {
    c.n_layer = 12, c.n_embd = 768, c.n_head = 12, c.block_size = 128, c.batch_size = 2;
  }
  if (o.n_head > 0) c.n_head = o.n_head;
  return c;
}

int64_t vocab_of(const Options& o) { return o.shapes == "small" ? 65 : 50257; }

struct Row {
  std::string type;  // "dense" or a block type (every layer)
  int64_t tp = 1;
  ModelArgs args;
  std::vector<double> step_ms;
  bool aten = false;  // dgpt's CPU kernels off while this row runs
  double median() const {
    auto v = step_ms;
    std::sort(v.begin(), v.end());
    return v.empty() ? 0 : (v[(v.size() - 1) / 2] + v[v.size() / 2]) / 2;
  }
};

ModelArgs args_for(const TrainConfig& base, const std::string& type, int64_t tp, int64_t vocab) {
  TrainConfig c = base;
  if (type == "dense") {
    c.model_type = ModelArgs::kDenseModelType;
    c.tp_size = 1;
  } else {
    c.model_type = ModelArgs::kShardedModelType;
    c.tp_size = tp;
    c.block_types.assign(size_t(c.n_layer), type);
  }
  validate(c, known_block_types());
  return model_args_from(c, vocab);
}

// One model, its optimizer and the step `dgpt train` runs.
struct Stepper {
  const TrainConfig& cfg;
  Precision precision;
  GPT model;
  AdamW optimizer;
  LossScaler scaler;
  at::Generator tokens;
  int64_t it = 0;

  Stepper(const TrainConfig& c, const ModelArgs& args, const Precision& p)
      : cfg(c),
        precision(p),
        model(build_model(args, std::make_shared<SimulatedGroup>(args.tp_size), c.seed, torch::kCPU, torch::kFloat)),
        optimizer(model->param_slots(), c.weight_decay, c.beta1, c.beta2),
        scaler(p.loss_scaling()),
        tokens(at::detail::createCPUGenerator(uint64_t(c.seed))) {
    model->train();
  }

  void step() {
    auto batch_for = [&](int64_t) {
      auto x = torch::randint(model->args().vocab_size, {cfg.batch_size, cfg.block_size + 1}, tokens, torch::kLong);
      return Batch{x.narrow(1, 0, cfg.block_size), x.narrow(1, 1, cfg.block_size)};
    };
    OptimizerStep{model, optimizer, cfg, precision, scaler, nullptr}(it++, cfg.learning_rate, 0, 1, batch_for);
  }
};

// --- The GEMM floor: the dense step's matmuls alone, each shape timed by itself, the faster of
// ATen's and dgpt's way ------------------------------------------------------------------------------

struct Gemm {
  int64_t batch, m, k, n;  // [batch,] [m,k] x [k,n]
  int64_t count;
};

// Every matmul of one dense training step (forward and both backward products of each), nanoGPT's
// model: per layer the four Linears and the two attention bmms, then the tied lm_head.
std::vector<Gemm> dense_step_gemms(const ModelArgs& a, int64_t B) {
  const int64_t T = a.block_size, C = a.n_embd, M = B * T, H = a.n_head, hd = C / H, V = a.vocab_size;
  std::vector<Gemm> g;
  auto linear = [&](int64_t in, int64_t out, int64_t count) {
    g.push_back({1, M, in, out, count});  // y = x W^T
    g.push_back({1, M, out, in, count});  // dx = dy W
    g.push_back({1, out, M, in, count});  // dW = dy^T x
  };
  for (auto [in, out] : {std::pair{C, 3 * C}, {C, C}, {C, 4 * C}, {4 * C, C}}) linear(in, out, a.n_layer);
  // scores = q k^T [T,hd]x[hd,T]; y = att v [T,T]x[T,hd]; backward: dq, dk, datt, dv
  g.push_back({B * H, T, hd, T, a.n_layer});      // q k^T
  g.push_back({B * H, T, T, hd, 3 * a.n_layer});  // att v, dq = ds k, dk = ds^T q
  g.push_back({B * H, T, hd, T, a.n_layer});      // datt = dy v^T
  g.push_back({B * H, T, T, hd, a.n_layer});      // dv = att^T dy
  linear(C, V, 1);
  return g;
}

// Median ms of fn() over a few reps.
double median_ms(const std::function<void()>& fn) {
  for (int i = 0; i < 3; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < 15; ++i) {
    const auto t0 = Clock::now();
    fn();
    t.push_back(seconds_since(t0) * 1e3);
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

// One GEMM shape's best time: ATen's mm/bmm, or (where dgpt's kernels can run) the way dgpt's CPU
// GEMMs run it, single-threaded BLAS per thread: a batch's items spread over the threads, a single
// product's rows split in one block per thread (model/cpu_gemm.cpp).
double time_gemm(const Gemm& g) {
  auto x = torch::randn({g.batch, g.m, g.k}), w = torch::randn({g.batch, g.k, g.n});
  auto y = torch::empty({g.batch, g.m, g.n});
  double best = median_ms([&] { g.batch == 1 ? torch::mm(x[0], w[0]) : torch::bmm(x, w); });
  if (!cpu_kernels_enabled() || !cpu_blas_available()) return best;
  const float *xp = x.data_ptr<float>(), *wp = w.data_ptr<float>();
  float* yp = y.data_ptr<float>();
  const int64_t threads = at::get_num_threads();
  const int64_t jobs = g.batch == 1 ? threads : g.batch, rows = g.batch == 1 ? (g.m + threads - 1) / threads : g.m;
  best = std::min(best, median_ms([&] {
    at::parallel_for(0, jobs, 1, [&](int64_t begin, int64_t end) {
      for (int64_t j = begin; j < end; ++j) {
        const int64_t item = g.batch == 1 ? 0 : j, r0 = g.batch == 1 ? j * rows : 0;
        const int64_t r1 = std::min(g.m, r0 + rows);
        if (r0 >= r1) continue;
        blas_gemm(false, false, int(r1 - r0), int(g.n), int(g.k), 1.0f, xp + (item * g.m + r0) * g.k, int(g.k),
                  wp + item * g.k * g.n, int(g.n), 0.0f, yp + (item * g.m + r0) * g.n, int(g.n));
      }
    });
  }));
  return best;
}

struct Floor {
  double ms = 0, gflop = 0;
};

Floor gemm_floor(const ModelArgs& dense, int64_t B) {
  Floor f;
  for (auto& g : dense_step_gemms(dense, B)) {
    f.ms += time_gemm(g) * double(g.count);
    f.gflop += 2.0 * double(g.batch * g.m * g.k * g.n * g.count) / 1e9;
  }
  return f;
}

// --- The profile: self time per op, grouped by kind ----------------------------------------------

struct Span {
  std::string name;
  int64_t depth = 0;  // 0: top level on its thread
  std::string parent;  // the enclosing span's name, "" at the top level
  double duration_us = 0, children_us = 0;
};

// "grandparent > parent" of a span's children: its own name after its parent's, two levels kept.
std::string ancestry(const Span& sp) {
  auto short_name = [](const std::string& n) {
    const auto lt = n.find("(anonymous namespace)::");
    if (lt == std::string::npos) return n;
    return n.substr(0, n.find("dgpt::")) + n.substr(lt + 23);
  };
  if (sp.parent.empty()) return short_name(sp.name);
  const auto last = sp.parent.rfind(" > ");
  return (last == std::string::npos ? sp.parent : sp.parent.substr(last + 3)) + " > " + short_name(sp.name);
}

// Runs `fn` under LibTorch's (legacy, CPU) autograd profiler, the same API in 1.13 and 2.x; every
// op and scope as a span with its direct children's total time, from the push/pop pairs per thread.
std::vector<Span> profile_ops(const std::function<void()>& fn) {
  namespace prof = torch::autograd::profiler;
  prof::enableProfilerLegacy(torch::profiler::impl::ProfilerConfig(torch::profiler::impl::ProfilerState::CPU));
  try {
    fn();
  } catch (...) {
    prof::disableProfilerLegacy();
    throw;
  }
  const auto lists = prof::disableProfilerLegacy();
  std::vector<Span> spans;
  for (auto& events : lists) {
    std::vector<std::pair<const prof::LegacyEvent*, size_t>> open;  // push event, index of its span
    for (auto& e : events) {
      if (e.kind() == prof::EventKind::PushRange) {
        spans.push_back(Span{e.name(), int64_t(open.size()), open.empty() ? "" : ancestry(spans[open.back().second]), 0, 0});
        open.push_back({&e, spans.size() - 1});
      } else if (e.kind() == prof::EventKind::PopRange && !open.empty()) {
        auto [push, index] = open.back();
        open.pop_back();
        spans[index].duration_us = push->cpuElapsedUs(e);
        if (!open.empty()) spans[open.back().second].children_us += spans[index].duration_us;
      }
    }
  }
  return spans;
}

std::string op_kind(const std::string& name) {
  static const std::vector<std::pair<std::string, std::vector<std::string>>> kinds{
      {"GEMM (mm, addmm, bmm)", {"aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm", "aten::addbmm"}},
      {"attention (dgpt's head-by-head BLAS, softmax, mask)", {"aten::softmax", "aten::_softmax", "aten::_softmax_backward_data",
                                      "aten::masked_fill", "aten::masked_fill_", "aten::triu", "aten::tril",
                                      "aten::ones", "aten::_scaled_dot_product", "aten::scaled_dot_product"}},
      {"LayerNorm", {"aten::native_layer_norm", "aten::layer_norm", "aten::native_layer_norm_backward"}},
      {"GELU", {"aten::gelu", "aten::gelu_backward"}},
      {"embedding and loss", {"aten::embedding", "aten::embedding_backward", "aten::embedding_dense_backward",
                              "aten::log_softmax", "aten::_log_softmax", "aten::_log_softmax_backward_data",
                              "aten::nll_loss", "aten::nll_loss_forward", "aten::nll_loss_backward",
                              "aten::nll_loss_nd", "aten::randint", "aten::random_", "aten::arange"}},
      {"copies (copy_, contiguous, cat, clone)", {"aten::copy_", "aten::contiguous", "aten::clone", "aten::cat",
                                                  "aten::_cat", "aten::to", "aten::_to_copy", "aten::empty_like",
                                                  "aten::index_select"}},
      {"views (reshape, permute, ...)", {"aten::view", "aten::reshape", "aten::_reshape_alias", "aten::permute",
                                         "aten::transpose", "aten::t", "aten::expand", "aten::narrow",
                                         "aten::split", "aten::slice", "aten::select", "aten::as_strided",
                                         "aten::unsqueeze", "aten::squeeze", "aten::unbind", "aten::alias",
                                         "aten::detach", "aten::_unsafe_view", "aten::matmul", "aten::linear",
                                         "aten::flatten", "aten::view_as", "aten::expand_as", "aten::numpy_T",
                                         "aten::split_with_sizes", "aten::chunk", "aten::sum_to_size",
                                         "aten::empty", "aten::empty_strided", "aten::resize_", "aten::zeros",
                                         "aten::zeros_like", "aten::set_", "aten::lift_fresh", "aten::item",
                                         "aten::_local_scalar_dense", "aten::result_type", "aten::size",
                                         "aten::is_nonzero"}},
  };
  for (auto& [kind, names] : kinds)
    for (auto& n : names)
      if (name == n) return kind;
  // dgpt's own kernels (model/cpu_gemm.h, cpu_gelu.h, cpu_layer_norm.h): their forward scopes and
  // backward nodes, whose BLAS calls and loops are no ATen ops
  auto has = [&](const char* s) { return name.find(s) != std::string::npos; };
  if (has("PairedLinear") || has("BatchedMatmul") || name == "dgpt::gemm") return "GEMM (mm, addmm, bmm)";
  if (has("CpuGelu") || name == "dgpt::gelu") return "GELU";
  if (has("CpuLayerNorm") || name == "dgpt::layer_norm") return "LayerNorm";
  if (name.find("CpuCausalAttention") != std::string::npos || name == "dgpt::cpu_causal_attention")
    return "attention (dgpt's head-by-head BLAS, softmax, mask)";
  if (name.rfind("autograd::engine::evaluate_function", 0) == 0 || name.find("Backward") != std::string::npos ||
      name.rfind("torch::autograd::AccumulateGrad", 0) == 0 || name.rfind("autograd::", 0) == 0)
    return "autograd engine (nodes, AccumulateGrad)";
  if (name.rfind("dgpt::", 0) == 0) return "dgpt code outside ops";
  return "elementwise and reductions (add, mul, sum, addcdiv_, ...)";
}

void profile(const TrainConfig& base, const Options& o, const Precision& precision, std::ostream& out) {
  const auto colon = o.profile.find(':');
  if (colon == std::string::npos) throw UserError("--profile=" + o.profile + ": expected TYPE:TP, e.g. dense:1 or spd:8");
  const std::string type = o.profile.substr(0, colon);
  const int64_t tp = to_int("--profile", o.profile.substr(colon + 1));
  Stepper s(base, args_for(base, type, tp, vocab_of(o)), precision);
  for (int64_t i = 0; i < o.burnin; ++i) s.step();
  double plain_ms = 0;
  for (int64_t i = 0; i < o.profile_steps; ++i) {
    const auto t0 = Clock::now();
    s.step();
    plain_ms += seconds_since(t0) * 1e3 / double(o.profile_steps);
  }
  const auto t0 = Clock::now();
  const auto spans = profile_ops([&] {
    for (int64_t i = 0; i < o.profile_steps; ++i) s.step();
  });
  const double profiled_ms = seconds_since(t0) * 1e3 / double(o.profile_steps);
  // Self time: a span's duration less its direct children's, on each thread.
  std::map<std::string, double> by_kind, by_op, phase;
  std::map<std::string, int64_t> calls;
  for (auto& sp : spans) {
    const double self_ms = (sp.duration_us - sp.children_us) / 1e3 / double(o.profile_steps);
    by_kind[op_kind(sp.name)] += self_ms;
    const std::string key = o.profile_parents && !sp.parent.empty() ? sp.parent + " > " + sp.name : sp.name;
    by_op[key] += self_ms;
    calls[key] += 1;
    if (sp.depth == 0) phase[sp.name] += sp.duration_us / 1e3 / double(o.profile_steps);
  }
  out << fmt::format("profile of {} at tp_size {}: {} steps; {:.2f} ms per step without the profiler, {:.2f} with it\n",
                     type, tp, o.profile_steps, plain_ms, profiled_ms);
  out << "\n| phase (top-level scope) | ms per step |\n|---|---|\n";
  for (auto& [name, ms] : phase)
    if (name.rfind("dgpt::", 0) == 0) out << fmt::format("| {} | {:.2f} |\n", name, ms);
  std::vector<std::pair<double, std::string>> kinds;
  for (auto& [k, ms] : by_kind) kinds.push_back({ms, k});
  std::sort(kinds.rbegin(), kinds.rend());
  double total = 0;
  for (auto& k : kinds) total += k.first;
  out << "\n| op kind (self time) | ms per step | share |\n|---|---|---|\n";
  for (auto& [ms, k] : kinds) out << fmt::format("| {} | {:.2f} | {:.0f}% |\n", k, ms, 100 * ms / total);
  std::vector<std::pair<double, std::string>> ops;
  for (auto& [k, ms] : by_op) ops.push_back({ms, k});
  std::sort(ops.rbegin(), ops.rend());
  const size_t top = o.profile_parents ? 45 : 25;
  out << fmt::format("\n| op (self time, top {}) | calls per step | ms per step |\n|---|---|---|\n", top);
  for (size_t i = 0; i < std::min(top, ops.size()); ++i)
    out << fmt::format("| {} | {} | {:.3f} |\n", ops[i].second, calls[ops[i].second] / o.profile_steps, ops[i].first);
}

int run(int argc, char** argv) {
  const Options o = parse(argc, argv);
  const int64_t threads = set_compute_threads();
  if (o.alloc_cache) install_caching_cpu_allocator();
  const TrainConfig base = base_config(o);
  std::ostringstream quiet;
  const Precision precision = resolve_precision(base.dtype, torch::kCPU, quiet);
  std::cout << fmt::format("shapes {}: {} layers, n_embd {}, n_head {}, block {}, batch {}, vocab {}, float32, {} threads, "
                           "{}\n", o.shapes, base.n_layer, base.n_embd, base.n_head, base.block_size, base.batch_size,
                           vocab_of(o), threads, o.alloc_cache ? "dgpt's caching CPU allocator" : "LibTorch's CPU allocator");
  if (!o.profile.empty()) {
    profile(base, o, precision, std::cout);
    return 0;
  }
  std::vector<Row> rows;
  for (auto& type : o.types) {
    if (type != "dense") block_type(type);  // an unknown type is an error naming the known ones
    for (int64_t tp : type == "dense" ? std::vector<int64_t>{1} : o.tp) {
      if (base.n_head % tp != 0) {
        std::cout << fmt::format("skipped {} at tp_size {}: n_head {} is not a multiple of it\n", type, tp, base.n_head);
        continue;
      }
      rows.push_back(Row{type, tp, args_for(base, type, tp, vocab_of(o)), {}});
    }
  }
  const bool has_dense = std::any_of(rows.begin(), rows.end(), [](const Row& r) { return r.type == "dense"; });
  if (!has_dense) rows.insert(rows.begin(), Row{"dense", 1, args_for(base, "dense", 1, vocab_of(o)), {}});
  if (o.aten_row) rows.insert(rows.begin() + 1, Row{"dense", 1, rows[0].args, {}, /*aten=*/true});
  const ModelArgs dense_args = rows[0].type == "dense" ? rows[0].args : args_for(base, "dense", 1, vocab_of(o));
  Floor floor;
  for (int64_t round = 0; round < o.rounds; ++round) {
    for (auto& row : rows) {
      set_cpu_kernels_enabled(!row.aten);
      Stepper s(base, row.args, precision);
      for (int64_t i = 0; i < o.burnin; ++i) s.step();
      for (int64_t i = 0; i < o.iters; ++i) {
        const auto t0 = Clock::now();
        s.step();
        row.step_ms.push_back(seconds_since(t0) * 1e3);
      }
      set_cpu_kernels_enabled(true);
    }
    const Floor f = gemm_floor(dense_args, base.batch_size);  // measured between rounds too
    floor.gflop = f.gflop;
    floor.ms += f.ms / double(o.rounds);
    std::cerr << fmt::format("round {}/{} done\n", round + 1, o.rounds);
  }
  double dense_ms = 0, aten_ms = 0;
  for (auto& r : rows)
    if (r.type == "dense") (r.aten ? aten_ms : dense_ms) = r.median();
  std::cout << fmt::format("GEMM floor of the dense step: {:.2f} ms ({:.2f} GFLOP of matmuls at {:.0f} GFLOP/s, each shape timed alone)\n",
                           floor.ms, floor.gflop, floor.gflop / (floor.ms / 1e3));
  std::cout << fmt::format("dense step: {:.2f} ms median = {:.2f}x the GEMM floor\n", dense_ms, dense_ms / floor.ms);
  if (o.aten_row)
    std::cout << fmt::format("dense step with ATen's ops (dgpt's CPU kernels off): {:.2f} ms = {:.2f}x the dense step\n",
                             aten_ms, aten_ms / dense_ms);
  std::cout << "\n";
  // The table: one row per type, one column per tp_size, "ms (x dense)".
  std::vector<int64_t> tps;
  for (auto& r : rows)
    if (r.type != "dense" && std::find(tps.begin(), tps.end(), r.tp) == tps.end()) tps.push_back(r.tp);
  std::cout << "| block type |";
  for (auto t : tps) std::cout << fmt::format(" tp {} ms (x dense) |", t);
  std::cout << "\n|---|" << [&] { std::string s; for (size_t i = 0; i < tps.size(); ++i) s += "---|"; return s; }() << "\n";
  std::cout << fmt::format("| dense | {:.2f} (1.00) |\n", dense_ms);
  std::vector<std::string> types;
  for (auto& r : rows)
    if (r.type != "dense" && std::find(types.begin(), types.end(), r.type) == types.end()) types.push_back(r.type);
  nlohmann::json j{{"shapes", o.shapes}, {"threads", threads}, {"n_head", base.n_head},
                   {"gemm_floor_ms", floor.ms}, {"gemm_gflop", floor.gflop}, {"dense_ms", dense_ms}, {"dense_aten_ms", aten_ms},
                   {"rows", nlohmann::json::array()}};
  for (auto& r : rows) j["rows"].push_back({{"type", r.aten ? "dense (ATen ops)" : r.type}, {"tp_size", r.tp}, {"median_ms", r.median()},
                                            {"x_dense", r.median() / dense_ms}, {"step_ms", r.step_ms}});
  for (auto& type : types) {
    std::cout << "| " << type << " |";
    for (auto t : tps) {
      auto it = std::find_if(rows.begin(), rows.end(), [&](const Row& r) { return r.type == type && r.tp == t; });
      std::cout << (it == rows.end() ? " - |" : fmt::format(" {:.2f} ({:.2f}) |", it->median(), it->median() / dense_ms));
    }
    std::cout << "\n";
  }
  if (!o.json.empty()) {
    std::ofstream f(o.json);
    f << j.dump(2) << "\n";
    if (!f) throw UserError("cannot write " + o.json);
  }
  return 0;
}

}  // namespace
}  // namespace dgpt

int main(int argc, char** argv) {
  try {
    return dgpt::run(argc, argv);
  } catch (const dgpt::UserError& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 2;
  }
}
