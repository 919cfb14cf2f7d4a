#include "model/convert.h"

#include <fmt/format.h>

#include <set>

#include "base/errors.h"
#include "blocks/block.h"
#include "config/pyliteral.h"

namespace dgpt {

std::vector<std::string> effective_block_types(const ModelArgs& a) {
  if (a.dense() || a.block_types.empty())
    return std::vector<std::string>(size_t(a.n_layer), ModelArgs::kBaselineBlockType);
  return a.block_types;
}

namespace {

bool has_c_proj_biases(const ModelArgs& a, int64_t layer) {
  return a.bias && block_type(effective_block_types(a)[size_t(layer)]).c_proj_biases;
}

std::string layer_list(const std::vector<int64_t>& layers) {
  std::string s;
  for (auto l : layers) s += (s.empty() ? "" : ", ") + std::to_string(l);
  return s;
}

}  // namespace

DenseState convert_weights(const DenseState& weights, const ModelArgs& from, const ModelArgs& to) {
  if (from.n_layer != to.n_layer || from.n_head != to.n_head || from.n_embd != to.n_embd ||
      from.vocab_size != to.vocab_size || from.bias != to.bias)
    throw UserError(fmt::format("cannot convert weights of n_layer={}, n_head={}, n_embd={}, vocab_size={}, bias={} "
                                "to n_layer={}, n_head={}, n_embd={}, vocab_size={}, bias={}: only the block types, "
                                "tp_size, model_type, parallel_merge and vocab_parallel may change",
                                from.n_layer, from.n_head, from.n_embd, from.vocab_size, from.bias, to.n_layer,
                                to.n_head, to.n_embd, to.vocab_size, to.bias));
  DenseState w = weights;
  auto wpe = w.find("transformer.wpe.weight");
  if (wpe != w.end() && to.block_size < wpe->second.size(0)) wpe->second = wpe->second.narrow(0, 0, to.block_size);
  const auto like = w.at("transformer.wte.weight");
  for (int64_t l = 0; l < to.n_layer; ++l) {
    const bool had = has_c_proj_biases(from, l), has = has_c_proj_biases(to, l);
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    for (const char* name : {"attn.c_proj.bias", "mlp.c_proj.bias"}) {
      if (had && !has) w.erase(p + name);
      if (!had && has) w[p + name] = torch::zeros({to.n_embd}, like.options());
    }
  }
  return w;
}

std::string describe_conversion(const ModelArgs& from, const ModelArgs& to) {
  const auto a = effective_block_types(from), b = effective_block_types(to);
  std::vector<int64_t> changed, dropped, zeroed;
  std::set<std::string> new_types;
  for (int64_t l = 0; l < to.n_layer; ++l) {
    if (a[size_t(l)] != b[size_t(l)]) {
      changed.push_back(l);
      new_types.insert(b[size_t(l)]);
    }
    const bool had = has_c_proj_biases(from, l), has = has_c_proj_biases(to, l);
    if (had && !has) dropped.push_back(l);
    if (!had && has) zeroed.push_back(l);
  }
  // The same function: no layer changes type, and every block computes the same function at every
  // tp_size (or tp_size stays); vocab_parallel and parallel_merge of a model without parallel blocks never matter.
  bool same_types_fn = true;
  for (auto& t : b) same_types_fn = same_types_fn && block_type(t).same_function_at_every_tp_size;
  bool merge_matters = false;
  for (auto& t : b) merge_matters = merge_matters || block_type(t).keeps_shard_streams;
  const bool same_function = changed.empty() && (same_types_fn || from.tp_size == to.tp_size) &&
                             (!merge_matters || from.parallel_merge == to.parallel_merge);
  std::string s;
  if (!changed.empty()) {
    std::string what;
    for (auto& t : new_types) {
      const auto& type = block_type(t);
      what += fmt::format("{}'{}': {}", what.empty() ? "" : "; ", t,
                          type.differs_from_dense.empty() ? "the dense block" : type.differs_from_dense);
    }
    s += fmt::format("converting weights: block_types {} -> {} (changed: layer{} {}; {})", PyValue::from(a).repr(),
                     PyValue::from(b).repr(), changed.size() > 1 ? "s" : "", layer_list(changed), what);
  } else if (from.tp_size != to.tp_size || from.model_type != to.model_type || from.vocab_parallel != to.vocab_parallel ||
             from.parallel_merge != to.parallel_merge) {
    s += fmt::format("running the weights as {} at tp_size {}{}", to.model_type, to.tp_size,
                     to.vocab_sharded() ? ", vocab_parallel" : "");
  } else {
    return "";
  }
  if (!dropped.empty())
    s += fmt::format("; attn.c_proj.bias and mlp.c_proj.bias of layers {} dropped (the new type has none)",
                     layer_list(dropped));
  if (!zeroed.empty())
    s += fmt::format("; attn.c_proj.bias and mlp.c_proj.bias of layers {} added as zeros (the weights have none)",
                     layer_list(zeroed));
  s += same_function ? "; the same function as the checkpoint's model"
                     : "; another function than the checkpoint's model (zero-shot: the weights are reinterpreted)";
  return s;
}

}  // namespace dgpt
