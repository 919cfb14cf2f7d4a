#!/usr/bin/env python3
"""Validate the time model of SPEC §5 against real Gloo runs (a benchmark, not a test).

For W = tp_size processes on this machine (one TP group, L = 1 shard each), `dgpt bench` under
`dgpt launch --backend=gloo --fit_alpha_beta=True` measures, for each block_types pattern:
  - every real rank's step and its time in collectives: compute = step - comm;
  - the same rank's solo-rank step T_rank(W), timed while the other ranks time theirs;
  - the alpha-beta model fitted to this machine's all-reduces in the same run, and the projected
    step T_rank(W) + sum of the collectives' ring times, against the measured step.
It prints one Markdown table (the README's) and can write the raw JSON.

    OMP_NUM_THREADS=1 python3 bench/validate_timing.py --dgpt build/dgpt --nproc 2 \
        configs/train_shakespeare_char_cpu.py

Run it on a machine with more cores at --nproc 4 and 8 (threads per rank = cores / W, which
`dgpt launch` sets through OMP_NUM_THREADS when it is unset).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile


def patterns(n_layer):
    half = n_layer // 2
    return {
        "all-tp": f"['tp']*{n_layer}",
        "all-spd": f"['spd']*{n_layer}",
        "all-parallel": f"['parallel']*{n_layer}",
        "mixed": repr((["tp", "spd"] * n_layer)[:half] + ["parallel"] * (n_layer - half)),
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("config", help="a dgpt config (nanoGPT dialect); its n_layer sets the patterns")
    ap.add_argument("--dgpt", default="build/dgpt")
    ap.add_argument("--nproc", type=int, default=2, help="W = tp_size processes")
    ap.add_argument("--n_layer", type=int, default=4, help="layers of the patterns (overrides the config's)")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--burnin", type=int, default=5)
    ap.add_argument("--json", help="write the raw bench JSON here")
    ap.add_argument("overrides", nargs="*", help="--key=value overrides for dgpt")
    a = ap.parse_args()
    pats = patterns(a.n_layer)
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "bench.json")
        cmd = [os.path.abspath(a.dgpt), "launch", "--nproc", str(a.nproc), "--", "bench", os.path.abspath(a.config),
               "--backend=gloo", "--device=cpu", "--fit_alpha_beta=True", f"--tp_size={a.nproc}",
               f"--n_layer={a.n_layer}", "--model_type=distributed_gpt", f"--iters={a.iters}",
               f"--burnin={a.burnin}", "--compare=" + "; ".join(pats.values()), f"--json={out}", *a.overrides]
        print("$", " ".join(cmd), file=sys.stderr, flush=True)
        p = subprocess.run(cmd, capture_output=True, text=True)
        if p.returncode != 0:
            sys.exit(f"dgpt failed ({p.returncode}):\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}")
        j = json.load(open(out))
    if a.json:
        json.dump(j, open(a.json, "w"), indent=2)
    names = {v: k for k, v in pats.items()}
    fit = j["alpha_beta_fit"]
    threads = os.environ.get("OMP_NUM_THREADS", f"{os.cpu_count() // a.nproc} (cores / W)")
    print(f"W = tp_size = {a.nproc} Gloo processes, {threads} thread(s) each; alpha-beta fitted in the same run: "
          f"alpha {fit['alpha_s'] * 1e6:.1f} us, {fit['bandwidth_Bps'] / 1e9:.3f} GB/s (R^2 {fit['r2']:.3f})\n")
    print("| pattern | rank | real step ms | in collectives ms | real compute ms | solo T_rank ms | compute error "
          "| projected step ms | step error |")
    print("|---|---|---|---|---|---|---|---|---|")
    worst_c = worst_s = 0.0
    for v in j["validation"]:
        worst_c = max(worst_c, abs(v["compute_error"]))
        worst_s = max(worst_s, abs(v["projected_error"]))
        print(f"| {names.get(v['strategy'], v['strategy'])} | {v['rank']} | {v['step_ms']:.2f} | {v['comm_ms']:.2f} "
              f"| {v['compute_ms']:.2f} | {v['rank_ms']:.2f} | {100 * v['compute_error']:+.1f}% "
              f"| {v['projected_ms']:.2f} | {100 * v['projected_error']:+.1f}% |")
    print(f"\nlargest |error|: compute {100 * worst_c:.1f}% (goal 10%), step {100 * worst_s:.1f}% (goal 20%)")


if __name__ == "__main__":
    main()
