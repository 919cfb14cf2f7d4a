#include "model/dense_block.h"

#include "base/torch_compat.h"
#include "model/cpu_gemm.h"
#include "model/cpu_layer_norm.h"

namespace dgpt {

namespace {

// nanoGPT's Block, with nn::Linear weights in their dense [out, in] form. Written independently of
// blocks/ on purpose (its own layer norm and dropout calls, dense Linears instead of sharded
// matmuls): the tests check every sharded block against it, so it must share none of their code.
// (Its Linears are computed by model/cpu_gemm.h's linear, torch::linear's values with a backward
// scheduled for few cores, which tests/test_ops.cpp checks against torch::linear itself.)
// (Only the dropout masks are common: they are a documented rule, model/dropout.h, which the
// training reference in tests/ implements again in Python.)
class DenseBlock : public BlockImpl {
 public:
  DenseBlock(const ModelArgs& a, const DropoutPlace& dropout) : args_(a), dropout_(dropout) {
    const int64_t C = a.n_embd;
    auto make_linear = [&](const char* name, int64_t in, int64_t out) {
      return register_module(name, torch::nn::Linear(torch::nn::LinearOptions(in, out).bias(a.bias)));
    };
    ln_1_w_ = register_parameter("ln_1_weight", torch::ones({C}));
    ln_2_w_ = register_parameter("ln_2_weight", torch::ones({C}));
    if (a.bias) {
      ln_1_b_ = register_parameter("ln_1_bias", torch::zeros({C}));
      ln_2_b_ = register_parameter("ln_2_bias", torch::zeros({C}));
    }
    c_attn_ = make_linear("c_attn", C, 3 * C);
    attn_proj_ = make_linear("attn_c_proj", C, C);
    c_fc_ = make_linear("c_fc", C, 4 * C);
    mlp_proj_ = make_linear("mlp_c_proj", 4 * C, C);
  }

  void forward(ResidualStream& stream, LayerKVCache* cache) override {
    const auto& x = stream.replicated();
    const int64_t B = x.size(0), T = x.size(1), C = x.size(2), H = args_.n_head;
    auto qkv = dgpt::linear(layer_norm(x, ln_1_w_, ln_1_b_), c_attn_->weight, c_attn_->bias).split(C, 2);
    auto heads = [&](const torch::Tensor& t) { return t.view({B, T, H, C / H}).transpose(1, 2); };
    torch::Tensor y;
    if (cache) {  // the keys and values of every position so far: [B, H, P+T, C/H]
      auto [k, v] = cache->append(heads(qkv[1]), heads(qkv[2]));
      y = compat::attention_after_prefix(heads(qkv[0]), k, v, 0.0, false);  // generation: no dropout
    } else if (dropout_.active(is_training())) {
      y = attention_with_dropout(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]), 1, dropout_, 0);
    } else {
      y = compat::causal_attention(heads(qkv[0]), heads(qkv[1]), heads(qkv[2]), 0.0, false);
    }
    y = y.transpose(1, 2).contiguous().view({B, T, C});
    auto h = x + dropout_.replicated(dgpt::linear(y, attn_proj_->weight, attn_proj_->bias), DropoutSite::AttentionOutput, is_training());
    auto u = compat::gelu(dgpt::linear(layer_norm(h, ln_2_w_, ln_2_b_), c_fc_->weight, c_fc_->bias), args_.tanh_gelu());
    auto m = dgpt::linear(u, mlp_proj_->weight, mlp_proj_->bias);
    stream.set_replicated(h + dropout_.replicated(m, DropoutSite::MlpOutput, is_training()));
  }

  std::vector<ParamSlot> param_slots(const std::string& p) override {
    std::vector<ParamSlot> s;
    auto add = [&](const std::string& name, const torch::Tensor& t) {
      if (t.defined()) s.push_back({p + name, t, Layout::Replicated});
    };
    add("ln_1.weight", ln_1_w_);
    add("ln_1.bias", ln_1_b_);
    add("attn.c_attn.weight", c_attn_->weight);
    add("attn.c_attn.bias", c_attn_->bias);
    add("attn.c_proj.weight", attn_proj_->weight);
    add("attn.c_proj.bias", attn_proj_->bias);
    add("ln_2.weight", ln_2_w_);
    add("ln_2.bias", ln_2_b_);
    add("mlp.c_fc.weight", c_fc_->weight);
    add("mlp.c_fc.bias", c_fc_->bias);
    add("mlp.c_proj.weight", mlp_proj_->weight);
    add("mlp.c_proj.bias", mlp_proj_->bias);
    return s;
  }

 private:
  ModelArgs args_;
  DropoutPlace dropout_;
  torch::Tensor ln_1_w_, ln_1_b_, ln_2_w_, ln_2_b_;
  torch::nn::Linear c_attn_{nullptr}, attn_proj_{nullptr}, c_fc_{nullptr}, mlp_proj_{nullptr};
};

}  // namespace

torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b) {
  if (cpu_layer_norm_applies(x, w, b)) return cpu_layer_norm(x, w, b, 1e-5);  // float32 on the CPU
  return torch::layer_norm(x, {w.size(0)}, w, b, 1e-5);
}

std::shared_ptr<BlockImpl> make_dense_block(const ModelArgs& args, const DropoutPlace& dropout) {
  return std::make_shared<DenseBlock>(args, dropout);
}

}  // namespace dgpt
