// nanoGPT's dense Block: the model_type 'gpt' layer, and the reference the sharded blocks are
// tested against.
#pragma once
#include "blocks/block.h"

namespace dgpt {

// Layer `layer` of a dense model: its dropouts drawn at `dropout` (model/dropout.h).
std::shared_ptr<BlockImpl> make_dense_block(const ModelArgs& args, const DropoutPlace& dropout);

// nanoGPT's LayerNorm (eps 1e-5; b may be undefined), as every part of the model computes it: the
// dense block, ln_f and the sharded blocks' LayerNorms (float32 on the CPU: model/cpu_layer_norm.h).
torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);

}  // namespace dgpt
