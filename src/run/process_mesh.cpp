#include "run/process_mesh.h"

#include <fmt/format.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <ostream>

#include "base/clock.h"
#include "base/env.h"
#include "base/errors.h"

namespace dgpt {

namespace {

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
  const std::string mine = std::to_string(config_hash(config_items(cfg)));  // the effective config
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
    mesh.tp_group = mesh.dp_group = make_solo_collectives();
    return mesh;
  }
#ifndef DGPT_WITH_NCCL
  if (cfg.backend == "nccl")
    throw UserError("backend='nccl' needs a LibTorch with CUDA; this dgpt was built against a CPU-only LibTorch (use 'gloo')");
#endif
  const int64_t tp_size = cfg.dense() ? 1 : cfg.tp_size;
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
    if (size == 1) return make_solo_collectives();
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("dgpt/" + name, store);
#ifdef DGPT_WITH_NCCL
    if (cfg.backend == "nccl") return make_nccl_collectives(prefixed, rank, size, timeout, env.rank);
#endif
    return make_gloo_collectives(prefixed, rank, size, timeout, host, env.rank);
  };
  // Every process builds its own TP and DP groups (disjoint name spaces in the store).
  mesh.tp_group = group("tp" + std::to_string(mesh.dp_rank), mesh.tp_rank, W);
  mesh.dp_group = group("dp" + std::to_string(mesh.tp_rank), mesh.dp_rank, mesh.dp);
  if (mesh.is_main())
    notices << fmt::format("process mesh: {} processes = {} data-parallel x {} tensor-parallel ({} shard(s) each), "
                           "backend '{}'\n",
                           env.world, mesh.dp, W, tp_size / W, cfg.backend);
  return mesh;
}

std::shared_ptr<TensorParallelGroup> tensor_parallel_group(const ModelArgs& args, const TrainConfig& cfg,
                                                           const ProcessMesh& mesh) {
  if (cfg.backend == "sim" || args.dense()) return std::make_shared<SimulatedGroup>(args.tp_size);
  return std::make_shared<ProcessTensorParallelGroup>(args.tp_size, mesh.tp_group);
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

}  // namespace dgpt
