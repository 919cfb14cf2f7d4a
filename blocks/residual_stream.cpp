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
  streams_stale_ = false;
  if (!last_.defined()) return x_;  // entered but never updated: every stream is still x0
  // sum:  x0 + sum_i (prev_i + last_i)
  // mean: mean_i(x0 + prev_i) + sum_i last_i = x0 + sum_i (prev_i / N + last_i)
  torch::Tensor update = last_;
  if (prev_.defined()) update = (mean_merge_ ? prev_ / double(group_.tp_size()) : prev_) + last_;
  x_ = x_ + reduce_from_shards(update, group_);
  streams_ = prev_ = last_ = torch::Tensor();
  return x_;
}

torch::Tensor ResidualStream::per_shard() {
  if (!per_shard_) {
    replicated();  // a ladder run before ends here
    streams_ = copy_to_shards(x_, group_);
    per_shard_ = true;
  }
  bring_streams_up_to_date();
  return streams_;
}

void ResidualStream::add_per_shard(const torch::Tensor& z) {
  TORCH_CHECK(per_shard_, "add_per_shard outside the per-shard region");
  bring_streams_up_to_date();
  if (last_.defined()) prev_ = prev_.defined() ? prev_ + last_ : last_;
  last_ = z;
  streams_stale_ = true;
}

// x_i + z_i is only formed when a block reads it: the merge needs the updates, not the streams,
// so the last block of a run saves an [L,B,T,C] addition and its backward.
void ResidualStream::bring_streams_up_to_date() {
  if (!streams_stale_) return;
  streams_ = streams_ + last_;
  streams_stale_ = false;
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
