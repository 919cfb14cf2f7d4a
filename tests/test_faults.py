#!/usr/bin/env python3
"""What a training run does when its world misbehaves: usage: test_faults.py DGPT_BINARY SUITE.

Suites:
- lock: two runs on one out_dir (the second is one `error:` line naming the first's pid), sample
  and eval reading the checkpoint of a run in progress, a SIGKILLed run that never blocks the
  next one (and whose temporary file the next one removes), two ranks of one run.
- disk: a full disk (/dev/full for metrics.jsonl and for stdout; a small tmpfs, where one can be
  mounted, for metrics.jsonl alone, a disk filling up in the middle of a metrics line, and a
  checkpoint that no longer fits) and `ulimit -f`: each one `error:` line naming the file and
  the cause, exit code 2, nothing torn, no temporary file left.
- signals: SIGINT and SIGTERM while training and while saving, with the log redirected to a
  file: exit code 128 + signal, one line saying so, a whole log, whole metrics lines, a
  checkpoint torch.load reads and that resumes, no temporary file.
"""
import errno
import json
import os
import resource
import signal
import subprocess
import time

from harness import DGPT, WORK, check, check_one_error, error_case, main, prepare_shakespeare_char, skip
from harness import run_dgpt as run

TINY = ["--device=cpu", "--dataset=shakespeare_char", "--n_layer=2", "--n_embd=32", "--n_head=4",
        "--block_size=32", "--batch_size=4", "--eval_iters=1"]
# A run that goes on until it is stopped, saving at every evaluation.
FOREVER = ["--max_iters=1000000", "--always_save_checkpoint=True", "--log_interval=1"]


def path(*parts):
    return os.path.join(WORK, *parts)


def start_train(out_dir, *extra, stdout=subprocess.DEVNULL):
    return subprocess.Popen([DGPT, "train", *TINY, f"--out_dir={out_dir}", *extra], cwd=WORK, stdout=stdout,
                            stderr=subprocess.PIPE, text=True)


def wait_until(condition, what, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if condition():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def read_text(p):
    try:
        with open(p, encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def whole_json_lines(p, what):
    """The events of a metrics.jsonl, after checking that it holds only whole JSON lines."""
    data = open(p, "rb").read()
    check(data == b"" or data.endswith(b"\n"), f"{what}: the last line is torn: {data[-80:]!r}")
    events = []
    for i, line in enumerate(data.splitlines()):
        try:
            events.append(json.loads(line))
        except ValueError:
            check(False, f"{what}: line {i + 1} is not JSON: {line[:80]!r}")
    return events


def temp_files(out_dir):
    return [f for f in os.listdir(path(out_dir)) if ".tmp" in f]


def check_no_temp_files(out_dir, what):
    check(temp_files(out_dir) == [], f"{what}: temporary files left in {out_dir}: {temp_files(out_dir)}")


def run_train(out_dir, *extra, stdout=subprocess.DEVNULL, preexec_fn=None):
    p = subprocess.Popen([DGPT, "train", *TINY, f"--out_dir={out_dir}", *extra], cwd=WORK, stdout=stdout,
                         stderr=subprocess.PIPE, text=True, preexec_fn=preexec_fn)
    _, err = p.communicate(timeout=300)
    return p, err


def torch_or_skip():
    try:
        import torch
        return torch
    except ImportError:
        skip("this python3 has no torch (install python3-torch): checkpoints cannot be loaded here")


# --- lock ----------------------------------------------------------------------------------


def suite_lock():
    prepare_shakespeare_char()
    # 1. A run in progress, saving at every iteration.
    a = start_train("shared", *FOREVER, "--eval_interval=1")
    try:
        wait_until(lambda: os.path.exists(path("shared/ckpt.pt")) and
                   read_text(path("shared/metrics.jsonl")).count('"train"') >= 3, "the first run to save")
        before = open(path("shared/metrics.jsonl"), "rb").read()
        t0 = time.time()
        for extra in [[], ["--init_from=resume"]]:
            error_case(["train", *TINY, "--out_dir=shared", "--max_iters=5", *extra], "shared", f"pid {a.pid} on host",
                       "in use", timeout=60)
        elapsed = (time.time() - t0) / 2
        print(f"the second run failed in {elapsed:.2f}s")
        check(elapsed < 15, f"the second run took {elapsed:.1f}s to fail")
        after = open(path("shared/metrics.jsonl"), "rb").read()
        check(after.startswith(before), "the second run did not touch the first run's metrics.jsonl")
        # 2. Readers need no lock: sample and eval load the checkpoint while it is being replaced.
        for _ in range(3):
            p = run("sample", "--out_dir=shared", "--device=cpu", "--num_samples=1", "--max_new_tokens=20",
                    expect=None)
            check(p.returncode == 0, f"sample during training: exit {p.returncode} {p.stderr[-300:]!r}")
            p = run("eval", "--out_dir=shared", "--tokens=data/shakespeare_char/val.bin", "--max_windows=8",
                    expect=None)
            check(p.returncode == 0 and "loss " in p.stdout, f"eval during training: exit {p.returncode} {p.stderr[-300:]!r}")
        check(a.poll() is None, "the first run is still training")
    finally:
        # 3. A run killed outright (no chance to clean up) ...
        a.kill()
        a.wait()
    events = whole_json_lines(path("shared/metrics.jsonl"), "the killed run's metrics")
    iters = [e["iter"] for e in events if e["event"] == "train"]
    check(iters == list(range(len(iters))), f"one writer: every train event once, in order: {iters[:20]}...")
    # ... leaves its lock to the kernel, which drops it, and perhaps a temporary checkpoint, which
    # the next run removes (planted here: a SIGKILL rarely lands inside a save).
    open(path("shared/ckpt.pt.tmp.99999999"), "wb").write(b"torn")
    p = run("train", *TINY, "--out_dir=shared", "--max_iters=2", expect=None, timeout=120)
    check(p.returncode == 0, f"a run after a killed one: exit {p.returncode} {p.stderr[-300:]!r}")
    check_no_temp_files("shared", "after a run that followed a killed one")
    check(read_text(path("shared/train.lock")).startswith("pid "), "train.lock names its last holder")

    # 4. One run of two ranks: only rank 0 writes, so only rank 0 locks.
    p = run("launch", "--nproc", "2", "--", "train", *TINY, "--backend=gloo", "--model_type=distributed_gpt",
            "--tp_size=2", "--max_iters=2", "--eval_interval=2", "--out_dir=ranks", expect=None, timeout=300)
    check(p.returncode == 0, f"two ranks on one out_dir: exit {p.returncode} {p.stderr[-500:]!r} {p.stdout[-500:]!r}")
    check(len(whole_json_lines(path("ranks/metrics.jsonl"), "two ranks")) > 0, "two ranks: metrics written")


# --- disk ----------------------------------------------------------------------------------


def fsize_limit(limit):
    def apply():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    return apply


class Tmpfs:
    """A tmpfs of `size` bytes at WORK/name; `mounted` is False where none can be (not root)."""

    def __init__(self, name, size):
        self.dir = path(name)
        os.makedirs(self.dir)
        p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", self.dir], capture_output=True,
                           text=True)
        self.mounted = p.returncode == 0
        self.why = (p.stderr.strip().splitlines() or ["mount failed"])[0]

    def free(self):
        st = os.statvfs(self.dir)
        return st.f_bavail * st.f_frsize

    def out_dir(self, name):
        """A new out_dir on the tmpfs (the filler removed first), with a lock file that already has
        its page, so that what the run writes first is the file under test."""
        self.unfill()
        os.makedirs(os.path.join(self.dir, name))
        with open(os.path.join(self.dir, name, "train.lock"), "w") as f:
            f.write("pid 0 on host none\n")
        return os.path.relpath(os.path.join(self.dir, name), WORK)

    def unfill(self):
        if os.path.exists(os.path.join(self.dir, "filler")):
            os.remove(os.path.join(self.dir, "filler"))

    def fill(self, leave):
        """Writes a filler file so that `leave` bytes (a multiple of the page size) stay free."""
        self.unfill()
        filler = os.path.join(self.dir, "filler")
        todo = max(0, self.free() - leave)
        with open(filler, "wb") as f:
            while todo > 0:
                try:
                    todo -= f.write(b"\0" * min(todo, 1 << 20))
                    f.flush()
                except OSError as e:
                    if e.errno != errno.ENOSPC:
                        raise
                    break
        check(abs(self.free() - leave) <= 4096, f"tmpfs: {self.free()} bytes free, wanted {leave}")

    def unmount(self):
        if self.mounted:
            subprocess.run(["umount", "-l", self.dir])


def suite_disk():
    prepare_shakespeare_char()
    no_saves = ["--eval_interval=1000000", "--log_interval=1"]

    # 1. /dev/full as metrics.jsonl: its first line fails.
    os.makedirs(path("devfull"))
    os.symlink("/dev/full", path("devfull/metrics.jsonl"))
    p, err = run_train("devfull", "--max_iters=3", *no_saves)
    check_one_error(p.returncode, err, "metrics.jsonl on /dev/full", "devfull/metrics.jsonl", "No space left on device")

    # 2. /dev/full as stdout: the log's first flush fails.
    with open("/dev/full", "w") as full:
        p, err = run_train("stdout_full", "--max_iters=3", *no_saves, stdout=full)
    check_one_error(p.returncode, err, "stdout on /dev/full", "the training log (stdout)", "No space left on device")

    # 3. `ulimit -f` below the checkpoint's size: EFBIG (not a silent SIGXFSZ), no temporary file.
    run("train", *TINY, "--out_dir=sized", "--max_iters=1", "--eval_interval=1", "--always_save_checkpoint=True")
    ckpt_size = os.path.getsize(path("sized/ckpt.pt"))
    p, err = run_train("fsize", "--max_iters=3", "--eval_interval=1", "--always_save_checkpoint=True",
                       preexec_fn=fsize_limit(ckpt_size // 2))
    check_one_error(p.returncode, err, "ulimit -f", "fsize/ckpt.pt", "File too large")
    check_no_temp_files("fsize", "ulimit -f")
    check(not os.path.exists(path("fsize/ckpt.pt")), "ulimit -f: no ckpt.pt")
    whole_json_lines(path("fsize/metrics.jsonl"), "ulimit -f")

    # 4. A real full disk: a tmpfs a few checkpoints large.
    fs = Tmpfs("tmpfs", 4 * ckpt_size + (1 << 20))
    if not fs.mounted:
        print(f"note: no tmpfs could be mounted here ({fs.why}); the full-disk cases ran on /dev/full "
              f"and with ulimit -f only")
        return
    try:
        full_disk_cases(fs, ckpt_size, no_saves)
    finally:
        fs.unmount()


def full_disk_cases(fs, ckpt_size, no_saves):
    # 4a. Nothing but metrics.jsonl to write, on a disk with no room: an empty file, exit 2.
    out = fs.out_dir("metrics_only")
    fs.fill(0)
    p, err = run_train(out, "--max_iters=3", *no_saves)
    check_one_error(p.returncode, err, "full disk, metrics only", f"{out}/metrics.jsonl", "No space left on device")
    check(os.path.getsize(path(out, "metrics.jsonl")) == 0, "full disk: metrics.jsonl is empty, not torn")

    # 4b. The disk fills up in the middle of a metrics line: the part written is cut off again.
    out = fs.out_dir("metrics_fill")
    fs.fill(4096)
    p, err = run_train(out, "--max_iters=200", *no_saves)
    check_one_error(p.returncode, err, "disk filling up", f"{out}/metrics.jsonl", "No space left on device")
    events = whole_json_lines(path(out, "metrics.jsonl"), "disk filling up")
    check(len(events) >= 2, f"disk filling up: the lines that fitted stay ({len(events)})")

    # 4c. Room for one checkpoint but not for the next one's temporary file: the last whole
    # checkpoint stays, no temporary file is left.
    out = fs.out_dir("ckpt")
    fs.fill((ckpt_size * 3 // 2 + 8192) // 4096 * 4096)
    p, err = run_train(out, "--max_iters=20", "--eval_interval=1", "--always_save_checkpoint=True")
    check_one_error(p.returncode, err, "no room for a checkpoint", f"{out}/ckpt.pt", "No space left on device")
    check_no_temp_files(out, "no room for a checkpoint")
    whole_json_lines(path(out, "metrics.jsonl"), "no room for a checkpoint")
    torch = torch_or_skip()
    ck = torch.load(path(out, "ckpt.pt"), map_location="cpu")
    check(ck["iter_num"] == 1, f"the checkpoint that fitted stays: iter {ck['iter_num']}")


# --- signals -------------------------------------------------------------------------------


def interrupt(sig, out_dir, during_save, twice=False):
    """Starts a run, log to a file, and signals it while it saves (it saves at every iteration,
    and its temporary checkpoint exists) or while it trains (it saves every 5 iterations, and a
    log line just appeared). Returns the exit code, stderr, the log, and whether the signal was
    sent while a temporary file existed."""
    log_path = path(out_dir + ".log")
    with open(log_path, "w") as log:
        p = start_train(out_dir, *FOREVER, f"--eval_interval={1 if during_save else 5}", stdout=log)
    try:
        wait_until(lambda: "iter 6:" in read_text(log_path), f"{out_dir}: iter 6")
        seen_tmp = False
        if during_save:
            deadline = time.time() + 30
            while not seen_tmp and time.time() < deadline:
                seen_tmp = any(".tmp" in f for f in os.listdir(path(out_dir)))
        else:
            n = read_text(log_path).count("\niter ")
            wait_until(lambda: read_text(log_path).count("\niter ") > n, f"{out_dir}: a new log line")
        p.send_signal(sig)
        if twice:
            p.send_signal(sig)
        _, err = p.communicate(timeout=60)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    return p.returncode, err, read_text(log_path), seen_tmp


def suite_signals():
    prepare_shakespeare_char()
    torch = torch_or_skip()
    t_start = time.time()
    caught_saving = 0
    for sig, during_save in [(signal.SIGINT, False), (signal.SIGTERM, False), (signal.SIGINT, True),
                             (signal.SIGTERM, True)]:
        name = signal.Signals(sig).name
        out_dir = f"{name}_{'saving' if during_save else 'training'}"
        code, err, log, seen_tmp = interrupt(sig, out_dir, during_save)
        caught_saving += seen_tmp
        check(code == 128 + sig, f"{out_dir}: exit {code}, expected {128 + sig} ({err.strip()!r})")
        check(err.strip() == "", f"{out_dir}: nothing on stderr: {err.strip()!r}")
        check(log.endswith("\n"), f"{out_dir}: the log's last line is torn: {log[-100:]!r}")
        last = log.splitlines()[-1] if log else ""
        check(last.startswith(f"interrupted by {name} at iter ") and "stopped cleanly" in last,
              f"{out_dir}: the log ends with one line saying so: {last!r}")
        check_no_temp_files(out_dir, out_dir)
        events = whole_json_lines(path(out_dir, "metrics.jsonl"), out_dir)
        train_iters = [e["iter"] for e in events if e["event"] == "train"]
        check(bool(train_iters) and f"iter {train_iters[-1]}:" in log,
              f"{out_dir}: the log has the last logged iteration {train_iters[-1:]}")
        ck = torch.load(path(out_dir, "ckpt.pt"), map_location="cpu")
        check(f"holds iter {ck['iter_num']}" in last, f"{out_dir}: ckpt.pt is iter {ck['iter_num']}: {last!r}")
        if sig == signal.SIGTERM and during_save:
            # The stopped run resumes from its checkpoint (and its lock is gone).
            p = run("train", *TINY, f"--out_dir={out_dir}", "--init_from=resume", "--eval_interval=1000",
                    f"--max_iters={ck['iter_num'] + 2}", expect=None, timeout=120)
            check(p.returncode == 0, f"{out_dir}: resume after the stop: exit {p.returncode} {p.stderr[-300:]!r}")
    print(f"signals sent while a temporary checkpoint existed: {caught_saving} of 2")

    # A second signal does not wait for the safe point: it removes the temporary file and exits.
    code, err, log, seen_tmp = interrupt(signal.SIGINT, "twice", during_save=True, twice=True)
    check(code == 130, f"twice: exit {code} ({err.strip()!r})")
    check_no_temp_files("twice", "twice")
    whole_json_lines(path("twice", "metrics.jsonl"), "twice")
    torch.load(path("twice", "ckpt.pt"), map_location="cpu")
    print(f"signals: {time.time() - t_start:.1f}s")


if __name__ == "__main__":
    main(globals())
