#!/usr/bin/env python3
"""Train several configs the same way and compare them: loss, communication, speed, projections.

usage: /usr/bin/python3 bench/compare.py CONFIG.py [CONFIG.py ...] [--set key=value ...]
           [--dgpt build/dgpt] [--out DIR] [--project nvlink,ib,100gbe] [--seed 1337] [--skip 5]

Each config is trained with `dgpt train CONFIG --seed=SEED --log_interval=1 [--set overrides]
--out_dir=DIR/NAME` (NAME: the file name without .py, less a prefix all the names share; same seed
and data for every run), so each run has its own out_dir, metrics.jsonl and train.log under DIR.
Then the table is printed (Markdown) and written to DIR/compare.csv and DIR/compare.json, one row
per config:

  name, model_type, tp_size, block_types   the config as dgpt resolves it (`dgpt comms --json`)
  final_train_loss, final_val_loss         the last eval event of metrics.jsonl
  best_val_loss, val_loss_delta            the lowest val loss; its difference to the first config's
  forward_allreduce, backward_allreduce,   per optimizer step, as the train events of metrics.jsonl
  collectives_per_step, bytes_per_step     count them (SPEC §3)
  ms_per_iter, tokens_per_s (+ _ratio)     medians over the train events after the first --skip
  projected_ms_NET, projected_ratio_NET,   with --project: `dgpt bench CONFIG --iters=5 --burnin=2
  speedup_vs_all_tp_NET                    --project=...` (same overrides): the measured compute of
                                           a step + the alpha-beta time of its collectives on NET
                                           (its JSON is DIR/NAME/bench.json)

Ratios are against the first config. A config that fails stops the comparison with dgpt's error
line and exit code 1. The notebooks in notebooks/ plot a DIR (see notebooks/README.md).
"""
import argparse
import csv
import json
import math
import os
import statistics
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KINDS = ["forward_allreduce", "backward_allreduce", "replicated_grad_sync", "grad_norm_allreduce",
         "data_parallel_grad"]


class CompareError(Exception):
    pass


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


def summarize(name, config, run_dir, plan, skip):
    train, evals = read_metrics(os.path.join(run_dir, "metrics.jsonl"))
    if not train:
        raise CompareError(f"{name}: no train events in {run_dir}/metrics.jsonl")
    timed = train[skip:] if len(train) > skip else train[len(train) // 2:]
    last = train[-1]
    row = {
        "name": name,
        "config": config,
        "run_dir": name,
        "model_type": plan["model_type"],
        "tp_size": plan["tp_size"],
        "block_types": "dense" if plan["model_type"] == "gpt" else ",".join(plan["block_types"]),
        "iters": last["iter"],
        "final_train_loss": evals[-1]["train_loss"] if evals else None,
        "final_val_loss": evals[-1]["val_loss"] if evals else None,
        "best_val_loss": min(e["val_loss"] for e in evals) if evals else None,
        "forward_allreduce": last["forward_allreduce"],
        "backward_allreduce": last["backward_allreduce"],
        "collectives_per_step": last["collectives"],
        "bytes_per_step": last["comm_bytes"],
        "ms_per_iter": statistics.median(e["ms"] for e in timed),
        "tokens_per_s": statistics.median(e["tokens_per_s"] for e in timed),
        "timed_iters": len(timed),
    }
    for k in KINDS:  # per kind, for the projections notebook
        row[f"{k}_per_step"] = last.get(k, 0)
        row[f"{k}_bytes_per_step"] = last.get(f"{k}_bytes", 0)
    return row


def bench_projection(bench_json):
    """The config's own row of a `dgpt bench --json` file and its projections, per interconnect."""
    with open(bench_json) as f:
        j = json.load(f)
    own = j["rows"][0]["strategy"]  # without --compare, the first row is the config's pattern
    out = {}
    for p in j.get("projections", []):
        if p["strategy"] == own:
            out[p["interconnect"]] = {k: p[k] for k in ("alpha_s", "bandwidth_Bps", "compute_ms", "comm_ms",
                                                        "projected_ms", "speedup_vs_all_tp")}
            if not any(r["model_type"] == "distributed_gpt" and all(t == "tp" for t in r["block_types"])
                       for r in j["rows"]):
                out[p["interconnect"]]["speedup_vs_all_tp"] = None  # dense at tp_size 1: nothing to compare
    return j["rows"][0], out


def fmt(v, spec):
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return format(v, spec)


def human_bytes(b):
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(b) < 1000 or unit == "TB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.2f} {unit}"
        b /= 1000.0


def table(rows, nets):
    head = ["config", "block_types", "tp", "fwd AR", "bwd AR", "coll/step", "bytes/step", "train loss",
            "val loss", "best val", "ms/iter", "x", "tokens/s", "x"]
    for n in nets:
        head += [f"{n} ms", "x", "vs all-tp"]
    body = []
    for r in rows:
        line = [r["name"], short_types(r["block_types"]), str(r["tp_size"]), str(r["forward_allreduce"]),
                str(r["backward_allreduce"]), str(r["collectives_per_step"]), human_bytes(r["bytes_per_step"]),
                fmt(r["final_train_loss"], ".4f"), fmt(r["final_val_loss"], ".4f"), fmt(r["best_val_loss"], ".4f"),
                fmt(r["ms_per_iter"], ".2f"), fmt(r["ms_ratio"], ".3f"), fmt(r["tokens_per_s"], ".0f"),
                fmt(r["tokens_per_s_ratio"], ".3f")]
        for n in nets:
            s = r.get(f"speedup_vs_all_tp_{n}")
            line += [fmt(r.get(f"projected_ms_{n}"), ".2f"), fmt(r.get(f"projected_ratio_{n}"), ".3f"),
                     fmt(s, ".3f") + "x" if s is not None else "n/a"]
        body.append(line)
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    text = lambda cells: "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths)) + " |"
    return "\n".join([text(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|"] + [text(b) for b in body])


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
            progress(f"{name}: training ({plan['model_type']}, tp_size {plan['tp_size']}, "
                     f"{plan['forward_allreduce']} forward all-reduces per micro-step) ...")
            t0 = time.monotonic()
            run_dgpt(dgpt, ["train", config, *common, f"--out_dir={run_dir}"], f"{config}: dgpt train",
                     log=os.path.join(run_dir, "train.log"))
            progress(f"{time.monotonic() - t0:.1f} s", end=True)
            row = summarize(name, os.path.abspath(config), run_dir, plan, a.skip)
            if nets:
                progress(f"{name}: dgpt bench --project={a.project} ...")
                t0 = time.monotonic()
                bench_json = os.path.join(run_dir, "bench.json")
                run_dgpt(dgpt, ["bench", config, *common, f"--iters={a.bench_iters}", f"--burnin={a.bench_burnin}",
                                f"--json={bench_json}", f"--project={a.project}"], f"{config}: dgpt bench",
                         log=os.path.join(run_dir, "bench.log"))
                progress(f"{time.monotonic() - t0:.1f} s", end=True)
                bench_row, proj = bench_projection(bench_json)
                row["bench_json"] = os.path.join(name, "bench.json")
                row["bench_ms_per_step"] = bench_row["ms_per_step"]
                for n in nets:
                    p = proj.get(n)
                    if p is None:
                        raise CompareError(f"{name}: {bench_json} has no projection on {n}")
                    interconnects[n] = {"alpha_s": p["alpha_s"], "bandwidth_Bps": p["bandwidth_Bps"]}
                    row[f"projected_ms_{n}"] = p["projected_ms"]
                    row[f"projected_comm_ms_{n}"] = p["comm_ms"]
                    row[f"speedup_vs_all_tp_{n}"] = p["speedup_vs_all_tp"]
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
        r["ms_ratio"] = ratio(r["ms_per_iter"], base["ms_per_iter"])
        r["tokens_per_s_ratio"] = ratio(r["tokens_per_s"], base["tokens_per_s"])
        for n in nets:
            r[f"projected_ratio_{n}"] = ratio(r[f"projected_ms_{n}"], base[f"projected_ms_{n}"])

    columns = ["name", "model_type", "tp_size", "block_types", "iters", "final_train_loss", "final_val_loss",
               "best_val_loss", "val_loss_delta", "forward_allreduce", "backward_allreduce", "collectives_per_step",
               "bytes_per_step", "ms_per_iter", "ms_ratio", "tokens_per_s", "tokens_per_s_ratio"]
    for n in nets:
        columns += [f"projected_ms_{n}", f"projected_ratio_{n}", f"speedup_vs_all_tp_{n}"]
    columns += ["run_dir", "config"]
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
        "rows": [dict(r, block_types=r["block_types"].split(",") if r["model_type"] != "gpt" else []) for r in rows],
    }
    with open(os.path.join(out, "compare.json"), "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")

    print()
    print(table(rows, nets))
    print(f"\nfwd/bwd AR, coll/step, bytes/step: per optimizer step; ms/iter, tokens/s: medians of dgpt train's "
          f"iterations after the first {a.skip}; x: ratio to {base['name']}" +
          ("; NET ms: dgpt bench's compute + alpha-beta communication on NET, vs all-tp: speedup over the same model "
           "all tp" if nets else ""))
    print(f"wrote {os.path.join(out, 'compare.csv')} and compare.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
