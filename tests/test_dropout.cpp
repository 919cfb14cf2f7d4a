// Dropout masks (src/model/dropout.h): the documented rule, computed here again with scalar uint64
// arithmetic; their statistics (rate, scale, independence across elements, shards, heads, layers,
// sites and steps); and that a shard's mask does not depend on which process draws it.
#include <catch2/catch.hpp>

#include <cmath>

#include "files/data.h"
#include "model/dropout.h"
#include "test_util.h"

using namespace dgpt;
using dgpt::test::dist_args;
using dgpt::test::make_model;
using dgpt::test::perturbed_weights;
using dgpt::test::random_batch;

namespace {

uint64_t splitmix64(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The README's rule, element by element.
bool kept(uint64_t step_key, DropoutSite site, int64_t layer, int64_t unit, int64_t e, double p) {
  const uint64_t key = mix_seed({step_key, uint64_t(site), uint64_t(layer), uint64_t(unit)});
  const uint64_t bits = splitmix64(key + uint64_t(e + 1) * 0x9E3779B97F4A7C15ull) >> 40;
  return bits >= uint64_t(std::llround(p * double(1 << 24)));
}

torch::Tensor masks(uint64_t key, DropoutSite site, int64_t layer, int64_t first, int64_t units,
                    std::vector<int64_t> shape, double p, torch::Dtype dtype = torch::kDouble) {
  return dropout_masks(key, site, layer, first, units, shape, p, torch::TensorOptions().dtype(dtype));
}

// Binomial bound: |observed - expected| within 5 standard deviations of n draws of rate q.
void check_rate(double observed, double q, double n, const std::string& what) {
  INFO(what << ": observed " << observed << ", expected " << q);
  CHECK(std::abs(observed - q) <= 5.0 * std::sqrt(q * (1 - q) / n));
}

double dropped_fraction(const torch::Tensor& m) { return m.eq(0).to(torch::kDouble).mean().item<double>(); }
double both_dropped(const torch::Tensor& a, const torch::Tensor& b) {
  return (a.eq(0) & b.eq(0)).to(torch::kDouble).mean().item<double>();
}

}  // namespace

TEST_CASE("dropout masks follow the documented rule exactly", "[dropout]") {
  const uint64_t key = dropout_step_key(1337, 5, 1);
  for (double p : {0.1, 0.2, 0.5}) {
    auto m = masks(key, DropoutSite::MlpOutput, 3, 2, 3, {4, 5, 6}, p);  // units 2, 3, 4
    REQUIRE(m.sizes() == torch::IntArrayRef({3, 4, 5, 6}));
    auto flat = m.reshape({3, -1});
    int64_t mismatches = 0;
    for (int64_t u = 0; u < 3; ++u)
      for (int64_t e = 0; e < flat.size(1); ++e) {
        const double want = kept(key, DropoutSite::MlpOutput, 3, 2 + u, e, p) ? 1.0 / (1.0 - p) : 0.0;
        mismatches += flat[u][e].item<double>() != want;
      }
    CHECK(mismatches == 0);
  }
  // The step key is the documented mix of (seed, 3, iter, micro).
  CHECK(dropout_step_key(1337, 5, 1) == mix_seed({1337, 3, 5, 1}));
}

TEST_CASE("dropout masks: rate, scale and independence", "[dropout]") {
  const double p = 0.2, n = 4 * 64 * 256;  // elements per unit
  const uint64_t key = dropout_step_key(7, 100, 0);
  auto shards = masks(key, DropoutSite::AttentionOutput, 2, 0, 8, {4, 64, 256}, p);  // 8 shards' units
  for (int64_t u = 0; u < 8; ++u) {
    check_rate(dropped_fraction(shards[u]), p, n, "drop rate of unit " + std::to_string(u));
    // kept elements are scaled by 1/(1-p) exactly, as torch.nn.Dropout scales
    auto kept_values = shards[u].masked_select(shards[u].ne(0));
    CHECK(torch::all(kept_values == 1.0 / (1.0 - p)).item<bool>());
  }
  // Pairs of masks that must be independent: P(both dropped) = p^2.
  std::vector<std::pair<std::string, std::pair<torch::Tensor, torch::Tensor>>> pairs{
      {"shards 0 and 1", {shards[0], shards[1]}},
      {"shards 3 and 7", {shards[3], shards[7]}},
      {"layers 2 and 3", {shards[0], masks(key, DropoutSite::AttentionOutput, 3, 0, 1, {4, 64, 256}, p)[0]}},
      {"sites", {shards[0], masks(key, DropoutSite::MlpOutput, 2, 0, 1, {4, 64, 256}, p)[0]}},
      {"micro-steps", {shards[0], masks(dropout_step_key(7, 100, 1), DropoutSite::AttentionOutput, 2, 0, 1,
                                        {4, 64, 256}, p)[0]}},
      {"iterations", {shards[0], masks(dropout_step_key(7, 101, 0), DropoutSite::AttentionOutput, 2, 0, 1,
                                       {4, 64, 256}, p)[0]}},
      {"seeds", {shards[0], masks(dropout_step_key(8, 100, 0), DropoutSite::AttentionOutput, 2, 0, 1,
                                  {4, 64, 256}, p)[0]}},
  };
  // Neighbouring elements of one mask: element e and e+1, and e and e+256 (the next position).
  auto flat = shards[0].reshape(-1);
  const int64_t m = flat.size(0);
  pairs.push_back({"neighbours", {flat.narrow(0, 0, m - 1), flat.narrow(0, 1, m - 1)}});
  pairs.push_back({"next position", {flat.narrow(0, 0, m - 256), flat.narrow(0, 256, m - 256)}});
  for (auto& [what, ab] : pairs) {
    check_rate(both_dropped(ab.first, ab.second), p * p, double(ab.first.numel()), what);
    CHECK_FALSE(torch::equal(ab.first, ab.second));
  }
}

TEST_CASE("a shard's dropout mask does not depend on which process draws it", "[dropout]") {
  const uint64_t key = dropout_step_key(11, 3, 2);
  const double p = 0.3;
  auto all = masks(key, DropoutSite::MlpOutput, 1, 0, 4, {2, 8, 16}, p);  // simulation: shards 0..3 at once
  for (int64_t first : {0, 1, 2, 3})                                      // W = 4: one shard per process
    CHECK(torch::equal(masks(key, DropoutSite::MlpOutput, 1, first, 1, {2, 8, 16}, p)[0], all[first]));
  CHECK(torch::equal(masks(key, DropoutSite::MlpOutput, 1, 2, 2, {2, 8, 16}, p), all.narrow(0, 2, 2)));  // W = 2

  // DropoutPlace on [L, B, T, C] shards and on attention probabilities [S, B, h, T, T].
  DropoutKey step{key};
  DropoutPlace place(&step, 1, p);
  auto x = torch::ones({4, 2, 8, 16}, torch::kDouble);
  auto whole = place.per_shard(x, DropoutSite::MlpOutput, 0, true);
  CHECK(torch::equal(whole, all));
  CHECK(torch::equal(place.per_shard(x.narrow(0, 2, 2), DropoutSite::MlpOutput, 2, true), all.narrow(0, 2, 2)));
  CHECK(torch::equal(place.per_shard(x, DropoutSite::MlpOutput, 0, false), x));  // eval: no dropout

  // 4 shards of 2 heads each (8 heads) vs 2 processes of 2 shards: head h's mask is unit h.
  auto att = torch::ones({4, 2, 2, 8, 8}, torch::kDouble);
  auto heads = place.attention(att, 0, true);
  auto second_half = place.attention(att.narrow(0, 2, 2), 4, true);
  CHECK(torch::equal(heads.narrow(0, 2, 2), second_half));
  auto unit5 = masks(key, DropoutSite::AttentionProbs, 1, 5, 1, {2, 8, 8}, p)[0];  // shard 2, head 1
  CHECK(torch::equal(heads[2].select(1, 1), unit5));
  // and at tp_size 1 the same head sees the same mask: [1, B, 8 heads, T, T]
  auto dense = place.attention(torch::ones({1, 2, 8, 8, 8}, torch::kDouble), 0, true);
  CHECK(torch::equal(dense[0].select(1, 5), unit5));
}

TEST_CASE("dropout masks in float32 and bfloat16 hold the same pattern", "[dropout]") {
  const uint64_t key = dropout_step_key(3, 0, 0);
  auto d = masks(key, DropoutSite::Embedding, 0, 0, 1, {3, 7, 5}, 0.25);
  auto f = masks(key, DropoutSite::Embedding, 0, 0, 1, {3, 7, 5}, 0.25, torch::kFloat);
  auto b = masks(key, DropoutSite::Embedding, 0, 0, 1, {3, 7, 5}, 0.25, torch::kBFloat16);
  CHECK(torch::equal(d.eq(0), f.eq(0)));
  CHECK(torch::equal(d.eq(0), b.eq(0)));
  CHECK(torch::allclose(f.to(torch::kDouble), d));
}

TEST_CASE("training forward passes with dropout are deterministic across separately built models",
          "[dropout][determinism]") {
  // Tolerance: bitwise identical for the same (seed, iter, micro); different keys differ.
  const auto batch = random_batch(2, 8, 50, 61);
  for (auto dtype : {torch::kFloat, torch::kDouble}) {
    auto a = dist_args({"parallel", "tp", "spd", "parallel", "parallel"}, 2, 8, 32, true, "mean");
    a.dropout = 0.2;
    const auto dense = perturbed_weights(a, 1100);
    auto model = make_model(a, dense, dtype);
    model->train();
    model->set_dropout_step(5, 10, 0);
    const auto first = model->forward(batch.idx, batch.targets).loss;
    auto twin = make_model(a, perturbed_weights(a, 1100), dtype);  // built again, from weights drawn again
    twin->train();
    twin->set_dropout_step(5, 10, 0);
    CHECK(torch::equal(twin->forward(batch.idx, batch.targets).loss, first));
    model->set_dropout_step(5, 10, 1);
    const auto other_micro = model->forward(batch.idx, batch.targets).loss;
    CHECK_FALSE(torch::equal(other_micro, first));
    model->eval();
    const auto no_dropout = model->forward(batch.idx, batch.targets).loss;
    CHECK_FALSE(torch::equal(no_dropout, first));
    model->discard_replicated_grads();
    twin->discard_replicated_grads();
  }
}
