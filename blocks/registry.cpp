#include "base/errors.h"
#include "blocks/blocks.h"

namespace dgpt {

namespace {
const std::vector<BlockType>& registry() {
  // A new block type: a new file in blocks/ and one line here.
  static const std::vector<BlockType> types = {
      tp_block_type(),
      spd_block_type(),
      parallel_block_type(),
      neox_block_type(),
      ladder_block_type(),
  };
  return types;
}
}  // namespace

const BlockType& block_type(const std::string& name) {
  for (auto& t : registry())
    if (t.name == name) return t;
  throw UserError("unknown block type '" + name + "'");
}

std::vector<std::string> known_block_types() {
  std::vector<std::string> names;
  for (auto& t : registry()) names.push_back(t.name);
  return names;
}

const std::string& baseline_block_type() {
  static const std::string& name = [] () -> const std::string& {
    // The config's None (model_args.h) and the registry's baseline are the same type.
    TORCH_CHECK(registry().front().name == ModelArgs::kBaselineBlockType, "the registry's first block type must be ",
                ModelArgs::kBaselineBlockType);
    return registry().front().name;
  }();
  return name;
}

std::shared_ptr<BlockImpl> make_block(const BlockContext& ctx, const std::string& type) {
  return block_type(type).make(ctx);
}

std::vector<int64_t> forward_allreduces_per_block(const std::vector<std::string>& block_types) {
  std::vector<int64_t> counts;
  for (size_t l = 0; l < block_types.size(); ++l) {
    const auto& type = block_type(block_types[l]);
    if (!type.keeps_shard_streams) {
      counts.push_back(type.forward_allreduces);
    } else {
      const bool run_ends_here = l + 1 == block_types.size() || !block_type(block_types[l + 1]).keeps_shard_streams;
      counts.push_back(run_ends_here ? 1 : 0);
    }
  }
  return counts;
}

bool same_function_at_every_tp_size(const ModelArgs& args) {
  if (args.dense()) return true;
  for (auto& t : args.block_types)
    if (!block_type(t).same_function_at_every_tp_size) return false;
  return true;
}

bool is_baseline_pattern(const ModelArgs& args) {
  if (args.dense()) return false;
  for (auto& t : args.block_types)
    if (t != baseline_block_type()) return false;
  return true;
}

}  // namespace dgpt
