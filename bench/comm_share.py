#!/usr/bin/env python3
"""Share of step time spent in communication, per strategy, with Gloo on this machine.

usage: bench/comm_share.py [--dgpt build/dgpt] [--iters 30] [--procs 2,4]

For each block_types pattern it trains the same model (GPT n_layer 6, n_embd 128, n_head 4,
block 64, batch 8; data: data/shakespeare_char, prepare it first) in simulation and over Gloo
with W = 2 and 4 processes of one tensor-parallel group, and prints the median step time, the
median time inside collectives (measured by the real backend) and its share of the step.
The first 5 iterations are burn-in and not counted. It reads only `dgpt train`'s metrics.jsonl
(`ms`, `comm_ms`, the all-reduce counts), not `dgpt bench`'s JSON.

"sim ms/step" is the simulated step: all 4 shards in one process, what simulating costs, not a
prediction of 4 devices (for that, `dgpt bench --project` times a solo rank, SPEC §5). The W
columns are measured runs, with W processes sharing this machine's cores.
"""
import argparse
import json
import os
import statistics
import subprocess
import tempfile

PATTERNS = [("tp", "['tp']*6"), ("spd", "['spd']*6"), ("tp+spd", "['tp','spd']*3"),
            ("spd+parallel", "['spd','parallel','parallel']*2"), ("parallel", "['parallel']*6")]
MODEL = ["--device=cpu", "--dataset=shakespeare_char", "--model_type=distributed_gpt", "--tp_size=4",
         "--n_layer=6", "--n_head=4", "--n_embd=128", "--block_size=64", "--batch_size=8",
         "--gradient_accumulation_steps=1", "--eval_interval=100000", "--eval_iters=1", "--log_interval=1"]


def run(dgpt, out, iters, procs, types):
    args = ["train", *MODEL, f"--block_types={types}", f"--max_iters={iters}", f"--out_dir={out}"]
    if procs:
        args = ["launch", "--nproc", str(procs), "--", *args, "--backend=gloo"]
    subprocess.run([dgpt, *args], check=True, capture_output=True, text=True)
    events = [json.loads(l) for l in open(os.path.join(out, "metrics.jsonl"))]
    steps = [e for e in events if e["event"] == "train" and e["iter"] >= 5]
    return statistics.median(e["ms"] for e in steps), statistics.median(e["comm_ms"] for e in steps), steps[-1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dgpt", default="build/dgpt")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--procs", default="2,4")
    a = ap.parse_args()
    dgpt = os.path.abspath(a.dgpt)
    procs = [int(p) for p in a.procs.split(",")]
    tmp = tempfile.mkdtemp()
    head = "| strategy | fwd+bwd AR / step | sim ms/step |" + "".join(
        f" W={p} ms/step | W={p} comm ms | W={p} comm share |" for p in procs)
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for name, types in PATTERNS:
        sim_ms, _, last = run(dgpt, os.path.join(tmp, f"{name}_sim"), a.iters, 0, types)
        row = f"| {name} | {last['forward_allreduce'] + last['backward_allreduce']} | {sim_ms:.1f} |"
        for p in procs:
            ms, comm, _ = run(dgpt, os.path.join(tmp, f"{name}_{p}"), a.iters, p, types)
            row += f" {ms:.1f} | {comm:.1f} | {100 * comm / ms:.0f}% |"
        print(row, flush=True)
    print("(sim ms/step: all shards simulated in one process, the cost of simulating, not a 4-device step; "
          "W=...: measured over Gloo with W processes on this machine)")


if __name__ == "__main__":
    main()
