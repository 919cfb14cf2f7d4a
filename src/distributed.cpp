#include "distributed.h"

#include <fmt/format.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef DGPT_WITH_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <chrono>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <ostream>

#include "clock.h"
#include "pyliteral.h"

namespace dgpt {

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::string(v) : fallback;
}

int64_t env_int(const char* name, int64_t fallback) {
  const std::string v = env_or(name, "");
  if (v.empty()) return fallback;
  try {
    size_t used = 0;
    const int64_t x = std::stoll(v, &used);
    if (used == v.size()) return x;
  } catch (const std::exception&) {
  }
  throw UserError(fmt::format("environment variable {}={} is not an integer", name, v));
}

std::string first_line(const std::string& s) { return s.substr(0, s.find('\n')); }

// c10d's collectives over one process group (ProcessGroupGloo, or ProcessGroupNCCL where LibTorch
// has CUDA): the same calls in LibTorch 1.13, where they derive from ProcessGroup, and 2.x, where
// they derive from Backend.
template <class ProcessGroup>
class C10dCollectives : public Collectives {
 public:
  C10dCollectives(c10::intrusive_ptr<ProcessGroup> pg, int64_t rank, int64_t size, std::chrono::milliseconds timeout,
                  int64_t world_rank)
      : pg_(std::move(pg)), rank_(rank), size_(size), world_rank_(world_rank), timeout_(timeout) {}

  int64_t size() const override { return size_; }
  int64_t rank() const override { return rank_; }

  void all_reduce_sum_(torch::Tensor& t, const std::string& what) override {
    std::vector<torch::Tensor> tensors{t};
    run(what, [&] { return pg_->allreduce(tensors); });
  }

  torch::Tensor all_gather(const torch::Tensor& t, const std::string& what) override {
    auto input = t.contiguous();
    std::vector<torch::Tensor> inputs{input};
    std::vector<std::vector<torch::Tensor>> outputs(1);
    for (int64_t r = 0; r < size_; ++r) outputs[0].push_back(torch::empty_like(input));
    run(what, [&] { return pg_->allgather(outputs, inputs); });
    return torch::stack(outputs[0]);
  }

 private:
  // Gloo's wait returns when the data is there; NCCL's orders the current CUDA stream after the
  // collective (the host does not wait, and the tally's time is the time to enqueue it).
  template <class Start>
  void run(const std::string& what, Start start) {
    try {
      auto work = start();
      work->wait(timeout_);
    } catch (const std::exception& e) {
      throw UserError(fmt::format("rank {}: {} failed ({}); a peer process may have died or hung",
                                  world_rank_, what, first_line(e.what())));
    }
  }

  c10::intrusive_ptr<ProcessGroup> pg_;
  int64_t rank_, size_, world_rank_;
  std::chrono::milliseconds timeout_;
};

std::shared_ptr<Collectives> make_gloo_collectives(c10::intrusive_ptr<c10d::Store> store, int64_t rank, int64_t size,
                                                   std::chrono::milliseconds timeout, const std::string& host,
                                                   int64_t world_rank) {
  auto options = c10d::ProcessGroupGloo::Options::create(timeout);
  const std::string ifname = env_or("GLOO_SOCKET_IFNAME", "");
  options->devices.push_back(!ifname.empty() ? c10d::ProcessGroupGloo::createDeviceForInterface(ifname)
                                             : c10d::ProcessGroupGloo::createDeviceForHostname(host));
  options->threads = 1;
  auto pg = c10::make_intrusive<c10d::ProcessGroupGloo>(store, int(rank), int(size), options);
  return std::make_shared<C10dCollectives<c10d::ProcessGroupGloo>>(pg, rank, size, timeout, world_rank);
}

#ifdef DGPT_WITH_NCCL
std::shared_ptr<Collectives> make_nccl_collectives(c10::intrusive_ptr<c10d::Store> store, int64_t rank, int64_t size,
                                                   std::chrono::milliseconds timeout, int64_t world_rank) {
  auto options = c10d::ProcessGroupNCCL::Options::create();
  options->timeout = timeout;
  auto pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(store, int(rank), int(size), options);
  return std::make_shared<C10dCollectives<c10d::ProcessGroupNCCL>>(pg, rank, size, timeout, world_rank);
}
#endif

// A group of one process: nothing to send.
class SoloCollectives : public Collectives {
 public:
  int64_t size() const override { return 1; }
  int64_t rank() const override { return 0; }
  void all_reduce_sum_(torch::Tensor&, const std::string&) override {}
  torch::Tensor all_gather(const torch::Tensor& t, const std::string&) override { return t.unsqueeze(0); }
};

// FNV-1a over the effective config: ranks compare it at rendezvous.
uint64_t config_hash(const TrainConfig& cfg) {
  uint64_t h = 1469598103934665603ull;
  for (auto& [key, value] : config_items(cfg)) {
    for (char c : key + "=" + value.repr() + ";") {
      h ^= uint8_t(c);
      h *= 1099511628211ull;
    }
  }
  return h;
}

c10::intrusive_ptr<c10d::Store> rendezvous(const LaunchEnv& env, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions opts;
  opts.port = uint16_t(env.master_port);
  opts.isServer = env.rank == 0 && !env.agent_store;
  opts.numWorkers = env.agent_store ? c10::nullopt : c10::optional<std::size_t>(size_t(env.world));
  opts.waitWorkers = !env.agent_store;
  opts.timeout = timeout;
  try {
    return c10::make_intrusive<c10d::TCPStore>(env.master_addr, opts);
  } catch (const std::exception& e) {
    const std::string msg = first_line(e.what());
    if (opts.isServer)
      throw UserError(fmt::format("rank 0 cannot serve the rendezvous on port {}: {} (is MASTER_PORT in use?)",
                                  env.master_port, msg));
    throw UserError(fmt::format("rank {} cannot reach the rendezvous at {}:{} ({}): is MASTER_ADDR/MASTER_PORT right "
                                "and rank 0 running?",
                                env.rank, env.master_addr, env.master_port, msg));
  }
}

void check_same_config(c10d::Store& store, const TrainConfig& cfg, const LaunchEnv& env) {
  const std::string mine = std::to_string(config_hash(cfg));
  store.set("dgpt/config/" + std::to_string(env.rank), std::vector<uint8_t>(mine.begin(), mine.end()));
  int64_t differing = -1;
  for (int64_t r = 0; r < env.world && differing < 0; ++r) {
    std::vector<uint8_t> theirs;
    try {
      theirs = store.get("dgpt/config/" + std::to_string(r));
    } catch (const std::exception& e) {
      throw UserError(fmt::format("rank {}: rank {} did not join the rendezvous ({})", env.rank, r, first_line(e.what())));
    }
    if (std::string(theirs.begin(), theirs.end()) != mine) differing = r;
  }
  // Rank 0 may host the store: it stays until every rank has read the hashes, so that a mismatch
  // reaches every rank as the same clear error rather than as a lost connection.
  store.set("dgpt/config_read/" + std::to_string(env.rank), std::vector<uint8_t>{1});
  if (env.rank == 0) {
    std::vector<std::string> keys;
    for (int64_t r = 0; r < env.world; ++r) keys.push_back("dgpt/config_read/" + std::to_string(r));
    try {
      store.wait(keys);
    } catch (const std::exception& e) {
      throw UserError(fmt::format("rank 0: not every rank joined the rendezvous ({})", first_line(e.what())));
    }
  }
  if (differing >= 0)
    throw UserError(fmt::format("rank {}: the effective config differs from rank {}'s; every rank must run the same "
                                "config and overrides",
                                env.rank, differing));
}

}  // namespace

LaunchEnv read_launch_env() {
  LaunchEnv env;
  env.rank = env_int("RANK", 0);
  env.world = env_int("WORLD_SIZE", 1);
  env.local_rank = env_int("LOCAL_RANK", env.rank);
  env.master_addr = env_or("MASTER_ADDR", "127.0.0.1");
  env.master_port = int(env_int("MASTER_PORT", 29500));
  const std::string agent = env_or("TORCHELASTIC_USE_AGENT_STORE", "");
  env.agent_store = agent == "True" || agent == "true" || agent == "1";
  if (env.world < 1 || env.rank < 0 || env.rank >= env.world)
    throw UserError(fmt::format("RANK={} is not a rank of WORLD_SIZE={}", env.rank, env.world));
  if (env.master_port <= 0 || env.master_port > 65535)
    throw UserError(fmt::format("MASTER_PORT={} is not a port", env.master_port));
  return env;
}

ProcessMesh make_process_mesh(const TrainConfig& cfg, const LaunchEnv& env, std::ostream& notices) {
  ProcessMesh mesh;
  mesh.world = env.world;
  mesh.rank = env.rank;
  if (cfg.backend == "sim") {
    if (env.world > 1)
      throw UserError(fmt::format("WORLD_SIZE={} but backend='sim' runs in one process; use --backend=gloo",
                                  env.world));
    mesh.tp = mesh.dp_group = std::make_shared<SoloCollectives>();
    return mesh;
  }
#ifndef DGPT_WITH_NCCL
  if (cfg.backend == "nccl")
    throw UserError("backend='nccl' needs a LibTorch with CUDA; this dgpt was built against a CPU-only LibTorch (use 'gloo')");
#endif
  const int64_t tp_size = cfg.model_type == "gpt" ? 1 : cfg.tp_size;
  mesh.tp_procs = cfg.tp_procs > 0 ? cfg.tp_procs : std::gcd(env.world, tp_size);
  const int64_t W = mesh.tp_procs;
  if (env.world % W != 0)
    throw UserError(fmt::format("impossible mesh: WORLD_SIZE={} is not a multiple of tp_procs={}", env.world, W));
  if (tp_size % W != 0)
    throw UserError(fmt::format("impossible mesh: tp_size={} is not a multiple of tp_procs={} (each process holds "
                                "tp_size/tp_procs shards)",
                                tp_size, W));
  mesh.dp = env.world / W;
  if (cfg.gradient_accumulation_steps % mesh.dp != 0)
    throw UserError(fmt::format("gradient_accumulation_steps={} is not divisible by the {} data-parallel replicas",
                                cfg.gradient_accumulation_steps, mesh.dp));
  mesh.tp_rank = env.rank % W;
  mesh.dp_rank = env.rank / W;

  const auto timeout = std::chrono::milliseconds(int64_t(cfg.comm_timeout * 1000));
  auto store = rendezvous(env, timeout);
  check_same_config(*store, cfg, env);
  const std::string host = env.master_addr == "localhost" ? "127.0.0.1" : env.master_addr;
  auto group = [&](const std::string& name, int64_t rank, int64_t size) -> std::shared_ptr<Collectives> {
    if (size == 1) return std::make_shared<SoloCollectives>();
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("dgpt/" + name, store);
#ifdef DGPT_WITH_NCCL
    if (cfg.backend == "nccl") return make_nccl_collectives(prefixed, rank, size, timeout, env.rank);
#endif
    return make_gloo_collectives(prefixed, rank, size, timeout, host, env.rank);
  };
  // Every process builds its own TP and DP groups (disjoint name spaces in the store).
  mesh.tp = group("tp" + std::to_string(mesh.dp_rank), mesh.tp_rank, W);
  mesh.dp_group = group("dp" + std::to_string(mesh.tp_rank), mesh.dp_rank, mesh.dp);
  if (mesh.is_main())
    notices << fmt::format("process mesh: {} processes = {} data-parallel x {} tensor-parallel ({} shard(s) each), "
                           "backend '{}'\n",
                           env.world, mesh.dp, W, tp_size / W, cfg.backend);
  return mesh;
}

std::shared_ptr<TensorParallelGroup> tensor_parallel_group(const ModelArgs& args, const TrainConfig& cfg,
                                                           const ProcessMesh& mesh) {
  if (cfg.backend == "sim" || args.model_type == "gpt") return std::make_shared<SimulatedGroup>(args.tp_size);
  return std::make_shared<ProcessTensorParallelGroup>(args.tp_size, mesh.tp);
}

torch::Device device_for_rank(torch::Device requested, const TrainConfig& cfg, const LaunchEnv& env) {
  if (cfg.backend != "nccl") return requested;
  if (!requested.is_cuda()) throw UserError("backend='nccl' runs on GPUs: set device='cuda' (or use backend='gloo')");
  if (requested.has_index()) return requested;
  const int64_t gpus = int64_t(torch::cuda::device_count());
  if (env.local_rank >= gpus)
    throw UserError(fmt::format("LOCAL_RANK={} but this machine has {} GPU(s): start at most one rank per GPU",
                                env.local_rank, gpus));
  return torch::Device(torch::kCUDA, c10::DeviceIndex(env.local_rank));
}

ProcessTensorParallelGroup::ProcessTensorParallelGroup(int64_t tp_size, std::shared_ptr<Collectives> tp)
    : TensorParallelGroup(tp_size, tp->size(), tp->rank()), tp_(std::move(tp)) {}

void ProcessTensorParallelGroup::all_reduce_sum_(torch::Tensor& t, CommKind kind) {
  if (procs_ == 1) {  // every shard is here: nothing is sent, and a real run reports what it sends
    return;
  }
  const auto t0 = Clock::now();
  tp_->all_reduce_sum_(t, comm_kind_name(kind));
  tally_.record(kind, t.numel() * t.element_size(), seconds_since(t0));
}

torch::Tensor ProcessTensorParallelGroup::gather_shards(const torch::Tensor& local) {
  if (procs_ == 1) return local;
  auto all = tp_->all_gather(local, "gather of shards for a checkpoint");  // [W, L, ...]
  auto sizes = local.sizes().vec();
  sizes[0] = tp_size_;
  return all.reshape(sizes);
}

}  // namespace dgpt
