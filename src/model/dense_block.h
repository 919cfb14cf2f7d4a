// nanoGPT's dense Block: the model_type 'gpt' layer, and the reference the sharded blocks are
// tested against.
#pragma once
#include "blocks/block.h"

namespace dgpt {

std::shared_ptr<BlockImpl> make_dense_block(const ModelArgs& args);

// nanoGPT's LayerNorm (eps 1e-5; b may be undefined) and dropout (identity when not training or p = 0),
// as the dense parts of the model compute them: the dense block, the embeddings and ln_f.
torch::Tensor layer_norm(const torch::Tensor& x, const torch::Tensor& w, const torch::Tensor& b);
torch::Tensor maybe_dropout(const torch::Tensor& x, double p, bool training);

}  // namespace dgpt
