#!/usr/bin/env python3
"""dgpt's training loop against PyTorch's: tests/train_reference.py (nanoGPT's train.py loop with
torch.optim.AdamW, get_lr, clip_grad_norm_ and gradient accumulation, over the SPEC §1 per-shard
model of gpt_reference.py) trains from dgpt's initial weights on the same micro-batches with the
same dropout masks, and dgpt's per-step losses, final weights and AdamW moments must equal it.

usage: test_training.py DGPT_BINARY SUITE   (suites: sim, gloo, vocab)

Every run has warmup and cosine decay, clipping that clips, 2 micro-steps per step, dropout 0.2 on
embeddings, attention probabilities and residual branches, and biases. float64: 1e-10 relative;
float32 (dense only): 1e-5.
"""
import json
import os
import re
import sys

import torch

from harness import WORK, check, main, metrics, prepare_shakespeare_char, run_dgpt

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
FIVE_END = "['tp','parallel','parallel','neox','spd','ladder']"  # and a lone ladder block at the end  # all five types: ladder runs next to parallel, at both ends
TOL = {"float64": 1e-10, "float32": 1e-5}
# Moments whose reference norm is below this are compared absolutely: the key bias of attention has
# an analytically zero gradient (softmax ignores a constant per row), so its moments are rounding noise.
MOMENT_FLOOR = {"exp_avg": 1e-9, "exp_avg_sq": 1e-16}


def dgpt_train(name, extra, nproc=0):
    args = ["train", *BASE, *extra, f"--out_dir={name}"]
    if nproc:
        run_dgpt("launch", "--nproc", str(nproc), "--", *args, "--backend=gloo")
    else:
        run_dgpt(*args)
    return metrics(name), torch.load(os.path.join(WORK, name, "ckpt.pt"), map_location="cpu")


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
    prepare_shakespeare_char()
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
    prepare_shakespeare_char()
    compare("tp2", ["--model_type=distributed_gpt", "--tp_size=2"], nproc=2)
    compare("spd2", ["--model_type=distributed_gpt", "--tp_size=2", "--block_types=['spd']*6"], nproc=2)
    compare("parallel_mean2", ["--model_type=distributed_gpt", "--tp_size=2", "--block_types=['parallel']*6",
                               "--parallel_merge=mean"], nproc=2)
    # the hybrid: 2 processes of 2 shards each, so shard masks are drawn for shards 2, 3 by rank 1
    compare("mixed4", ["--model_type=distributed_gpt", "--tp_size=4", f"--block_types={MIXED}"], nproc=2)
    compare("neox2", ["--model_type=distributed_gpt", "--tp_size=2", "--block_types=['neox']*6"], nproc=2)
    ladder = ["--model_type=distributed_gpt", "--tp_size=2", "--block_types=['ladder']*6"]
    overlapped = compare("ladder2", ladder, nproc=2)
    overlaps_recorded("ladder2", ladder, overlapped)
    # the same run with every collective blocking: the same sums in the same order, so the same numbers
    blocking, _ = dgpt_train("ladder2_blocking", [*ladder, "--dtype=float64", "--overlap_comm=False"], nproc=2)
    check([e["loss"] for e in blocking] == [e["loss"] for e in overlapped],
          "ladder over Gloo with overlap_comm=False: losses differ from the overlapped run's")
    check(all("forward_allreduce_overlapped" not in e for e in blocking), "overlap_comm=False still overlapped")
    five = ["--model_type=distributed_gpt", "--tp_size=4", f"--block_types={FIVE_END}"]
    overlaps_recorded("five4", five, compare("five4", five, nproc=2))
    # W = tp_size = 4 (one shard per process) for all five types, and the hybrid 2 x 2 for all-ladder
    five_w4 = ["--model_type=distributed_gpt", "--tp_size=4", f"--block_types={FIVE}"]
    overlaps_recorded("five4_w4", five_w4, compare("five4_w4", five_w4, nproc=4))
    ladder_hybrid = ["--model_type=distributed_gpt", "--tp_size=4", "--block_types=['ladder']*6"]
    overlaps_recorded("ladder4_hybrid", ladder_hybrid, compare("ladder4_hybrid", ladder_hybrid, nproc=2))


def overlaps_recorded(name, extra, events):
    """A real run tallies every ladder g as overlapped (SPEC §2): as many per step as the plan's
    overlapping all-reduces (2 micro-steps), each with the compute it was in flight during."""
    plan = json.loads(run_dgpt("comms", *BASE, *extra, "--json").stdout)
    want = 2 * plan["overlapping_allreduce"]
    check(want > 0, f"{name}: the plan has no overlapping all-reduces: {plan}")
    got = [e.get("forward_allreduce_overlapped", 0) for e in events]
    check(all(g == want for g in got), f"{name}: overlapped all-reduces per step {got}, plan {want}")
    check(all(e.get("forward_allreduce_overlap_ms", 0) > 0 and e["comm_overlap_ms"] > 0 for e in events),
          f"{name}: no in-flight compute recorded: {[e.get('forward_allreduce_overlap_ms') for e in events]}")
    check(all(e["forward_allreduce"] == 2 * plan["forward_allreduce"] for e in events), f"{name}: forward counts")
    print(f"{name}: {want} overlapped all-reduces per step, in flight during "
          f"{sum(e['comm_overlap_ms'] for e in events) / len(events):.2f} ms of compute on average", flush=True)


def counts_equal_plan(name, extra, events, dtype="float64"):
    """Every step's measured collectives, kind by kind, equal `dgpt comms`' plan (SPEC §3; 2 micro-steps)."""
    plan = json.loads(run_dgpt("comms", *BASE, *extra, f"--dtype={dtype}", "--json").stdout)
    per_micro = ["forward_allreduce", "backward_allreduce", "vocab_forward_allreduce", "vocab_backward_allreduce",
                 "vocab_loss_allreduce"]
    check(plan["vocab_forward_allreduce"] == 1 and plan["vocab_backward_allreduce"] == 1
          and plan["vocab_loss_allreduce"] == 3, f"{name}: plan {plan}")
    for e in events:
        ok = all(e[k] == 2 * plan[k] for k in per_micro)
        ok = ok and e["vocab_forward_allreduce_bytes"] == 2 * plan["vocab_forward_bytes"]
        ok = ok and e["vocab_backward_allreduce_bytes"] == 2 * plan["vocab_backward_bytes"]
        ok = ok and e["vocab_loss_allreduce_bytes"] == 2 * 3 * plan["vocab_loss_bytes"]
        ok = ok and e["vocab_logits_allreduce"] == 0
        ok = ok and e["replicated_grad_sync"] == plan["replicated_grad_sync"]
        ok = ok and e["grad_norm_allreduce"] == plan["grad_norm_allreduce"]
        ok = ok and e["collectives"] == plan["collectives_per_step"] and e["comm_bytes"] == plan["bytes_per_step"]
        check(ok, f"{name}: measured {e} vs plan {plan}")
    print(f"{name}: measured counts = plan ({plan['collectives_per_step']} collectives, "
          f"{plan['bytes_per_step']} bytes per step)", flush=True)


def suite_vocab():
    """vocab_parallel (SPEC §1): the same function as the replicated embedding, so the same reference
    (train_reference.py knows nothing of it). shakespeare_char's 65 symbols pad to 66 rows at tp_size 2
    and 68 at 4. Simulated, Gloo at W = tp_size = 2, and the hybrid W = 2 x 2 shards; the measured
    counts equal the plan; the hybrid's checkpoint evaluates as the Python reference does; a quickly
    trained tp_size-4 vocab-parallel checkpoint samples (greedy) the tokens of simulation without
    vocab_parallel at tp_size 1, of Gloo, and of the Python reference."""
    prepare_shakespeare_char()
    vocab = ["--model_type=distributed_gpt", "--vocab_parallel=True"]
    compare("vocab_sim4", [*vocab, "--tp_size=4", f"--block_types={MIXED}"])
    for name, extra in [("vocab_tp2", [*vocab, "--tp_size=2"]), ("vocab_hybrid4", [*vocab, "--tp_size=4"])]:
        events = compare(name, extra, nproc=2)
        counts_equal_plan(name, extra, events)
    ck = torch.load(os.path.join(WORK, "vocab_hybrid4", "ckpt.pt"), map_location="cpu")
    check(ck["model_args"]["vocab_parallel"] is True and ck["model_args"]["tp_size"] == 4, f"{ck['model_args']}")
    check(tuple(ck["model"]["transformer.wte.weight"].shape) == (65, 32), "dense wte without padding rows")
    check(tuple(ck["optimizer"]["state"]["transformer.wte.weight"]["exp_avg"].shape) == (65, 32), "dense moments")

    # dgpt eval of the hybrid's checkpoint (float32 model) against the reference's float64 loss: 1e-5
    from gpt_reference import SpecGPT
    import numpy as np
    T, windows = 16, 10
    val = torch.from_numpy(np.fromfile(os.path.join(WORK, "data/shakespeare_char/val.bin"), dtype=np.uint16)
                           .astype(np.int64))
    sd = {k: v.double() for k, v in ck["model"].items() if k != "lm_head.weight"}
    with torch.no_grad():
        _, ref_loss = SpecGPT(sd, ck["model_args"]).forward(val[: windows * T].view(windows, T),
                                                             val[1: windows * T + 1].view(windows, T))
    for tp, vp in [("4", []), ("2", []), ("1", []), ("4", ["--vocab_parallel=0"]), ("2", ["--vocab_parallel=1"])]:
        p = run_dgpt("eval", "--out_dir=vocab_hybrid4", "--tokens=data/shakespeare_char/val.bin",
                     f"--max_windows={windows}", "--batch_size=3", f"--tp_size={tp}", *vp)
        value = float(p.stdout.strip().splitlines()[-1].split()[1])
        check(abs(value - float(ref_loss)) <= 1e-5 * float(ref_loss),
              f"eval at tp_size {tp} {vp} (vocab_parallel checkpoint): {value} vs Python reference {float(ref_loss)}")

    # greedy samples: a checkpoint that has learnt something (300 steps of 16 at lr 1e-2, a few seconds),
    # trained vocab-parallel at tp_size 4
    quick = [*BASE, "--batch_size=16", "--gradient_accumulation_steps=1", "--learning_rate=1e-2", "--max_iters=300",
             "--eval_interval=300", "--lr_decay_iters=300", "--min_lr=1e-3", "--dropout=0.0", "--log_interval=50",
             "--out_dir=vocab_quick"]
    run_dgpt("train", *quick, *vocab, "--tp_size=4")
    sample = ["sample", "--out_dir=vocab_quick", "--device=cpu", "--num_samples=1", "--max_new_tokens=40",
              "--start=ROMEO:"]
    # A model this small, trained this briefly, may greedily repeat a few frequent characters (its argmax
    # chain depends on rounding), so a seeded draw (temperature 0.8, top_k 200, top_p 0.9) is compared as well:
    # it reads the whole distribution, and it must not be a constant.
    samples = {}
    for name, draw in (("greedy", ["--temperature=0"]), ("seeded draw", ["--top_p=0.9", "--seed=5"])):
        args = [*sample, *draw]
        plain_draw = run_dgpt(*args, "--model_type=gpt")  # simulation, tp_size 1, no vocab parallelism
        outputs = {"sim tp_size 4 vocab_parallel": run_dgpt(*args).stdout,
                   "sim tp_size 1 vocab_parallel": run_dgpt(*args, "--tp_size=1").stdout,
                   "sim tp_size 4, vocab_parallel=False": run_dgpt(*args, "--vocab_parallel=False").stdout}
        real = run_dgpt("launch", "--nproc", "2", "--", *args, "--backend=gloo", "--comm_timeout=60")
        rank0 = "\n".join(l[len("[rank 0] "):] for l in real.stdout.splitlines() if l.startswith("[rank 0] "))
        check(plain_draw.stdout.count("\n---------------\n") == 1 and len(plain_draw.stdout) == 6 + 40 + 17,
              f"{draw}: sample {plain_draw.stdout!r}")
        for what, text in outputs.items():
            check(text == plain_draw.stdout, f"{what} {draw}: {text!r} vs without vocab_parallel {plain_draw.stdout!r}")
        check(plain_draw.stdout[:46] in rank0, f"Gloo W=2 tp_size 4 vocab_parallel {draw}: {rank0!r} vs {plain_draw.stdout!r}")
        samples[name] = plain_draw.stdout[:46]
    greedy, drawn = samples["greedy"], samples["seeded draw"]
    check(len(set(drawn[6:])) > 5, f"the quick model's seeded draw is not a constant: {drawn!r}")
    m = re.search(r"sampling: (\d+) forward all-reduces \+ (\d+) vocab-parallel embedding all-reduces and (\d+) "
                  r"logits gathers", real.stdout)
    check(m is not None and m.group(1) == str(12 * 40) and m.group(2) == "40" and m.group(3) == "40",
          f"sampling's measured collectives: {real.stdout[-600:]!r}")
    from gpt_reference import Reference
    ref = Reference(os.path.join(WORK, "vocab_quick", "ckpt.pt"))
    meta = json.load(open(os.path.join(WORK, "data/shakespeare_char/meta.json")))
    ids = ref.greedy([meta["stoi"][c] for c in "ROMEO:"], 40)
    check("".join(meta["itos"][i] for i in ids) == greedy, f"Python reference greedy vs {greedy!r}")
    print(f"vocab_quick: greedy samples equal (sim 4 and 1 vocab-parallel, Gloo 2 x 2, dense, reference): "
          f"{greedy!r}; seeded draws equal (the same but the reference): {drawn!r}", flush=True)


if __name__ == "__main__":
    main(globals())
