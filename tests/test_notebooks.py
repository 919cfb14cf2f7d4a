#!/usr/bin/env python3
"""The strategy-comparison workflow end to end: usage: test_notebooks.py DGPT_BINARY.

Prepares shakespeare_char in a temporary folder, runs bench/compare.py on five tiny configs
(all tp, all spd, spd + a run of parallel blocks, all ladder, and neox + ladder + spd with
vocab_parallel and 2 micro-steps; tp_size 2) with projections, checks its compare.csv /
compare.json against the plan (SPEC §3: forward all-reduces, of them the overlapping ones, 2 per
ladder block and micro-step, and the vocab-parallel collectives under their own names) and the
bench.json files it read (SPEC §5: projected = T_rank + exposed communication, an overlapping
all-reduce exposed at most in full, each speedup = the baseline's projected step over the row's, no
ratio of simulated time), then executes notebooks/compare_strategies.ipynb and notebooks/projections.ipynb
headless with nbconvert on those outputs (and projections.ipynb on a `dgpt bench --compare --json`
file too, whose solo ranks must beat the simulation of both shards), and notebooks/sensitivity.ipynb on
a `dgpt sensitivity --json` file of a tiny model trained here, and checks the PNGs they write.
nbconvert, pandas and matplotlib are required (setup.sh installs them): without them the test
fails, it is not skipped.
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
SHAKESPEARE = os.environ.get("DGPT_SHAKESPEARE") or os.path.join(REPO, "data", "shakespeare_char", "input.txt")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
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
# name, block_types, then per optimizer step: forward all-reduces, of them overlapping (2 per ladder block and
# micro-step), vocab_parallel's (embedding g, lm_head f, loss 3, per micro-step); lines appended to the config
VOCAB_MIX = "vocab_parallel = True\ngradient_accumulation_steps = 2\n"
STRATEGIES = [("tp", "['tp']*4", 8, 0, None, ""), ("spd", "['spd']*4", 4, 0, None, ""),
              ("spd_parallel", "['spd','parallel','parallel','parallel']", 2, 0, None, ""),
              ("ladder", "['ladder']*4", 8, 8, None, ""),
              ("vocab_mix", "['neox','ladder','ladder','spd']", 2 * 6, 2 * 4, (2, 2, 6), VOCAB_MIX)]
VOCAB_KINDS = ("vocab_forward_allreduce", "vocab_backward_allreduce", "vocab_loss_allreduce")
COMPARE_PNGS = ["compare_loss_curves.png", "compare_val_loss_vs_allreduce.png", "compare_step_time.png"]
NETS = ("nvlink", "100gbe")
# keys of the bench JSON before SPEC §5's three times (one misleading time): none may come back
OLD_BENCH_KEYS = ("ms_per_step", "ms_ratio", "tokens_per_s", "tokens_per_s_ratio", "mfu", "compute_ms")
PROJECTION_PNGS = ["projection_speedup_vs_bandwidth.png", "projection_step_time.png"]
SENSITIVITY_PNGS = ["sensitivity.png"]


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
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def close(a, b, rel=1e-9):
    return finite(a) and finite(b) and abs(a - b) <= rel * max(1.0, abs(a), abs(b))


def is_all_tp(row):
    return row["model_type"] == "distributed_gpt" and all(t == "tp" for t in row["block_types"])


def check_bench(bench, what):
    """SPEC §5 on a dgpt bench --json file: each projection is T_rank + comm, each speedup the baseline's projected
    step over the row's (the last all-tp / dense row, as dgpt bench takes them); the dense model on one device."""
    rows = bench["rows"]
    check(not [k for r in rows for k in OLD_BENCH_KEYS if k in r] and
          not [k for p in bench["projections"] for k in ("compute_ms",) if k in p], f"{what}: no pre-SPEC-5 keys")
    for r in rows:
        check(finite(r["rank_ms"]) and r["rank_ms"] > 0 and finite(r["sim_ms_per_step"]) and
              r["devices"] == (1 if r["model_type"] == "gpt" else r["tp_size"]), f"{what}: {r['strategy']} times")
    all_tp = [r for r in rows if is_all_tp(r)]
    dense = [r for r in rows if r["model_type"] == "gpt"]
    by = {(p["strategy"], p["interconnect"]): p for p in bench["projections"]}
    for p in bench["projections"]:
        r = next(x for x in rows if x["strategy"] == p["strategy"])
        tag = f"{what}: {p['strategy']} on {p['interconnect']}"
        check(p["rank_ms"] == r["rank_ms"] and p["devices"] == r["devices"], f"{tag}: rank_ms {p['rank_ms']}")
        check(close(p["projected_ms"], p["rank_ms"] + p["comm_ms"]) and p["comm_ms"] >= 0,
              f"{tag}: projected {p['projected_ms']} != T_rank {p['rank_ms']} + comm {p['comm_ms']}")
        check(p["comm_ms"] == 0 if r["devices"] == 1 else p["comm_ms"] > 0, f"{tag}: comm {p['comm_ms']}")
        for base, key in ((all_tp, "speedup_vs_all_tp"), (dense, "speedup_vs_dense")):
            if not base:
                check(p[key] is None, f"{tag}: {key} {p[key]} without a baseline")
                continue
            ref = by[(base[-1]["strategy"], p["interconnect"])]
            check(close(p[key], ref["projected_ms"] / p["projected_ms"]),
                  f"{tag}: {key} {p[key]} != {ref['projected_ms']} / {p['projected_ms']}")
    return all_tp, dense


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
    outputs = [o for c in executed["cells"] if c["cell_type"] == "code" for o in c.get("outputs", [])]
    errors = [o for o in outputs if o.get("output_type") == "error"]
    check(not errors, f"{name}: error outputs {errors}")
    images = sum(1 for o in outputs if "image/png" in o.get("data", {}))
    text = "".join("".join(o.get("text", "")) + "".join(o.get("data", {}).get("text/plain", "")) for o in outputs)
    return images, text


def check_pngs(fig_dir, names, what):
    for n in names:
        path = os.path.join(fig_dir, n)
        ok = os.path.isfile(path) and os.path.getsize(path) > 0
        if check(ok, f"{what}: {path} written and not empty"):
            check(open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n", f"{what}: {path} is a PNG")


def main():
    if not os.path.exists(SHAKESPEARE):
        print(("FAIL (CI=true, so not skipped): " if IN_CI else "skipped: ") + f"no tinyshakespeare at {SHAKESPEARE!r}")
        sys.exit(1 if IN_CI else 77)
    nbconvert = nbconvert_command()
    check(nbconvert is not None, "nbconvert is missing: install jupyter-nbconvert python3-nbconvert python3-ipykernel "
                                 "python3-matplotlib python3-pandas (./setup.sh)")
    for module in ("pandas", "matplotlib", "ipykernel"):
        check(importlib.util.find_spec(module) is not None, f"{sys.executable} lacks {module} (./setup.sh installs it)")

    run([DGPT, "prepare", "shakespeare_char", "--input", SHAKESPEARE])
    configs = []
    for name, types, *_, extra in STRATEGIES:
        with open(os.path.join(WORK, f"{name}.py"), "w") as f:
            f.write(CONFIG.format(types=types) + extra)  # a later assignment wins
        configs.append(f"{name}.py")

    # --- bench/compare.py ---------------------------------------------------------------------
    out = os.path.join(WORK, "cmp")
    p = run([sys.executable, COMPARE, *configs, "--dgpt", DGPT, "--out", out, "--project", "nvlink,100gbe",
             "--set", "seed=1337"])
    head = next((l for l in p.stdout.splitlines() if l.startswith("| config")), "")
    check(all(f"| {h} " in head for h in ("sim ms/iter", "T_rank ms", "nvlink proj ms", "100gbe proj ms", "vs all-tp",
                                          "vs dense")) and "SIMULATED" in p.stdout and "per rank" in p.stdout,
          f"table and legend printed:\n{p.stdout}")
    # no speed ratio of simulated time: the "x" columns follow T_rank and the projections only
    cells = [c.strip() for c in head.strip("|").split("|")]
    check([cells[i - 1] for i, c in enumerate(cells) if c == "x"] == ["T_rank ms", "nvlink proj ms", "100gbe proj ms"],
          f"ratio columns: {cells}")
    # fwd AR "a (b ovl)" where b of them overlap compute; vocab AR "n (fwd+bwd+loss)" or "off"
    printed = {l.split("|")[1].strip(): dict(zip(cells, (c.strip() for c in l.strip().strip("|").split("|"))))
               for l in p.stdout.splitlines() if l.startswith("| ") and not l.startswith("| config")}
    for name, _, fwd, ovl, vocab, _ in STRATEGIES:
        cell = printed.get(name, {})
        check(cell.get("fwd AR") == (f"{fwd} ({ovl} ovl)" if ovl else str(fwd)) and
              cell.get("vocab AR") == (f"{sum(vocab)} ({'+'.join(map(str, vocab))})" if vocab else "off"),
              f"{name}: printed fwd AR {cell.get('fwd AR')!r}, vocab AR {cell.get('vocab AR')!r}")
    check("b of the a forward all-reduces may overlap compute" in p.stdout and "max(0, t - T_next)" in p.stdout and
          "vocab AR: vocab_parallel's all-reduces per step" in p.stdout, f"legend of ovl and vocab AR:\n{p.stdout}")
    with open(os.path.join(out, "compare.csv")) as f:
        rows = list(csv.DictReader(f))
    columns = ["name", "model_type", "tp_size", "devices", "block_types", "final_train_loss", "final_val_loss",
               "best_val_loss", "forward_allreduce", "backward_allreduce", "collectives_per_step", "bytes_per_step",
               "train_backend", "ms_per_iter", "tokens_per_s", "rank_ms", "rank_ms_ratio", "rank_ms_vs_dense",
               "rank_tokens_per_s", "rank_mfu", "bench_sim_ms_per_step", "overlapping_allreduce", "vocab_parallel",
               "vocab_allreduce", *VOCAB_KINDS, "rank_overlap_compute_ms"]
    for net in NETS:
        columns += [f"projected_ms_{net}", f"projected_comm_ms_{net}", f"projected_ratio_{net}",
                    f"speedup_vs_all_tp_{net}", f"speedup_vs_dense_{net}", f"projected_tokens_per_s_{net}",
                    f"projected_mfu_{net}"]
    check(rows and all(c in rows[0] for c in columns),
          f"compare.csv columns: missing {[c for c in columns if rows and c not in rows[0]]}")
    check(rows and not [c for c in ("ms_ratio", "tokens_per_s_ratio", "bench_ms_per_step") if c in rows[0]],
          f"compare.csv: no ratio of simulated time {list(rows[0]) if rows else None}")
    check(len(rows) == len(STRATEGIES), f"compare.csv has {len(rows)} rows")
    check([r["name"] for r in rows] == [s[0] for s in STRATEGIES], f"names {[r['name'] for r in rows]}")
    doc = json.load(open(os.path.join(out, "compare.json")))
    jrows = doc["rows"]
    check(len(jrows) == len(STRATEGIES), f"compare.json has {len(jrows)} rows")
    check(doc["project"] == ["nvlink", "100gbe"] and doc["seed"] == 1337, f"compare.json header {doc['project']}")
    for (name, types, fwd, ovl, vocab, _), r, c in zip(STRATEGIES, jrows, rows):
        check(r["model_type"] == "distributed_gpt" and r["tp_size"] == 2, f"{name}: model {r['model_type']}")
        check(r["block_types"] == eval(types), f"{name}: block_types {r['block_types']}")
        check(r["forward_allreduce"] == fwd and r["backward_allreduce"] == fwd and int(c["forward_allreduce"]) == fwd,
              f"{name}: all-reduces {r['forward_allreduce']}/{r['backward_allreduce']}, expected {fwd}")
        # the overlapping ones: the plan's 2 per ladder block x micro-steps; in the train events alike
        micro = 2 if vocab else 1
        check(ovl == 2 * eval(types).count("ladder") * micro and r["overlapping_allreduce"] == ovl and
              int(c["overlapping_allreduce"]) == ovl, f"{name}: overlapping {r['overlapping_allreduce']}, expected {ovl}")
        last = [json.loads(l) for l in open(os.path.join(out, r["run_dir"], "metrics.jsonl")) if '"train"' in l][-1]
        check(last.get("forward_allreduce_overlapped", 0) == ovl, f"{name}: metrics.jsonl overlapped "
                                                                  f"{last.get('forward_allreduce_overlapped')}, plan {ovl}")
        # vocab_parallel's collectives under their own names: embedding g, lm_head f, 3 of the loss per micro-step
        kinds = vocab or (0, 0, 0)
        check(r["vocab_parallel"] == bool(vocab) and c["vocab_parallel"] == str(bool(vocab)) and
              [r[k] for k in VOCAB_KINDS] == list(kinds) and [int(c[k]) for k in VOCAB_KINDS] == list(kinds) and
              [r[f"{k}_per_step"] for k in VOCAB_KINDS] == list(kinds) and r["vocab_allreduce"] == sum(kinds) and
              int(c["vocab_allreduce"]) == sum(kinds), f"{name}: vocab {[r.get(k) for k in VOCAB_KINDS]}, plan {kinds}")
        check(r["vocab_loss_allreduce_bytes_per_step"] == kinds[2] * 4 * 32 * 4 and
              r["vocab_forward_allreduce_bytes_per_step"] == kinds[0] * 4 * 32 * 32 * 4,
              f"{name}: vocab bytes {r['vocab_forward_allreduce_bytes_per_step']}, "
              f"{r['vocab_loss_allreduce_bytes_per_step']}")
        # SPEC §3: + 1 grad-norm all-reduce, + 1 replicated-gradient sync with spd/parallel/neox blocks, + vocab's
        replicated = any(t in ("spd", "parallel", "neox") for t in eval(types))
        check(r["collectives_per_step"] == 2 * fwd + 1 + replicated + sum(kinds),
              f"{name}: collectives {r['collectives_per_step']}")
        check(r["bytes_per_step"] > 2 * fwd * 4 * 32 * 32 * 4 - 1, f"{name}: bytes {r['bytes_per_step']}")
        for k in ("final_train_loss", "final_val_loss", "best_val_loss"):
            check(finite(r[k]) and 0 < r[k] < 5 and math.isfinite(float(c[k])), f"{name}: {k} {r[k]}")
        check(r["best_val_loss"] <= r["final_val_loss"] and r["final_val_loss"] < 4.1,
              f"{name}: val loss {r['best_val_loss']} / {r['final_val_loss']} (the model learns)")
        check(r["iters"] == 30 and finite(r["ms_per_iter"]) and r["ms_per_iter"] > 0 and r["tokens_per_s"] > 0 and
              r["train_backend"] == "sim", f"{name}: training time {r['ms_per_iter']} ms, {r['tokens_per_s']} tok/s")
        check(r["devices"] == 2 and finite(r["rank_ms"]) and r["rank_ms"] > 0 and finite(r["bench_sim_ms_per_step"]),
              f"{name}: T_rank {r['rank_ms']} on {r['devices']} devices")
        check(os.path.isfile(os.path.join(out, r["run_dir"], "metrics.jsonl")) and
              os.path.isfile(os.path.join(out, r["bench_json"])), f"{name}: metrics.jsonl and bench.json")
        # the row is its bench.json's first row (the config's pattern), beside the dense model and all tp
        bench = json.load(open(os.path.join(out, r["bench_json"])))
        own = bench["rows"][0]
        all_tp, dense = check_bench(bench, f"{name}/bench.json")
        check(own["block_types"] == r["block_types"] and own["rank_ms"] == r["rank_ms"] and
              own["sim_ms_per_step"] == r["bench_sim_ms_per_step"], f"{name}: row from bench.json {own['strategy']}")
        check(own["overlapping_per_step"] == ovl and r["rank_overlap_compute_ms"] == own["rank_overlap_compute_ms"] and
              (own["rank_overlap_compute_ms"] > 0) == (ovl > 0) and len(own["rank_overlap_windows_ms"]) == ovl and
              [own[k] for k in VOCAB_KINDS] == list(kinds), f"{name}: bench.json overlapping "
                                                            f"{own['overlapping_per_step']}, vocab")
        # every config has its dense row (a vocab_parallel config's replicates the vocabulary: one device)
        check(len(dense) == 1 and all(d["devices"] == 1 and not d.get("vocab_parallel") for d in dense)
              and len(all_tp) == 1 and
              (name == "tp") == (all_tp[0] is own), f"{name}: bench.json rows {[x['strategy'] for x in bench['rows']]}")
        check((close(r["rank_ms_vs_dense"], own["rank_ms"] / dense[0]["rank_ms"]) if dense else
               r["rank_ms_vs_dense"] is None and c["rank_ms_vs_dense"] == "") and
              close(r["rank_ms_ratio"], r["rank_ms"] / jrows[0]["rank_ms"]), f"{name}: T_rank ratios")
        for net in NETS:
            proj = {(p["strategy"], p["interconnect"]): p for p in bench["projections"]}
            mine, tp = (proj[(x["strategy"], net)] for x in (own, all_tp[-1]))
            dn = proj[(dense[-1]["strategy"], net)] if dense else None
            check(close(r[f"projected_ms_{net}"], r["rank_ms"] + r[f"projected_comm_ms_{net}"]) and
                  r[f"projected_ms_{net}"] == mine["projected_ms"],
                  f"{name}: projected on {net} {r[f'projected_ms_{net}']} = T_rank {r['rank_ms']} + comm "
                  f"{r[f'projected_comm_ms_{net}']}")
            # vs all-tp is 1 for the all-tp row only because it is its own baseline: check the ratio itself
            check(close(r[f"speedup_vs_all_tp_{net}"], tp["projected_ms"] / mine["projected_ms"]) and
                  (close(r[f"speedup_vs_dense_{net}"], dn["projected_ms"] / mine["projected_ms"]) if dn else
                   r[f"speedup_vs_dense_{net}"] is None),
                  f"{name}: speedups on {net} {r[f'speedup_vs_all_tp_{net}']}, {r[f'speedup_vs_dense_{net}']}")
            check(close(r[f"projected_ratio_{net}"], r[f"projected_ms_{net}"] / jrows[0][f"projected_ms_{net}"]),
                  f"{name}: projected ratio on {net}")
    check(jrows[0]["rank_ms_ratio"] == 1.0 and jrows[0]["projected_ratio_nvlink"] == 1.0 and
          jrows[0]["speedup_vs_all_tp_nvlink"] == 1.0, "ratios against the first config (all tp, its own baseline)")
    check(jrows[2]["projected_comm_ms_100gbe"] < jrows[1]["projected_comm_ms_100gbe"] < jrows[0]["projected_comm_ms_100gbe"],
          "fewer all-reduces, less projected communication")
    # all ladder sends what all tp sends (the same counts and sizes), but its 8 forward all-reduces are exposed only
    # for max(0, t - T_next): at most tp's communication, and no less than tp's less those 8 in full
    by_name = {r["name"]: r for r in jrows}
    for net, (alpha_s, bw) in ((n, (doc["interconnects"][n]["alpha_s"], doc["interconnects"][n]["bandwidth_Bps"]))
                               for n in NETS):
        t_ms = (2 * alpha_s + by_name["tp"]["forward_allreduce_bytes_per_step"] / 8 / bw) * 1e3  # n = 2
        tp_comm, ladder_comm = by_name["tp"][f"projected_comm_ms_{net}"], by_name["ladder"][f"projected_comm_ms_{net}"]
        check(by_name["ladder"]["bytes_per_step"] == by_name["tp"]["bytes_per_step"] and
              tp_comm - 8 * t_ms - 1e-9 <= ladder_comm <= tp_comm + 1e-9,
              f"ladder's exposed communication on {net}: {ladder_comm} ms against tp's {tp_comm} ms, 8 x {t_ms} ms")
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

    # a dgpt bench --compare file for projections.ipynb (rows with a dense one); times are not asserted (benchmarks
    # are not tests), only how the file's numbers relate to each other
    bench_json = os.path.join(WORK, "bench.json")
    patterns = ["['tp']*4", "['spd']*4", "['parallel']*4", "['ladder']*4", "['neox']*4"]
    run([DGPT, "bench", "tp.py", "--iters=2", "--burnin=1",
         f"--compare={'; '.join(patterns)}", "--project=nvlink,ib,100gbe", f"--json={bench_json}"])
    bench = json.load(open(bench_json))
    check_bench(bench, "bench.json")
    check([r["strategy"] for r in bench["rows"]] == patterns + ["dense"] and
          len(bench["projections"]) == 3 * (len(patterns) + 1), f"bench.json rows {[r['strategy'] for r in bench['rows']]}")
    check([r["overlapping_per_step"] for r in bench["rows"]] == [0, 0, 0, 8, 0, 0],
          f"bench.json overlapping {[r['overlapping_per_step'] for r in bench['rows']]}")

    # --- the notebooks --------------------------------------------------------------------------
    if nbconvert is None:
        return
    fig = os.path.join(WORK, "fig")
    env = dict(ENV, DGPT_COMPARE_DIR=out, DGPT_FIGURES_DIR=fig)
    env.pop("DGPT_PROJECTION_INPUT", None)
    images, text = execute_notebook(nbconvert, "compare_strategies.ipynb", os.path.join(WORK, "executed"), env)
    check(images >= 3, f"compare_strategies.ipynb shows {images} figures")
    check("T_rank ms (per rank)" in text and "nvlink projected ms" in text and "cost of simulating" in text,
          f"compare_strategies.ipynb: its table names the per-rank, projected and simulated times:\n{text[:3000]}")
    check("8 (8 ovl)" in text and "12 (8 ovl)" in text and "vocab AR" in text and "10 (2+2+6)" in text,
          f"compare_strategies.ipynb: its table marks the overlapping and vocab all-reduces:\n{text[:3000]}")
    check_pngs(fig, COMPARE_PNGS, "compare_strategies.ipynb")
    # projections.ipynb re-derives every projection (T_rank + comm, the formula, both speedups) and asserts it
    images, text = execute_notebook(nbconvert, "projections.ipynb", os.path.join(WORK, "executed"), env)
    check(images >= 2, f"projections.ipynb shows {images} figures")
    # re-derived exactly, each overlapping all-reduce with its own T_next (bench.json's rank_overlap_windows_ms)
    check("dgpt's projections re-derived: 10 (strategy, interconnect) pairs agree (4 with overlapping all-reduces"
          in text and "within bounds only" not in text,
          f"projections.ipynb on compare.json checked 5 x 2 projections, 2 x 2 overlapping:\n{text[:3000]}")
    check_pngs(fig, PROJECTION_PNGS, "projections.ipynb on compare.json")

    fig2 = os.path.join(WORK, "fig_bench")
    env = dict(ENV, DGPT_PROJECTION_INPUT=bench_json, DGPT_FIGURES_DIR=fig2, DGPT_ALPHA_US="10")
    _, text = execute_notebook(nbconvert, "projections.ipynb", os.path.join(WORK, "executed_bench"), env)
    check("dgpt's projections re-derived: 18 (strategy, interconnect) pairs agree (3 with overlapping all-reduces"
          in text and "within bounds only" not in text, f"projections.ipynb on bench.json checked 6 x 3 projections, 1 x 3 overlapping:\n{text[:3000]}")
    check_pngs(fig2, PROJECTION_PNGS, "projections.ipynb on a dgpt bench --json file")

    # sensitivity.ipynb on a `dgpt sensitivity --json` file of a tiny all-tp model trained here (tp_size 2: 8 forward
    # all-reduces, a budget of 6 switches 2 blocks to spd)
    run([DGPT, "train", "tp.py", "--max_iters=30", "--eval_interval=30", "--always_save_checkpoint=True",
         "--out_dir=sens_run"])
    sens_json = os.path.join(WORK, "sensitivity.json")
    run([DGPT, "sensitivity", "--out_dir=sens_run", "--tokens=data/shakespeare_char/val.bin", "--device=cpu",
         "--to=spd", "--budget=6", "--max_windows=8", "--batch_size=4", f"--json={sens_json}"])
    sens = json.load(open(sens_json))
    check(len(sens["single"]) == 4 and len(sens["cumulative"]) == 4 and sens["budget"]["forward_allreduce"] <= 6,
          f"sensitivity.json: {len(sens['single'])} single, {len(sens['cumulative'])} cumulative, {sens.get('budget')}")
    fig3 = os.path.join(WORK, "fig_sensitivity")
    env = dict(ENV, DGPT_SENSITIVITY_JSON=sens_json, DGPT_FIGURES_DIR=fig3)
    images, text = execute_notebook(nbconvert, "sensitivity.ipynb", os.path.join(WORK, "executed_sensitivity"), env)
    check(images >= 1, f"sensitivity.ipynb shows {images} figures")
    check("suggested for at most 6 forward all-reduces" in text and "last 4" in text and "layer 3" in text,
          f"sensitivity.ipynb: its table of the single, cumulative and budget entries:\n{text[:3000]}")
    check_pngs(fig3, SENSITIVITY_PNGS, "sensitivity.ipynb")
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
