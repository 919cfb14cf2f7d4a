#include "run/bench.h"

#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <fstream>
#include <ostream>
#include <sstream>

#include "blocks/block.h"
#include "base/clock.h"
#include "model/comm_plan.h"
#include "run/process_mesh.h"
#include "model/model.h"
#include "model/optim.h"
#include "model/precision.h"
#include "comm/interconnect.h"
#include "run/run_settings.h"
#include "files/tokenizer.h"
#include "base/torch_compat.h"
#include "run/train.h"

namespace dgpt {

namespace {

void synchronize(torch::Device device) {
  if (device.is_cuda()) torch::cuda::synchronize(device.index());
}

struct Row {
  std::string label;
  ModelArgs args;
  // measured, per optimizer step
  double ms = 0, tokens_per_s = 0, mfu = 0, flops_per_step = 0;
  int64_t peak_memory_bytes = -1;  // on CUDA: the most bytes tensors held during burn-in and timing
  CommTally comm;  // per step (counts, bytes, seconds)
};

// The rows to run: the config's pattern, or each ';'-separated item of --compare ("dense" or "gpt"
// is the dense model, anything else a Python list for block_types).
std::vector<Row> rows_for(const TrainConfig& cfg, const BenchOptions& opt, int64_t vocab) {
  std::vector<Row> rows;
  auto row_for = [&](const std::string& label, const std::string& model_type, std::vector<std::string> types) {
    TrainConfig c = cfg;
    c.model_type = model_type;
    c.block_types = std::move(types);
    if (c.dense()) c.tp_size = 1;
    validate(c, known_block_types());
    return Row{label, model_args_from(c, vocab)};
  };
  if (opt.compare.empty()) {
    rows.push_back(Row{cfg.dense() ? "dense" : PyValue::from(cfg.resolved_block_types()).repr(),
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
    const bool has_dense = std::any_of(rows.begin(), rows.end(), [](const Row& r) { return r.args.dense(); });
    if (!has_dense) rows.push_back(row_for("dense", ModelArgs::kDenseModelType, {}));
  }
  if (!opt.project.empty()) {  // projections compare against all-tp: make sure it is measured
    const bool has_baseline =
        std::any_of(rows.begin(), rows.end(), [](const Row& r) { return is_baseline_pattern(r.args); });
    if (!has_baseline && cfg.tp_size > 1)
      rows.push_back(row_for(fmt::format("['{}']*{}", baseline_block_type(), cfg.n_layer), ModelArgs::kShardedModelType,
                             std::vector<std::string>(size_t(cfg.n_layer), baseline_block_type())));
  }
  return rows;
}

// nanoGPT's estimate_mfu: 6N + 12·L·H·Q·T FLOPs per token for forward and backward.
double flops_per_step(GPT& model, const TrainConfig& cfg) {
  const auto& a = model->args();
  const double per_token = 6.0 * double(model->num_params()) +
                           12.0 * double(a.n_layer * a.n_head * (a.n_embd / a.n_head) * a.block_size);
  return per_token * double(cfg.block_size * cfg.batch_size * cfg.gradient_accumulation_steps);
}

// The device's matmul throughput: the peak that MFU is measured against when none is given.
// Matmuls run in the autocast dtype when there is one (bf16 on a GPU), else the parameters'.
double measure_peak_flops(torch::Device device, const Precision& precision) {
  const int64_t n = device.is_cuda() ? 8192 : 1024;
  auto opts = torch::TensorOptions().device(device).dtype(precision.autocast.value_or(precision.param_dtype));
  auto a = torch::randn({n, n}, opts), b = torch::randn({n, n}, opts);
  for (int i = 0; i < 2; ++i) torch::mm(a, b);
  synchronize(device);
  const int reps = device.is_cuda() ? 20 : 5;
  const auto t0 = Clock::now();
  for (int i = 0; i < reps; ++i) torch::mm(a, b);
  synchronize(device);
  return 2.0 * double(n) * double(n) * double(n) * reps / seconds_since(t0);
}

// The alpha-beta model's time for what a step sent: every collective of a kind has the same size.
double projected_comm_seconds(const CommTally& step, const Interconnect& net, int64_t n) {
  double s = 0;
  for (int k = 0; k < kCommKinds; ++k)
    if (step.count[size_t(k)] > 0)
      s += double(step.count[size_t(k)]) *
           ring_allreduce_seconds(net, n, double(step.bytes[size_t(k)]) / double(step.count[size_t(k)]));
  return s;
}

CommTally per_step(const CommTally& total, int64_t iters) {
  CommTally t = total;
  for (int k = 0; k < kCommKinds; ++k) {
    t.count[size_t(k)] /= iters;
    t.bytes[size_t(k)] /= iters;
    t.seconds[size_t(k)] /= double(iters);
  }
  return t;
}

// Median seconds of all-reduces of each size over the TP group, for the alpha-beta fit.
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

}  // namespace

void bench(const TrainConfig& cfg, const BenchOptions& opt, std::ostream& main_out, std::ostream& main_notices) {
  if (opt.iters < 1 || opt.burnin < 0) throw UserError("bench needs iters >= 1 and burnin >= 0");
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
  std::vector<Row> rows = rows_for(cfg, opt, vocab);

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

  auto synthetic = at::make_generator<at::CPUGeneratorImpl>(uint64_t(cfg.seed));
  uint64_t batches_drawn = 0;
  for (auto& row : rows) {
    const auto group = tensor_parallel_group(row.args, cfg, mesh);
    if (device.is_cuda()) compat::cuda_reset_peak_memory(device.index());
    GPT model = build_model(row.args, group, cfg.seed, device, precision.param_dtype);
    model->train();
    AdamW optimizer(model->param_slots(), cfg.weight_decay, cfg.beta1, cfg.beta2);
    LossScaler scaler(precision.loss_scaling());
    OptimizerStep optimizer_step{model, optimizer, cfg, precision, scaler, nullptr};
    auto batch_for = [&](int64_t) {
      if (data)
        return sample_batch(*data->train, cfg.batch_size, cfg.block_size,
                            mix_seed({uint64_t(cfg.seed), 0xBE7C, batches_drawn++}), device);
      auto x = torch::randint(row.args.vocab_size, {cfg.batch_size, cfg.block_size + 1}, synthetic, torch::kLong).to(device);
      return Batch{x.narrow(1, 0, cfg.block_size), x.narrow(1, 1, cfg.block_size)};
    };
    auto step = [&](int64_t it) {
      optimizer_step(it, cfg.learning_rate, 0, cfg.gradient_accumulation_steps, batch_for);
    };
    for (int64_t it = 0; it < opt.burnin; ++it) step(it);
    synchronize(device);
    const CommTally before = group->tally();
    const auto t0 = Clock::now();
    for (int64_t it = 0; it < opt.iters; ++it) step(opt.burnin + it);
    synchronize(device);
    const double secs = seconds_since(t0) / double(opt.iters);
    row.comm = per_step(group->tally() - before, opt.iters);
    row.ms = secs * 1e3;
    row.tokens_per_s = double(cfg.gradient_accumulation_steps * cfg.batch_size * cfg.block_size) / secs;
    row.flops_per_step = flops_per_step(model, cfg);
    row.mfu = row.flops_per_step / secs / peak;
    if (device.is_cuda()) row.peak_memory_bytes = compat::cuda_peak_allocated_bytes(device.index());
    out << fmt::format("  {}: {:.2f} ms/step\n", row.label, row.ms) << std::flush;
  }

  // The table, every figure with its ratio to the first row.
  const Row& base = rows.front();
  const bool real = cfg.backend != "sim";
  out << fmt::format("\n{:<40} {:>10} {:>7} {:>12} {:>7} {:>7} {:>9} {:>9} {:>11} {:>12} {:>10}{}\n", "strategy",
                     "ms/step", "x", "tokens/s", "x", "MFU", "fwd AR", "bwd AR", "coll/step", "bytes/step", "peak mem",
                     real ? fmt::format(" {:>10}", "comm ms") : "");
  for (auto& r : rows) {
    out << fmt::format("{:<40} {:>10.2f} {:>7.3f} {:>12.0f} {:>7.3f} {:>6.2f}% {:>9} {:>9} {:>11} {:>12} {:>10}{}\n",
                       r.label, r.ms, r.ms / base.ms, r.tokens_per_s, r.tokens_per_s / base.tokens_per_s, 100 * r.mfu,
                       r.comm.count_of(CommKind::ForwardAllReduce), r.comm.count_of(CommKind::BackwardAllReduce),
                       r.comm.total_count(), human_bytes(double(r.comm.total_bytes())),
                       r.peak_memory_bytes < 0 ? "n/a" : human_bytes(double(r.peak_memory_bytes)),
                       real ? fmt::format(" {:>10.2f}", r.comm.total_seconds() * 1e3) : "");
  }
  out << fmt::format("(precision: {}; peak mem: {})\n", precision.describe(),
                     device.is_cuda() ? "the most bytes tensors held on the GPU in a row's steps"
                                      : "tracked on CUDA only");

  // Projections: measured compute (a simulated step sends nothing) + the alpha-beta communication.
  nlohmann::json projections = nlohmann::json::array();
  const Row* all_tp = nullptr;
  for (auto& r : rows)
    if (is_baseline_pattern(r.args)) all_tp = &r;
  for (auto& net : nets) {
    out << fmt::format("\nprojection on {} (alpha {:.1f} us, {:.1f} GB/s; {})\n", net.name, net.alpha_s * 1e6,
                       net.bandwidth_Bps / 1e9, net.source);
    out << fmt::format("{:<40} {:>8} {:>12} {:>12} {:>14} {:>12}\n", "strategy", "tp_size", "compute ms", "comm ms",
                       "projected ms", "vs all-tp");
    auto projected = [&](const Row& r) {
      const double compute = r.ms - r.comm.total_seconds() * 1e3;  // real runs: their measured comm is replaced
      return compute + projected_comm_seconds(r.comm, net, r.args.tp_size) * 1e3;
    };
    for (auto& r : rows) {
      const double comm = projected_comm_seconds(r.comm, net, r.args.tp_size) * 1e3;
      const double total = projected(r);
      const double speedup = all_tp ? projected(*all_tp) / total : 0;
      out << fmt::format("{:<40} {:>8} {:>12.2f} {:>12.3f} {:>14.2f} {:>12}\n", r.label, r.args.tp_size, total - comm,
                         comm, total, all_tp ? fmt::format("{:.3f}x", speedup) : "n/a");
      projections.push_back({{"interconnect", net.name}, {"alpha_s", net.alpha_s}, {"bandwidth_Bps", net.bandwidth_Bps},
                             {"strategy", r.label}, {"tp_size", r.args.tp_size}, {"compute_ms", total - comm},
                             {"comm_ms", comm}, {"projected_ms", total}, {"speedup_vs_all_tp", speedup}});
    }
  }

  nlohmann::json fit_json;
  if (fit) {
    out << "\nalpha-beta model against the measured communication of these runs:\n";
    fit_json = {{"alpha_s", fit->model.alpha_s}, {"bandwidth_Bps", fit->model.bandwidth_Bps}, {"r2", fit->r2},
                {"processes", mesh.tp_procs}, {"runs", nlohmann::json::array()}};
    for (auto& r : rows) {
      if (r.comm.total_count() == 0) continue;
      const double predicted = projected_comm_seconds(r.comm, fit->model, mesh.tp_procs) * 1e3;  // the ring is W processes
      const double measured = r.comm.total_seconds() * 1e3;
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
    j["iters"] = opt.iters;
    j["tokens_per_step"] = cfg.gradient_accumulation_steps * cfg.batch_size * cfg.block_size;
    j["rows"] = nlohmann::json::array();
    for (auto& r : rows) {
      nlohmann::json row{{"strategy", r.label},
                         {"model_type", r.args.model_type},
                         {"tp_size", r.args.tp_size},
                         {"block_types", r.args.block_types},
                         {"ms_per_step", r.ms},
                         {"ms_ratio", r.ms / base.ms},
                         {"tokens_per_s", r.tokens_per_s},
                         {"tokens_per_s_ratio", r.tokens_per_s / base.tokens_per_s},
                         {"mfu", r.mfu},
                         {"flops_per_step", r.flops_per_step},
                         {"collectives_per_step", r.comm.total_count()},
                         {"bytes_per_step", r.comm.total_bytes()},
                         {"comm_ms_per_step", r.comm.total_seconds() * 1e3},
                         {"peak_memory_bytes", r.peak_memory_bytes < 0 ? nlohmann::json() : nlohmann::json(r.peak_memory_bytes)}};
      for (int k = 0; k < kCommKinds; ++k) {
        row[comm_kind_name(CommKind(k))] = r.comm.count[size_t(k)];
        row[std::string(comm_kind_name(CommKind(k))) + "_bytes"] = r.comm.bytes[size_t(k)];
      }
      j["rows"].push_back(row);
    }
    j["projections"] = projections;
    if (fit) j["alpha_beta_fit"] = fit_json;
    if (opt.json == "-") {
      main_out << j.dump(2) << "\n";
    } else {
      std::ofstream f(opt.json);
      if (!f) throw UserError("cannot write " + opt.json);
      f << j.dump(2) << "\n";
      out << "wrote " << opt.json << "\n";
    }
  }
}

}  // namespace dgpt
