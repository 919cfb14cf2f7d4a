#!/usr/bin/env python3
"""Train several configs the same way and compare them: loss, communication, per-rank and projected time.

usage: /usr/bin/python3 bench/compare.py CONFIG.py [CONFIG.py ...] [--set key=value ...]
           [--dgpt build/dgpt] [--out DIR] [--project nvlink,ib,100gbe] [--seed 1337] [--skip 5] [--no_bench]

Each config is trained with `dgpt train CONFIG --seed=SEED --log_interval=1 [--set overrides]
--out_dir=DIR/NAME` (NAME: the file name without .py, less a prefix all the names share; same seed
and data for every run), so each run has its own out_dir, metrics.jsonl and train.log under DIR.
Then (unless --no_bench) `dgpt bench CONFIG --iters=5 --burnin=2 --compare=PATTERN [--project=...]`
with the same overrides times the config's pattern, the dense model and, with --project, the same
model all tp (its JSON is DIR/NAME/bench.json). The table is printed (Markdown) and written to
DIR/compare.csv and DIR/compare.json, one row per config. Three different times (SPEC §5):

  name, model_type, tp_size, devices,      the config as dgpt resolves it (`dgpt comms --json`);
  block_types                              devices: N, 1 for the dense model
  final_train_loss, final_val_loss         the last eval event of metrics.jsonl
  best_val_loss, val_loss_delta            the lowest val loss; its difference to the first config's
  forward_allreduce, backward_allreduce,   per optimizer step, as the train events of metrics.jsonl
  collectives_per_step, bytes_per_step     count them (SPEC §3)
  overlapping_allreduce                    of the forward all-reduces, those that may overlap compute
                                           (ladder's g, 2 per ladder block): `dgpt comms --json`'s
                                           overlapping_allreduce x micro-steps; table: "fwd AR" as
                                           "8 (8 ovl)"
  vocab_parallel, vocab_allreduce,         vocab_parallel (True/False) and its all-reduces per step,
  vocab_forward_allreduce,                 each kind under its own name (not in fwd/bwd AR; in
  vocab_backward_allreduce,                coll/step and bytes/step): the embedding's g, the lm_head's
  vocab_loss_allreduce                     f, the loss's 3 per micro-step; vocab_allreduce is their sum
                                           (table: "vocab AR", shown when a config has vocab_parallel)
  train_backend, ms_per_iter, tokens_per_s dgpt train's time: medians over the train events after the
                                           first --skip. With backend 'sim' (table: "sim ms/iter") it
                                           is SIMULATED time, all N shards on this one device: what
                                           simulating costs, never the speed of N devices, so no
                                           ratio is taken of it
  rank_ms (+ rank_ms_ratio)                dgpt bench: T_rank(N), the per-rank compute of an N-device
  rank_ms_vs_dense, rank_tokens_per_s,     step (a solo rank's step: one shard, nothing sent; the
  rank_mfu, bench_sim_ms_per_step,         dense model on one device); the ratio is to the first
  rank_overlap_compute_ms                  config's; bench_sim_ms_per_step: bench's simulated step;
                                           rank_overlap_compute_ms: the solo rank's compute while its
                                           overlapping all-reduces are in flight (sum of their T_next)
  projected_ms_NET (+ projected_ratio_NET) with --project: the projected N-device step on NET, T_rank
  projected_comm_ms_NET,                   + the exposed alpha-beta time of what a real rank sends
  projected_tokens_per_s_NET,              (an overlapping all-reduce: max(0, t - T_next)); comm: that
                                           communication part
  projected_mfu_NET
  speedup_vs_all_tp_NET,                   the projected step of the same model all tp on N devices
  speedup_vs_dense_NET                     (or dense on one device) over this config's, from the same
                                           bench run (> 1: faster; empty when there is no baseline)

Ratios ("x") are against the first config and only of T_rank and projected time. The dense row of a
vocab_parallel config replicates the vocabulary (one device, the same function). A config that
fails stops the comparison with dgpt's error line and exit code 1. The notebooks in notebooks/
plot a DIR (see notebooks/README.md).
"""
import argparse
import csv
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ["forward_allreduce", "backward_allreduce", "replicated_grad_sync", "grad_norm_allreduce",
         "data_parallel_grad", "loss_average", "vocab_forward_allreduce", "vocab_backward_allreduce",
         "vocab_loss_allreduce"]
VOCAB_KINDS = ["vocab_forward_allreduce", "vocab_backward_allreduce", "vocab_loss_allreduce"]
# What each time column is (compare.json "legend"; the printed table says the same below it).
LEGEND = {
    "ms_per_iter": "dgpt train: median ms per iteration; with train_backend 'sim' SIMULATED time (all N shards on "
                   "this one device): what simulating costs, not the speed of N devices",
    "tokens_per_s": "dgpt train: median tokens/s, the same time as ms_per_iter",
    "rank_ms": "dgpt bench: T_rank(N), per-rank compute of an N-device step (solo rank: one shard, nothing sent; "
               "dense: one device)",
    "rank_ms_ratio": "rank_ms over the first config's",
    "overlapping_allreduce": "forward all-reduces per step that may overlap compute (ladder's g, 2 per ladder block; "
                             "dgpt comms' overlapping_allreduce x micro-steps); projected as max(0, t - T_next)",
    "vocab_allreduce": "vocab_parallel's all-reduces per step (embedding g + lm_head f + 3 of the loss per micro-step), "
                       "not in forward/backward_allreduce",
    "rank_overlap_compute_ms": "dgpt bench: the solo rank's compute while its overlapping all-reduces are in flight "
                               "(the sum of their T_next)",
    "bench_sim_ms_per_step": "dgpt bench: the simulated step (all N shards on this one device), cost of simulation",
    "projected_ms_NET": "projected N-device step on NET: rank_ms + projected_comm_ms_NET (SPEC §5)",
    "projected_comm_ms_NET": "exposed alpha-beta time of the collectives a real rank sends per step on NET",
    "projected_ratio_NET": "projected_ms_NET over the first config's",
    "speedup_vs_all_tp_NET": "projected step of the same model all tp (N devices) over this one's, same bench run",
    "speedup_vs_dense_NET": "projected step of the dense model (one device) over this one's, same bench run",
}


class CompareError(Exception):
    pass


def column_legend(columns, nets):
    """LEGEND for the columns written, NET spelled out per interconnect."""
    out = {}
    for k, v in LEGEND.items():
        if k.endswith("_NET"):
            out.update({f"{k[:-4]}_{n}": v.replace("NET", n) for n in nets})
        elif k in columns:
            out[k] = v
    return out


def error_line(proc):
    """dgpt's `error: ...` line (the last one), else the last non-empty line of its output."""
    lines = (proc.stderr or "").splitlines() + (proc.stdout or "").splitlines()
    errors = [l for l in lines if l.startswith("error:")]
    if errors:
        return errors[-1]
    rest = [l for l in lines if l.strip()]
    return rest[-1] if rest else f"exit code {proc.returncode}"


def run_dgpt(dgpt, args, what, log=None):
    try:
        p = subprocess.run([dgpt, *args], capture_output=True, text=True)
    except OSError as e:
        raise CompareError(f"cannot run {dgpt}: {e}")
    if log:
        with open(log, "w") as f:
            f.write(f"$ {dgpt} {' '.join(args)}\n{p.stdout}{p.stderr}")
    if p.returncode != 0:
        line = error_line(p)
        raise CompareError(f"{what} failed (exit {p.returncode}): {line[len('error: '):] if line.startswith('error: ') else line}")
    return p


def read_metrics(path):
    train, evals = [], []
    with open(path) as f:
        for line in f:
            if line.strip():
                e = json.loads(line)
                (train if e.get("event") == "train" else evals if e.get("event") == "eval" else []).append(e)
    return train, evals


def unique_names(configs):
    """Config file names without .py, less a prefix they all share (train_shakespeare_char_spd -> spd)."""
    bases = [os.path.splitext(os.path.basename(c))[0] or "config" for c in configs]
    prefix = os.path.commonprefix(bases) if len(set(bases)) > 1 else ""
    cut = max(prefix.rfind("_"), prefix.rfind("-")) + 1  # at a word boundary
    if cut and all(len(b) > cut for b in bases):
        bases = [b[cut:] for b in bases]
    names, seen = [], {}
    for base in bases:
        seen[base] = seen.get(base, 0) + 1
        names.append(base if seen[base] == 1 else f"{base}_{seen[base]}")
    return names


def short_types(types):
    """tp,spd,parallel,parallel -> tp,spd,parallel*2 (for the printed table)."""
    if types == "dense":
        return types
    runs = []
    for t in types.split(","):
        if runs and runs[-1][0] == t:
            runs[-1][1] += 1
        else:
            runs.append([t, 1])
    return ",".join(t if n == 1 else f"{t}*{n}" for t, n in runs)


def ratio(a, b):
    return a / b if (a is not None and b not in (None, 0)) else None


def train_backend(run_dir):
    """The backend of a run, from the effective config at the top of its train.log ('sim' if not found)."""
    try:
        with open(os.path.join(run_dir, "train.log")) as f:
            for line in f:
                m = re.match(r"backend\s+=\s+'([^']*)'", line)
                if m:
                    return m.group(1)
    except OSError:
        pass
    return "sim"


def summarize(name, config, run_dir, plan, skip):
    train, evals = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    if not train:
        raise CompareError(f"{name}: no train events in {run_dir}/metrics.jsonl")
    timed = train[skip:] if len(train) > skip else train[len(train) // 2:]
    last = train[-1]
    dense = plan["model_type"] == "gpt"
    micro = plan.get("micro_steps_per_step", 1)
    row = {
        "name": name,
        "config": config,
        "run_dir": name,
        "model_type": plan["model_type"],
        "tp_size": plan["tp_size"],
        "devices": 1 if dense else plan["tp_size"],
        "block_types": "dense" if dense else ",".join(plan["block_types"]),
        "iters": last["iter"],
        "final_train_loss": evals[-1]["train_loss"] if evals else None,
        "final_val_loss": evals[-1]["val_loss"] if evals else None,
        "best_val_loss": min(e["val_loss"] for e in evals) if evals else None,
        "forward_allreduce": last["forward_allreduce"],
        "backward_allreduce": last["backward_allreduce"],
        "collectives_per_step": last["collectives"],
        "bytes_per_step": last["comm_bytes"],
        # the plan's count per micro-step (an older dgpt without the key: none), per optimizer step like the rest
        "overlapping_allreduce": plan.get("overlapping_allreduce", 0) * micro,
        "vocab_parallel": bool(plan.get("vocab_parallel", False)),
        "vocab_allreduce": sum(last.get(k, 0) for k in VOCAB_KINDS),
        "train_backend": train_backend(run_dir),
        "ms_per_iter": statistics.median(e["ms"] for e in timed),
        "tokens_per_s": statistics.median(e["tokens_per_s"] for e in timed),
        "timed_iters": len(timed),
    }
    for k in KINDS:  # per kind, for the projections notebook
        row[f"{k}_per_step"] = last.get(k, 0)
        row[f"{k}_bytes_per_step"] = last.get(f"{k}_bytes", 0)
    for k in VOCAB_KINDS:  # CSV columns, as forward_allreduce
        row[k] = last.get(k, 0)
    return row


def pattern_literal(plan):
    """The config's block_types as a --compare item (a Python list literal); None for the dense model."""
    if plan["model_type"] == "gpt":
        return None
    return "[" + ", ".join(repr(t) for t in plan["block_types"]) + "]"


def bench_results(bench_json):
    """The config's own row of a `dgpt bench --json` file (its first row) and its projections, per interconnect."""
    with open(bench_json) as f:
        j = json.load(f)
    own = j["rows"][0]
    out = {}
    for p in j.get("projections", []):
        if p["strategy"] == own["strategy"]:
            out[p["interconnect"]] = {k: p.get(k) for k in (
                "alpha_s", "bandwidth_Bps", "devices", "rank_ms", "comm_ms", "projected_ms", "tokens_per_s", "mfu",
                "speedup_vs_all_tp", "speedup_vs_dense")}
    return own, out


def fmt(v, spec):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return format(v, spec)


def human_bytes(b):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(b) < 1000 or unit == "TB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.2f} {unit}"
        b /= 1000.0


def forward_cell(r):
    """8, or 8 (8 ovl) when some of them may overlap compute (ladder's g)."""
    ovl = r.get("overlapping_allreduce") or 0
    return f"{r['forward_allreduce']} ({ovl} ovl)" if ovl else str(r["forward_allreduce"])


def vocab_cell(r):
    """off, or the vocab_parallel all-reduces per step: 10 (2+2+6), embedding g + lm_head f + loss."""
    if not r.get("vocab_parallel"):
        return "off"
    return f"{r['vocab_allreduce']} ({'+'.join(str(r.get(k, 0)) for k in VOCAB_KINDS)})"


def table(rows, nets, bench):
    sim = all(r["train_backend"] == "sim" for r in rows)
    train_ms, train_tok = ("sim ms/iter", "sim tok/s") if sim else ("train ms/iter", "train tok/s")
    vocab = any(r.get("vocab_parallel") for r in rows)
    head = ["config", "block_types", "tp", "fwd AR", "bwd AR"] + (["vocab AR"] if vocab else []) + [
            "coll/step", "bytes/step", "train loss", "val loss", "best val", train_ms, train_tok]
    if bench:
        head += ["T_rank ms", "x"]
    for n in nets:
        head += [f"{n} proj ms", "x", "vs all-tp", "vs dense"]
    times = lambda v: fmt(v, ".3f") + "x" if v is not None else "n/a"
    body = []
    for r in rows:
        line = [r["name"], short_types(r["block_types"]), str(r["tp_size"]), forward_cell(r),
                str(r["backward_allreduce"])] + ([vocab_cell(r)] if vocab else []) + [
                str(r["collectives_per_step"]), human_bytes(r["bytes_per_step"]),
                fmt(r["final_train_loss"], ".4f"), fmt(r["final_val_loss"], ".4f"), fmt(r["best_val_loss"], ".4f"),
                fmt(r["ms_per_iter"], ".2f"), fmt(r["tokens_per_s"], ".0f")]
        if bench:
            line += [fmt(r.get("rank_ms"), ".2f"), fmt(r.get("rank_ms_ratio"), ".3f")]
        for n in nets:
            line += [fmt(r.get(f"projected_ms_{n}"), ".2f"), fmt(r.get(f"projected_ratio_{n}"), ".3f"),
                     times(r.get(f"speedup_vs_all_tp_{n}")), times(r.get(f"speedup_vs_dense_{n}"))]
        body.append(line)
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    text = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([text(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [text(b) for b in body])


def legend(rows, nets, bench, skip):
    """Which time each column is, printed under the table."""
    first = rows[0]["name"]
    backends = sorted({r["train_backend"] for r in rows})
    sim = backends == ["sim"]
    lines = ["fwd/bwd AR, coll/step, bytes/step: per optimizer step, what a real rank sends (SPEC §3)."]
    if any(r.get("overlapping_allreduce") for r in rows):
        lines.append("fwd AR \"a (b ovl)\": b of the a forward all-reduces may overlap compute (ladder's g, 2 per "
                     "ladder block); the others block." + (" A projection counts each overlapping one for "
                     "max(0, t - T_next), T_next the solo rank's compute while it is in flight." if nets else ""))
    if any(r.get("vocab_parallel") for r in rows):
        lines.append("vocab AR: vocab_parallel's all-reduces per step, \"n (fwd+bwd+loss)\": the embedding's g, the "
                     "lm_head's f, 3 of the loss per micro-step; not in fwd/bwd AR, in coll/step and bytes/step.")
    lines.append(f"sim ms/iter, sim tok/s: dgpt train, medians after the first {skip} iterations, SIMULATED (all N "
                 "shards on this one device): what simulating costs, not the speed of N devices; no ratio is taken of "
                 "them." if sim else
                 f"train ms/iter, train tok/s: dgpt train, medians after the first {skip} iterations (backend "
                 f"{'/'.join(backends)}; 'sim' rows are simulated time: the cost of simulating, not of N devices).")
    if bench:
        lines.append(f"T_rank ms: dgpt bench, per rank: the compute of one rank of an N-device step (a solo rank, one "
                     f"shard, nothing sent; the dense model on one device); x: ratio to {first}.")
    if nets:
        lines.append(f"NET proj ms: projected N-device step on NET = T_rank + the exposed alpha-beta time of its "
                     f"collectives (SPEC §5); x: ratio to {first}; vs all-tp / vs dense: the projected step of the "
                     f"same model all tp on N devices / dense on one device over this one's (> 1: faster), from the "
                     f"same bench run.")
    if not bench:
        lines.append("(--no_bench: no per-rank or projected time, so nothing here says which strategy is faster.)")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    ap.add_argument("configs", nargs="+", metavar="CONFIG.py", help="config files, one run each")
    ap.add_argument("--set", dest="overrides", action="append", nargs="+", default=[], metavar="key=value",
                    help="override for every run (repeatable), as dgpt's --key=value")
    ap.add_argument("--dgpt", default=os.path.join(REPO, "build", "dgpt"), help="the dgpt binary (default: %(default)s)")
    ap.add_argument("--out", default=os.path.join(REPO, "notebooks", "out", "compare"),
                    help="output folder (default: %(default)s, where the notebooks look)")
    ap.add_argument("--project", default="", help="interconnects for dgpt bench --project, e.g. nvlink,ib,100gbe")
    ap.add_argument("--seed", type=int, default=1337, help="seed of every run (default: %(default)s)")
    ap.add_argument("--skip", type=int, default=5, help="train events left out of the timing medians (default: 5)")
    ap.add_argument("--bench_iters", type=int, default=5, help="timed steps of dgpt bench (default: 5)")
    ap.add_argument("--bench_burnin", type=int, default=2, help="untimed steps of dgpt bench (default: 2)")
    ap.add_argument("--no_bench", action="store_true",
                    help="skip dgpt bench: only dgpt train's (simulated) time, no per-rank or projected time")
    a = ap.parse_intermixed_args(argv)

    overrides = []
    for item in (x for group in a.overrides for x in group):
        key, eq, value = item.lstrip("-").partition("=")
        if not eq or not key:
            ap.error(f"--set expects key=value, got {item!r}" +
                     (" (put the config files before --set)" if item.endswith(".py") else ""))
        if key == "out_dir":
            ap.error("--set out_dir: each run's out_dir is DIR/NAME under --out")
        overrides.append(f"--{key}={value}")
    for c in a.configs:
        if not os.path.isfile(c):
            ap.error(f"no such config file: {c}")
    dgpt = os.path.abspath(a.dgpt)
    if not os.access(dgpt, os.X_OK):
        ap.error(f"no dgpt binary at {dgpt} (build it: cmake --build build, or pass --dgpt)")
    nets = [n.split(":")[0] for n in a.project.split(",") if n.strip()] if a.project else []
    if nets and a.no_bench:
        ap.error("--project needs dgpt bench: drop --no_bench")
    bench = not a.no_bench

    out = os.path.abspath(a.out)
    os.makedirs(out, exist_ok=True)
    names = unique_names(a.configs)
    common = [f"--seed={a.seed}", "--log_interval=1", *overrides]  # a user's log_interval wins (later)
    rows, interconnects = [], {}
    pending = [False]  # a progress line waits for its end

    def progress(text, end=False):
        print(text, end="\n" if end else " ", flush=True)
        pending[0] = not end

    try:
        for name, config in zip(names, a.configs):
            run_dir = os.path.join(out, name)
            os.makedirs(run_dir, exist_ok=True)
            plan = json.loads(run_dgpt(dgpt, ["comms", config, *common, "--json"], f"{config}: dgpt comms").stdout)
            ovl = plan.get("overlapping_allreduce", 0)
            progress(f"{name}: training ({plan['model_type']}, tp_size {plan['tp_size']}, "
                     f"{plan['forward_allreduce']} forward all-reduces per micro-step"
                     f"{f', {ovl} overlapping' if ovl else ''}{', vocab_parallel' if plan.get('vocab_parallel') else ''}"
                     f") ...")
            t0 = time.monotonic()
            run_dgpt(dgpt, ["train", config, *common, f"--out_dir={run_dir}"], f"{config}: dgpt train",
                     log=os.path.join(run_dir, "train.log"))
            progress(f"{time.monotonic() - t0:.1f} s", end=True)
            row = summarize(name, os.path.abspath(config), run_dir, plan, a.skip)
            if bench:
                pattern = pattern_literal(plan)  # with --compare, dgpt bench also times the dense model
                extra = ([f"--compare={pattern}"] if pattern else []) + ([f"--project={a.project}"] if nets else [])
                progress(f"{name}: dgpt bench {' '.join(extra)} ...")
                t0 = time.monotonic()
                bench_json = os.path.join(run_dir, "bench.json")
                bench_args = ["bench", config, *common, f"--iters={a.bench_iters}", f"--burnin={a.bench_burnin}",
                              f"--json={bench_json}"]
                run_dgpt(dgpt, [*bench_args, *extra], f"{config}: dgpt bench", log=os.path.join(run_dir, "bench.log"))
                progress(f"{time.monotonic() - t0:.1f} s", end=True)
                bench_row, proj = bench_results(bench_json)
                row["bench_json"] = os.path.join(name, "bench.json")
                row["devices"] = bench_row.get("devices", row["devices"])
                row["rank_ms"] = bench_row["rank_ms"]
                row["rank_ms_vs_dense"] = bench_row.get("rank_ms_vs_dense")
                row["rank_tokens_per_s"] = bench_row.get("rank_tokens_per_s")
                row["rank_mfu"] = bench_row.get("rank_mfu")
                row["bench_sim_ms_per_step"] = bench_row.get("sim_ms_per_step")  # None in a real (gloo) run
                row["rank_overlap_compute_ms"] = bench_row.get("rank_overlap_compute_ms", 0.0)
                for n in nets:
                    p = proj.get(n)
                    if p is None:
                        raise CompareError(f"{name}: {bench_json} has no projection on {n}")
                    interconnects[n] = {"alpha_s": p["alpha_s"], "bandwidth_Bps": p["bandwidth_Bps"]}
                    row[f"projected_ms_{n}"] = p["projected_ms"]
                    row[f"projected_comm_ms_{n}"] = p["comm_ms"]
                    row[f"projected_tokens_per_s_{n}"] = p["tokens_per_s"]
                    row[f"projected_mfu_{n}"] = p["mfu"]
                    row[f"speedup_vs_all_tp_{n}"] = p["speedup_vs_all_tp"]
                    row[f"speedup_vs_dense_{n}"] = p["speedup_vs_dense"]
            rows.append(row)
    except CompareError as e:
        if pending[0]:
            print("failed", flush=True)
        print(f"error: {e}", file=sys.stderr)
        return 1

    base = rows[0]
    for r in rows:
        r["val_loss_delta"] = (r["best_val_loss"] - base["best_val_loss"]
                               if None not in (r["best_val_loss"], base["best_val_loss"]) else None)
        # speed ratios only of per-rank and projected time, never of simulated time
        if bench:
            r["rank_ms_ratio"] = ratio(r["rank_ms"], base["rank_ms"])
        for n in nets:
            r[f"projected_ratio_{n}"] = ratio(r[f"projected_ms_{n}"], base[f"projected_ms_{n}"])

    columns = ["name", "model_type", "tp_size", "devices", "block_types", "iters", "final_train_loss",
               "final_val_loss", "best_val_loss", "val_loss_delta", "forward_allreduce", "backward_allreduce",
               "collectives_per_step", "bytes_per_step", "train_backend", "ms_per_iter", "tokens_per_s"]
    if bench:
        columns += ["rank_ms", "rank_ms_ratio", "rank_ms_vs_dense", "rank_tokens_per_s", "rank_mfu",
                    "bench_sim_ms_per_step"]
    for n in nets:
        columns += [f"projected_ms_{n}", f"projected_comm_ms_{n}", f"projected_ratio_{n}", f"speedup_vs_all_tp_{n}",
                    f"speedup_vs_dense_{n}", f"projected_tokens_per_s_{n}", f"projected_mfu_{n}"]
    columns += ["run_dir", "config"]
    # added with ladder and vocab_parallel: after the older columns, so that those keep their places
    columns += ["overlapping_allreduce", "vocab_parallel", "vocab_allreduce", *VOCAB_KINDS]
    if bench:
        columns += ["rank_overlap_compute_ms"]
    with open(os.path.join(out, "compare.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in columns})
    doc = {
        "configs": [os.path.abspath(c) for c in a.configs],
        "overrides": overrides,
        "seed": a.seed,
        "dgpt": dgpt,
        "project": nets,
        "interconnects": interconnects,
        "columns": columns,
        "legend": column_legend(columns, nets),
        "rows": [dict(r, block_types=r["block_types"].split(",") if r["model_type"] != "gpt" else []) for r in rows],
    }
    with open(os.path.join(out, "compare.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

    print()
    print(table(rows, nets, bench))
    print()
    print(legend(rows, nets, bench, a.skip))
    print(f"wrote {os.path.join(out, 'compare.csv')} and compare.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
