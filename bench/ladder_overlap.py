#!/usr/bin/env python3
"""What ladder's asynchronous all-reduces hide in a real run: all-ladder against all-tp over Gloo.

usage: /usr/bin/python3 bench/ladder_overlap.py [--dgpt build/dgpt] [--nproc 2] [--iters 40] [--rounds 3]
           [--layers 6] [--project nvlink,pcie,100gbe]

Trains the same model (n_layer --layers, n_embd 128, n_head 4, block 64, batch 8, float32;
data: data/shakespeare_char, prepare it first) for --iters steps, W = tp_size = --nproc processes
of one tensor-parallel group, one thread each (OMP_NUM_THREADS=1), three ways:

  tp               all-tp: every all-reduce blocking
  ladder           all-ladder: each sub-layer's forward all-reduce (g) in flight while the next
                   sub-layer computes, waited for where its result is first read (SPEC §1, §2)
  ladder blocking  all-ladder with overlap_comm=False: the same model and numbers, g blocking

The runs are interleaved, --rounds times, so that drift of the machine falls on all three alike;
the first 5 steps of each run are burn-in. From metrics.jsonl (rank 0) it prints medians per step:
the step, the time blocked in collectives (`comm_ms`), of it in forward and backward all-reduces,
and the compute the asynchronous all-reduces were in flight during (`comm_overlap_ms`: an upper
bound of the communication hidden). Ratios are against all-tp and against ladder blocking of the
same round. Then, with --project, `dgpt bench` (simulation) projects both strategies with SPEC
§5's overlap rule: each overlapping all-reduce exposed for max(0, t - T_next), T_next the solo
rank's measured compute while it is in flight.

Every number here is measured on this machine: W processes share its cores, so an all-reduce in
flight competes with the compute it overlaps (Gloo reduces and copies on the CPU).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODEL = ["--device=cpu", "--dataset=shakespeare_char", "--model_type=distributed_gpt", "--n_head=4",
         "--n_embd=128", "--block_size=64", "--batch_size=8", "--gradient_accumulation_steps=1", "--dropout=0.0",
         "--dtype=float32", "--eval_interval=100000", "--eval_iters=1", "--log_interval=1"]
BURNIN = 5


def run_train(dgpt, work, name, nproc, iters, extra):
    out_dir = os.path.join(work, name)
    args = [dgpt, "launch", "--nproc", str(nproc), "--", "train", *MODEL, f"--tp_size={nproc}",
            f"--max_iters={iters + BURNIN - 1}", f"--out_dir={out_dir}", "--backend=gloo", *extra]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    p = subprocess.run(args, cwd=REPO, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"error: {' '.join(args)} failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        events = [e for e in map(json.loads, f) if e["event"] == "train" and e["iter"] >= BURNIN]
    return {
        "ms": statistics.median(e["ms"] for e in events),
        "comm_ms": statistics.median(e["comm_ms"] for e in events),
        "fwd_ms": statistics.median(e["forward_allreduce_ms"] for e in events),
        "bwd_ms": statistics.median(e["backward_allreduce_ms"] for e in events),
        "overlap_ms": statistics.median(e.get("comm_overlap_ms", 0.0) for e in events),
        "overlapped": events[-1].get("forward_allreduce_overlapped", 0),
        "fwd": events[-1]["forward_allreduce"],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dgpt", default=os.path.join(REPO, "build", "dgpt"))
    ap.add_argument("--nproc", type=int, default=2)
    ap.add_argument("--iters", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--layers", type=int, default=6)
    ap.add_argument("--project", default="nvlink,pcie,100gbe")
    opt = ap.parse_args()
    dgpt = os.path.abspath(opt.dgpt)
    if not os.path.exists(os.path.join(REPO, "data", "shakespeare_char", "train.bin")):
        sys.exit("error: no data/shakespeare_char/train.bin: run `dgpt prepare shakespeare_char` first")
    L = opt.layers
    runs = [("tp", [f"--n_layer={L}", f"--block_types=['tp']*{L}"]),
            ("ladder", [f"--n_layer={L}", f"--block_types=['ladder']*{L}"]),
            ("ladder blocking", [f"--n_layer={L}", f"--block_types=['ladder']*{L}", "--overlap_comm=False"])]
    results = {name: [] for name, _ in runs}
    with tempfile.TemporaryDirectory(prefix="dgpt_ladder_overlap_") as work:
        for r in range(opt.rounds):
            for name, extra in runs:
                results[name].append(run_train(dgpt, work, f"{name.replace(' ', '_')}_{r}", opt.nproc, opt.iters, extra))
                print(f"round {r + 1}/{opt.rounds} {name}: {results[name][-1]['ms']:.2f} ms/step", file=sys.stderr,
                      flush=True)

    def med(name, key):
        return statistics.median(x[key] for x in results[name])

    def ratio(name, base):  # per round, then the median
        return statistics.median(a["ms"] / b["ms"] for a, b in zip(results[name], results[base]))

    print(f"\nGloo, W = tp_size = {opt.nproc} processes, 1 thread each; n_layer {L}, n_embd 128, batch 8 x 64; "
          f"medians of {opt.rounds} interleaved rounds of {opt.iters} steps (rank 0)\n")
    print("| strategy | fwd AR (overlapped) | step ms | in collectives ms | fwd AR ms | bwd AR ms | "
          "in flight during compute ms | step vs all-tp | step vs ladder blocking |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, _ in runs:
        last = results[name][-1]
        print(f"| {name} | {last['fwd']} ({last['overlapped']}) | {med(name, 'ms'):.2f} | {med(name, 'comm_ms'):.2f} | "
              f"{med(name, 'fwd_ms'):.2f} | {med(name, 'bwd_ms'):.2f} | {med(name, 'overlap_ms'):.2f} | "
              f"{ratio(name, 'tp'):.3f} | {ratio(name, 'ladder blocking'):.3f} |")
    print("\n(in collectives: time blocked in them, issue and wait of the asynchronous ones included; in flight "
          "during compute: of the asynchronous ones, issue to wait, an upper bound of what they hid)")

    if opt.project:
        p = subprocess.run([dgpt, "bench", *MODEL, f"--tp_size={opt.nproc}", f"--n_layer={L}",
                            f"--compare=['tp']*{L}; ['ladder']*{L}", f"--project={opt.project}", "--iters=20",
                            "--burnin=3", "--json=-"], cwd=REPO, capture_output=True, text=True,
                           env=dict(os.environ, OMP_NUM_THREADS="1"))
        if p.returncode != 0:
            sys.exit(f"error: dgpt bench failed:\n{p.stderr[-2000:]}")
        j = json.loads(p.stdout)
        print(f"\nprojected (SPEC §5, `dgpt bench`, solo ranks of N = {opt.nproc}, 1 thread): T_rank + exposed "
              "collectives, ladder's with the overlap rule\n")
        print("| interconnect | strategy | T_rank ms | exposed comm ms | projected ms | vs all-tp |")
        print("|---|---|---|---|---|---|")
        for row in j["projections"]:
            if row["strategy"] == "dense":
                continue
            print(f"| {row['interconnect']} | {row['strategy']} | {row['rank_ms']:.2f} | {row['comm_ms']:.3f} | "
                  f"{row['projected_ms']:.2f} | {row['speedup_vs_all_tp']:.3f}x |")


if __name__ == "__main__":
    main()
