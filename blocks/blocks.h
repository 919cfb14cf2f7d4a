// The registry's list of block types: one function per file in blocks/, each stating its type.
#pragma once
#include "blocks/block.h"

namespace dgpt {

BlockType tp_block_type();
BlockType spd_block_type();
BlockType parallel_block_type();
BlockType neox_block_type();
BlockType ladder_block_type();

}  // namespace dgpt
