#include "model/layout.h"

namespace dgpt {

namespace {
// The dense tensor viewed as [N, shard...] (a permuted view, not a copy).
torch::Tensor shard_view(const torch::Tensor& dense, Layout layout, int64_t n) {
  switch (layout) {
    case Layout::ColumnParallel: {
      auto sizes = dense.sizes().vec();
      sizes[0] /= n;
      sizes.insert(sizes.begin(), n);
      return dense.view(sizes);
    }
    case Layout::QkvColumnParallel: {  // [3C, ...] -> [3, N, C/N, ...] -> [N, 3, C/N, ...] -> [N, 3C/N, ...]
      auto rest = dense.sizes().slice(1).vec();
      std::vector<int64_t> split{3, n, dense.size(0) / (3 * n)};
      split.insert(split.end(), rest.begin(), rest.end());
      auto v = dense.view(split).transpose(0, 1);
      std::vector<int64_t> merged{n, dense.size(0) / n};
      merged.insert(merged.end(), rest.begin(), rest.end());
      return v.reshape(merged);
    }
    case Layout::RowParallel:  // [C, K] -> [C, N, K/N] -> [N, C, K/N]
      return dense.view({dense.size(0), n, dense.size(1) / n}).permute({1, 0, 2});
    case Layout::VocabParallel: {  // [V, C] -> [Vp, C] (zero rows appended) -> [N, Vp/N, C]
      const int64_t vp = padded_vocab_size(dense.size(0), n);
      auto padded = vp == dense.size(0) ? dense : torch::cat({dense, dense.new_zeros({vp - dense.size(0), dense.size(1)})});
      return padded.view({n, vp / n, dense.size(1)});
    }
    case Layout::Replicated: break;
  }
  TORCH_CHECK(false, "replicated tensors have no shards");
}
}  // namespace

torch::Tensor shards_from_dense(const torch::Tensor& dense, const TensorLayout& layout, int64_t tp_size,
                                int64_t first, int64_t local) {
  if (layout == Layout::Replicated) return dense.clone();
  return shard_view(dense.contiguous(), layout, tp_size).narrow(0, first, local).contiguous();
}

torch::Tensor dense_from_shards(const torch::Tensor& shards, const TensorLayout& layout) {
  if (layout == Layout::Replicated) return shards.clone();
  const int64_t n = shards.size(0);
  switch (layout.kind) {
    case Layout::ColumnParallel: {
      auto sizes = shards.sizes().slice(2).vec();
      sizes.insert(sizes.begin(), n * shards.size(1));
      return shards.contiguous().view(sizes).clone();
    }
    case Layout::QkvColumnParallel: {  // [N, 3C/N, ...] -> [N, 3, C/N, ...] -> [3, N, C/N, ...] -> [3C, ...]
      auto rest = shards.sizes().slice(2).vec();
      std::vector<int64_t> split{n, 3, shards.size(1) / 3};
      split.insert(split.end(), rest.begin(), rest.end());
      std::vector<int64_t> dense{n * shards.size(1)};
      dense.insert(dense.end(), rest.begin(), rest.end());
      return shards.reshape(split).transpose(0, 1).contiguous().view(dense);
    }
    case Layout::RowParallel:  // [N, C, K/N] -> [C, N, K/N] -> [C, K]
      return shards.permute({1, 0, 2}).contiguous().view({shards.size(1), n * shards.size(2)});
    case Layout::VocabParallel:  // [N, Vp/N, C] -> [Vp, C] -> the first V rows (the padding dropped)
      TORCH_CHECK(layout.dense_rows > n * shards.size(1) - n && layout.dense_rows <= n * shards.size(1),
                  "vocab-parallel shards [", n, ", ", shards.size(1), ", ...] cannot hold ", layout.dense_rows, " rows");
      return shards.reshape({n * shards.size(1), shards.size(2)}).narrow(0, 0, layout.dense_rows).clone();
    case Layout::Replicated: break;
  }
  return {};
}

}  // namespace dgpt
