// nanoGPT's dense Block: the model_type 'gpt' layer, and the reference the sharded blocks are
// tested against.
#pragma once
#include "blocks/block.h"

namespace dgpt {

// Layer `layer` of a dense model: its dropouts drawn at `dropout` (model/dropout.h).
std::shared_ptr<BlockImpl> make_dense_block(const ModelArgs& args, const DropoutPlace& dropout);

// nanoGPT's LayerNorm (eps 1e-5; b may be undefined), as the dense parts of the model compute it:
// the dense block and ln_f.
torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);

}  // namespace dgpt
