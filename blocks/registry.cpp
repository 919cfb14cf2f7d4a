#include "blocks.h"
#include "pyliteral.h"

namespace dgpt {

namespace {
const std::vector<BlockType>& registry() {
  // A new block type: a new file in blocks/ and one line here.
  static const std::vector<BlockType> types = {
      tp_block_type(),
      spd_block_type(),
      parallel_block_type(),
  };
  return types;
}

const BlockType& find(const std::string& name) {
  for (auto& t : registry())
    if (t.name == name) return t;
  throw UserError("unknown block type '" + name + "'");
}
}  // namespace

std::shared_ptr<BlockImpl> make_block(const std::string& type, const BlockContext& ctx) {
  return find(type).make(ctx);
}

std::vector<std::string> known_block_types() {
  std::vector<std::string> names;
  for (auto& t : registry()) names.push_back(t.name);
  return names;
}

int64_t shard_local_replicated_numel(const std::string& type, const ModelArgs& args) {
  return find(type).shard_local_replicated_numel(args);
}

std::vector<int64_t> forward_allreduces_per_block(const std::vector<std::string>& block_types) {
  std::vector<int64_t> counts;
  for (size_t l = 0; l < block_types.size(); ++l) {
    const auto& type = find(block_types[l]);
    if (!type.keeps_shard_streams) {
      counts.push_back(type.forward_allreduces);
    } else {
      const bool run_ends_here = l + 1 == block_types.size() || !find(block_types[l + 1]).keeps_shard_streams;
      counts.push_back(run_ends_here ? 1 : 0);
    }
  }
  return counts;
}

}  // namespace dgpt
