// Micro-benchmarks (Google Benchmark): the f and g operators, one block of each type against the
// dense block, and Gloo all-reduce between two processes on loopback. README, "Performance notes".
//
//   ./build/bench/micro_benchmarks                                  # everything, ~45 s on 2 cores
//   ./build/bench/micro_benchmarks --benchmark_filter='^block/'     # one family (no peer process)
//
// Families (every time is wall-clock time: torch computes on several threads):
//   f/tp:N, g/tp:N            copy_to_shards / reduce_from_shards with a SimulatedGroup, forward +
//                             backward on [B,T,C] activations; items/s = tokens/s.
//   block/dense               the dense block of a 1-layer GPT (model_type 'gpt'): the baseline.
//   block/<type>/tp:N         one block of each type of known_block_types() at tp_size N in
//                             simulation, forward + backward; items/s = tokens/s; the counter
//                             x_dense = time / block/dense's time (present when block/dense ran).
//   gloo_allreduce/<size>     ProcessGroupGloo all-reduce (sum, float32) of <size> bytes between
//                             this process and one peer; bytes/s, time per all-reduce (mean,
//                             median and spread of 3 repetitions).
//
// The Gloo peer is this executable started again (fork + exec of /proc/self/exe) with
// DGPT_BENCH_GLOO_PEER=<port> in its environment, when the first Gloo benchmark runs: a filter
// that excludes them starts no process. The leader tells the peer each benchmark's size and
// iteration count through a small all-reduce, and size 0 at the end; the peer then exits and is
// reaped. The peer also dies with its parent (PR_SET_PDEATHSIG), so it is never orphaned.
#include <benchmark/benchmark.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#include <torch/torch.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "comm/collectives.h"
#include "blocks/block.h"
#include "base/clock.h"
#include "comm/tensor_parallel.h"
#include "model/model.h"
#include "model/model_args.h"

extern char** environ;

namespace {

using dgpt::Clock;
using dgpt::seconds_since;

// Activations: nanoGPT's baby GPT width (n_embd 384) with 8 heads, so that tp_size 8 divides them.
constexpr int64_t kB = 8, kT = 256, kC = 384, kHeads = 8;
const int64_t kTpSizes[] = {1, 2, 4, 8};

// ---------------------------------------------------------------------------------------------
// f and g

// f: the replicated x becomes the shard region [1,B,T,C]; the N shards' use of it is the expand
// to [N,B,T,C], whose backward sums the N gradients (the simulated all-reduce) before f's own.
void BM_CopyToShards(benchmark::State& state, int64_t n) {
  dgpt::SimulatedGroup group(n);
  auto x = torch::randn({kB, kT, kC}).requires_grad_(true);
  auto grad = torch::randn({n, kB, kT, kC});
  for (auto _ : state) {
    auto y = dgpt::copy_to_shards(x, group).expand({n, kB, kT, kC});
    auto gx = torch::autograd::grad({y}, {x}, {grad});
    benchmark::DoNotOptimize(gx[0].data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * kB * kT);
}

// g: N partials [N,B,T,C] summed into the replicated [B,T,C]; backward replicates the gradient.
void BM_ReduceFromShards(benchmark::State& state, int64_t n) {
  dgpt::SimulatedGroup group(n);
  auto partials = torch::randn({n, kB, kT, kC}).requires_grad_(true);
  auto grad = torch::randn({kB, kT, kC});
  for (auto _ : state) {
    auto y = dgpt::reduce_from_shards(partials, group);
    auto gp = torch::autograd::grad({y}, {partials}, {grad});
    benchmark::DoNotOptimize(gp[0].data_ptr());
  }
  state.SetItemsProcessed(state.iterations() * kB * kT);
}

// ---------------------------------------------------------------------------------------------
// Blocks

// A 1-layer GPT initialised as nanoGPT (build_model); its block "h0" is built by make_block from
// block_types (or is the dense block for model_type 'gpt') and is driven here on its own through
// a ResidualStream, without the embeddings, final LayerNorm and lm_head.
struct OneBlock {
  dgpt::GPT model{nullptr};
  std::shared_ptr<dgpt::BlockImpl> block;
  std::shared_ptr<dgpt::SimulatedGroup> group;
};

OneBlock make_one_block(const std::string& type, int64_t n) {
  dgpt::ModelArgs args;
  args.n_layer = 1;
  args.n_head = kHeads;
  args.n_embd = kC;
  args.block_size = kT;
  args.vocab_size = 64;
  args.dropout = 0.0;
  args.bias = false;
  args.model_type = type == "dense" ? "gpt" : "distributed_gpt";
  args.tp_size = type == "dense" ? 1 : n;
  args.block_types = {type == "dense" ? std::string("tp") : type};
  OneBlock ob;
  ob.group = std::make_shared<dgpt::SimulatedGroup>(args.tp_size);
  ob.model = dgpt::build_model(args, ob.group, /*seed=*/1337, torch::kCPU, torch::kFloat32);
  for (auto& child : ob.model->named_children())
    if (child.key() == "h0") ob.block = std::dynamic_pointer_cast<dgpt::BlockImpl>(child.value());
  TORCH_CHECK(ob.block, "the 1-layer GPT has no block h0");
  return ob;
}

double g_dense_seconds = 0;  // per iteration of block/dense, once it has run

// One training step's worth of one block: forward from a replicated x (a run of length 1 for
// 'parallel': f on entry, g on the merge), backward into the parameters' .grad.
void BM_Block(benchmark::State& state, std::string type, int64_t n) {
  auto ob = make_one_block(type, n);
  auto x = torch::randn({kB, kT, kC}).requires_grad_(true);
  auto grad_out = torch::randn({kB, kT, kC});
  auto step = [&] {
    ob.model->zero_grad(/*set_to_none=*/true);
    ob.model->discard_replicated_grads();
    x.mutable_grad() = torch::Tensor();
    dgpt::ResidualStream stream(x, *ob.group, /*mean_merge=*/false);
    ob.block->forward(stream);
    stream.replicated().backward(grad_out);
  };
  step();  // warm-up, untimed
  const auto t0 = Clock::now();
  for (auto _ : state) step();
  const double per_iter = seconds_since(t0) / double(state.iterations());
  state.SetItemsProcessed(state.iterations() * kB * kT);
  if (type == "dense")
    g_dense_seconds = per_iter;
  else if (g_dense_seconds > 0)
    state.counters["x_dense"] = per_iter / g_dense_seconds;
}

// ---------------------------------------------------------------------------------------------
// Gloo all-reduce between two processes

constexpr const char* kPeerEnv = "DGPT_BENCH_GLOO_PEER";
constexpr int kWarmups = 3;  // untimed all-reduces of each size before the timed ones
const std::chrono::seconds kGlooTimeout(300);

// The same Gloo process group a real run uses (comm/collectives.h), between the two processes.
std::shared_ptr<dgpt::Collectives> make_gloo(const c10::intrusive_ptr<c10d::Store>& store, int rank) {
  return dgpt::make_gloo_collectives(store, rank, 2, std::chrono::milliseconds(kGlooTimeout), "127.0.0.1", rank);
}

void all_reduce(dgpt::Collectives& pg, torch::Tensor& t) { pg.all_reduce_sum_(t, "micro-benchmark all-reduce"); }

// Rank 0 announces {float elements, all-reduces} (the peer adds zeros); {0, 0} ends the peer.
void announce(dgpt::Collectives& pg, int64_t elements, int64_t count) {
  auto header = torch::tensor({elements, count}, torch::kLong);
  all_reduce(pg, header);
}

// The peer (rank 1): follows the leader's announcements until told to stop.
int run_gloo_peer(const char* port_str) {
  at::set_num_threads(1);
  try {
    c10d::TCPStoreOptions opts;
    opts.port = uint16_t(std::atoi(port_str));
    opts.isServer = false;
    opts.waitWorkers = false;
    opts.timeout = kGlooTimeout;
    auto store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", opts);
    auto pg = make_gloo(store, 1);
    for (;;) {
      auto header = torch::zeros({2}, torch::kLong);
      all_reduce(*pg, header);
      const int64_t elements = header[0].item<int64_t>(), count = header[1].item<int64_t>();
      if (elements == 0) return 0;
      auto buf = torch::zeros({elements});
      for (int64_t i = 0; i < count; ++i) all_reduce(*pg, buf);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "micro_benchmarks gloo peer: %s\n", e.what());
    return 1;
  }
}

// The leader's side: started on first use, stopped by stop_gloo_peer() after the run.
struct GlooLeader {
  c10::intrusive_ptr<c10d::TCPStore> store;
  std::shared_ptr<dgpt::Collectives> pg;
  pid_t peer = -1;
};
std::unique_ptr<GlooLeader> g_gloo;

GlooLeader& gloo_leader() {
  if (g_gloo) return *g_gloo;
  auto leader = std::make_unique<GlooLeader>();
  c10d::TCPStoreOptions opts;
  opts.port = 0;  // any free port; getPort() says which
  opts.isServer = true;
  opts.numWorkers = c10::nullopt;
  opts.waitWorkers = false;
  opts.timeout = kGlooTimeout;
  leader->store = c10::make_intrusive<c10d::TCPStore>("127.0.0.1", opts);

  // Everything the child needs is built before fork: between fork and exec only
  // async-signal-safe calls.
  std::vector<std::string> env_strings;
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, kPeerEnv, std::strlen(kPeerEnv)) != 0) env_strings.emplace_back(*e);
  env_strings.push_back(std::string(kPeerEnv) + "=" + std::to_string(leader->store->getPort()));
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  // argv[0] is this executable's path and argv[1] a marker, so that ps shows what the peer is.
  char exe[] = "/proc/self/exe";
  std::string self(4096, '\0');
  const ssize_t len = readlink(exe, self.data(), self.size() - 1);
  self.resize(len > 0 ? size_t(len) : 0);
  if (self.empty()) self = exe;
  char marker[] = "--gloo-peer";
  char* argv[] = {self.data(), marker, nullptr};
  const pid_t parent = getpid();

  const pid_t pid = fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (getppid() != parent) _exit(1);  // the parent died before prctl
    execve(exe, argv, envp.data());
    _exit(127);
  }
  leader->peer = pid;
  leader->pg = make_gloo(leader->store, 0);  // waits for the peer to join
  g_gloo = std::move(leader);
  return *g_gloo;
}

void stop_gloo_peer() {
  if (!g_gloo) return;
  try {
    announce(*g_gloo->pg, 0, 0);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "micro_benchmarks: stopping the gloo peer: %s\n", e.what());
  }
  g_gloo->pg.reset();
  // Reap the peer; one that has not exited after 10 s is killed.
  int status = 0;
  const auto t0 = Clock::now();
  while (waitpid(g_gloo->peer, &status, WNOHANG) == 0) {
    if (seconds_since(t0) > 10) {
      kill(g_gloo->peer, SIGKILL);
      waitpid(g_gloo->peer, &status, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  g_gloo.reset();
}

void BM_GlooAllReduce(benchmark::State& state, int64_t bytes) {
  auto& gloo = gloo_leader();
  const int64_t elements = bytes / int64_t(sizeof(float));
  auto buf = torch::zeros({elements});  // zeros stay zeros: no overflow, no denormals
  announce(*gloo.pg, elements, kWarmups + int64_t(state.max_iterations));
  for (int i = 0; i < kWarmups; ++i) all_reduce(*gloo.pg, buf);
  for (auto _ : state) all_reduce(*gloo.pg, buf);
  state.SetBytesProcessed(state.iterations() * bytes);
}

std::string size_name(int64_t bytes) {
  return bytes >= (1 << 20) ? std::to_string(bytes >> 20) + "MB" : std::to_string(bytes >> 10) + "KB";
}

void register_benchmarks() {
  for (int64_t n : kTpSizes)
    benchmark::RegisterBenchmark(("f/tp:" + std::to_string(n)).c_str(), BM_CopyToShards, n)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  for (int64_t n : kTpSizes)
    benchmark::RegisterBenchmark(("g/tp:" + std::to_string(n)).c_str(), BM_ReduceFromShards, n)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();
  // The baseline first, so that the others can report x_dense.
  benchmark::RegisterBenchmark("block/dense", BM_Block, std::string("dense"), int64_t(1))
      ->Unit(benchmark::kMillisecond)
      ->UseRealTime();
  for (const auto& type : dgpt::known_block_types())
    for (int64_t n : kTpSizes)
      benchmark::RegisterBenchmark(("block/" + type + "/tp:" + std::to_string(n)).c_str(), BM_Block, type, n)
          ->Unit(benchmark::kMillisecond)
          ->UseRealTime();
  // Last, so that the peer (started by the first of them) waits for nothing else. Small
  // all-reduces on loopback vary a lot from run to run on 2 cores: 3 repetitions, and their
  // mean, median and spread are reported.
  for (int64_t bytes = 4 << 10; bytes <= 16 << 20; bytes *= 4)
    benchmark::RegisterBenchmark(("gloo_allreduce/" + size_name(bytes)).c_str(), BM_GlooAllReduce, bytes)
        ->Unit(benchmark::kMicrosecond)
        ->UseRealTime()
        ->Repetitions(3)
        ->ReportAggregatesOnly(true);
}

}  // namespace

int main(int argc, char** argv) {
  if (const char* port = std::getenv(kPeerEnv)) return run_gloo_peer(port);
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  register_benchmarks();
  benchmark::RunSpecifiedBenchmarks();
  stop_gloo_peer();
  benchmark::Shutdown();
  return 0;
}
