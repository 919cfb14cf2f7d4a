#include "run/sensitivity.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <fstream>
#include <map>
#include <numeric>
#include <ostream>
#include <sstream>

#include "base/errors.h"
#include "blocks/block.h"
#include "config/pyliteral.h"
#include "files/atomic_file.h"
#include "files/checkpoint.h"
#include "files/data.h"
#include "model/comm_plan.h"
#include "model/convert.h"
#include "run/generate.h"
#include "run/run_settings.h"

namespace dgpt {

namespace {

struct Entry {
  std::vector<std::string> block_types;
  double loss = 0;
  int64_t forward_allreduce = 0;
};

}  // namespace

void sensitivity(const SensitivityOptions& opt, std::ostream& main_out, std::ostream& notices) {
  if (opt.batch_size < 1) throw UserError(fmt::format("--batch_size must be >= 1, got {}", opt.batch_size));
  if (opt.max_windows < 0) throw UserError(fmt::format("--max_windows must be >= 0 (0: all), got {}", opt.max_windows));
  if (opt.tokens.empty()) throw UserError("dgpt sensitivity needs --tokens (a .bin file, e.g. data/DATASET/val.bin)");
  block_type(opt.to);  // an unknown type names the known ones
  std::ostream& out = opt.json == "-" ? notices : main_out;
  const std::string ckpt_path = opt.out_dir + "/ckpt.pt";
  const Checkpoint ckpt = load_checkpoint(ckpt_path);
  const int64_t N = opt.tp_size > 0 ? opt.tp_size : ckpt.model_args.tp_size;
  if (N < 2)
    throw UserError(fmt::format("dgpt sensitivity needs tp_size >= 2 (sync points are between shards); the "
                                "checkpoint's is {}: give --tp_size",
                                ckpt.model_args.tp_size));
  // The unconverted model must be the checkpoint's: blocks tied to their tp_size stay at it.
  inference_model_args(ckpt, N, ModelArgs::kShardedModelType, -1, {});
  const torch::Device device = resolve_device(opt.device, true, notices);
  // The unconverted model: the checkpoint's blocks (a dense one as all the baseline type: the same function).
  const std::vector<std::string> base_types = effective_block_types(ckpt.model_args);
  const int64_t L = int64_t(base_types.size());
  auto model_for = [&](const std::vector<std::string>& types) {
    return model_from_checkpoint(ckpt, N, ModelArgs::kShardedModelType, device, torch::kFloat, -1, types);
  };
  GPT base_model = model_for(base_types);
  const int64_t T = opt.block_size > 0 ? opt.block_size : base_model->args().block_size;
  if (T > base_model->args().block_size)
    throw UserError(fmt::format("--block_size={} exceeds the model's block_size={}", T, base_model->args().block_size));
  const TokenFile tokens(opt.tokens);
  int64_t windows = (tokens.size() - 1) / T;
  if (opt.max_windows > 0) windows = std::min(windows, opt.max_windows);
  if (windows <= 0)
    throw UserError(fmt::format("{} has {} tokens: fewer than one window of {} + 1", opt.tokens, tokens.size(), T));
  for (int64_t i = 0; i < tokens.size(); ++i)
    if (tokens.data()[i] >= ckpt.model_args.vocab_size)
      throw UserError(fmt::format("{} holds token id {} at position {}, outside the model's vocabulary of {}",
                                  opt.tokens, tokens.data()[i], i, ckpt.model_args.vocab_size));

  auto forward_allreduces = [&](const std::vector<std::string>& types) {
    ModelArgs a = base_model->args();
    a.block_types = types;
    return plan_communications(a, opt.batch_size, 1, false, 4, 4).forward_allreduce;
  };
  auto evaluate = [&](const std::vector<std::string>& types) {  // a pattern's own model, in full
    GPT m = model_for(types);
    return Entry{types, window_loss(m, tokens, T, windows, opt.batch_size, device), forward_allreduces(types)};
  };
  // Every single-block and cumulative variant on each batch of windows, sharing the unchanged model's
  // prefix: a variant whose first changed layer is l runs from the stream entering the last settled
  // layer <= l (model.h), with substitute blocks of type `to` for its changed layers. The same
  // arithmetic as evaluating each variant's own model (tested against separate `dgpt eval` runs).
  std::map<int64_t, std::shared_ptr<BlockImpl>> substitutes;  // layer -> its block of type `to`
  for (int64_t l = 0; l < L; ++l) {
    if (base_types[size_t(l)] == opt.to) continue;
    ModelArgs a = base_model->args();
    a.block_types[size_t(l)] = opt.to;
    substitutes[l] = base_model->substitute_block(l, opt.to, convert_weights(ckpt.model, ckpt.model_args, a));
  }
  struct Variant {
    std::vector<std::string> types;
    int64_t first = 0;  // its first switched layer; L: none (every layer it switches is already `to`)
    std::map<int64_t, std::shared_ptr<BlockImpl>> subs;
    double nll = 0;
  };
  std::vector<Variant> variants;  // L single ones, then the cumulative k = 2..L
  auto add_variant = [&](std::vector<std::string> types) {
    Variant v{std::move(types), L, {}, 0};
    for (int64_t l = L - 1; l >= 0; --l)
      if (v.types[size_t(l)] != base_types[size_t(l)]) {
        v.first = l;
        v.subs[l] = substitutes.at(l);
      }
    variants.push_back(std::move(v));
  };
  for (int64_t l = 0; l < L; ++l) {
    auto types = base_types;
    types[size_t(l)] = opt.to;
    add_variant(types);
  }
  {
    auto types = base_types;
    types[size_t(L - 1)] = opt.to;
    for (int64_t k = 2; k <= L; ++k) {
      types[size_t(L - k)] = opt.to;
      add_variant(types);
    }
  }
  double base_nll = 0;
  {
    torch::NoGradGuard no_grad;
    for (int64_t first = 0; first < windows; first += opt.batch_size) {
      const int64_t n = std::min(opt.batch_size, windows - first);
      auto span = tokens.slice(first * T, n * T + 1);
      auto x = span.narrow(0, 0, n * T).view({n, T}).to(device);
      auto y = span.narrow(0, 1, n * T).view({n, T}).to(device);
      const auto streams = base_model->settled_streams(x);
      base_nll += summed_nll(base_model->forward_from(streams[size_t(L)], L, {}, y), y);
      for (auto& v : variants) {
        if (v.first == L) continue;  // the unchanged model
        int64_t start = v.first;
        while (!streams[size_t(start)].defined()) --start;
        v.nll += summed_nll(base_model->forward_from(streams[size_t(start)], start, v.subs, y), y);
      }
    }
  }
  const double per_token = 1.0 / double(windows * T);
  const Entry base{base_types, base_nll * per_token, forward_allreduces(base_types)};
  auto variant_entry = [&](size_t i) {
    const Variant& v = variants[i];
    return v.first == L ? base : Entry{v.types, v.nll * per_token, forward_allreduces(v.types)};
  };
  out << fmt::format("sensitivity of {} at tp_size {}: each block switched to '{}'; loss over {} windows of {} tokens "
                     "of {}\n",
                     ckpt_path, N, opt.to, windows, T, opt.tokens);
  out << fmt::format("unconverted {}: loss {:.6f}, {} forward all-reduces per micro-step\n",
                     PyValue::from(base_types).repr(), base.loss, base.forward_allreduce);

  // One block alone.
  std::vector<Entry> single;
  out << fmt::format("\n{:>5}  {:<10} {:>12} {:>12} {:>8}\n", "layer", "was", "loss", "delta", "fwd AR");
  for (int64_t l = 0; l < L; ++l) {
    single.push_back(variant_entry(size_t(l)));
    out << fmt::format("{:>5}  {:<10} {:>12.6f} {:>+12.6f} {:>8}\n", l, base_types[size_t(l)], single.back().loss,
                       single.back().loss - base.loss, single.back().forward_allreduce)
        << std::flush;
  }
  // The SPD paper's order: from the last layer backward, one more block each step.
  std::vector<Entry> cumulative;
  out << fmt::format("\ncumulative, the last k layers switched:\n{:>5}  {:>12} {:>12} {:>8}\n", "k", "loss", "delta",
                     "fwd AR");
  for (int64_t k = 1; k <= L; ++k) {
    cumulative.push_back(k == 1 ? single[size_t(L - 1)] : variant_entry(size_t(L + k - 2)));
    out << fmt::format("{:>5}  {:>12.6f} {:>+12.6f} {:>8}\n", k, cumulative.back().loss,
                       cumulative.back().loss - base.loss, cumulative.back().forward_allreduce)
        << std::flush;
  }

  nlohmann::json j;
  auto entry_json = [&](const Entry& e) {
    return nlohmann::json{{"block_types", e.block_types}, {"loss", e.loss}, {"delta", e.loss - base.loss},
                          {"forward_allreduce", e.forward_allreduce}};
  };
  j["checkpoint"] = ckpt_path;
  j["tp_size"] = N;
  j["to"] = opt.to;
  j["windows"] = windows;
  j["block_size"] = T;
  j["tokens"] = opt.tokens;
  j["base"] = {{"block_types", base_types}, {"loss", base.loss}, {"forward_allreduce", base.forward_allreduce}};
  j["single"] = nlohmann::json::array();
  for (int64_t l = 0; l < L; ++l) {
    auto e = entry_json(single[size_t(l)]);
    e["layer"] = l;
    j["single"].push_back(e);
  }
  j["cumulative"] = nlohmann::json::array();
  for (int64_t k = 1; k <= L; ++k) {
    auto e = entry_json(cumulative[size_t(k - 1)]);
    e["k"] = k;
    j["cumulative"].push_back(e);
  }

  // A budget: switch the least sensitive blocks first until the plan fits; predicted = base + the sum
  // of their single-block deltas (deltas taken as additive), measured = the pattern evaluated.
  if (opt.budget >= 0) {
    std::vector<int64_t> order(static_cast<size_t>(L), 0);
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(),
                     [&](int64_t a, int64_t b) { return single[size_t(a)].loss < single[size_t(b)].loss; });
    auto chosen = base_types;
    double predicted = base.loss;
    int64_t count = base.forward_allreduce;
    for (int64_t l : order) {
      if (count <= opt.budget) break;
      if (chosen[size_t(l)] == opt.to) continue;
      auto tried = chosen;
      tried[size_t(l)] = opt.to;
      const int64_t c = forward_allreduces(tried);
      if (c > count) continue;  // costs more (a block of a parallel run switched to spd, say)
      chosen = tried;
      count = c;
      predicted += single[size_t(l)].loss - base.loss;
    }
    if (count > opt.budget)
      throw UserError(fmt::format("--budget={} forward all-reduces is out of reach: switching blocks to '{}', least "
                                  "sensitive first, gets this model down to {} per micro-step",
                                  opt.budget, opt.to, count));
    const Entry measured = chosen == base_types ? base : evaluate(chosen);
    out << fmt::format("\nbudget {} forward all-reduces: {} ({}), predicted loss {:.6f}, measured {:.6f}\n", opt.budget,
                       PyValue::from(chosen).repr(), measured.forward_allreduce, predicted, measured.loss);
    j["budget"] = {{"forward_allreduce_budget", opt.budget}, {"block_types", chosen},
                   {"forward_allreduce", measured.forward_allreduce}, {"predicted_loss", predicted},
                   {"measured_loss", measured.loss}};
  }
  if (opt.json == "-")
    main_out << j.dump(2) << "\n";
  else if (!opt.json.empty())
    write_file_atomically(opt.json, j.dump(2) + "\n");
}

}  // namespace dgpt
