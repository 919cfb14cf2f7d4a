#include "model/model.h"

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>

#include "blocks/block.h"
#include "model/dense_block.h"
#include "model/cpu_gemm.h"
#include "model/dropout.h"
#include "model/vocab_parallel.h"
#include "base/errors.h"
#include "base/torch_compat.h"

namespace dgpt {

namespace {

struct DenseParamSpec {
  std::string name;
  std::vector<int64_t> shape;
  enum { Normal, Ones, Zeros } init;
  double std = 0;
};

// Every dense tensor of the model, in a fixed order, with nanoGPT's initialisation.
std::vector<DenseParamSpec> dense_param_specs(const ModelArgs& a) {
  const int64_t C = a.n_embd;
  const double std_w = 0.02, std_proj = 0.02 / std::sqrt(2.0 * double(a.n_layer));
  std::vector<DenseParamSpec> specs{{"transformer.wte.weight", {a.vocab_size, C}, DenseParamSpec::Normal, std_w},
                                    {"transformer.wpe.weight", {a.block_size, C}, DenseParamSpec::Normal, std_w}};
  auto layer_norm_specs = [&](const std::string& name) {
    specs.push_back({name + ".weight", {C}, DenseParamSpec::Ones});
    if (a.bias) specs.push_back({name + ".bias", {C}, DenseParamSpec::Zeros});
  };
  for (int64_t l = 0; l < a.n_layer; ++l) {
    const std::string p = "transformer.h." + std::to_string(l) + ".";
    const bool proj_bias = a.bias && (a.dense() || block_type(a.block_types[size_t(l)]).c_proj_biases);
    layer_norm_specs(p + "ln_1");
    specs.push_back({p + "attn.c_attn.weight", {3 * C, C}, DenseParamSpec::Normal, std_w});
    if (a.bias) specs.push_back({p + "attn.c_attn.bias", {3 * C}, DenseParamSpec::Zeros});
    specs.push_back({p + "attn.c_proj.weight", {C, C}, DenseParamSpec::Normal, std_proj});
    if (proj_bias) specs.push_back({p + "attn.c_proj.bias", {C}, DenseParamSpec::Zeros});
    layer_norm_specs(p + "ln_2");
    specs.push_back({p + "mlp.c_fc.weight", {4 * C, C}, DenseParamSpec::Normal, std_w});
    if (a.bias) specs.push_back({p + "mlp.c_fc.bias", {4 * C}, DenseParamSpec::Zeros});
    specs.push_back({p + "mlp.c_proj.weight", {C, 4 * C}, DenseParamSpec::Normal, std_proj});
    if (proj_bias) specs.push_back({p + "mlp.c_proj.bias", {C}, DenseParamSpec::Zeros});
  }
  layer_norm_specs("transformer.ln_f");
  return specs;
}

std::string shape_str(torch::IntArrayRef s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) out += (i ? ", " : "") + std::to_string(s[i]);
  return out + "]";
}

}  // namespace

GPTImpl::GPTImpl(const ModelArgs& args, std::shared_ptr<TensorParallelGroup> group)
    : args_(args), group_(std::move(group)) {
  const int64_t C = args.n_embd;
  if (args.vocab_sharded()) {  // this process's shards of the padded vocabulary: [L, Vp/N, C]
    const auto v = VocabShards::of(args, *group_);
    wte_ = register_parameter("wte", torch::zeros({v.local_shards, v.shard_rows, C}));
  } else {
    wte_ = register_parameter("wte", torch::zeros({args.vocab_size, C}));
  }
  wpe_ = register_parameter("wpe", torch::zeros({args.block_size, C}));
  ln_f_weight_ = register_parameter("ln_f_weight", torch::ones({C}));
  if (args.bias) ln_f_bias_ = register_parameter("ln_f_bias", torch::zeros({C}));
  for (int64_t l = 0; l < args.n_layer; ++l) {
    const BlockContext ctx{args, group_.get(), &replicated_grads_, l, &dropout_key_};
    auto block = args.dense() ? make_dense_block(args, ctx.dropout()) : make_block(ctx, args.block_types[size_t(l)]);
    blocks_.push_back(register_module("h" + std::to_string(l), block));
  }
}

ModelOutput GPTImpl::forward(const torch::Tensor& idx, const torch::Tensor& targets, KVCache* cache) {
  TORCH_CHECK(idx.dim() == 2 && idx.size(1) > 0, "GPT forward: idx must be [B, T] with T >= 1, got ", idx.sizes());
  const int64_t T = idx.size(1), P = cache ? cache->length() : 0;
  if (P + T > args_.block_size) {
    if (cache)
      throw UserError("cannot extend a KV cache of " + std::to_string(P) + " positions by " + std::to_string(T) +
                      ": block_size is " + std::to_string(args_.block_size) + " (clear the cache and prefill the last " +
                      std::to_string(args_.block_size) + " tokens)");
    throw UserError("cannot forward a sequence of length " + std::to_string(T) +
                    ": block_size is " + std::to_string(args_.block_size));
  }
  auto x = embed(idx, P);  // [B, T, C]
  ResidualStream stream(x, *group_, args_.parallel_merge == "mean");
  if (cache) cache->reserve(args_.n_layer, args_.block_size);
  try {
    for (size_t l = 0; l < blocks_.size(); ++l) blocks_[l]->forward(stream, cache ? &cache->layer(l) : nullptr);
  } catch (...) {
    if (cache) cache->clear();  // some layers were extended and some not
    throw;
  }
  if (cache) cache->length_ += T;
  return head(stream.replicated(), targets);
}

torch::Tensor GPTImpl::embed(const torch::Tensor& idx, int64_t P) {
  const int64_t T = idx.size(1);
  auto pos = torch::arange(P, P + T, torch::TensorOptions().dtype(torch::kLong).device(idx.device()));
  // The token embedding [B, T, C]: vocab-parallel, each shard's lookup of its own rows summed by one g.
  const auto tokens = args_.vocab_sharded() ? vocab_parallel_embedding(wte_, idx, VocabShards::of(args_, *group_), *group_)
                                            : torch::embedding(wte_, idx);
  return DropoutPlace(&dropout_key_, 0, args_.dropout)
      .replicated(tokens + torch::embedding(wpe_, pos), DropoutSite::Embedding, is_training());
}

ModelOutput GPTImpl::head(const torch::Tensor& stream_out, const torch::Tensor& targets) {
  const int64_t T = stream_out.size(1);
  auto x = layer_norm(stream_out, ln_f_weight_, ln_f_bias_);
  ModelOutput out;
  if (args_.vocab_sharded()) {
    // Vocab-parallel head (SPEC §1): one f, each shard's logits [L,B,T,V/N]; the loss from three
    // all-reduces of [B,T]; for sampling the last position's logits gathered to [B,1,V].
    const auto v = VocabShards::of(args_, *group_);
    if (targets.defined())
      out.loss = vocab_parallel_cross_entropy(vocab_parallel_logits(x, wte_, *group_), targets, v, *group_);
    else
      out.logits = gather_vocab_logits(vocab_parallel_logits(x.narrow(1, T - 1, 1), wte_, *group_), v, *group_);
  } else if (targets.defined()) {
    out.logits = dgpt::linear(x, wte_);  // the tied lm_head
    out.loss = torch::nll_loss(torch::log_softmax(out.logits.view({-1, out.logits.size(-1)}), -1),
                               targets.reshape(-1), {}, at::Reduction::Mean, /*ignore_index=*/-1);
  } else {
    out.logits = torch::matmul(x.narrow(1, T - 1, 1), wte_.t());
  }
  return out;
}

bool GPTImpl::settled_before(int64_t layer) const {
  if (layer == 0 || args_.dense()) return true;
  const auto& before = block_type(args_.block_types[size_t(layer - 1)]);
  return !before.keeps_shard_streams && !before.lags_stream;
}

std::vector<torch::Tensor> GPTImpl::settled_streams(const torch::Tensor& idx) {
  TORCH_CHECK(idx.dim() == 2 && idx.size(1) > 0 && idx.size(1) <= args_.block_size, "settled_streams: bad idx");
  std::vector<torch::Tensor> xs(blocks_.size() + 1);
  ResidualStream stream(embed(idx, 0), *group_, args_.parallel_merge == "mean");
  for (size_t l = 0; l < blocks_.size(); ++l) {
    if (settled_before(int64_t(l))) xs[l] = stream.replicated();  // nothing to merge or add here
    blocks_[l]->forward(stream, nullptr);
  }
  xs[blocks_.size()] = stream.replicated();
  return xs;
}

ModelOutput GPTImpl::forward_from(const torch::Tensor& x, int64_t first,
                                  const std::map<int64_t, std::shared_ptr<BlockImpl>>& substitutes,
                                  const torch::Tensor& targets) {
  ResidualStream stream(x, *group_, args_.parallel_merge == "mean");
  for (int64_t l = first; l < int64_t(blocks_.size()); ++l) {
    auto sub = substitutes.find(l);
    (sub != substitutes.end() ? sub->second : blocks_[size_t(l)])->forward(stream, nullptr);
  }
  return head(stream.replicated(), targets);
}

std::shared_ptr<BlockImpl> GPTImpl::substitute_block(int64_t layer, const std::string& type, const DenseState& dense) {
  torch::NoGradGuard no_grad;
  const BlockContext ctx{args_, group_.get(), &replicated_grads_, layer, &dropout_key_};
  auto block = make_block(ctx, type);
  block->to(wte_.device(), wte_.scalar_type());
  block->eval();
  for (auto& slot : block->param_slots("transformer.h." + std::to_string(layer) + ".")) {
    auto it = dense.find(slot.dense_name);
    if (it == dense.end()) throw UserError("the weights have no tensor '" + slot.dense_name + "'");
    slot.param.copy_(shards_from_dense(it->second.to(slot.param.dtype()), slot.layout, args_.tp_size,
                                       group_->first_shard(), group_->local_shards()));
  }
  return block;
}

std::vector<ParamSlot> GPTImpl::param_slots() {
  // wte is one tensor for the embedding and the tied lm_head, so both gradients accumulate in it.
  const TensorLayout wte_layout =
      args_.vocab_sharded() ? TensorLayout::vocab_parallel(args_.vocab_size) : TensorLayout(Layout::Replicated);
  std::vector<ParamSlot> slots{{"transformer.wte.weight", wte_, wte_layout},
                               {"transformer.wpe.weight", wpe_, Layout::Replicated}};
  for (size_t l = 0; l < blocks_.size(); ++l) {
    auto block_slots = blocks_[l]->param_slots("transformer.h." + std::to_string(l) + ".");
    slots.insert(slots.end(), block_slots.begin(), block_slots.end());
  }
  slots.push_back({"transformer.ln_f.weight", ln_f_weight_, Layout::Replicated});
  if (ln_f_bias_.defined()) slots.push_back({"transformer.ln_f.bias", ln_f_bias_, Layout::Replicated});
  return slots;
}

void GPTImpl::sync_replicated_grads() { replicated_grads_.sync(*group_); }
void GPTImpl::discard_replicated_grads() { replicated_grads_.reset(); }

void GPTImpl::set_dropout_step(int64_t seed, int64_t iter, int64_t micro) {
  dropout_key_.step = dropout_step_key(seed, iter, micro);
}

DenseState GPTImpl::dense_state() {
  torch::NoGradGuard no_grad;
  DenseState dense;
  for (auto& slot : param_slots()) {
    auto local = slot.param.detach();
    dense[slot.dense_name] = slot.sharded() ? dense_from_shards(group_->gather_shards(local), slot.layout) : local.clone();
  }
  dense["lm_head.weight"] = dense["transformer.wte.weight"];
  return dense;
}

void GPTImpl::load_dense_state(const DenseState& dense) {
  torch::NoGradGuard no_grad;
  auto slots = param_slots();
  std::map<std::string, bool> expected;
  for (auto& slot : slots) expected[slot.dense_name] = true;
  for (auto& [name, tensor] : dense)
    if (!expected.count(name) && name != "lm_head.weight")
      throw UserError("unexpected tensor '" + name + "' in the weights for this model");
  for (auto& slot : slots) {
    auto it = dense.find(slot.dense_name);
    if (it == dense.end()) throw UserError("the weights have no tensor '" + slot.dense_name + "'");
    auto dense_shape = slot.param.sizes().vec();
    if (slot.sharded()) {  // the dense shape of a sharded tensor
      dense_shape.erase(dense_shape.begin());
      const int64_t n = args_.tp_size;
      if (slot.layout == Layout::RowParallel)
        dense_shape[1] *= n;  // columns
      else if (slot.layout == Layout::VocabParallel)
        dense_shape[0] = slot.layout.dense_rows;  // the vocabulary, without the shards' padding rows
      else
        dense_shape[0] *= n;  // rows
    }
    if (it->second.sizes().vec() != dense_shape)
      throw UserError("tensor '" + slot.dense_name + "' has shape " + shape_str(it->second.sizes()) +
                      ", the model expects " + shape_str(dense_shape));
    auto local = shards_from_dense(it->second.to(slot.param.dtype()), slot.layout, args_.tp_size,
                                   group_->first_shard(), group_->local_shards());
    slot.param.copy_(local);
  }
}

int64_t GPTImpl::num_params() {
  int64_t n = 0;
  for (auto& slot : param_slots())
    if (slot.layout == Layout::VocabParallel)
      n += slot.layout.dense_rows * slot.param.size(-1);  // V x C: the padding rows are no parameters
    else if (slot.dense_name != "transformer.wpe.weight")
      n += slot.param.numel() * (slot.sharded() ? group_->tp_procs() : 1);
  return n;
}

DenseState init_dense_weights(const ModelArgs& args, int64_t seed) {
  auto gen = at::make_generator<at::CPUGeneratorImpl>(uint64_t(seed));
  DenseState dense;
  for (auto& spec : dense_param_specs(args)) {
    torch::Tensor t;
    switch (spec.init) {
      case DenseParamSpec::Normal: t = torch::empty(spec.shape).normal_(0.0, spec.std, gen); break;
      case DenseParamSpec::Ones: t = torch::ones(spec.shape); break;
      case DenseParamSpec::Zeros: t = torch::zeros(spec.shape); break;
    }
    dense[spec.name] = t;
  }
  return dense;
}

GPT build_model(const ModelArgs& args, std::shared_ptr<TensorParallelGroup> group, int64_t seed,
                torch::Device device, torch::Dtype dtype) {
  GPT model(args, std::move(group));
  model->load_dense_state(init_dense_weights(args, seed));
  model->to(device, dtype);
  return model;
}

}  // namespace dgpt
