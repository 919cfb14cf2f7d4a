#include "model/dropout.h"

#include <cmath>
#include <limits>
#include <vector>

#include "files/data.h"

namespace dgpt {

namespace {

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

int64_t as_signed(uint64_t v) { return static_cast<int64_t>(v); }

// z >> s as an unsigned 64-bit shift, on int64 tensors (whose >> is arithmetic).
torch::Tensor logical_shift_right(const torch::Tensor& z, int64_t s) {
  return z.__rshift__(s).bitwise_and_(as_signed((~0ull) >> s));
}

// splitmix64's finalizer on int64 tensors: two's-complement multiplication wraps as uint64 does.
torch::Tensor splitmix64(torch::Tensor z) {
  z = z.bitwise_xor(logical_shift_right(z, 30)).mul_(as_signed(0xBF58476D1CE4E5B9ull));
  z = z.bitwise_xor(logical_shift_right(z, 27)).mul_(as_signed(0x94D049BB133111EBull));
  return z.bitwise_xor(logical_shift_right(z, 31));
}

}  // namespace

uint64_t dropout_step_key(int64_t seed, int64_t iter, int64_t micro) {
  constexpr uint64_t kDropoutStream = 3;  // the seed stream of dropout (train batches are 1, eval batches 2)
  return mix_seed({uint64_t(seed), kDropoutStream, uint64_t(iter), uint64_t(micro)});
}

torch::Tensor dropout_masks(uint64_t step_key, DropoutSite site, int64_t layer, int64_t first_unit, int64_t units,
                            torch::IntArrayRef unit_shape, double p, const torch::TensorOptions& options) {
  TORCH_CHECK(p >= 0 && p < 1, "dropout probability must be in [0, 1)");
  int64_t n = 1;
  for (auto d : unit_shape) n *= d;
  std::vector<int64_t> keys(static_cast<size_t>(units));
  for (int64_t u = 0; u < units; ++u)
    keys[size_t(u)] = as_signed(mix_seed({step_key, uint64_t(site), uint64_t(layer), uint64_t(first_unit + u)}));
  const auto longs = torch::TensorOptions().dtype(torch::kLong).device(options.device());
  auto unit_keys = torch::tensor(keys, torch::kLong).to(options.device()).view({units, 1});  // [U, 1]
  auto counters = torch::arange(1, n + 1, longs).mul_(as_signed(kGolden));               // [n]: (e+1)*golden
  auto bits = logical_shift_right(splitmix64(unit_keys + counters), 40);                   // [U, n], 24 bits
  const int64_t threshold = std::llround(p * double(1 << 24));
  std::vector<int64_t> shape{units};
  shape.insert(shape.end(), unit_shape.begin(), unit_shape.end());
  return bits.ge(threshold).to(options.dtype()).mul_(1.0 / (1.0 - p)).view(shape);
}

torch::Tensor DropoutPlace::replicated(const torch::Tensor& x, DropoutSite site, bool training) const {
  if (!active(training)) return x;
  return x * dropout_masks(key_->step, site, layer_, 0, 1, x.sizes(), p_, x.options()).squeeze(0);
}

torch::Tensor DropoutPlace::per_shard(const torch::Tensor& x, DropoutSite site, int64_t first_shard,
                                      bool training) const {
  if (!active(training)) return x;
  return x * dropout_masks(key_->step, site, layer_, first_shard, x.size(0), x.sizes().slice(1), p_, x.options());
}

torch::Tensor DropoutPlace::attention(const torch::Tensor& att, int64_t first_head, bool training) const {
  if (!active(training)) return att;
  const int64_t S = att.size(0), B = att.size(1), h = att.size(2), T = att.size(3), Tk = att.size(4);
  auto masks = dropout_masks(key_->step, DropoutSite::AttentionProbs, layer_, first_head, S * h, {B, T, Tk}, p_,
                             att.options());                            // [S*h, B, T, T']
  return att * masks.view({S, h, B, T, Tk}).permute({0, 2, 1, 3, 4});  // -> [S, B, h, T, T']
}

torch::Tensor attention_with_dropout(const torch::Tensor& q, const torch::Tensor& k, const torch::Tensor& v,
                                     int64_t shards, const DropoutPlace& place, int64_t first_head) {
  const int64_t SB = q.size(0), h = q.size(1), T = q.size(2), Tk = k.size(2), hd = q.size(3);
  auto att = torch::matmul(q, k.transpose(-2, -1)) * (1.0 / std::sqrt(double(hd)));  // [S*B, h, T, T']
  auto future = torch::ones({T, Tk}, torch::TensorOptions().dtype(torch::kBool).device(q.device())).triu(1);
  att = torch::softmax(att.masked_fill(future, -std::numeric_limits<double>::infinity()), -1);
  att = place.attention(att.view({shards, SB / shards, h, T, Tk}), first_head, /*training=*/true);
  return torch::matmul(att.reshape({SB, h, T, Tk}), v);  // [S*B, h, T, hd]
}

}  // namespace dgpt
