#include "model/kv_cache.h"

#include "base/errors.h"

namespace dgpt {

std::pair<torch::Tensor, torch::Tensor> LayerKVCache::append(const torch::Tensor& k, const torch::Tensor& v) {
  TORCH_CHECK(k.dim() >= 2 && k.sizes() == v.sizes(), "KV cache: keys and values of different shapes");
  const int64_t t = k.size(-2);
  if (length_ + t > capacity_)
    throw UserError("the KV cache holds " + std::to_string(capacity_) + " positions (block_size): cannot add " +
                    std::to_string(t) + " to " + std::to_string(length_));
  auto buffer_shape = k.sizes().vec();  // [..., t, hd] -> [..., capacity, hd]
  buffer_shape[buffer_shape.size() - 2] = capacity_;
  const bool fits = k_.defined() && k_.sizes().vec() == buffer_shape && k_.dtype() == k.dtype() &&
                    k_.device() == k.device();
  if (!fits) {
    TORCH_CHECK(length_ == 0, "KV cache: the batch or layout changed mid-sequence (", k_.sizes(), " vs ", k.sizes(),
                "); clear() the cache first");
    k_ = torch::empty(buffer_shape, k.options());
    v_ = torch::empty(buffer_shape, v.options());
  }
  k_.narrow(-2, length_, t).copy_(k);
  v_.narrow(-2, length_, t).copy_(v);
  length_ += t;
  return {k_.narrow(-2, 0, length_), v_.narrow(-2, 0, length_)};
}

void KVCache::clear() {
  length_ = 0;
  for (auto& layer : layers_) layer.clear();
}

void KVCache::reserve(int64_t n_layer, int64_t block_size) {
  if (int64_t(layers_.size()) == n_layer && capacity_ == block_size) return;
  TORCH_CHECK(length_ == 0, "this KV cache holds positions of a model with ", layers_.size(), " layers and block_size ",
              capacity_, ", not ", n_layer, " and ", block_size);
  layers_.assign(size_t(n_layer), LayerKVCache(block_size));
  capacity_ = block_size;
}

}  // namespace dgpt
