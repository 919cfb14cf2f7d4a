#include "blocks/block.h"

#include <utility>

namespace dgpt {

ResidualStream::ResidualStream(torch::Tensor x, TensorParallelGroup& group, bool mean_merge)
    : group_(group), mean_merge_(mean_merge), x_(std::move(x)) {}

void ResidualStream::add_pending() {
  if (!pending_finish_) return;
  x_ = x_ + std::exchange(pending_finish_, nullptr)(pending_.result());
  pending_ = PendingReduce();
}

const torch::Tensor& ResidualStream::replicated() {
  add_pending();  // a ladder run ends: x_{2k} = x_{2k-1} + the last sub-layer's output
  if (!per_shard_) return x_;
  per_shard_ = false;
  if (prev_streams_.defined()) {  // else entered but never updated: every stream is still x0
    // x_i = x0 + delta_i (entry_ is x0 after f, [1,B,T,C]), and x_prev_i the stream before the run's last block:
    // sum:  x0 + sum_i delta_i
    // mean: mean_i(x_prev_i) + sum_i (x_i - x_prev_i) = x0 + sum_i ((x_prev_i - x0) / N + x_i - x_prev_i)
    const auto update = mean_merge_ ? (prev_streams_ - entry_) / double(group_.tp_size()) + (streams_ - prev_streams_)
                                    : streams_ - entry_;  // [L,B,T,C]
    x_ = x_ + reduce_from_shards(update, group_);
  }
  entry_ = streams_ = prev_streams_ = torch::Tensor();
  return x_;
}

torch::Tensor ResidualStream::per_shard() {
  if (!per_shard_) {
    replicated();  // a ladder run before ends here
    entry_ = streams_ = copy_to_shards(x_, group_);
    per_shard_ = true;
  }
  return streams_;
}

void ResidualStream::set_per_shard(torch::Tensor x) {
  TORCH_CHECK(per_shard_, "set_per_shard outside the per-shard region");
  prev_streams_ = std::move(streams_);
  streams_ = std::move(x);
}

void ResidualStream::set_replicated(torch::Tensor x) {
  TORCH_CHECK(!per_shard_ && !pending_finish_, "set_replicated without reading the stream first");
  x_ = std::move(x);
}

const torch::Tensor& ResidualStream::ladder_input() {
  if (per_shard_) replicated();  // a run of per-shard blocks before the ladder run merges first
  return x_;
}

void ResidualStream::ladder_add(PendingReduce update, Finish finish) {
  TORCH_CHECK(!per_shard_, "ladder_add inside the per-shard region");
  add_pending();  // S_{m-1}'s g, in flight while S_m computed and issued its own
  pending_ = std::move(update);
  pending_finish_ = std::move(finish);
}

}  // namespace dgpt
