// `dgpt bench --mode=generate`: inference with the KV cache, per strategy, on one rank of N
// devices (a solo rank: SPEC §5). The prefill of P prompt tokens and the decode of new tokens one
// at a time are timed separately; each decode step's forward all-reduces carry B*C elements (SPEC
// §6), the latency-bound regime where SPD and Ladder claim their speedups.
#include <ATen/CPUGeneratorImpl.h>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <ostream>

#include "base/clock.h"
#include "blocks/block.h"
#include "comm/interconnect.h"
#include "files/tokenizer.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "run/bench_common.h"
#include "run/process_mesh.h"
#include "run/run_settings.h"

namespace dgpt {

namespace {

struct GenerateRow {
  std::string label;
  ModelArgs args;
  std::vector<int64_t> ranks;  // solo ranks timed
  double prefill_ms = 0;       // the slowest timed rank's
  double decode_ms = 0;        // per new token, the slowest timed rank's
  CommTally prefill_comm;      // one prefill
  CommTally decode_comm;       // one decode step
  // The compute each overlapping collective (ladder's g) was in flight during, in order: of one
  // prefill, and of one decode step (the mean over the decoded tokens).
  std::vector<double> prefill_windows, decode_windows;
  int64_t devices() const { return args.dense() ? 1 : args.tp_size; }
};


}  // namespace

void bench_generate(const TrainConfig& cfg, const BenchOptions& opt, std::ostream& main_out,
                    std::ostream& main_notices) {
  if (cfg.backend != "sim")
    throw UserError("--mode=generate times solo ranks in one process: use backend='sim' (the projection stands in "
                    "for the real run)");
  if (opt.prompt_len < 1 || opt.new_tokens < 1 || opt.gen_batch < 1)
    throw UserError("--mode=generate needs prompt_len >= 1, new_tokens >= 1 and gen_batch >= 1");
  if (opt.prompt_len + opt.new_tokens > cfg.block_size)
    throw UserError(fmt::format("--mode=generate: prompt_len {} + new_tokens {} exceeds block_size {}", opt.prompt_len,
                                opt.new_tokens, cfg.block_size));
  std::ostream& out = opt.json == "-" ? main_notices : main_out;
  const torch::Device device = resolve_device(cfg.device, cfg.device_was_set, main_notices);
  const Precision precision = resolve_precision(cfg.dtype, device, main_notices);
  const int64_t vocab = dataset_vocab_size(cfg.resolved_data_dir());
  const auto nets = parse_interconnects(opt.project);
  const int64_t B = opt.gen_batch, P = opt.prompt_len, new_tokens = opt.new_tokens;

  auto gen = at::make_generator<at::CPUGeneratorImpl>(uint64_t(cfg.seed));
  std::vector<GenerateRow> rows;
  for (auto& pattern : bench_patterns(cfg, opt, vocab)) {
    GenerateRow row{pattern.label, pattern.args};
    row.args.dropout = 0.0;
    row.ranks = row.args.dense() ? std::vector<int64_t>{0} : solo_ranks(opt.ranks, row.args.tp_size);
    for (const int64_t r : row.ranks) {
      std::shared_ptr<TensorParallelGroup> group;
      if (row.args.dense())
        group = std::make_shared<SimulatedGroup>(1);
      else
        group = std::make_shared<SoloRankGroup>(row.args.tp_size, r);
      GPT model = build_model(row.args, group, cfg.seed, device, precision.param_dtype);
      model->eval();
      torch::NoGradGuard no_grad;
      AutocastScope autocast(precision);
      KVCache cache;
      const auto prompt = torch::randint(row.args.vocab_size, {B, P}, gen, torch::kLong).to(device);
      double prefill_s = 0, decode_s = 0;
      CommTally prefill_comm, decode_comm;
      std::vector<double> prefill_windows, decode_windows;
      for (int64_t it = 0; it < opt.burnin + opt.iters; ++it) {
        const bool timed = it >= opt.burnin;
        cache.clear();
        synchronize_device(device);
        CommTally before = group->tally();
        group->log_overlaps(true);
        auto t0 = Clock::now();
        auto logits = model->forward(prompt, {}, &cache).logits;  // [B, 1, V]
        synchronize_device(device);
        if (timed) prefill_s += seconds_since(t0);
        prefill_comm = group->tally() - before;
        prefill_windows = group->take_overlap_log();
        before = group->tally();
        t0 = Clock::now();
        for (int64_t n = 0; n < new_tokens; ++n) {
          // Greedy: a solo rank's logits mean nothing, but the next token's lookup is as real as any.
          auto next = logits.argmax(-1);  // [B, 1]
          logits = model->forward(next, {}, &cache).logits;
        }
        synchronize_device(device);
        if (timed) decode_s += seconds_since(t0);
        decode_comm = group->tally() - before;
        decode_windows = group->take_overlap_log();  // new_tokens steps of the same sequence
        group->log_overlaps(false);
      }
      std::vector<double> per_token(decode_windows.size() / size_t(new_tokens), 0.0);
      if (!per_token.empty())
        for (size_t i = 0; i < per_token.size() * size_t(new_tokens); ++i)
          per_token[i % per_token.size()] += decode_windows[i] / double(new_tokens);
      // per prefill, per decoded token
      for (int k = 0; k < kCommKinds; ++k) {
        decode_comm.count[size_t(k)] /= new_tokens;
        decode_comm.bytes[size_t(k)] /= new_tokens;
        decode_comm.overlapped[size_t(k)] /= new_tokens;
        decode_comm.overlap_seconds[size_t(k)] /= double(new_tokens);
      }
      row.prefill_ms = std::max(row.prefill_ms, prefill_s / double(opt.iters) * 1e3);
      row.decode_ms = std::max(row.decode_ms, decode_s / double(opt.iters * new_tokens) * 1e3);
      row.prefill_comm = prefill_comm;
      row.decode_comm = decode_comm;
      row.prefill_windows = prefill_windows;
      row.decode_windows = per_token;
    }
    out << fmt::format("  {}: prefill {:.2f} ms, decode {:.3f} ms/token (per rank, N = {})\n", row.label,
                       row.prefill_ms, row.decode_ms, row.devices())
        << std::flush;
    rows.push_back(row);
  }

  const GenerateRow* all_tp = nullptr;
  const GenerateRow* dense = nullptr;
  for (auto& r : rows) {
    if (is_baseline_pattern(r.args)) all_tp = &r;
    if (r.args.dense()) dense = &r;
  }
  out << fmt::format("\ngeneration with the KV cache: batch {}, prompt {} tokens, {} new tokens; times per rank of an "
                     "N-device run (solo ranks timed: {}; the slowest), {}\n",
                     B, P, new_tokens, opt.ranks, precision.describe());
  out << fmt::format("{:<40} {:>3} {:>11} {:>9} {:>14} {:>9} {:>14} {:>12}\n", "strategy", "N", "prefill ms",
                     "fwd AR", "prefill bytes", "decode ms", "fwd AR/token", "bytes/token");
  for (auto& r : rows)
    out << fmt::format("{:<40} {:>3} {:>11.2f} {:>9} {:>14} {:>9.3f} {:>14} {:>12}\n", r.label, r.devices(),
                       r.prefill_ms, r.prefill_comm.count_of(CommKind::ForwardAllReduce),
                       human_bytes(double(r.prefill_comm.total_bytes())), r.decode_ms,
                       r.decode_comm.count_of(CommKind::ForwardAllReduce),
                       human_bytes(double(r.decode_comm.total_bytes())));

  nlohmann::json projections = nlohmann::json::array();
  for (auto& net : nets) {
    out << fmt::format("\nprojection on {} (alpha {:.1f} us, {:.1f} GB/s): per-token latency = decode ms + its "
                       "all-reduces\n",
                       net.name, net.alpha_s * 1e6, net.bandwidth_Bps / 1e9);
    out << fmt::format("{:<40} {:>3} {:>13} {:>15} {:>12} {:>10} {:>9}\n", "strategy", "N", "prefill ms",
                       "ms/token", "tokens/s", "vs all-tp", "vs dense");
    auto per_token = [&](const GenerateRow& r) {
      return projected_step_seconds(r.decode_ms / 1e3, step_collectives(r.decode_comm, r.decode_windows), net, r.devices()) * 1e3;
    };
    for (auto& r : rows) {
      const double prefill =
          projected_step_seconds(r.prefill_ms / 1e3, step_collectives(r.prefill_comm, r.prefill_windows), net, r.devices()) * 1e3;
      const double token = per_token(r);
      const double vs_tp = all_tp ? per_token(*all_tp) / token : 0;
      const double vs_dense = dense ? per_token(*dense) / token : 0;
      out << fmt::format("{:<40} {:>3} {:>13.2f} {:>15.3f} {:>12.0f} {:>10} {:>9}\n", r.label, r.devices(), prefill,
                         token, double(B) / (token / 1e3), all_tp ? fmt::format("{:.3f}x", vs_tp) : "n/a",
                         dense ? fmt::format("{:.3f}x", vs_dense) : "n/a");
      projections.push_back({{"interconnect", net.name}, {"strategy", r.label}, {"devices", r.devices()},
                             {"prefill_ms", prefill}, {"ms_per_token", token},
                             {"tokens_per_s", double(B) / (token / 1e3)},
                             {"speedup_vs_all_tp", all_tp ? nlohmann::json(vs_tp) : nlohmann::json()},
                             {"speedup_vs_dense", dense ? nlohmann::json(vs_dense) : nlohmann::json()}});
    }
  }

  if (!opt.json.empty()) {
    nlohmann::json j;
    j["mode"] = "generate";
    j["device"] = device.str();
    j["precision"] = precision.describe();
    j["batch"] = B;
    j["prompt_len"] = P;
    j["new_tokens"] = new_tokens;
    j["rows"] = nlohmann::json::array();
    for (auto& r : rows) {
      nlohmann::json row{{"strategy", r.label}, {"model_type", r.args.model_type}, {"tp_size", r.args.tp_size},
                         {"devices", r.devices()}, {"block_types", r.args.block_types}, {"ranks", r.ranks},
                         {"prefill_ms", r.prefill_ms}, {"decode_ms_per_token", r.decode_ms}};
      for (int k = 0; k < kCommKinds; ++k) {
        const std::string kind = comm_kind_name(CommKind(k));
        row["prefill_" + kind] = r.prefill_comm.count[size_t(k)];
        row["prefill_" + kind + "_bytes"] = r.prefill_comm.bytes[size_t(k)];
        row["decode_" + kind] = r.decode_comm.count[size_t(k)];
        row["decode_" + kind + "_bytes"] = r.decode_comm.bytes[size_t(k)];
      }
      j["rows"].push_back(row);
    }
    j["projections"] = projections;
    write_bench_json(j, opt.json, main_out, out);
  }
}

}  // namespace dgpt
