// The KV cache of generation (SPEC §6): logits computed with the cache — token by token, after a
// prefilled prefix, in chunks — equal those of recomputing the whole prefix (float32, 1e-5
// relative), for every block type alone and in mixes, both merges, with and without biases, at
// tp_size 1, 2 and 4, in simulation and with L < N shards per process (W threads standing in for
// W processes); greedy generation picks the same tokens; the cache's length and block_size limit.
#include <catch2/catch.hpp>

#include <condition_variable>
#include <exception>
#include <mutex>
#include <thread>

#include "base/errors.h"
#include "blocks/block.h"
#include "model/kv_cache.h"
#include "model/precision.h"
#include "run/generate.h"
#include "test_util.h"

namespace {

using namespace dgpt;
using namespace dgpt::test;

constexpr double kTol = 1e-5;  // float32, SPEC §6
constexpr int64_t kBlock = 16, kVocab = 50, kB = 2;

ModelArgs cache_args(const std::vector<std::string>& types, int64_t tp_size, bool bias, const std::string& merge) {
  return dist_args(types, tp_size, /*n_head=*/4, /*n_embd=*/32, bias, merge, kVocab, kBlock);
}

// Weights under which every layer matters and greedy choices vary (nanoGPT's init is too close to
// the identity for that): its matrices scaled up, biases and LayerNorms perturbed.
DenseState cache_weights(const ModelArgs& a, int64_t seed) {
  auto w = perturbed_weights(a, seed, 0.1);
  for (auto& [name, t] : w)
    if (t.dim() == 2) t = t * (name.find("transformer.w") == 0 ? 10.0 : 6.0);
  w["lm_head.weight"] = w["transformer.wte.weight"];
  return w;
}

GPT eval_model(const ModelArgs& a, const DenseState& w, std::shared_ptr<TensorParallelGroup> group = nullptr) {
  GPT model(a, group ? group : std::make_shared<SimulatedGroup>(a.tp_size));
  model->to(test_device());
  model->load_dense_state(w);
  model->eval();
  return model;
}

torch::Tensor tokens(int64_t B, int64_t T, int64_t seed) { return random_batch(B, T, kVocab, seed).idx; }

// Logits of every position [B, T, V] in one pass without a cache (targets make forward return them all).
torch::Tensor full_logits(GPT& model, const torch::Tensor& idx) {
  return model->forward(idx, torch::zeros_like(idx)).logits;
}

// Logits of every position with the cache, fed in chunks of the given sizes (they sum to T): a
// chunk of one token is a decode step (its logits are the [B, 1, V] of a forward without targets),
// a longer one returns all its positions (with targets).
torch::Tensor cached_logits(GPT& model, const torch::Tensor& idx, const std::vector<int64_t>& chunks, KVCache& cache) {
  std::vector<torch::Tensor> parts;
  int64_t at = 0;
  for (int64_t t : chunks) {
    auto chunk = idx.narrow(1, at, t);
    REQUIRE(cache.length() == at);
    parts.push_back(t == 1 ? model->forward(chunk, {}, &cache).logits
                           : model->forward(chunk, torch::zeros_like(chunk), &cache).logits);
    at += t;
    REQUIRE(cache.length() == at);
  }
  REQUIRE(at == idx.size(1));
  return torch::cat(parts, 1);
}

std::vector<int64_t> ones(int64_t n) { return std::vector<int64_t>(size_t(n), 1); }

// The three ways of feeding a sequence of kBlock tokens: token by token, a prefix of 5 then one by
// one, chunks of 3, 1, 4, 2, 6.
std::vector<std::pair<std::string, std::vector<int64_t>>> feeds() {
  auto prefix = ones(kBlock - 5);
  prefix.insert(prefix.begin(), 5);
  return {{"token by token", ones(kBlock)}, {"prefill 5, then token by token", prefix},
          {"chunks 3,1,4,2,6", {3, 1, 4, 2, 6}}};
}

// nanoGPT's generate without a cache: every token drawn (next_token) from the logits of recomputing
// the last block_size tokens.
std::vector<int64_t> generate_by_recompute(GPT& model, std::vector<int64_t> ids, int64_t n, const SamplingOptions& opt) {
  torch::NoGradGuard no_grad;
  for (int64_t k = 0; k < n; ++k) {
    const int64_t start = std::max<int64_t>(0, int64_t(ids.size()) - kBlock);
    auto idx = torch::tensor(std::vector<int64_t>(ids.begin() + start, ids.end()), torch::kLong).view({1, -1}).to(test_device());
    ids.push_back(next_token(model->forward(idx).logits.select(1, 0), opt));
  }
  return ids;
}

struct Pattern {
  std::vector<std::string> types;
  std::string merge;
};

std::vector<Pattern> patterns() {
  return {{{"tp", "tp"}, "sum"},
          {{"spd", "spd"}, "sum"},
          {{"parallel"}, "sum"},  // a lone parallel block
          {{"parallel", "parallel", "parallel"}, "sum"},
          {{"parallel", "parallel", "parallel"}, "mean"},
          {{"tp", "spd", "parallel", "parallel"}, "sum"},
          {{"parallel", "tp", "parallel"}, "mean"},
          {{"parallel", "tp", "parallel"}, "sum"},
          {{"neox", "neox"}, "sum"},
          {{"ladder", "ladder", "ladder"}, "sum"},  // one ladder run: its pending update at every step
          {{"ladder", "parallel", "neox", "ladder"}, "sum"}};
}

TEST_CASE("KV cache: cached logits equal full recompute for every block type, mix, bias and tp_size", "[kv_cache]") {
  torch::NoGradGuard no_grad;
  const auto idx = tokens(kB, kBlock, 11);
  double worst = 0;
  int64_t cases = 0;
  auto run = [&](const ModelArgs& a, const std::string& name) {
    auto w = cache_weights(a, 5);
    GPT model = eval_model(a, w);
    const auto want = full_logits(model, idx);
    KVCache cache;  // one cache, cleared between the feeds
    for (auto& [feed, chunks] : feeds()) {
      INFO(name << ", " << feed);
      cache.clear();
      const auto got = cached_logits(model, idx, chunks, cache);
      REQUIRE(got.sizes() == want.sizes());
      const double r = rel_diff(got, want);
      CHECK(r <= kTol);
      worst = std::max(worst, r);
      ++cases;
    }
  };
  for (bool bias : {false, true}) {
    for (const auto& p : patterns())
      for (int64_t n : {1, 2, 4}) {
        auto a = cache_args(p.types, n, bias, p.merge);
        run(a, join(p.types) + " merge " + p.merge + " tp_size " + std::to_string(n) + (bias ? " bias" : ""));
      }
    run(dense_args_of(cache_args({"tp", "tp"}, 1, bias, "sum")), std::string("dense gpt") + (bias ? " bias" : ""));
  }
  WARN("cached vs recomputed logits: worst relative difference " << worst << " over " << cases << " cases");
}

TEST_CASE("KV cache: the check is not vacuous (a stale or missing cache changes the logits)", "[kv_cache]") {
  torch::NoGradGuard no_grad;
  const auto a = cache_args({"tp", "spd", "parallel", "parallel"}, 2, true, "sum");
  GPT model = eval_model(a, cache_weights(a, 5));
  const auto idx = tokens(kB, 8, 12);
  const auto want = full_logits(model, idx);
  // the last token alone, without its prefix in the cache: a different context, different logits
  KVCache empty;
  CHECK(rel_diff(model->forward(idx.narrow(1, 7, 1), {}, &empty).logits.select(1, 0), want.select(1, 7)) > 1e-2);
  // the same token at position 7 with another prefix cached
  KVCache other;
  model->forward(tokens(kB, 7, 99), {}, &other);
  CHECK(rel_diff(model->forward(idx.narrow(1, 7, 1), {}, &other).logits.select(1, 0), want.select(1, 7)) > 1e-2);
}

TEST_CASE("KV cache: generation with the cache picks nanoGPT's tokens, also past block_size", "[kv_cache]") {
  const std::vector<int64_t> prompt{3, 1, 4, 1, 5};
  const int64_t new_tokens = 20;  // 5 + 20 > block_size 16: the context is cropped (re-prefilled)
  const Precision float32;
  const SamplingOptions greedy{0.0, 0, 1.0}, sampled{1.0, 0, 1.0};
  for (const auto& p : patterns()) {
    for (int64_t n : {1, 2, 4}) {
      const auto a = cache_args(p.types, n, /*bias=*/true, p.merge);
      GPT model = eval_model(a, cache_weights(a, 21));
      INFO(join(p.types) << " merge " << p.merge << " tp_size " << n);
      std::vector<int64_t> streamed;
      const auto got = generate(model, prompt, new_tokens, greedy, test_device(), float32,
                                [&](int64_t id) { streamed.push_back(id); });
      CHECK(got == generate_by_recompute(model, prompt, new_tokens, greedy));
      CHECK(std::vector<int64_t>(got.begin() + int64_t(prompt.size()), got.end()) == streamed);
      // Greedy decoding of a random model soon cycles; drawn tokens do not, and the same seed
      // draws the same tokens from logits equal to 1e-5 (unless a draw falls that close to a boundary).
      torch::manual_seed(77);
      const auto drawn = generate(model, prompt, new_tokens, sampled, test_device(), float32);
      torch::manual_seed(77);
      CHECK(drawn == generate_by_recompute(model, prompt, new_tokens, sampled));
      CHECK(std::set<int64_t>(drawn.begin() + int64_t(prompt.size()), drawn.end()).size() > 5);
    }
  }
  // a prompt longer than block_size: its last block_size tokens are the context
  const auto a = cache_args({"parallel", "tp", "parallel"}, 2, true, "sum");
  GPT model = eval_model(a, cache_weights(a, 22));
  std::vector<int64_t> long_prompt;
  for (int64_t i = 0; i < kBlock + 7; ++i) long_prompt.push_back((i * 7 + 3) % kVocab);
  CHECK(generate(model, long_prompt, 6, greedy, test_device(), float32) ==
        generate_by_recompute(model, long_prompt, 6, greedy));
  CHECK(generate(model, long_prompt, 0, greedy, test_device(), float32) == long_prompt);
}

TEST_CASE("KV cache: length, clear, block_size limit, batch change", "[kv_cache]") {
  torch::NoGradGuard no_grad;
  const auto a = cache_args({"spd", "parallel"}, 2, false, "sum");
  GPT model = eval_model(a, cache_weights(a, 3));
  KVCache cache;
  CHECK(cache.length() == 0);
  const auto idx = tokens(1, kBlock, 4);
  auto out = model->forward(idx.narrow(1, 0, 10), {}, &cache);
  CHECK(out.logits.sizes() == torch::IntArrayRef({1, 1, kVocab}));  // the last position
  CHECK(cache.length() == 10);
  model->forward(idx.narrow(1, 10, 6), {}, &cache);
  CHECK(cache.length() == kBlock);
  // beyond block_size: a UserError that leaves the cache as it was
  CHECK_THROWS_AS(model->forward(idx.narrow(1, 0, 1), {}, &cache), UserError);
  CHECK_THROWS_WITH(model->forward(idx.narrow(1, 0, 1), {}, &cache), Catch::Contains("block_size is 16"));
  CHECK(cache.length() == kBlock);
  KVCache fresh;
  CHECK_THROWS_AS(model->forward(tokens(1, kBlock + 1, 4), {}, &fresh), UserError);
  CHECK(fresh.length() == 0);
  // clear(): the next sequence starts at position 0 and gives the logits of a fresh cache
  cache.clear();
  CHECK(cache.length() == 0);
  const auto again = model->forward(idx.narrow(1, 0, 10), {}, &cache).logits;
  CHECK(torch::equal(again, out.logits));
  // another batch size needs a cleared cache
  CHECK_THROWS(model->forward(tokens(2, 1, 5), {}, &cache));
  cache.clear();
  CHECK(model->forward(tokens(2, 3, 5), {}, &cache).logits.size(0) == 2);
  CHECK(cache.length() == 3);
  // without a cache nothing changed: positions [0, T) as before
  CHECK(torch::equal(model->forward(idx.narrow(1, 0, 10)).logits, out.logits));
}

// ---------------------------------------------------------------------------------------------
// L < N: W threads stand in for the W processes of a tensor-parallel group, each holding L = N/W
// shards. Their all-reduce sums the W contributions in rank order, so every rank gets the same bits.


TEST_CASE("KV cache with L < N shards per process (threads as processes): the logits of simulation",
          "[kv_cache][real_layout]") {
  const auto idx = tokens(kB, kBlock, 31);
  struct Layout {
    int64_t n, W;
  };
  for (const Layout layout : {Layout{4, 2}, Layout{2, 2}, Layout{4, 4}}) {
    for (const auto& p : std::vector<Pattern>{{{"tp", "spd", "parallel", "parallel"}, "sum"},
                                              {{"parallel", "tp", "parallel"}, "mean"},
                                              {{"parallel", "parallel", "parallel"}, "sum"}}) {
      const auto a = cache_args(p.types, layout.n, /*bias=*/true, p.merge);
      const auto w = cache_weights(a, 41);
      torch::Tensor want;
      {
        torch::NoGradGuard no_grad;
        GPT sim = eval_model(a, w);
        want = full_logits(sim, idx);
      }
      INFO(join(p.types) << " merge " << p.merge << ": tp_size " << layout.n << " over " << layout.W
                         << " processes of " << layout.n / layout.W << " shards");
      auto rendezvous = std::make_shared<ThreadRendezvous>(layout.W);
      std::vector<torch::Tensor> got(size_t(layout.W)), got_chunks(size_t(layout.W));
      std::vector<std::exception_ptr> errors(size_t(layout.W));
      std::vector<int64_t> forward_allreduces(size_t(layout.W));
      std::vector<std::thread> ranks;
      for (int64_t r = 0; r < layout.W; ++r) {
        ranks.emplace_back([&, r] {
          try {
            torch::NoGradGuard no_grad;
            auto group = std::make_shared<ThreadGroup>(a.tp_size, layout.W, r, rendezvous);
            GPT model = eval_model(a, w, group);
            REQUIRE(model->group().local_shards() == layout.n / layout.W);
            KVCache cache;
            got[size_t(r)] = cached_logits(model, idx, ones(kBlock), cache);
            cache.clear();
            got_chunks[size_t(r)] = cached_logits(model, idx, {5, 1, 1, 4, 5}, cache);
            forward_allreduces[size_t(r)] = group->tally().count_of(CommKind::ForwardAllReduce);
          } catch (...) {
            errors[size_t(r)] = std::current_exception();
          }
        });
      }
      for (auto& t : ranks) t.join();
      for (auto& e : errors)
        if (e) std::rethrow_exception(e);
      for (int64_t r = 0; r < layout.W; ++r) {
        CHECK(rel_diff(got[size_t(r)], want) <= kTol);
        CHECK(rel_diff(got_chunks[size_t(r)], want) <= kTol);
        CHECK(torch::equal(got[size_t(r)], got[0]));  // every rank has the same logits, bit for bit
        // one forward pass per decode step, each with the plan's all-reduces (SPEC §3)
        int64_t per_pass = 0;
        for (auto c : forward_allreduces_per_block(a.block_types)) per_pass += c;
        CHECK(forward_allreduces[size_t(r)] == per_pass * (kBlock + 5));
      }
    }
  }
}

TEST_CASE("next_token: top_p keeps the nucleus, top_p = 1 changes nothing", "[kv_cache][sampling]") {
  // probabilities 0.5, 0.3, 0.15, 0.05 at temperature 1
  auto logits = torch::tensor({std::log(0.15), std::log(0.5), std::log(0.05), std::log(0.3)}, torch::kFloat).view({1, 4});
  auto draw = [&](const SamplingOptions& opt, int64_t n) {
    torch::manual_seed(1);
    std::vector<int64_t> counts(4);
    for (int64_t i = 0; i < n; ++i) counts[size_t(next_token(logits, opt))]++;
    return counts;
  };
  const auto all = draw({1.0, 0, 1.0}, 4000);
  CHECK(all[2] > 0);  // every token is drawn
  const auto nucleus = draw({1.0, 0, 0.75}, 4000);  // 0.5 + 0.3 reach 0.75: tokens 1 and 3 only
  CHECK(nucleus[0] == 0);
  CHECK(nucleus[2] == 0);
  CHECK(nucleus[1] > nucleus[3]);
  CHECK(nucleus[3] > 0);
  const auto one = draw({1.0, 0, 0.4}, 200);  // the most likely token alone holds 0.4
  CHECK(one[1] == 200);
  const auto tiny = draw({1.0, 0, 1e-9}, 50);  // at least one token is kept
  CHECK(tiny[1] == 50);
  // with top_k 3 (drops token 2) the nucleus of 0.95 keeps tokens 1, 3, 0
  const auto both = draw({1.0, 3, 0.95}, 4000);
  CHECK(both[2] == 0);
  CHECK(both[0] > 0);
  // top_p = 1 draws exactly what nanoGPT's sampling draws (the same generator calls on the same probabilities)
  torch::manual_seed(5);
  std::vector<int64_t> a, b;
  for (int i = 0; i < 50; ++i) a.push_back(next_token(logits, {0.8, 0, 1.0}));
  torch::manual_seed(5);
  for (int i = 0; i < 50; ++i) b.push_back(torch::multinomial(torch::softmax(logits / 0.8, -1), 1).item<int64_t>());
  CHECK(a == b);
  CHECK(next_token(logits, {0.0, 0, 0.1}) == 1);  // greedy
}

}  // namespace
