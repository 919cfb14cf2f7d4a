// The registry's view of a block type: its name, how to build one, and what its shard-region use
// of replicated parameters adds to the replicated-gradient sync.
#pragma once
#include "block.h"

namespace dgpt {

struct BlockType {
  std::string name;
  BlockFactory make;
  // The communication plan (SPEC §3): all-reduces per forward pass of one block; a block that
  // keeps per-shard streams costs nothing itself, and its whole run costs one (at the merge).
  int64_t forward_allreduces;
  bool keeps_shard_streams;
  std::function<int64_t(const ModelArgs&)> shard_local_replicated_numel;
};

// One per file in blocks/.
BlockType tp_block_type();
BlockType spd_block_type();
BlockType parallel_block_type();

}  // namespace dgpt
