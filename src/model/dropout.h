// Dropout masks drawn by a documented counter-based rule instead of a generator's running state,
// so that a run's masks do not depend on how its shards are spread over processes (W), on the
// order in which the shards are computed, or on anything but the step and the place:
//
//   step key     k_s = mix_seed(seed, 3, iter, micro)             (set once per micro-step)
//   unit key     k_u = mix_seed(k_s, site, layer, unit)
//   element e of the unit's tensor (row-major, e = 0, 1, ...) is kept iff
//                (splitmix64(k_u + (e + 1) * 0x9E3779B97F4A7C15) >> 40) >= round(p * 2^24)
//   and a kept element is scaled by 1 / (1 - p), as torch.nn.Dropout scales.
//
// splitmix64(z) is the finalizer z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27;
// z *= 0x94D049BB133111EB; z ^= z >> 31 (mod 2^64), and mix_seed(a, b, ...) chains it as
// files/data.h documents. A unit is what one mask covers:
//   - replicated tensors (the embeddings' sum, a tp block's sub-layer outputs after g): one unit,
//     number 0, the whole [B, T, C];
//   - per-shard tensors (spd's and parallel's partial outputs A_i, M_i): unit i = the global shard
//     index, [B, T, C] each, so shards are independent and shard i's mask is the same whatever
//     process computes it;
//   - attention probabilities: unit h = the global head index, [B, T, T] each, so the masks of a
//     tp block are the same at every tp_size.
// At tp_size 1 every block type draws the dense block's masks (unit 0, heads 0..H-1).
#pragma once
#include <torch/torch.h>

#include <cstdint>

namespace dgpt {

// BlockOutput: the one dropout of a block whose sub-layers are summed before it (neox).
enum class DropoutSite : uint64_t { Embedding = 0, AttentionProbs = 1, AttentionOutput = 2, MlpOutput = 3, BlockOutput = 4 };

// The step key of the current micro-step, shared by the model and its blocks.
struct DropoutKey {
  uint64_t step = 0;
};
// k_s of micro-step `micro` of iteration `iter` of a run seeded `seed`.
uint64_t dropout_step_key(int64_t seed, int64_t iter, int64_t micro);

// Masks of `units` consecutive units starting at `first_unit`, each of `unit_shape`: a tensor
// [units, *unit_shape] of 0 and 1/(1-p) with `options` (dtype and device of the activations).
torch::Tensor dropout_masks(uint64_t step_key, DropoutSite site, int64_t layer, int64_t first_unit, int64_t units,
                            torch::IntArrayRef unit_shape, double p, const torch::TensorOptions& options);

// Where one block's dropouts are drawn: its layer, the model's rate, whether it is training.
class DropoutPlace {
 public:
  DropoutPlace() = default;
  DropoutPlace(const DropoutKey* key, int64_t layer, double p) : key_(key), layer_(layer), p_(p) {}
  bool active(bool training) const { return training && p_ > 0 && key_ != nullptr; }
  double p() const { return p_; }

  // x: [B, T, C] replicated -> x with unit 0's mask.
  torch::Tensor replicated(const torch::Tensor& x, DropoutSite site, bool training) const;
  // x: [L, B, T, C], local shards first_shard..first_shard+L-1 -> each with its shard's mask.
  torch::Tensor per_shard(const torch::Tensor& x, DropoutSite site, int64_t first_shard, bool training) const;
  // Attention probabilities att: [S, B, h, T, T'] of S = L local shards with h heads each (heads
  // first_head.. in shard order) -> each head with its own mask.
  torch::Tensor attention(const torch::Tensor& att, int64_t first_head, bool training) const;

 private:
  const DropoutKey* key_ = nullptr;
  int64_t layer_ = 0;
  double p_ = 0;
};

// Causal attention for training with dropout on the probabilities, as nanoGPT's explicit path:
// softmax(q k^T / sqrt(hd), causal) * mask, then @ v. q, k, v: [S*B, h, T, hd] with S shards of
// B sequences; heads of shard s are first_head + s*h ...; returns [S*B, h, T, hd].
torch::Tensor attention_with_dropout(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                     int64_t shards, const DropoutPlace& place, int64_t first_head);

}  // namespace dgpt
