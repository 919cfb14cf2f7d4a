#!/usr/bin/env python3
"""Launchers for real: ranks die with their launcher, the rendezvous names whom it waits for, and
dgpt runs under torchrun and under Slurm's variables with the losses of a simulated run.

usage: test_launch.py DGPT_BINARY SUITE   (suites: launcher_death, rendezvous, torchrun, slurm)

Every run starts from an environment without launcher variables (RANK, SLURM_*, TORCHELASTIC_*,
...), so that the developer's own cannot leak in.
"""
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

from harness import DGPT, WORK, check, error_case, free_port, losses, main, prepare_shakespeare_char, run_dgpt, skip

TINY = ["--dataset=shakespeare_char", "--device=cpu", "--n_layer=2", "--n_embd=32", "--n_head=4", "--block_size=32",
        "--batch_size=4", "--max_iters=6", "--eval_interval=6", "--eval_iters=1", "--log_interval=1",
        "--model_type=distributed_gpt", "--tp_size=2", "--comm_timeout=60"]
LOSS_RTOL = 1e-5  # float32: a different summation order only
LAUNCHER_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE", "ROLE_RANK",
                 "ROLE_WORLD_SIZE", "ROLE_NAME", "MASTER_ADDR", "MASTER_PORT")


STARTED = []  # processes and rank pids this script started: none outlives a failed check


def started(proc_or_pids):
    STARTED.extend(proc_or_pids if isinstance(proc_or_pids, list) else [proc_or_pids])
    return proc_or_pids


def cleaned(suite):
    def run():
        try:
            suite()
        finally:
            for x in STARTED:
                if isinstance(x, subprocess.Popen):
                    if x.poll() is None:
                        x.kill()
                        x.wait()
                elif alive(x) and os.path.realpath(f"/proc/{x}/exe") == os.path.realpath(DGPT):  # not a reused pid
                    os.kill(x, signal.SIGKILL)
    return run


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if k not in LAUNCHER_VARS and not k.startswith(("SLURM_", "TORCHELASTIC_"))}
    env.update({k: str(v) for k, v in extra.items()})
    return env


def dgpt(*args, env=None, **kw):
    return run_dgpt(*args, env=clean_env(**(env or {})), **kw)


def same_losses(real, sim, what):
    lr, ls = losses(real), losses(sim)
    check(sorted(lr) == sorted(ls) and len(ls) >= 6, f"{what}: iterations {sorted(lr)} vs {sorted(ls)}")
    worst = max((abs(lr[i] - ls[i]) / abs(ls[i]) for i in lr if i in ls), default=1.0)
    check(worst <= LOSS_RTOL, f"{what}: per-step losses differ by {worst:.2e} relative (tolerance {LOSS_RTOL})")
    print(f"{what}: losses = simulation (worst difference {worst:.1e})", flush=True)


def simulate(out_dir="sim"):
    dgpt("train", *TINY, "--backend=sim", f"--out_dir={out_dir}")
    return out_dir


def alive(pid):
    """Running, and not a zombie (an orphan's new parent may be slow to reap it, or never do)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_gone(pids, limit):
    """Seconds until every pid is gone, or None after `limit` seconds."""
    t0 = time.time()
    while time.time() - t0 < limit:
        if not any(alive(p) for p in pids):
            return time.time() - t0
        time.sleep(0.02)
    return None


def wait_for(path, needle, proc, limit=120):
    """Waits until the file at `path` (a process's output) holds `needle`; returns the text."""
    deadline = time.time() + limit
    while time.time() < deadline:
        text = open(path, errors="replace").read()
        if needle in text:
            return text
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"{needle!r} never appeared in {path} (exit {proc.poll()}):\n{open(path).read()[-3000:]}")


def wait_for_iter(out_dir, it, proc, limit=180):
    """Waits until out_dir/metrics.jsonl (flushed per event, unlike a rank's piped stdout) has a train
    event of iteration `it` or later."""
    path = os.path.join(WORK, out_dir, "metrics.jsonl")
    deadline = time.time() + limit
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(path) and any(e.get("event") == "train" and e["iter"] >= it
                                        for e in map(json.loads, open(path).read().split("\n")[:-1])):
            return
        time.sleep(0.05)
    raise AssertionError(f"{out_dir}: no iteration {it} in metrics.jsonl (exit {proc.poll()})")


def fds(pid):
    """The targets of a process's descriptors ('pipe:[123]', 'socket:[456]', paths)."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            out[int(fd)] = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            pass
    return out


def rank_of(pid):
    env = open(f"/proc/{pid}/environ", "rb").read().split(b"\0")
    return next(int(v[5:]) for v in env if v.startswith(b"RANK="))


# ---------------------------------------------------------------------------------------------


def start_launcher(name, *train_args):
    log = os.path.join(WORK, f"{name}.log")
    out = open(log, "w")  # a file, not a pipe: the launcher's death must not reach the ranks as SIGPIPE
    p = started(subprocess.Popen([DGPT, "launch", "--nproc", "2", "--", "train", *TINY, "--backend=gloo", *train_args,
                          f"--out_dir={name}"], cwd=WORK, env=clean_env(), stdout=out, stderr=subprocess.STDOUT))
    out.close()
    return p, log


def launched_pids(text):
    m = re.search(r"launch: 2 ranks \(pids (\d+) (\d+)\)", text)
    check(m is not None, f"the launcher names its ranks' pids: {text[:500]!r}")
    return started([int(m.group(1)), int(m.group(2))])


@cleaned
def suite_launcher_death():
    """`dgpt launch` killed by SIGKILL (it can forward nothing): both ranks exit at once, and no
    checkpoint is written afterwards. No rank holds another rank's pipe."""
    prepare_shakespeare_char()
    many = ["--max_iters=1000000", "--lr_decay_iters=1000000"]
    # 1. training, logging every iteration and checkpointing every 2
    launcher, log = start_launcher("killed", *many, "--eval_interval=2", "--always_save_checkpoint=True")
    pids = launched_pids(wait_for(log, "rendezvous on", launcher))
    wait_for_iter("killed", 5, launcher)
    check(sorted(rank_of(p) for p in pids) == [0, 1], f"ranks of {pids}")
    check(all(int(open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1]) == launcher.pid for p in pids),
          "the ranks are the launcher's children")
    table = {p: fds(p) for p in pids}
    for p in pids:
        own = {table[p][1], table[p][2]}  # the rank's output pipe
        check(all(t.startswith("pipe:") for t in own), f"rank pid {p} writes to a pipe: {own}")
        for q in pids:
            if q != p:
                shared = own & set(table[q].values())
                check(not shared, f"pid {q} holds {shared}, the output pipe of pid {p}: a descriptor leak")
    ckpt = os.path.join(WORK, "killed", "ckpt.pt")
    check(os.path.exists(ckpt), "a checkpoint was written before the kill")
    launcher.kill()
    t0 = time.time()
    launcher.wait()
    gone = wait_gone(pids, 10)
    check(gone is not None and gone < 3, f"ranks {pids} still running {time.time() - t0:.1f}s after the launcher died")
    print(f"launcher SIGKILLed while training: both ranks gone after {gone if gone is None else round(gone, 3)}s",
          flush=True)
    # Nothing is written afterwards. (A rank killed while writing a checkpoint may leave its
    # temporary file; ckpt.pt itself is only ever replaced by a rename, so it stays whole.)
    out_dir = os.path.join(WORK, "killed")
    stamps = lambda: {f: os.stat(os.path.join(out_dir, f)).st_mtime_ns for f in os.listdir(out_dir)}
    before = stamps()
    time.sleep(2)
    check(stamps() == before, f"files written after the launcher died: {before} -> {stamps()}")
    try:
        import torch
        check(torch.load(ckpt, map_location="cpu")["iter_num"] >= 2, "ckpt.pt holds a checkpoint")
    except ImportError:
        pass

    # 2. silent ranks (nothing logged, so no SIGPIPE on a write): only the death signal stops them
    launcher, log = start_launcher("silent", *many, "--eval_interval=1000000", "--log_interval=1000000")
    pids = launched_pids(wait_for(log, "rendezvous on", launcher))
    wait_for_iter("silent", 0, launcher)
    time.sleep(1.0)
    check(all(alive(p) for p in pids), "both ranks train on, silently")
    launcher.kill()
    launcher.wait()
    gone = wait_gone(pids, 10)
    check(gone is not None and gone < 3, f"silent ranks {pids} still running after the launcher died")
    print(f"launcher SIGKILLed, silent ranks: gone after {gone if gone is None else round(gone, 3)}s", flush=True)


@cleaned
def suite_rendezvous():
    """The rendezvous gives up after comm_timeout in all, in one `error:` line that says how many
    ranks joined and which are missing; a config mismatch is an error on every rank."""
    prepare_shakespeare_char()
    T = 5
    args = ["train", *TINY, "--backend=gloo", f"--comm_timeout={T}", "--out_dir=rdzv"]
    # rank 0 alone of 2
    port = free_port()
    env = clean_env(RANK=0, WORLD_SIZE=2, MASTER_ADDR="127.0.0.1", MASTER_PORT=port)
    t0 = time.time()
    error_case(args, "rank 0:", f"timed out after {T}s", "1 of 2 ranks joined", "waiting for rank 1",
               f"127.0.0.1:{port}", env=env, timeout=60)
    elapsed = time.time() - t0
    check(T <= elapsed + 0.5 and elapsed < 2 * T, f"rank 0 alone gave up after {elapsed:.1f}s (comm_timeout {T}s)")
    print(f"rank 0 alone: error after {elapsed:.2f}s (comm_timeout {T}s)", flush=True)

    # ranks 0 and 1 of 3: both name rank 2
    port = free_port()
    t0 = time.time()
    procs = [subprocess.Popen([DGPT, *args, "--gradient_accumulation_steps=3"], cwd=WORK, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env=clean_env(RANK=r, WORLD_SIZE=3, MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
             for r in range(2)]
    for r, p in enumerate(procs):
        out, err = p.communicate(timeout=60)
        elapsed = time.time() - t0
        lines = err.strip().splitlines()
        check(p.returncode == 2 and len(lines) == 1 and lines[0].startswith(f"error: rank {r}:"),
              f"rank {r} of 3: exit {p.returncode}, {err!r}")
        check("2 of 3 ranks joined" in err and "waiting for rank 2 " in err, f"rank {r} of 3 names rank 2: {err!r}")
        check(elapsed < 2 * T, f"rank {r} of 3 gave up after {elapsed:.1f}s")
    print(f"ranks 0, 1 of 3: both errors after {elapsed:.2f}s", flush=True)

    # rank 1 with no rank 0: it cannot connect, within comm_timeout
    t0 = time.time()
    error_case(args, "rank 1 cannot reach the rendezvous", env=clean_env(RANK=1, WORLD_SIZE=2, MASTER_ADDR="127.0.0.1",
                                                                         MASTER_PORT=free_port()), timeout=60)
    elapsed = time.time() - t0
    check(elapsed < 2 * T, f"rank 1 alone gave up after {elapsed:.1f}s")
    print(f"rank 1 alone: error after {elapsed:.2f}s", flush=True)

    # a config mismatch: the same clear error on every rank, whichever rank differs
    for lrs, needles in [(["1e-3", "2e-3"], ["the effective config of rank 1 differs", "the effective config differs"]),
                         (["1e-3", "1e-3", "2e-3"], ["of rank 2 differs", "of rank 2 differs", "config differs"])]:
        port = free_port()
        n = len(lrs)
        procs = [subprocess.Popen([DGPT, *args, f"--learning_rate={lr}", "--comm_timeout=60",
                                   f"--gradient_accumulation_steps={n}"], cwd=WORK,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=clean_env(RANK=r, WORLD_SIZE=n, MASTER_ADDR="127.0.0.1", MASTER_PORT=port))
                 for r, lr in enumerate(lrs)]
        for r, p in enumerate(procs):
            out, err = p.communicate(timeout=120)
            check(p.returncode == 2 and needles[r] in err and len(err.strip().splitlines()) == 1,
                  f"rank {r} of {n}, learning rates {lrs}: exit {p.returncode}, {err!r}")


def find_torchrun():
    try:  # the python running this test (Debian's, with python3-torch) has it as a module
        import torch.distributed.run  # noqa: F401
        return [sys.executable, "-m", "torch.distributed.run"]
    except ImportError:
        path = shutil.which("torchrun")
        return [path] if path else None


# Debian 12's torchrun (PyTorch 1.13, Python 3.11) fails in to_map before it starts a rank unless
# both options are given (pytorch/pytorch#92319); "9:0" = nothing redirected, for a local rank 9.
TORCHRUN_FIX = ["--redirects=9:0", "--tee=9:0"]


def torchrun(torchrun_cmd, rdzv, out_dir, *train_args):
    cmd = [*torchrun_cmd, *rdzv, "--nproc_per_node=2", *TORCHRUN_FIX, "--no_python", DGPT, "train", *TINY,
           "--backend=gloo", *train_args, f"--out_dir={out_dir}"]
    p = subprocess.run(cmd, cwd=WORK, env=clean_env(), capture_output=True, text=True, timeout=600)
    check(p.returncode == 0, f"torchrun {' '.join(rdzv)}: exit {p.returncode}\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
    return p


@cleaned
def suite_torchrun():
    """Debian's torchrun runs dgpt: standalone (the ranks serve their own store) and static (they
    join the agent's), with the simulation's per-step losses; and ranks die with a SIGKILLed agent."""
    cmd = find_torchrun()
    if cmd is None:
        skip("no torchrun (python3-torch)")  # a failure under CI=true
    prepare_shakespeare_char()
    simulate()
    p = torchrun(cmd, ["--standalone"], "standalone")
    if p.returncode == 0:
        same_losses("standalone", "sim", "torchrun --standalone")
    static = ["--nnodes=1", "--node_rank=0", "--master_addr=127.0.0.1", f"--master_port={free_port()}"]
    p = torchrun(cmd, static, "static")
    if p.returncode == 0:
        same_losses("static", "sim", "torchrun static (the agent's store)")

    # the agent killed by SIGKILL: its silent ranks die with it (dgpt sets PR_SET_PDEATHSIG itself)
    log = os.path.join(WORK, "agent.log")
    with open(log, "w") as out:
        agent = started(subprocess.Popen([*cmd, *static[:3], f"--master_port={free_port()}", "--nproc_per_node=2",
                                  *TORCHRUN_FIX, "--no_python", DGPT, "train", *TINY, "--backend=gloo",
                                  "--max_iters=1000000", "--lr_decay_iters=1000000", "--eval_interval=1000000",
                                  "--log_interval=1000000", "--out_dir=agent"],
                                 cwd=WORK, env=clean_env(), stdout=out, stderr=subprocess.STDOUT))
    wait_for_iter("agent", 0, agent)
    ranks = [int(x) for x in subprocess.run(["pgrep", "-P", str(agent.pid)], capture_output=True,
                                            text=True).stdout.split()]
    ranks = started([r for r in ranks if os.path.realpath(f"/proc/{r}/exe") == os.path.realpath(DGPT)])
    check(len(ranks) == 2, f"torchrun's agent has two dgpt ranks: {ranks}")
    time.sleep(1.0)
    check(all(alive(r) for r in ranks), "both ranks train on, silently")
    agent.kill()
    agent.wait()
    gone = wait_gone(ranks, 10)
    check(gone is not None and gone < 3, f"torchrun's ranks {ranks} still running after the agent died")
    print(f"torchrun agent SIGKILLed: its ranks gone after {gone if gone is None else round(gone, 3)}s", flush=True)


@cleaned
def suite_slurm():
    """Ranks started as srun would (SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID; no RANK): the
    simulation's losses, with MASTER_ADDR/MASTER_PORT given and derived (the first host of
    SLURM_JOB_NODELIST, 20000 + SLURM_JOB_ID % 10000); and the errors of a bad Slurm environment."""
    prepare_shakespeare_char()
    simulate()

    def run_tasks(out_dir, **common):
        procs = [subprocess.Popen([DGPT, "train", *TINY, "--backend=gloo", f"--out_dir={out_dir}"], cwd=WORK,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=clean_env(SLURM_PROCID=r, SLURM_NTASKS=2, SLURM_LOCALID=r, SLURM_NODEID=0,
                                                **common))
                 for r in range(2)]
        results = [p.communicate(timeout=600) + (p.returncode,) for p in procs]
        for r, (out, err, code) in enumerate(results):
            check(code == 0, f"Slurm task {r} ({common}): exit {code}\n{err[-3000:]}")
        return all(code == 0 for _, _, code in results)

    if run_tasks("slurm", MASTER_ADDR="127.0.0.1", MASTER_PORT=free_port(), SLURM_JOB_NODELIST="ignored[1-2]"):
        same_losses("slurm", "sim", "Slurm tasks, MASTER_ADDR/MASTER_PORT given")
    port = free_port(20000, 30000)  # what 20000 + SLURM_JOB_ID % 10000 can name
    if run_tasks("slurm_derived", SLURM_JOB_NODELIST="127.0.0.[1-4],otherhost", SLURM_JOB_ID=730000 + port - 20000):
        same_losses("slurm_derived", "sim", "Slurm tasks, rendezvous from the nodelist and the job id")

    # errors: one line, exit 2
    train = ["train", *TINY, "--backend=gloo", "--comm_timeout=5", "--out_dir=bad"]
    error_case(train, "SLURM_PROCID is set but SLURM_NTASKS is not", env=clean_env(SLURM_PROCID=0))
    error_case(train, "SLURM_PROCID=2 is not a rank of SLURM_NTASKS=2", env=clean_env(SLURM_PROCID=2, SLURM_NTASKS=2))
    error_case(train, "cannot read the first host of the Slurm nodelist 'node[01-'",
               env=clean_env(SLURM_PROCID=0, SLURM_NTASKS=2, SLURM_JOB_NODELIST="node[01-"))
    error_case(train, "neither is set", env=clean_env(SLURM_PROCID=0, SLURM_NTASKS=2))
    error_case(train, "SLURM_JOB_ID=x1 is not a job number",
               env=clean_env(SLURM_PROCID=0, SLURM_NTASKS=2, SLURM_JOB_NODELIST="a1", SLURM_JOB_ID="x1"))
    error_case(["train", *TINY, "--out_dir=bad"], "SLURM_NTASKS=2 but backend='sim' runs in one process",
               env=clean_env(SLURM_PROCID=0, SLURM_NTASKS=2, MASTER_ADDR="127.0.0.1"))
    # RANK wins: srun around dgpt launch or torchrun must not turn into a Slurm world
    p = dgpt("train", *TINY, "--max_iters=1", "--out_dir=rank_wins", env={"RANK": 0, "WORLD_SIZE": 1,
                                                                          "SLURM_PROCID": 1, "SLURM_NTASKS": 2})
    check(p.returncode == 0, "RANK/WORLD_SIZE take precedence over SLURM_PROCID/SLURM_NTASKS")


if __name__ == "__main__":
    main(globals())
