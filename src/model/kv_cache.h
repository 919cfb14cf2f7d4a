// The KV cache of generation (SPEC §6): per layer, the keys and values its attention computed for
// the positions seen so far, so that a decode step computes only its new positions. Each shard
// caches the keys and values of its own heads (in a parallel block, those of its own stream); a
// process holds its L local shards' part, whatever the run's layout.
#pragma once
#include <torch/torch.h>

#include <cstdint>
#include <utility>
#include <vector>

namespace dgpt {

// One attention sublayer's keys and values, in the layout that sublayer attends with:
// [L*B, h, T, hd] for the sharded layers (L local shards of h = H/N heads each, hd = C/H) and
// [B, H, T, hd] for the dense block. Held in buffers of block_size positions, allocated on first use.
class LayerKVCache {
 public:
  explicit LayerKVCache(int64_t capacity) : capacity_(capacity) {}
  int64_t length() const { return length_; }  // positions cached
  // Appends the keys and values of the next t positions (k, v: [..., t, hd]) and returns those of
  // every cached position, the new ones included: [..., length() + t, hd] each (views of the
  // buffers). Throws past `capacity` positions, or if the shape changes mid-sequence.
  std::pair<torch::Tensor, torch::Tensor> append(const torch::Tensor& k, const torch::Tensor& v);
  void clear() { length_ = 0; }  // keeps the buffers for the next sequence

 private:
  torch::Tensor k_, v_;  // [..., capacity, hd]
  int64_t capacity_;
  int64_t length_ = 0;
};

// The cache of a whole model for one batch of sequences. Pass it to GPTImpl::forward: with a cache,
// idx [B, t] holds the tokens at positions [length(), length() + t), and the cache grows by t.
// For inference (under torch::NoGradGuard); one cache serves one model.
class KVCache {
 public:
  KVCache() = default;
  int64_t length() const { return length_; }  // positions cached
  void clear();                               // forget every position (a new sequence, or a re-prefill)

 private:
  friend class GPTImpl;
  // Layer l's slot; the model sizes the cache on first use (n_layer layers of block_size positions).
  LayerKVCache& layer(size_t l) { return layers_[l]; }
  void reserve(int64_t n_layer, int64_t block_size);
  std::vector<LayerKVCache> layers_;
  int64_t capacity_ = 0;
  int64_t length_ = 0;
};

}  // namespace dgpt
