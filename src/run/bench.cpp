#include "run/bench.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <ostream>
#include <sstream>

#include "base/clock.h"
#include "base/torch_compat.h"
#include "blocks/block.h"
#include "comm/interconnect.h"
#include "files/atomic_file.h"
#include "files/tokenizer.h"
#include "model/comm_plan.h"
#include "model/model.h"
#include "model/optim.h"
#include "model/precision.h"
#include "run/bench_common.h"
#include "run/process_mesh.h"
#include "run/run_settings.h"
#include "run/train.h"

namespace dgpt {

namespace {

// One solo rank's timing.
struct RankTime {
  int64_t rank = 0;
  double ms = 0;
  int64_t peak_memory_bytes = -1;
};

struct Row {
  std::string label;
  ModelArgs args;
  double flops_per_step = 0;
  // Simulated (backend 'sim'): all N shards on this device. Real runs: this rank's measured step.
  double step_ms = 0;
  int64_t peak_memory_bytes = -1;  // on CUDA: the most bytes tensors held during the step's timing
  CommTally step_comm;             // per step, of the step above (real runs: with measured seconds)
  // Per step, in order: the compute each asynchronous collective (ladder's g) was in flight during,
  // of the step above and of the slowest solo rank (its T_next, SPEC §5).
  std::vector<double> step_overlap_windows, rank_overlap_windows;
  // Per rank: T_rank(N) of the solo ranks timed (the dense model: its own step, N = 1).
  std::vector<RankTime> rank_times;
  CommTally rank_comm;  // per step, as the solo rank tallies it: what a real rank sends
  nlohmann::json step_param_shapes, rank_param_shapes;  // of the step's model and of the solo rank's
  // Real runs: every TP rank's measured step, time in collectives, and own solo-rank time.
  std::vector<double> real_step_ms, real_comm_ms, real_solo_ms;

  double rank_ms() const {  // the slowest rank sets the pace of an N-device step
    double m = 0;
    for (auto& r : rank_times) m = std::max(m, r.ms);
    return m;
  }
  int64_t devices() const { return args.dense() ? 1 : args.tp_size; }
};

// nanoGPT's estimate_mfu: 6N + 12·L·H·Q·T FLOPs per token for forward and backward.
double flops_per_step(GPT& model, const TrainConfig& cfg) {
  const auto& a = model->args();
  const double per_token = 6.0 * double(model->num_params()) +
                           12.0 * double(a.n_layer * a.n_head * (a.n_embd / a.n_head) * a.block_size);
  return per_token * double(cfg.block_size * cfg.batch_size * cfg.gradient_accumulation_steps);
}

CommTally per_step(const CommTally& total, int64_t iters) {
  CommTally t = total;
  for (int k = 0; k < kCommKinds; ++k) {
    t.count[size_t(k)] /= iters;
    t.bytes[size_t(k)] /= iters;
    t.seconds[size_t(k)] /= double(iters);
    t.overlapped[size_t(k)] /= iters;
    t.overlap_seconds[size_t(k)] /= double(iters);
  }
  return t;
}


// All-reduce times over the TP group, size by size, measured as a training step meets them: each
// one after a burst of compute (the cores busy, as between a step's collectives), not back to back
// on idle cores, whose wake-up alone can cost more than the transfer. Sizes: 8 bytes (the grad
// norm) and 4 KB to 16 MB. Means, not medians: a step's communication time is a sum, and on a
// busy machine the times are far from normal (mostly fast, sometimes a scheduler tick slower).
constexpr int kSweepReps = 30;

std::vector<std::pair<double, double>> sweep_allreduce(Collectives& tp) {
  auto a = torch::randn({256, 256}), b = torch::randn({256, 256});
  auto compute_burst = [&] {
    for (int i = 0; i < 8; ++i) a = torch::mm(a, b).div_(16.0);
  };
  std::vector<int64_t> sizes{8};
  for (int64_t bytes = 4096; bytes <= (int64_t(16) << 20); bytes *= 4) sizes.push_back(bytes);
  std::vector<std::pair<double, double>> samples;
  for (const int64_t bytes : sizes) {
    auto t = torch::ones({bytes / 4}, torch::kFloat);
    double total = 0;
    for (int rep = 0; rep < 2 + kSweepReps; ++rep) {
      compute_burst();
      const auto t0 = Clock::now();
      tp.all_reduce_sum_(t, "alpha-beta sweep");
      if (rep >= 2) total += seconds_since(t0);
    }
    samples.emplace_back(double(bytes), total / kSweepReps);
  }
  return samples;
}

// What timing a model needs, the same for every row.
struct Timer {
  const TrainConfig& cfg;
  const BenchOptions& opt;
  torch::Device device;
  const Precision& precision;
  const Dataset* data;
  at::Generator synthetic;
  uint64_t batches_drawn = 0;

  struct Result {
    double ms = 0;
    int64_t peak_memory_bytes = -1;
    CommTally comm;  // per step
    std::vector<double> overlap_windows;  // per step, in order (each the mean over the timed steps)
    double flops = 0;
    nlohmann::json param_shapes;  // [[dense name, local shape], ...]: what this process holds
  };

  // burnin + iters AdamW steps of `args` over `group` at learning rate `lr`; the mean of the timed ones.
  Result time_steps(const ModelArgs& args, std::shared_ptr<TensorParallelGroup> group, double lr) {
    if (device.is_cuda()) compat::cuda_reset_peak_memory(device.index());
    GPT model = build_model(args, group, cfg.seed, device, precision.param_dtype);
    model->train();
    AdamW optimizer(model->param_slots(), cfg.weight_decay, cfg.beta1, cfg.beta2);
    LossScaler scaler(precision.loss_scaling());
    OptimizerStep optimizer_step{model, optimizer, cfg, precision, scaler, nullptr};
    auto batch_for = [&](int64_t) {
      if (data)
        return sample_batch(*data->train, cfg.batch_size, cfg.block_size,
                            mix_seed({uint64_t(cfg.seed), 0xBE7C, batches_drawn++}), device);
      auto x = torch::randint(args.vocab_size, {cfg.batch_size, cfg.block_size + 1}, synthetic, torch::kLong).to(device);
      return Batch{x.narrow(1, 0, cfg.block_size), x.narrow(1, 1, cfg.block_size)};
    };
    auto step = [&](int64_t it) { optimizer_step(it, lr, 0, cfg.gradient_accumulation_steps, batch_for); };
    for (int64_t it = 0; it < opt.burnin; ++it) step(it);
    synchronize_device(device);
    const CommTally before = group->tally();
    group->log_overlaps(true);
    const auto t0 = Clock::now();
    for (int64_t it = 0; it < opt.iters; ++it) step(opt.burnin + it);
    synchronize_device(device);
    Result r;
    r.ms = seconds_since(t0) / double(opt.iters) * 1e3;
    r.comm = per_step(group->tally() - before, opt.iters);
    const auto windows = group->take_overlap_log();  // the same sequence in every step
    group->log_overlaps(false);
    if (windows.size() % size_t(opt.iters) == 0) {
      r.overlap_windows.assign(windows.size() / size_t(opt.iters), 0.0);
      for (size_t i = 0; i < windows.size(); ++i)
        r.overlap_windows[i % r.overlap_windows.size()] += windows[i] / double(opt.iters);
    }
    r.flops = flops_per_step(model, cfg);
    r.param_shapes = nlohmann::json::array();
    for (auto& slot : model->param_slots()) r.param_shapes.push_back({slot.dense_name, slot.param.sizes().vec()});
    if (device.is_cuda()) r.peak_memory_bytes = compat::cuda_peak_allocated_bytes(device.index());
    return r;
  }
};

std::vector<double> windows_ms(const std::vector<double>& seconds) {
  std::vector<double> ms;
  for (double s : seconds) ms.push_back(s * 1e3);
  return ms;
}

// Forward all-reduces per step, with "/k" for the k of them that overlap compute (ladder's g).
std::string fwd_allreduces(const CommTally& t) {
  const auto k = CommKind::ForwardAllReduce;
  return t.overlapped[size_t(k)] > 0 ? fmt::format("{}/{}", t.count_of(k), t.overlapped[size_t(k)])
                                     : fmt::format("{}", t.count_of(k));
}

std::string mem_str(int64_t bytes) { return bytes < 0 ? "n/a" : human_bytes(double(bytes)); }

}  // namespace

std::vector<BenchPattern> bench_patterns(const TrainConfig& cfg, const BenchOptions& opt, int64_t vocab) {
  std::vector<BenchPattern> rows;
  auto row_for = [&](const std::string& label, const std::string& model_type, std::vector<std::string> types) {
    TrainConfig c = cfg;
    c.model_type = model_type;
    c.block_types = std::move(types);
    if (c.dense()) {  // one device: nothing sharded, the vocabulary included (the same function)
      c.tp_size = 1;
      c.vocab_parallel = false;
    }
    validate(c, known_block_types());
    return BenchPattern{label, model_args_from(c, vocab)};
  };
  if (opt.compare.empty()) {
    rows.push_back(BenchPattern{cfg.dense() ? "dense" : PyValue::from(cfg.resolved_block_types()).repr(),
                       model_args_from(cfg, vocab)});
  } else {
    std::stringstream ss(opt.compare);
    for (std::string item; std::getline(ss, item, ';');) {
      item = trim(item);
      if (item.empty()) continue;
      if (item == "dense" || item == "gpt") {
        rows.push_back(row_for("dense", ModelArgs::kDenseModelType, {}));
        continue;
      }
      const PyValue v = parse_py_literal(item);
      std::vector<std::string> types;
      bool ok = v.is_list();
      if (ok)
        for (auto& t : std::get<PyValue::List>(v.v)) {
          ok = ok && t.is_str();
          if (t.is_str()) types.push_back(std::get<std::string>(t.v));
        }
      if (!ok) throw UserError("--compare item " + item + " is not a list of block types (or 'dense')");
      rows.push_back(row_for(item, ModelArgs::kShardedModelType, types));
    }
    const bool has_dense = std::any_of(rows.begin(), rows.end(), [](const BenchPattern& r) { return r.args.dense(); });
    if (!has_dense) rows.push_back(row_for("dense", ModelArgs::kDenseModelType, {}));
  }
  if (!opt.project.empty()) {  // projections compare against all-tp: make sure it is measured
    const bool has_baseline =
        std::any_of(rows.begin(), rows.end(), [](const BenchPattern& r) { return is_baseline_pattern(r.args); });
    if (!has_baseline && cfg.tp_size > 1)
      rows.push_back(row_for(fmt::format("['{}']*{}", baseline_block_type(), cfg.n_layer), ModelArgs::kShardedModelType,
                             std::vector<std::string>(size_t(cfg.n_layer), baseline_block_type())));
  }
  return rows;
}

std::vector<int64_t> solo_ranks(const std::string& spec, int64_t tp_size) {
  std::vector<int64_t> ranks;
  if (spec == "all") {
    for (int64_t r = 0; r < tp_size; ++r) ranks.push_back(r);
    return ranks;
  }
  std::stringstream ss(spec);
  for (std::string item; std::getline(ss, item, ',');) {
    item = trim(item);
    int64_t r = -1;
    try {
      size_t used = 0;
      r = std::stoll(item, &used);
      if (used != item.size()) r = -1;
    } catch (const std::exception&) {
    }
    if (r < 0) throw UserError("--ranks=" + spec + ": expected 'all' or rank numbers such as 0,3");
    if (r < tp_size) ranks.push_back(r);  // a rank a row does not have (dense: only 0) is skipped
  }
  if (ranks.empty()) ranks.push_back(0);
  return ranks;
}

// The collectives of a step for a projection: every collective of a kind has the same size. The
// overlapping ones (ladder's g) each with the compute measured while it was in flight, T_next
// (`windows`, in order); without those measurements they count as blocking.
std::vector<StepCollective> step_collectives(const CommTally& step, const std::vector<double>& windows) {
  std::vector<StepCollective> out;
  size_t next_window = 0;
  for (int k = 0; k < kCommKinds; ++k) {
    const int64_t count = step.count[size_t(k)];
    if (count == 0) continue;
    const std::string name = comm_kind_name(CommKind(k));
    const double each = double(step.bytes[size_t(k)]) / double(count);
    int64_t overlapping = step.overlapped[size_t(k)];
    if (next_window + size_t(overlapping) > windows.size()) overlapping = 0;
    if (count > overlapping) out.push_back({name, count - overlapping, each});
    for (int64_t i = 0; i < overlapping; ++i) out.push_back({name, 1, each, true, windows[next_window++]});
  }
  return out;
}

void synchronize_device(torch::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

// The device's matmul throughput: the peak that MFU is measured against when none is given.
// Matmuls run in the autocast dtype when there is one (bf16 on a GPU), else the parameters'.
double measure_peak_flops(torch::Device device, const Precision& precision) {
  const int64_t n = device.is_cuda() ? 8192 : 1024;
  auto opts = torch::TensorOptions().device(device).dtype(precision.autocast.value_or(precision.param_dtype));
  auto a = torch::randn({n, n}, opts), b = torch::randn({n, n}, opts);
  for (int i = 0; i < 2; ++i) torch::mm(a, b);
  synchronize_device(device);
  const int reps = device.is_cuda() ? 20 : 5;
  const auto t0 = Clock::now();
  for (int i = 0; i < reps; ++i) torch::mm(a, b);
  synchronize_device(device);
  return 2.0 * double(n) * double(n) * double(n) * reps / seconds_since(t0);
}

void write_bench_json(const nlohmann::json& j, const std::string& where, std::ostream& stdout_stream,
                      std::ostream& table) {
  if (where == "-") {
    stdout_stream << j.dump(2) << "\n";
    return;
  }
  write_file_atomically(where, j.dump(2) + "\n");
  table << "wrote " << where << "\n";
}

void bench(const TrainConfig& cfg, const BenchOptions& opt, std::ostream& main_out, std::ostream& main_notices) {
  if (opt.iters < 1 || opt.burnin < 0) throw UserError("bench needs iters >= 1 and burnin >= 0");
  if (opt.mode == "generate") return bench_generate(cfg, opt, main_out, main_notices);  // bench_generate.cpp
  if (opt.mode != "train") throw UserError("--mode=" + opt.mode + ": expected 'train' or 'generate'");
  const LaunchEnv launch_env = read_launch_env();
  const ProcessMesh mesh = make_process_mesh(cfg, launch_env, main_notices);
  if (mesh.dp > 1) throw UserError("dgpt bench measures one tensor-parallel group: use tp_procs = the world size");
  // With --json=- the JSON alone goes to stdout, the table to stderr.
  RankStreams streams(mesh.is_main(), opt.json == "-" ? main_notices : main_out, main_notices);
  std::ostream& out = streams.out;
  std::ostream& notices = streams.notices;
  const torch::Device device =
      device_for_rank(resolve_device(cfg.device, cfg.device_was_set, notices), cfg, launch_env);
  const Precision precision = resolve_precision(cfg.dtype, device, notices);
  const int64_t vocab = dataset_vocab_size(cfg.resolved_data_dir());  // GPT-2's padded 50304 without a meta.json
  std::unique_ptr<Dataset> data;
  if (opt.real_data) data = std::make_unique<Dataset>(Dataset::open(cfg.resolved_data_dir(), cfg.block_size));
  const auto nets = parse_interconnects(opt.project);
  std::vector<Row> rows;
  for (auto& p : bench_patterns(cfg, opt, vocab)) rows.push_back(Row{p.label, p.args});
  const bool real = cfg.backend != "sim";

  const double peak = opt.peak_flops > 0 ? opt.peak_flops : measure_peak_flops(device, precision);
  out << fmt::format("peak: {:.2f} TFLOP/s ({})\n", peak / 1e12,
                     opt.peak_flops > 0 ? "given" : "measured matmul throughput of this device");

  std::unique_ptr<AlphaBetaFit> fit;
  if (opt.fit_alpha_beta) {
    if (cfg.backend != "gloo" || mesh.tp_procs < 2)
      throw UserError("fit_alpha_beta needs backend='gloo' and 2 or more processes (dgpt launch --nproc N -- bench ...)");
    const auto samples = sweep_allreduce(*mesh.tp_group);
    out << fmt::format("Gloo all-reduce over the TP group, each after a compute burst (mean of {}):", kSweepReps);
    for (auto& [bytes, secs] : samples) out << fmt::format(" {}: {:.3f} ms;", human_bytes(bytes), secs * 1e3);
    out << "\n";
    fit = std::make_unique<AlphaBetaFit>(fit_alpha_beta("gloo-fit", mesh.tp_procs, samples));
    out << fmt::format("alpha-beta fit of Gloo all-reduces over {} processes: alpha {:.1f} us, bandwidth {:.3f} GB/s, "
                       "R^2 {:.4f}\n",
                       mesh.tp_procs, fit->model.alpha_s * 1e6, fit->model.bandwidth_Bps / 1e9, fit->r2);
  }

  Timer timer{cfg, opt, device, precision, data.get(), at::make_generator<at::CPUGeneratorImpl>(uint64_t(cfg.seed))};
  for (auto& row : rows) {
    // 1. The step as this run takes it: simulated (N shards here), or this rank's share of a real run.
    const auto group = tensor_parallel_group(row.args, cfg, mesh);
    const auto step = timer.time_steps(row.args, group, cfg.learning_rate);
    row.step_ms = step.ms;
    row.step_comm = step.comm;
    row.step_overlap_windows = step.overlap_windows;
    row.flops_per_step = step.flops;
    row.peak_memory_bytes = step.peak_memory_bytes;
    row.step_param_shapes = step.param_shapes;
    // 2. Per rank: T_rank(N) of solo ranks (learning rate 0: the weights, and so the kernels' inputs,
    // stay at their initial values while AdamW's arithmetic still runs). The dense model's T_rank is
    // its own step. In a real run every rank times its own solo rank at the same time, as its cores
    // would be shared in the run itself.
    if (row.args.dense()) {
      row.rank_times.push_back({0, step.ms, step.peak_memory_bytes});
      row.rank_comm = step.comm;
      row.rank_overlap_windows = step.overlap_windows;
      row.rank_param_shapes = step.param_shapes;
    } else {
      const auto ranks = real ? std::vector<int64_t>{mesh.tp_rank * (row.args.tp_size / mesh.tp_procs)}
                              : solo_ranks(opt.ranks, row.args.tp_size);
      for (const int64_t r : ranks) {
        const auto solo = timer.time_steps(row.args, std::make_shared<SoloRankGroup>(row.args.tp_size, r), 0.0);
        if (row.rank_times.empty() || solo.ms > row.rank_ms()) {  // the slowest rank's tally and T_next
          row.rank_overlap_windows = solo.overlap_windows;
          row.rank_comm = solo.comm;
        }
        row.rank_times.push_back({r, solo.ms, solo.peak_memory_bytes});
        row.rank_param_shapes = solo.param_shapes;
      }
    }
    if (real) {  // every TP rank's figures, for the validation of the time model
      auto mine = torch::tensor({step.ms, step.comm.total_seconds() * 1e3, row.rank_times.front().ms}, torch::kDouble);
      auto all = mesh.tp_group->all_gather(mine, "bench results");  // [W, 3]
      for (int64_t w = 0; w < all.size(0); ++w) {
        row.real_step_ms.push_back(all[w][0].item<double>());
        row.real_comm_ms.push_back(all[w][1].item<double>());
        row.real_solo_ms.push_back(all[w][2].item<double>());
      }
    }
    out << fmt::format("  {}: {} {:.2f} ms/step; per rank T_rank({}) {:.2f} ms\n", row.label,
                       real ? "real step (this rank)" : row.args.dense() ? "dense" : "simulated", row.step_ms,
                       row.devices(), row.rank_ms())
        << std::flush;
  }

  // The table, ratios to the first row and to the dense model.
  const Row& base = rows.front();
  const Row* dense = nullptr;
  const Row* all_tp = nullptr;
  for (auto& r : rows) {
    if (r.args.dense()) dense = &r;
    if (is_baseline_pattern(r.args)) all_tp = &r;
  }
  const std::string step_head = real ? "step ms" : "sim ms";
  out << fmt::format("\n{:<40} {:>3} {:>10} {:>7} {:>11} {:>7} {:>8} {:>11} {:>7} {:>7} {:>11} {:>12} {:>10}\n",
                     "strategy", "N", step_head, "x", "T_rank ms", "x", "x dense", "rank tok/s", "MFU", "fwd AR",
                     "coll/step", "bytes/step", "peak mem");
  for (auto& r : rows) {
    const double tokens = double(cfg.gradient_accumulation_steps * cfg.batch_size * cfg.block_size);
    out << fmt::format("{:<40} {:>3} {:>10.2f} {:>7.3f} {:>11.2f} {:>7.3f} {:>8} {:>11.0f} {:>6.2f}% {:>7} {:>11} {:>12} {:>10}\n",
                       r.label, r.devices(), r.step_ms, r.step_ms / base.step_ms, r.rank_ms(),
                       r.rank_ms() / base.rank_ms(), dense ? fmt::format("{:.3f}", r.rank_ms() / dense->rank_ms()) : "n/a",
                       tokens / (r.rank_ms() / 1e3),
                       100 * model_flops_utilisation(r.flops_per_step, r.devices(), r.rank_ms() / 1e3, peak),
                       fwd_allreduces(r.rank_comm), r.rank_comm.total_count(),
                       human_bytes(double(r.rank_comm.total_bytes())), mem_str(r.peak_memory_bytes));
  }
  out << fmt::format(
      "({}: {}. T_rank: per-rank compute of an N-device run, a solo rank's step (rank r of N run alone, nothing "
      "sent; ranks timed: {}, the slowest counts); x dense: T_rank against the dense model on one device. rank tok/s and MFU: "
      "the N-device run without communication, MFU = model FLOPs / (N * T_rank * peak). Collectives: what a real "
      "rank sends per step; fwd AR a/b: b of the a forward all-reduces overlap compute (ladder's g), projected "
      "with the solo rank's measured compute while each is in flight. precision: {}; peak mem: {})\n",
      step_head,
      real ? "this rank's measured step of the real run" : "the simulated step, all N shards on this one device",
      real ? "each rank its own" : opt.ranks, precision.describe(),
      device.is_cuda() ? "the most bytes tensors held on the GPU in a row's step" : "tracked on CUDA only");
  if (!real) {
    bool any_ranks = false;
    for (auto& r : rows) any_ranks = any_ranks || r.rank_times.size() > 1;
    if (any_ranks) {
      out << "\nT_rank by rank (ms):\n";
      for (auto& r : rows) {
        if (r.rank_times.size() < 2) continue;
        double lo = 1e300, hi = 0;
        std::string list;
        for (auto& t : r.rank_times) {
          list += fmt::format(" r{} {:.2f}", t.rank, t.ms);
          lo = std::min(lo, t.ms);
          hi = std::max(hi, t.ms);
        }
        out << fmt::format("  {:<40}{}  (max/min {:.3f})\n", r.label, list, hi / lo);
      }
    }
  }

  // Projections (SPEC §5): T_rank(N) + exposed time of what a real rank sends, on N devices.
  nlohmann::json projections = nlohmann::json::array();
  const double tokens_per_step = double(cfg.gradient_accumulation_steps * cfg.batch_size * cfg.block_size);
  for (auto& net : nets) {
    out << fmt::format("\nprojection on {} (alpha {:.1f} us, {:.1f} GB/s; {}): an N-device step = T_rank(N) + its "
                       "collectives\n",
                       net.name, net.alpha_s * 1e6, net.bandwidth_Bps / 1e9, net.source);
    out << fmt::format("{:<40} {:>3} {:>11} {:>10} {:>13} {:>12} {:>7} {:>10} {:>9}\n", "strategy", "N", "T_rank ms",
                       "comm ms", "projected ms", "tokens/s", "MFU", "vs all-tp", "vs dense");
    auto projected_ms = [&](const Row& r) {
      return projected_step_seconds(r.rank_ms() / 1e3, step_collectives(r.rank_comm, r.rank_overlap_windows), net,
                                    r.devices()) * 1e3;
    };
    for (auto& r : rows) {
      const double total = projected_ms(r);
      const double comm = total - r.rank_ms();
      const double speedup = all_tp ? projected_ms(*all_tp) / total : 0;
      const double vs_dense = dense ? projected_ms(*dense) / total : 0;
      const double mfu = model_flops_utilisation(r.flops_per_step, r.devices(), total / 1e3, peak);
      out << fmt::format("{:<40} {:>3} {:>11.2f} {:>10.3f} {:>13.2f} {:>12.0f} {:>6.2f}% {:>10} {:>9}\n", r.label,
                         r.devices(), r.rank_ms(), comm, total, tokens_per_step / (total / 1e3), 100 * mfu,
                         all_tp ? fmt::format("{:.3f}x", speedup) : "n/a",
                         dense ? fmt::format("{:.3f}x", vs_dense) : "n/a");
      projections.push_back({{"interconnect", net.name}, {"alpha_s", net.alpha_s}, {"bandwidth_Bps", net.bandwidth_Bps},
                             {"strategy", r.label}, {"tp_size", r.args.tp_size}, {"devices", r.devices()},
                             {"rank_ms", r.rank_ms()}, {"comm_ms", comm}, {"projected_ms", total},
                             {"tokens_per_s", tokens_per_step / (total / 1e3)}, {"mfu", mfu},
                             {"speedup_vs_all_tp", all_tp ? nlohmann::json(speedup) : nlohmann::json()},
                             {"speedup_vs_dense", dense ? nlohmann::json(vs_dense) : nlohmann::json()}});
    }
    out << "(vs all-tp / vs dense: the baseline's projected step over this one's; > 1 is faster. The dense model "
           "runs on one device.)\n";
  }

  // Real runs: the time model against the real thing, rank by rank.
  nlohmann::json validation = nlohmann::json::array();
  if (real) {
    out << fmt::format("\ntime model against this real run ({} processes, backend '{}'), per rank:\n", mesh.tp_procs,
                       cfg.backend);
    out << fmt::format("{:<40} {:>4} {:>9} {:>9} {:>11} {:>11} {:>8}{}\n", "strategy", "rank", "step ms", "comm ms",
                       "compute ms", "T_rank ms", "error", fit ? fmt::format(" {:>13} {:>8}", "projected ms", "error") : "");
    for (auto& r : rows) {
      if (r.args.dense()) continue;
      const auto collectives = step_collectives(r.rank_comm, r.rank_overlap_windows);
      for (size_t w = 0; w < r.real_step_ms.size(); ++w) {
        const double compute = r.real_step_ms[w] - r.real_comm_ms[w];
        const double err = (r.real_solo_ms[w] - compute) / compute;
        nlohmann::json v{{"strategy", r.label}, {"rank", w}, {"step_ms", r.real_step_ms[w]},
                         {"comm_ms", r.real_comm_ms[w]}, {"compute_ms", compute}, {"rank_ms", r.real_solo_ms[w]},
                         {"compute_error", err}};
        std::string proj;
        if (fit) {
          const double p = projected_step_seconds(r.real_solo_ms[w] / 1e3, collectives, fit->model, mesh.tp_procs) * 1e3;
          const double perr = (p - r.real_step_ms[w]) / r.real_step_ms[w];
          proj = fmt::format(" {:>13.2f} {:>+7.1f}%", p, 100 * perr);
          v["projected_ms"] = p;
          v["projected_error"] = perr;
        }
        out << fmt::format("{:<40} {:>4} {:>9.2f} {:>9.2f} {:>11.2f} {:>11.2f} {:>+7.1f}%{}\n", r.label, w,
                           r.real_step_ms[w], r.real_comm_ms[w], compute, r.real_solo_ms[w], 100 * err, proj);
        validation.push_back(v);
      }
    }
    out << "(compute = step - time in collectives; T_rank: the same rank's solo-rank step, timed while the other "
           "ranks time theirs; error = T_rank / compute - 1" +
               std::string(fit ? "; projected = T_rank + the fitted alpha-beta time of the collectives, against "
                                 "the measured step"
                               : "") +
               ")\n";
  }

  nlohmann::json fit_json;
  if (fit) {
    out << "\nalpha-beta model against the measured communication of these runs:\n";
    fit_json = {{"alpha_s", fit->model.alpha_s}, {"bandwidth_Bps", fit->model.bandwidth_Bps}, {"r2", fit->r2},
                {"processes", mesh.tp_procs}, {"runs", nlohmann::json::array()}};
    for (auto& r : rows) {
      if (r.step_comm.total_count() == 0) continue;
      const double predicted =  // the ring is W processes
          projected_step_seconds(0, step_collectives(r.step_comm, r.step_overlap_windows), fit->model, mesh.tp_procs) * 1e3;
      const double measured = r.step_comm.total_seconds() * 1e3;
      out << fmt::format("  {:<40} measured {:>8.2f} ms, predicted {:>8.2f} ms, error {:+.1f}%\n", r.label, measured,
                         predicted, 100 * (predicted - measured) / measured);
      fit_json["runs"].push_back(
          {{"strategy", r.label}, {"measured_comm_ms", measured}, {"predicted_comm_ms", predicted}});
    }
  }

  if (!opt.json.empty() && mesh.is_main()) {
    nlohmann::json j;
    j["peak_flops"] = peak;
    j["device"] = device.str();
    j["precision"] = precision.describe();
    j["backend"] = cfg.backend;
    j["processes"] = mesh.tp_procs;
    j["iters"] = opt.iters;
    j["tokens_per_step"] = int64_t(tokens_per_step);
    j["rows"] = nlohmann::json::array();
    for (auto& r : rows) {
      nlohmann::json ranks = nlohmann::json::array();
      for (auto& t : r.rank_times)
        ranks.push_back({{"rank", t.rank}, {"ms", t.ms},
                         {"peak_memory_bytes", t.peak_memory_bytes < 0 ? nlohmann::json() : nlohmann::json(t.peak_memory_bytes)}});
      nlohmann::json row{{"strategy", r.label},
                         {"model_type", r.args.model_type},
                         {"tp_size", r.args.tp_size},
                         {"vocab_parallel", r.args.vocab_sharded()},
                         {"devices", r.devices()},
                         {"block_types", r.args.block_types},
                         {"flops_per_step", r.flops_per_step},
                         {"rank_ms", r.rank_ms()},
                         {"rank_ms_by_rank", ranks},
                         {"rank_ms_ratio", r.rank_ms() / base.rank_ms()},
                         {"rank_ms_vs_dense", dense ? nlohmann::json(r.rank_ms() / dense->rank_ms()) : nlohmann::json()},
                         {"rank_tokens_per_s", tokens_per_step / (r.rank_ms() / 1e3)},
                         {"rank_mfu", model_flops_utilisation(r.flops_per_step, r.devices(), r.rank_ms() / 1e3, peak)},
                         {"rank_param_shapes", r.rank_param_shapes},
                         {"collectives_per_step", r.rank_comm.total_count()},
                         {"overlapping_per_step", r.rank_comm.total_overlapped()},
                         {"rank_overlap_compute_ms", r.rank_comm.total_overlap_seconds() * 1e3},
                         {"rank_overlap_windows_ms", windows_ms(r.rank_overlap_windows)},
                         {"bytes_per_step", r.rank_comm.total_bytes()},
                         {"peak_memory_bytes", r.peak_memory_bytes < 0 ? nlohmann::json() : nlohmann::json(r.peak_memory_bytes)}};
      if (real) {  // this rank's measured step, and every TP rank's (the validation below)
        row["real_step_ms"] = r.step_ms;
        row["real_comm_ms"] = r.step_comm.total_seconds() * 1e3;
        row["real_overlapped_per_step"] = r.step_comm.total_overlapped();
        row["real_overlap_compute_ms"] = r.step_comm.total_overlap_seconds() * 1e3;
        row["real_param_shapes"] = r.step_param_shapes;  // this rank's, beside its solo rank's
        for (int k = 0; k < kCommKinds; ++k) {
          row[std::string("real_") + comm_kind_name(CommKind(k))] = r.step_comm.count[size_t(k)];
          row[std::string("real_") + comm_kind_name(CommKind(k)) + "_bytes"] = r.step_comm.bytes[size_t(k)];
        }
      } else {  // the simulated step: what simulating N shards on one device costs
        row["sim_ms_per_step"] = r.step_ms;
        row["sim_ms_ratio"] = r.step_ms / base.step_ms;
        row["sim_mfu"] = model_flops_utilisation(r.flops_per_step, 1, r.step_ms / 1e3, peak);
      }
      for (int k = 0; k < kCommKinds; ++k) {
        row[comm_kind_name(CommKind(k))] = r.rank_comm.count[size_t(k)];
        row[std::string(comm_kind_name(CommKind(k))) + "_bytes"] = r.rank_comm.bytes[size_t(k)];
      }
      j["rows"].push_back(row);
    }
    j["projections"] = projections;
    if (real) j["validation"] = validation;
    if (fit) j["alpha_beta_fit"] = fit_json;
    write_bench_json(j, opt.json, main_out, out);
  }
}

}  // namespace dgpt
