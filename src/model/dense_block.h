// nanoGPT's dense Block: the model_type 'gpt' layer, and the reference the sharded blocks are
// tested against.
#pragma once
#include "blocks/block.h"

namespace dgpt {

std::shared_ptr<BlockImpl> make_dense_block(const ModelArgs& args);

}  // namespace dgpt
