// Where a rank stands under Slurm: the first host of SLURM_JOB_NODELIST in its compressed forms,
// the default port, and read_launch_env's choice between torchrun's variables and Slurm's.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <string>

#include "base/errors.h"
#include "run/process_mesh.h"

namespace {

// Clears every launcher variable, so that the developer's environment cannot leak in.
void clear_launch_vars() {
  for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "TORCHELASTIC_RUN_ID",
                        "TORCHELASTIC_USE_AGENT_STORE", "TORCHELASTIC_RESTART_COUNT", "SLURM_PROCID", "SLURM_NTASKS",
                        "SLURM_LOCALID", "SLURM_JOB_NODELIST", "SLURM_NODELIST", "SLURM_JOB_ID"})
    ::unsetenv(v);
}

}  // namespace

TEST_CASE("The first host of a Slurm nodelist", "[launch]") {
  using dgpt::first_slurm_host;
  CHECK(first_slurm_host("node[01-04,07]") == "node01");
  CHECK(first_slurm_host("node[07,01-04]") == "node07");  // the list's order, not the smallest
  CHECK(first_slurm_host("a1,b2") == "a1");
  CHECK(first_slurm_host("gpu-[3-5]") == "gpu-3");
  CHECK(first_slurm_host("node[1-2],other[3]") == "node1");
  CHECK(first_slurm_host("rack[1-2]-node[08-09]") == "rack1-node08");
  CHECK(first_slurm_host("n[001-100]-ib") == "n001-ib");
  CHECK(first_slurm_host("single") == "single");
  CHECK(first_slurm_host("host-1.cluster.org,host-2.cluster.org") == "host-1.cluster.org");
  CHECK(first_slurm_host("127.0.0.[1-4]") == "127.0.0.1");
  for (const char* bad : {"", ",a", "node[", "node[]", "node[1-2", "node]1"})
    CHECK_THROWS_AS(first_slurm_host(bad), dgpt::UserError);
}

TEST_CASE("MASTER_PORT under Slurm", "[launch]") {
  CHECK(dgpt::slurm_master_port("") == 29500);
  CHECK(dgpt::slurm_master_port("123456") == 23456);
  CHECK(dgpt::slurm_master_port("7") == 20007);
  CHECK_THROWS_AS(dgpt::slurm_master_port("12a"), dgpt::UserError);
}

TEST_CASE("read_launch_env: RANK first, then Slurm's variables", "[launch]") {
  clear_launch_vars();
  auto env = dgpt::read_launch_env();
  CHECK((env.rank == 0 && env.world == 1 && env.master_port == 29500 && !env.agent_store));

  ::setenv("SLURM_PROCID", "3", 1);
  ::setenv("SLURM_NTASKS", "8", 1);
  ::setenv("SLURM_LOCALID", "1", 1);
  ::setenv("SLURM_JOB_NODELIST", "gpu-[3-5,9]", 1);
  ::setenv("SLURM_JOB_ID", "4242", 1);
  env = dgpt::read_launch_env();
  CHECK((env.rank == 3 && env.world == 8 && env.local_rank == 1));
  CHECK((env.master_addr == "gpu-3" && env.master_port == 24242 && env.world_var == "SLURM_NTASKS"));

  ::setenv("MASTER_ADDR", "10.0.0.1", 1);  // explicit variables win over the derived ones
  ::setenv("MASTER_PORT", "29999", 1);
  env = dgpt::read_launch_env();
  CHECK((env.master_addr == "10.0.0.1" && env.master_port == 29999));

  ::setenv("SLURM_PROCID", "8", 1);
  CHECK_THROWS_WITH(dgpt::read_launch_env(), "SLURM_PROCID=8 is not a rank of SLURM_NTASKS=8");
  ::setenv("SLURM_PROCID", "0", 1);
  ::unsetenv("SLURM_NTASKS");
  CHECK_THROWS_AS(dgpt::read_launch_env(), dgpt::UserError);

  // torchrun and dgpt launch set RANK: Slurm's variables (srun around torchrun) are then ignored
  ::setenv("SLURM_NTASKS", "8", 1);
  ::setenv("RANK", "1", 1);
  ::setenv("WORLD_SIZE", "2", 1);
  ::setenv("TORCHELASTIC_USE_AGENT_STORE", "True", 1);
  ::setenv("TORCHELASTIC_RESTART_COUNT", "2", 1);
  env = dgpt::read_launch_env();
  CHECK((env.rank == 1 && env.world == 2 && env.world_var == "WORLD_SIZE" && env.agent_store));
  CHECK(env.store_prefix == "/worker/attempt_2");
  clear_launch_vars();
}
