#!/usr/bin/env python3
"""dgpt's training loop against PyTorch's: tests/train_reference.py (nanoGPT's train.py loop with
torch.optim.AdamW, get_lr, clip_grad_norm_ and gradient accumulation, over the SPEC §1 per-shard
model of gpt_reference.py) trains from dgpt's initial weights on the same micro-batches with the
same dropout masks, and dgpt's per-step losses, final weights and AdamW moments must equal it.

usage: test_training.py DGPT_BINARY SUITE   (suites: sim, gloo)

Every run has warmup and cosine decay, clipping that clips, 2 micro-steps per step, dropout 0.2 on
embeddings, attention probabilities and residual branches, and biases. float64: 1e-10 relative;
float32 (dense only): 1e-5.
"""
import json
import os
import sys

import torch

from harness import WORK, check, main, run_dgpt, shakespeare_text

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import train_reference  # noqa: E402

STEPS = 12  # optimizer steps compared; the checkpoint at iter STEPS holds their result
BASE = ["--device=cpu", "--dataset=shakespeare_char", "--n_layer=6", "--n_head=4", "--n_embd=32",
        "--block_size=16", "--batch_size=3", "--gradient_accumulation_steps=2", "--dropout=0.2", "--bias=True",
        "--learning_rate=3e-3", "--warmup_iters=3", "--lr_decay_iters=10", "--min_lr=3e-4", "--decay_lr=True",
        "--weight_decay=0.1", "--beta2=0.99", "--grad_clip=1.0", "--eval_iters=1", "--log_interval=1",
        f"--max_iters={STEPS}", f"--eval_interval={STEPS}", "--always_save_checkpoint=True",
        "--save_initial_weights=True", "--comm_timeout=60", "--seed=4242"]
MIXED = "['parallel','tp','spd','parallel','parallel','parallel']"  # a lone run at the start, a long one at the end
FIVE = "['ladder','ladder','parallel','neox','spd','tp']"  # all five: a ladder run at the start, next to parallel
FIVE_END = "['tp','parallel','parallel','neox','spd','ladder']"  # and a lone ladder block at the end
TOL = {"float64": 1e-10, "float32": 1e-5}
# Moments whose reference norm is below this are compared absolutely: the key bias of attention has
# an analytically zero gradient (softmax ignores a constant per row), so its moments are rounding noise.
MOMENT_FLOOR = {"exp_avg": 1e-9, "exp_avg_sq": 1e-16}


def prepare():
    run_dgpt("prepare", "shakespeare_char", "--input", shakespeare_text())


def dgpt_train(name, extra, nproc=0):
    args = ["train", *BASE, *extra, f"--out_dir={name}"]
    if nproc:
        run_dgpt("launch", "--nproc", str(nproc), "--", *args, "--backend=gloo")
    else:
        run_dgpt(*args)
    with open(os.path.join(WORK, name, "metrics.jsonl")) as f:
        events = [e for e in map(json.loads, f) if e["event"] == "train"]
    return events, torch.load(os.path.join(WORK, name, "ckpt.pt"), map_location="cpu")


def without_key_bias(name, a, b, dtype):
    """In float32 the key third of c_attn.bias is left out: its gradient is analytically zero (softmax
    ignores a constant per row), so it is float32 rounding noise that AdamW turns into full-size steps
    (measured: 2.7e-5 relative where q and v agree to 4e-7). float64 compares it with the rest."""
    if dtype == "float64" or not name.endswith("attn.c_attn.bias"):
        return a, b
    C = a.numel() // 3
    keep = torch.cat([torch.arange(0, C), torch.arange(2 * C, 3 * C)])
    return a[keep], b[keep]


def rel(a, b, floor=0.0):
    return float((a.double() - b.double()).norm() / max(float(b.double().norm()), floor, 1e-300))


def compare(name, extra, nproc=0, dtype="float64"):
    """One dgpt run against the reference trained from its own init.pt."""
    events, ck = dgpt_train(name, [*extra, f"--dtype={dtype}"], nproc)
    ref = train_reference.train(os.path.join(WORK, name, "init.pt"),
                                os.path.join(WORK, "data", "shakespeare_char", "train.bin"), STEPS)
    tol = TOL[dtype]
    what = f"{name} ({'gloo W=' + str(nproc) if nproc else 'sim'}, {dtype})"
    check([e["iter"] for e in events] == list(range(STEPS + 1)), f"{what}: logged iterations")
    loss_err = max(abs(e["loss"] - r) / abs(r) for e, r in zip(events, ref.losses))
    lr_err = max(abs(e["lr"] - r) / r for e, r in zip(events, ref.lrs))
    check(loss_err <= tol, f"{what}: per-step losses differ by {loss_err:.2e} (tolerance {tol:g})")
    check(lr_err <= 1e-14, f"{what}: learning rates differ by {lr_err:.2e}")
    clipped = sum(n > float(ck["config"]["grad_clip"]) for n in ref.grad_norms)
    # clipping that clips, and steps it leaves alone (the coefficient's clamp at 1)
    check(2 <= clipped < len(ref.grad_norms), f"{what}: the reference clipped {clipped} of {len(ref.grad_norms)} steps")

    weights = {k: v for k, v in ck["model"].items() if k != "lm_head.weight"}
    check(set(weights) == set(ref.weights), f"{what}: tensor names {sorted(set(weights) ^ set(ref.weights))}")
    w_err = max(rel(*without_key_bias(n, weights[n], ref.weights[n], dtype)) for n in ref.weights)
    check(w_err <= tol, f"{what}: final weights differ by {w_err:.2e} relative")
    state = ck["optimizer"]["state"]
    check(set(state) == set(ref.moments), f"{what}: moment names differ")
    m_err = {k: max(rel(state[n][k], ref.moments[n][k], MOMENT_FLOOR[k]) for n in ref.moments)
             for k in ("exp_avg", "exp_avg_sq")}
    for k, e in m_err.items():
        check(e <= tol, f"{what}: AdamW {k} differs by {e:.2e} relative")
    steps_ok = all(int(state[n]["step"]) == int(ref.moments[n]["step"]) == STEPS for n in ref.moments)
    check(steps_ok, f"{what}: AdamW step counts")
    print(f"{what}: losses {loss_err:.1e}, weights {w_err:.1e}, exp_avg {m_err['exp_avg']:.1e}, "
          f"exp_avg_sq {m_err['exp_avg_sq']:.1e}; {clipped}/{len(ref.grad_norms)} steps clipped, "
          f"loss {ref.losses[0]:.4f} -> {ref.losses[-1]:.4f}", flush=True)
    return events


def suite_sim():
    prepare()
    dense = compare("dense", ["--model_type=gpt"])
    compare("dense32", ["--model_type=gpt"], dtype="float32")
    tp = compare("tp4", ["--model_type=distributed_gpt", "--tp_size=4"])
    # tp computes the dense block at every tp_size, dropout included (the masks are per replicated
    # tensor and per head): the same trajectory as the dense model.
    err = max(abs(a["loss"] - b["loss"]) / b["loss"] for a, b in zip(tp, dense))
    check(err <= 1e-10, f"all-tp at tp_size 4 vs dense: losses differ by {err:.2e}")
    compare("spd2", ["--model_type=distributed_gpt", "--tp_size=2", "--block_types=['spd']*6"])
    compare("parallel_sum2", ["--model_type=distributed_gpt", "--tp_size=2", "--block_types=['parallel']*6"])
    compare("parallel_mean4", ["--model_type=distributed_gpt", "--tp_size=4", "--block_types=['parallel']*6",
                               "--parallel_merge=mean"])
    compare("mixed4", ["--model_type=distributed_gpt", "--tp_size=4", f"--block_types={MIXED}"])
    compare("mixed2_nobias", ["--model_type=distributed_gpt", "--tp_size=2", f"--block_types={MIXED}",
                              "--bias=False"])
    neox = compare("neox4", ["--model_type=distributed_gpt", "--tp_size=4", "--block_types=['neox']*6"])
    ladder = compare("ladder2", ["--model_type=distributed_gpt", "--tp_size=2", "--block_types=['ladder']*6"])
    compare("five4", ["--model_type=distributed_gpt", "--tp_size=4", f"--block_types={FIVE}"])
    # neox and ladder compute the same function at every tp_size (their masks are per replicated tensor)
    for name, run4, types in [("neox", neox, "['neox']*6"), ("ladder", ladder, "['ladder']*6")]:
        run1, _ = dgpt_train(f"{name}1", ["--model_type=distributed_gpt", "--tp_size=1", f"--block_types={types}",
                                          "--dtype=float64"])
        err = max(abs(a["loss"] - b["loss"]) / b["loss"] for a, b in zip(run4, run1))
        check(err <= 1e-10, f"{name} at another tp_size vs tp_size 1: losses differ by {err:.2e}")


def suite_gloo():
    prepare()
    compare("tp2", ["--model_type=distributed_gpt", "--tp_size=2"], nproc=2)
    compare("spd2", ["--model_type=distributed_gpt", "--tp_size=2", "--block_types=['spd']*6"], nproc=2)
    compare("parallel_mean2", ["--model_type=distributed_gpt", "--tp_size=2", "--block_types=['parallel']*6",
                               "--parallel_merge=mean"], nproc=2)
    # the hybrid: 2 processes of 2 shards each, so shard masks are drawn for shards 2, 3 by rank 1
    compare("mixed4", ["--model_type=distributed_gpt", "--tp_size=4", f"--block_types={MIXED}"], nproc=2)
    compare("neox2", ["--model_type=distributed_gpt", "--tp_size=2", "--block_types=['neox']*6"], nproc=2)
    compare("ladder2", ["--model_type=distributed_gpt", "--tp_size=2", "--block_types=['ladder']*6"], nproc=2)
    compare("five4", ["--model_type=distributed_gpt", "--tp_size=4", f"--block_types={FIVE_END}"], nproc=2)


if __name__ == "__main__":
    main(globals())
