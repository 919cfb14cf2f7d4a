// The architecture of a model: what a checkpoint's model_args records.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace dgpt {

// The architecture's keys, declared once as the config's keys are (config/config.h):
// X(type, name, default, kind, help). The config's model keys, ModelArgs and the checkpoint's
// model_args are expanded from this list; vocab_size is not a key (it comes from the dataset).
#define DGPT_MODEL_KEYS(X) \
  X(std::string, model_type, "gpt", Plain, "'gpt' (dense) or 'distributed_gpt' (tensor parallel)") \
  X(int64_t, n_layer, 12, Plain, "number of transformer blocks") \
  X(int64_t, n_head, 12, Plain, "attention heads per block") \
  X(int64_t, n_embd, 768, Plain, "embedding width") \
  X(double, dropout, 0.0, Plain, "dropout probability, in [0, 1)") \
  X(bool, bias, false, Plain, "biases in Linear and LayerNorm layers") \
  X(int64_t, tp_size, 1, Plain, "tensor-parallel shards per block") \
  X(std::vector<std::string>, block_types, {}, NoneAllowed, "one block type per layer (an unknown one is an error listing the known ones); None = all 'tp'") \
  X(std::string, parallel_merge, "sum", Plain, "how a run of parallel blocks merges: 'sum' or 'mean'") \
  X(bool, vocab_parallel, false, Plain, "distributed_gpt: split the tied wte/lm_head and the loss by vocabulary over the tp_size shards (Megatron's; the same function)") \
  X(std::string, activation, "gelu", Plain, "the MLP's GELU: 'gelu' (exact, nanoGPT's nn.GELU) or 'gelu_tanh' (GPT-2's gelu_new, the tanh approximation)")

struct ModelArgs {
#define DGPT_DECLARE_MODEL_FIELD(type, name, default_value, kind, help) type name = default_value;
  DGPT_MODEL_KEYS(DGPT_DECLARE_MODEL_FIELD)
#undef DGPT_DECLARE_MODEL_FIELD
  int64_t block_size = 1024;   // the config's block_size (a data key there)
  int64_t vocab_size = 50304;  // the dataset's (GPT-2's padded 50304 without a meta.json)

  // nanoGPT's dense GPT: every block is the dense reference block, and nothing is sharded.
  bool dense() const { return model_type == kDenseModelType; }
  // Whether wte, the logits and the loss are split by vocabulary (SPEC §1; model/vocab_parallel.h).
  // The dense 'gpt' has no shards: there vocab_parallel changes nothing.
  bool vocab_sharded() const { return vocab_parallel && !dense(); }
  bool tanh_gelu() const { return activation == "gelu_tanh"; }
  static constexpr const char* kDenseModelType = "gpt";
  static constexpr const char* kShardedModelType = "distributed_gpt";
  // What the config dialect's block_types = None means, layer by layer, and the only type the
  // dense 'gpt' allows: the dense block, Megatron-sharded. The registry's first type (checked there).
  static constexpr const char* kBaselineBlockType = "tp";
};

}  // namespace dgpt
