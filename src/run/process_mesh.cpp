#include "run/process_mesh.h"

#include <fmt/format.h>
#include <netdb.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <functional>
#include <numeric>
#include <ostream>
#include <thread>
#include <vector>

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

using Deadline = std::chrono::steady_clock::time_point;

// What is left of the rendezvous' one comm_timeout (at least 1 ms: 0 means "no timeout" to c10d).
std::chrono::milliseconds left(Deadline deadline) {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  return std::max(ms, std::chrono::milliseconds(1));
}

// "rank 1" or "ranks 1-3, 7" (at most 8 runs, then "...").
std::string describe_ranks(const std::vector<int64_t>& ranks) {
  std::string out;
  size_t runs = 0;
  for (size_t i = 0; i < ranks.size(); ++runs) {
    size_t j = i;
    while (j + 1 < ranks.size() && ranks[j + 1] == ranks[j] + 1) ++j;
    if (runs == 8) {
      out += ", ...";
      break;
    }
    out += (out.empty() ? "" : ", ") + std::to_string(ranks[i]) + (j > i ? "-" + std::to_string(ranks[j]) : "");
    i = j + 1;
  }
  return (ranks.size() == 1 ? "rank " : "ranks ") + out;
}

std::vector<uint8_t> bytes(const std::string& s) { return std::vector<uint8_t>(s.begin(), s.end()); }
std::string text(const std::vector<uint8_t>& b) { return std::string(b.begin(), b.end()); }

UserError lost_rendezvous(const LaunchEnv& env, const std::exception& e) {
  return UserError(fmt::format("rank {}: lost the rendezvous at {}:{} ({}); did rank 0 fail?", env.rank,
                               env.master_addr, env.master_port, first_line(e.what())));
}

// Waits, quietly, until host:port accepts a connection or the deadline passes. c10d's own
// connect reports its timeout through glog as well, a second line besides dgpt's error.
bool wait_until_accepting(const LaunchEnv& env, Deadline deadline) {
  addrinfo hints{}, *found = nullptr;
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  const std::string port = std::to_string(env.master_port);
  if (const int rc = ::getaddrinfo(env.master_addr.c_str(), port.c_str(), &hints, &found); rc != 0)
    throw UserError(fmt::format("rank {}: cannot resolve MASTER_ADDR={} ({})", env.rank, env.master_addr,
                                ::gai_strerror(rc)));
  bool accepted = false;
  while (!accepted && std::chrono::steady_clock::now() < deadline) {
    for (addrinfo* a = found; a && !accepted; a = a->ai_next) {
      const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol);
      if (fd < 0) continue;
      if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
        accepted = true;
      } else if (errno == EINPROGRESS) {  // a remote host: wait for it, at most a second at a time
        pollfd p{fd, POLLOUT, 0};
        int err = 0;
        socklen_t len = sizeof err;
        const auto wait_ms = std::min<int64_t>(1000, left(deadline).count());
        accepted = ::poll(&p, 1, int(wait_ms)) == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0;
      }
      ::close(fd);
    }
    if (!accepted) std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  ::freeaddrinfo(found);
  return accepted;
}

// Connects to (rank 0: serves) the TCPStore within what is left of the deadline. Nobody waits for
// the others in the constructor: join_and_check_config waits, once, and can say for whom.
c10::intrusive_ptr<c10d::Store> open_store(const LaunchEnv& env, Deadline deadline, std::chrono::milliseconds timeout) {
  c10d::TCPStoreOptions opts;
  opts.port = uint16_t(env.master_port);
  opts.isServer = env.rank == 0 && !env.agent_store;
  opts.waitWorkers = false;
  auto unreachable = [&](const std::string& why) {
    return UserError(fmt::format("rank {} cannot reach the rendezvous at {}:{} ({}): is MASTER_ADDR/MASTER_PORT right "
                                 "and rank 0 running?",
                                 env.rank, env.master_addr, env.master_port, why));
  };
  if (!opts.isServer && !wait_until_accepting(env, deadline))
    throw unreachable(fmt::format("nothing accepted a connection within comm_timeout={:g}s", timeout.count() / 1000.0));
  opts.timeout = left(deadline);
  c10::intrusive_ptr<c10d::Store> store;
  try {
    store = c10::make_intrusive<c10d::TCPStore>(env.master_addr, opts);
  } catch (const std::exception& e) {
    const std::string msg = first_line(e.what());
    if (opts.isServer)
      throw UserError(fmt::format("rank 0 cannot serve the rendezvous on port {}: {} (is MASTER_PORT in use?)",
                                  env.master_port, msg));
    throw unreachable(msg);
  }
  store->setTimeout(timeout);  // each later use by the process groups gets comm_timeout
  if (!env.store_prefix.empty()) return c10::make_intrusive<c10d::PrefixStore>(env.store_prefix, store);
  return store;
}

// Waits until `counter` reaches the world size (one request per poll, whatever the world) or the
// deadline; then names the ranks whose key `<flag>/<rank>` is missing. Rank 0, which may serve
// the store, posts what it found under `<counter>/gave_up` and waits a moment for the others to
// read it: they report the same ranks rather than a lost connection.
void wait_for_everyone(c10d::Store& store, const LaunchEnv& env, const std::string& counter, const std::string& flag,
                       Deadline deadline, double timeout_s) {
  const std::string gave_up = counter + "/gave_up", seen = counter + "/gave_up_seen";
  std::string found;  // "<joined> of <world> ranks joined, waiting for <ranks>"
  try {
    int64_t joined = 0;
    bool rank0_gave_up = false;
    while ((joined = store.add(counter, 0)) < env.world && std::chrono::steady_clock::now() < deadline &&
           !(rank0_gave_up = env.rank != 0 && store.check({gave_up})))
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    if (joined >= env.world && !rank0_gave_up) return;
    if (env.rank != 0) store.add(seen, 1);  // so that rank 0 need not wait for this rank
    if (rank0_gave_up) {
      found = text(store.get(gave_up));
    } else {
      std::vector<int64_t> missing;
      for (int64_t r = 0; r < env.world; ++r)
        if (!store.check({flag + "/" + std::to_string(r)})) missing.push_back(r);
      found = fmt::format("{} of {} ranks joined, waiting for {}", joined, env.world, describe_ranks(missing));
    }
    if (env.rank == 0) {
      store.set(gave_up, bytes(found));
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(2);
      while (store.add(seen, 0) < joined - 1 && std::chrono::steady_clock::now() < until)
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  } catch (const std::exception& e) {  // rank 0, which serves the store, is gone
    throw lost_rendezvous(env, e);
  }
  throw UserError(fmt::format("rank {}: the rendezvous at {}:{} timed out after {:g}s (comm_timeout): {} (started, "
                              "with the same MASTER_ADDR, MASTER_PORT and {}?)",
                              env.rank, env.master_addr, env.master_port, timeout_s, found, env.world_var));
}

// The rendezvous: every rank announces its config hash and waits for all the others, all within
// one comm_timeout. Rank 0 compares the hashes and publishes the verdict, so that a mismatch is
// the same clear error on every rank; rank 0 (which may host the store) stays until every rank
// has read it, rather than leaving them a lost connection.
void join_and_check_config(c10d::Store& store, const TrainConfig& cfg, const LaunchEnv& env, Deadline deadline) {
  const std::string mine = std::to_string(config_hash(config_items(cfg)));  // the effective config
  int64_t differing = -1;
  try {
    store.set("dgpt/config/" + std::to_string(env.rank), bytes(mine));
    store.add("dgpt/joined", 1);
  } catch (const std::exception& e) {
    throw lost_rendezvous(env, e);
  }
  wait_for_everyone(store, env, "dgpt/joined", "dgpt/config", deadline, cfg.comm_timeout);
  try {
    if (env.rank == 0) {
      for (int64_t r = 1; r < env.world && differing < 0; ++r)
        if (text(store.get("dgpt/config/" + std::to_string(r))) != mine) differing = r;
      store.set("dgpt/verdict", bytes(std::to_string(differing)));
    } else {
      store.wait({"dgpt/verdict"}, left(deadline));
      differing = std::stoll(text(store.get("dgpt/verdict")));
    }
    store.set("dgpt/verdict_read/" + std::to_string(env.rank), bytes("1"));
    store.add("dgpt/verdicts_read", 1);
  } catch (const std::exception& e) {
    throw lost_rendezvous(env, e);
  }
  if (env.rank == 0)
    wait_for_everyone(store, env, "dgpt/verdicts_read", "dgpt/verdict_read", deadline, cfg.comm_timeout);
  if (differing < 0) return;
  const std::string fix = "every rank must run the same config and overrides";
  if (env.rank == 0 || text(store.get("dgpt/config/0")) == mine)
    throw UserError(
        fmt::format("rank {}: the effective config of rank {} differs from rank 0's; {}", env.rank, differing, fix));
  throw UserError(fmt::format("rank {}: the effective config differs from rank 0's; {}", env.rank, fix));
}

// torchrun's agent starts its ranks with a plain Popen, so an agent killed by SIGKILL (the OOM
// killer, a scheduler) would leave them training on, or waiting comm_timeout in a collective.
// The parent is the agent (its main thread forks the ranks, and PR_SET_PDEATHSIG follows the
// forking thread). An agent that died before prctl shows as a reparenting; only one to init
// (pid 1) is recognisable without knowing the agent's pid, not one to a subreaper.
void die_with_torchrun_agent() {
  if (env_or("TORCHELASTIC_RUN_ID", "").empty()) return;
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || ::getppid() == 1)
    throw UserError("the torchrun agent that started this rank has already exited");
}

// Under Slurm, MASTER_ADDR defaults to the first host of the job's nodelist, MASTER_PORT to a
// port derived from the job id: every task computes the same ones.
void read_slurm_master(LaunchEnv& env) {
  env.master_addr = env_or("MASTER_ADDR", "");
  if (env.master_addr.empty()) {
    const std::string nodes = env_or("SLURM_JOB_NODELIST", env_or("SLURM_NODELIST", ""));
    if (nodes.empty())
      throw UserError("under Slurm with MASTER_ADDR unset, rank 0's host is the first of SLURM_JOB_NODELIST (or "
                      "SLURM_NODELIST), but neither is set");
    env.master_addr = first_slurm_host(nodes);
  }
  env.master_port = int(env_int("MASTER_PORT", slurm_master_port(env_or("SLURM_JOB_ID", ""))));
}

}  // namespace

std::string first_slurm_host(const std::string& nodelist) {
  std::string host;
  bool in_brackets = false, first_range = false, got_index = false;
  for (char c : nodelist) {
    if (in_brackets) {
      if (c == ']') {
        if (!got_index) break;
        in_brackets = false;
      } else if (c == ',' || c == '-') {
        first_range = false;  // the rest of the first range, or further ranges
      } else if (first_range) {
        host += c;
        got_index = true;
      }
    } else if (c == '[') {
      in_brackets = first_range = true;
      got_index = false;
    } else if (c == ',') {
      break;  // the first host only
    } else if (c != ' ') {
      host += c;
    }
  }
  if (host.empty() || in_brackets || host.find(']') != std::string::npos)
    throw UserError(fmt::format("cannot read the first host of the Slurm nodelist '{}'; set MASTER_ADDR", nodelist));
  return host;
}

int slurm_master_port(const std::string& job_id) {
  if (job_id.empty()) return 29500;
  try {
    size_t used = 0;
    const long long id = std::stoll(job_id, &used);
    if (used == job_id.size() && id >= 0) return int(20000 + id % 10000);
  } catch (const std::exception&) {
  }
  throw UserError(fmt::format("SLURM_JOB_ID={} is not a job number; set MASTER_PORT", job_id));
}

LaunchEnv read_launch_env() {
  LaunchEnv env;
  die_with_torchrun_agent();
  // srun starts the ranks without RANK; dgpt launch and torchrun (also under srun) set it.
  const bool slurm = env_or("RANK", "").empty() && !env_or("SLURM_PROCID", "").empty();
  if (slurm) {
    env.world_var = "SLURM_NTASKS";
    if (env_or("SLURM_NTASKS", "").empty())
      throw UserError("SLURM_PROCID is set but SLURM_NTASKS is not: start the ranks with srun (or set RANK and WORLD_SIZE)");
    env.rank = env_int("SLURM_PROCID", 0);
    env.world = env_int("SLURM_NTASKS", 1);
    env.local_rank = env_int("SLURM_LOCALID", 0);
  } else {
    env.rank = env_int("RANK", 0);
    env.world = env_int("WORLD_SIZE", 1);
    env.local_rank = env_int("LOCAL_RANK", env.rank);
  }
  if (env.world < 1 || env.rank < 0 || env.rank >= env.world)
    throw UserError(fmt::format("{}={} is not a rank of {}={}", slurm ? "SLURM_PROCID" : "RANK", env.rank,
                                env.world_var, env.world));
  if (slurm) {
    read_slurm_master(env);
  } else {
    env.master_addr = env_or("MASTER_ADDR", "127.0.0.1");
    env.master_port = int(env_int("MASTER_PORT", 29500));
  }
  if (env.master_port <= 0 || env.master_port > 65535)
    throw UserError(fmt::format("MASTER_PORT={} is not a port", env.master_port));
  const std::string agent = env_or("TORCHELASTIC_USE_AGENT_STORE", "");
  env.agent_store = agent == "True" || agent == "true" || agent == "1";
  // As torch.distributed does: the agent's store outlives a restarted worker group, so each
  // attempt has keys of its own.
  if (env.agent_store) env.store_prefix = "/worker/attempt_" + env_or("TORCHELASTIC_RESTART_COUNT", "0");
  return env;
}

ProcessMesh make_process_mesh(const TrainConfig& cfg, const LaunchEnv& env, std::ostream& notices) {
  ProcessMesh mesh;
  mesh.world = env.world;
  mesh.rank = env.rank;
  if (cfg.backend == "sim") {
    if (env.world > 1)
      throw UserError(fmt::format("{}={} but backend='sim' runs in one process; use --backend=gloo", env.world_var,
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
    throw UserError(fmt::format("impossible mesh: {}={} is not a multiple of tp_procs={}", env.world_var, env.world, W));
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
  const Deadline deadline = std::chrono::steady_clock::now() + timeout;  // one for the whole rendezvous
  auto store = open_store(env, deadline, timeout);
  join_and_check_config(*store, cfg, env, deadline);
  auto group = [&](const std::string& name, int64_t rank, int64_t size) -> std::shared_ptr<Collectives> {
    if (size == 1) return make_solo_collectives();
    auto prefixed = c10::make_intrusive<c10d::PrefixStore>("dgpt/" + name, store);
#ifdef DGPT_WITH_NCCL
    if (cfg.backend == "nccl") return make_nccl_collectives(prefixed, rank, size, timeout, env.rank);
#endif
    return make_gloo_collectives(prefixed, rank, size, timeout, env.master_addr, env.rank);
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
  auto group = std::make_shared<ProcessTensorParallelGroup>(args.tp_size, mesh.tp_group);
  group->set_overlap(cfg.overlap_comm);
  return group;
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
