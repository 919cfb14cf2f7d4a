#!/usr/bin/env python3
"""The strategy-comparison workflow end to end: usage: test_notebooks.py DGPT_BINARY.

Prepares shakespeare_char in a temporary folder, runs bench/compare.py on three tiny configs
(all tp, all spd, spd + a run of parallel blocks; tp_size 2) with projections, checks its
compare.csv / compare.json, then executes notebooks/compare_strategies.ipynb and
notebooks/projections.ipynb headless with nbconvert on those outputs (and projections.ipynb on a
`dgpt bench --compare --json` file too) and checks the PNGs they write. nbconvert, pandas and
matplotlib are required (setup.sh installs them): without them the test fails, it is not skipped.
"""
import csv
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time

DGPT = os.path.abspath(sys.argv[1])
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPARE = os.path.join(REPO, "bench", "compare.py")
NOTEBOOKS = os.path.join(REPO, "notebooks")
SHAKESPEARE = os.environ.get("DGPT_SHAKESPEARE", "")
WORK = tempfile.mkdtemp(prefix="dgpt_notebooks_")
FAILURES = []
CHECKS = [0]
ENV = dict(os.environ)
ENV.setdefault("OMP_NUM_THREADS", "1")  # tiny models; robust on a busy machine
ENV.pop("MPLBACKEND", None)

CONFIG = """# written by tests/test_notebooks.py
dataset = 'shakespeare_char'
device = 'cpu'
n_layer = 4
n_head = 4
n_embd = 32
block_size = 32
batch_size = 4
gradient_accumulation_steps = 1
max_iters = 30
eval_interval = 10
eval_iters = 2
learning_rate = 3e-3
warmup_iters = 2
lr_decay_iters = 30
min_lr = 3e-4
model_type = 'distributed_gpt'
tp_size = 2
block_types = {types}
"""
STRATEGIES = [("tp", "['tp']*4", 8), ("spd", "['spd']*4", 4),
              ("spd_parallel", "['spd','parallel','parallel','parallel']", 2)]
COMPARE_PNGS = ["compare_loss_curves.png", "compare_val_loss_vs_allreduce.png", "compare_throughput.png"]
PROJECTION_PNGS = ["projection_speedup_vs_bandwidth.png", "projection_step_time.png"]


def check(cond, what):
    CHECKS[0] += 1
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what)
    return cond


def run(cmd, expect=0, **kw):
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=WORK, env=kw.pop("env", ENV), capture_output=True, text=True, timeout=600, **kw)
    print(f"  {time.monotonic() - t0:5.1f} s  {' '.join(os.path.basename(c) if i < 2 else c for i, c in enumerate(cmd))[:150]}",
          flush=True)
    if expect is not None and p.returncode != expect:
        raise AssertionError(f"{' '.join(cmd)}: exit {p.returncode}, expected {expect}\n"
                             f"stdout:\n{p.stdout[-3000:]}\nstderr:\n{p.stderr[-3000:]}")
    return p


def finite(x):
    return isinstance(x, (int, float)) and math.isfinite(x)


def nbconvert_command():
    """Debian's jupyter-nbconvert (python3-nbconvert), run by this python so its packages are the kernel's."""
    if importlib.util.find_spec("nbconvert") is not None:
        return [sys.executable, "-m", "nbconvert"]
    exe = shutil.which("jupyter-nbconvert")
    return [exe] if exe else None


def execute_notebook(nbconvert, name, out_dir, env):
    os.makedirs(out_dir, exist_ok=True)
    run([*nbconvert, "--to", "notebook", "--execute", "--ExecutePreprocessor.timeout=600", "--output-dir", out_dir,
         os.path.join(NOTEBOOKS, name)], env=env)
    executed = json.load(open(os.path.join(out_dir, name)))
    errors = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    check(not errors, f"{name}: error outputs {errors}")
    images = sum(1 for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])
                 if "image/png" in o.get("data", {}))
    return images


def check_pngs(fig_dir, names, what):
    for n in names:
        path = os.path.join(fig_dir, n)
        ok = os.path.isfile(path) and os.path.getsize(path) > 0
        if check(ok, f"{what}: {path} written and not empty"):
            check(open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n", f"{what}: {path} is a PNG")


def main():
    if not os.path.exists(SHAKESPEARE):
        print(f"skipped: no tinyshakespeare at {SHAKESPEARE!r}")
        sys.exit(77)
    nbconvert = nbconvert_command()
    check(nbconvert is not None, "nbconvert is missing: install jupyter-nbconvert python3-nbconvert python3-ipykernel "
                                 "python3-matplotlib python3-pandas (./setup.sh)")
    for module in ("pandas", "matplotlib", "ipykernel"):
        check(importlib.util.find_spec(module) is not None, f"{sys.executable} lacks {module} (./setup.sh installs it)")

    run([DGPT, "prepare", "shakespeare_char", "--input", SHAKESPEARE])
    configs = []
    for name, types, _ in STRATEGIES:
        with open(os.path.join(WORK, f"{name}.py"), "w") as f:
            f.write(CONFIG.format(types=types))
        configs.append(f"{name}.py")

    # --- bench/compare.py ---------------------------------------------------------------------
    out = os.path.join(WORK, "cmp")
    p = run([sys.executable, COMPARE, *configs, "--dgpt", DGPT, "--out", out, "--project", "nvlink,100gbe",
             "--set", "seed=1337"])
    check("| config" in p.stdout and "nvlink ms" in p.stdout and "100gbe ms" in p.stdout, f"table printed:\n{p.stdout}")
    with open(os.path.join(out, "compare.csv")) as f:
        rows = list(csv.DictReader(f))
    columns = ["name", "model_type", "tp_size", "block_types", "final_train_loss", "final_val_loss", "best_val_loss",
               "forward_allreduce", "backward_allreduce", "collectives_per_step", "bytes_per_step", "ms_per_iter",
               "ms_ratio", "tokens_per_s", "tokens_per_s_ratio"]
    for net in ("nvlink", "100gbe"):
        columns += [f"projected_ms_{net}", f"projected_ratio_{net}", f"speedup_vs_all_tp_{net}"]
    check(rows and all(c in rows[0] for c in columns),
          f"compare.csv columns: missing {[c for c in columns if rows and c not in rows[0]]}")
    check(len(rows) == 3, f"compare.csv has {len(rows)} rows")
    check([r["name"] for r in rows] == [s[0] for s in STRATEGIES], f"names {[r['name'] for r in rows]}")
    doc = json.load(open(os.path.join(out, "compare.json")))
    jrows = doc["rows"]
    check(len(jrows) == 3, f"compare.json has {len(jrows)} rows")
    check(doc["project"] == ["nvlink", "100gbe"] and doc["seed"] == 1337, f"compare.json header {doc['project']}")
    for (name, types, fwd), r, c in zip(STRATEGIES, jrows, rows):
        check(r["model_type"] == "distributed_gpt" and r["tp_size"] == 2, f"{name}: model {r['model_type']}")
        check(r["block_types"] == eval(types), f"{name}: block_types {r['block_types']}")
        check(r["forward_allreduce"] == fwd and r["backward_allreduce"] == fwd and int(c["forward_allreduce"]) == fwd,
              f"{name}: all-reduces {r['forward_allreduce']}/{r['backward_allreduce']}, expected {fwd}")
        # SPEC §3: + 1 grad-norm all-reduce, + 1 replicated-gradient sync with spd/parallel blocks
        check(r["collectives_per_step"] == 2 * fwd + 1 + (name != "tp"), f"{name}: collectives {r['collectives_per_step']}")
        check(r["bytes_per_step"] > 2 * fwd * 4 * 32 * 32 * 4 - 1, f"{name}: bytes {r['bytes_per_step']}")
        for k in ("final_train_loss", "final_val_loss", "best_val_loss"):
            check(finite(r[k]) and 0 < r[k] < 5 and math.isfinite(float(c[k])), f"{name}: {k} {r[k]}")
        check(r["best_val_loss"] <= r["final_val_loss"] and r["final_val_loss"] < 4.1,
              f"{name}: val loss {r['best_val_loss']} / {r['final_val_loss']} (the model learns)")
        check(r["iters"] == 30 and finite(r["ms_per_iter"]) and r["ms_per_iter"] > 0 and r["tokens_per_s"] > 0,
              f"{name}: timing {r['ms_per_iter']} ms, {r['tokens_per_s']} tok/s")
        for net in ("nvlink", "100gbe"):
            check(finite(r[f"projected_ms_{net}"]) and r[f"projected_ms_{net}"] > 0 and
                  finite(r[f"speedup_vs_all_tp_{net}"]) and r[f"speedup_vs_all_tp_{net}"] > 0,
                  f"{name}: projection on {net}")
        check(os.path.isfile(os.path.join(out, r["run_dir"], "metrics.jsonl")) and
              os.path.isfile(os.path.join(out, r["bench_json"])), f"{name}: metrics.jsonl and bench.json")
    check(jrows[0]["ms_ratio"] == 1.0 and jrows[0]["speedup_vs_all_tp_nvlink"] == 1.0, "ratios against the first (all tp)")
    check(jrows[2]["projected_comm_ms_100gbe"] < jrows[1]["projected_comm_ms_100gbe"] < jrows[0]["projected_comm_ms_100gbe"],
          "fewer all-reduces, less projected communication")
    # the same seed and data: the first iteration's loss is the same for every strategy at initialisation
    first = [json.loads(open(os.path.join(out, r["run_dir"], "metrics.jsonl")).readline()) for r in jrows]
    initial = [e["val_loss"] for e in first]
    check(all(e["event"] == "eval" and e["iter"] == 0 for e in first) and max(initial) - min(initial) < 0.02,
          f"same seed and data: initial val losses {initial}")

    # a config that fails: dgpt's error line, exit 1
    with open(os.path.join(WORK, "bad.py"), "w") as f:
        f.write(CONFIG.format(types="['spd']*4").replace("n_head = 4", "n_head = 3"))
    p = run([sys.executable, COMPARE, "tp.py", "bad.py", "--dgpt", DGPT, "--out", os.path.join(WORK, "bad")], expect=1)
    check("error:" in p.stderr and "bad.py" in p.stderr and "n_head (3) must be divisible by tp_size (2)" in p.stderr
          and "Traceback" not in p.stderr, f"failing config: {p.stderr!r}")

    # a dgpt bench --compare file for projections.ipynb (rows with a dense one)
    bench_json = os.path.join(WORK, "bench.json")
    run([DGPT, "bench", "tp.py", "--iters=3", "--burnin=1", "--compare=['tp']*4; ['spd']*4; ['parallel']*4",
         "--project=nvlink,ib,100gbe", f"--json={bench_json}"])

    # --- the notebooks --------------------------------------------------------------------------
    if nbconvert is None:
        return
    fig = os.path.join(WORK, "fig")
    env = dict(ENV, DGPT_COMPARE_DIR=out, DGPT_FIGURES_DIR=fig)
    env.pop("DGPT_PROJECTION_INPUT", None)
    images = execute_notebook(nbconvert, "compare_strategies.ipynb", os.path.join(WORK, "executed"), env)
    check(images >= 3, f"compare_strategies.ipynb shows {images} figures")
    check_pngs(fig, COMPARE_PNGS, "compare_strategies.ipynb")
    images = execute_notebook(nbconvert, "projections.ipynb", os.path.join(WORK, "executed"), env)
    check(images >= 2, f"projections.ipynb shows {images} figures")
    check_pngs(fig, PROJECTION_PNGS, "projections.ipynb on compare.json")

    fig2 = os.path.join(WORK, "fig_bench")
    env = dict(ENV, DGPT_PROJECTION_INPUT=bench_json, DGPT_FIGURES_DIR=fig2, DGPT_ALPHA_US="10")
    execute_notebook(nbconvert, "projections.ipynb", os.path.join(WORK, "executed_bench"), env)
    check_pngs(fig2, PROJECTION_PNGS, "projections.ipynb on a dgpt bench --json file")
    # nothing written into the source tree
    check(not [f for f in os.listdir(NOTEBOOKS) if f.endswith(".png") and
               os.path.getmtime(os.path.join(NOTEBOOKS, f)) > START], "figures went to DGPT_FIGURES_DIR")


if __name__ == "__main__":
    START = time.time()
    t0 = time.monotonic()
    try:
        main()
    except AssertionError as e:
        FAILURES.append(str(e))
        print("FAIL:", e)
    finally:
        if not FAILURES:
            shutil.rmtree(WORK, ignore_errors=True)
        else:
            print(f"kept {WORK} for inspection")
    print(f"notebooks: {CHECKS[0]} checks, {len(FAILURES)} failed, {time.monotonic() - t0:.1f} s")
    sys.exit(1 if FAILURES else 0)
