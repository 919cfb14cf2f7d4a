#!/usr/bin/env python3
"""End-to-end tests of the dgpt binary: usage: test_cli.py DGPT_BINARY SUITE.

Suites: prepare, errors, resume, checkpoint, inference. Each runs dgpt as a user would, in a
temporary folder, on the real tinyshakespeare text (../shared/data/tinyshakespeare/input.txt).
"""
import json
import math
import os
import re
import shutil
import subprocess
import sys

from harness import DGPT, SHAKESPEARE, WORK, check, error_case, losses, main, metrics, prepare_shakespeare_char, skip
from harness import run_dgpt as run

# A model small enough that a run of a dozen iterations takes seconds on 2 cores.
TINY = ["--device=cpu", "--dataset=shakespeare_char", "--n_layer=4", "--n_head=4", "--n_embd=32",
        "--block_size=32", "--batch_size=4", "--eval_iters=2", "--warmup_iters=2", "--learning_rate=3e-3",
        "--lr_decay_iters=20", "--min_lr=3e-4"]


# ---------------------------------------------------------------------------------------------


def suite_prepare():
    p = run("prepare", "shakespeare_char", "--input", SHAKESPEARE)
    check("train has 1003854 tokens" in p.stdout and "val has 111540 tokens" in p.stdout, p.stdout)
    d = os.path.join(WORK, "data/shakespeare_char")
    check(os.path.getsize(f"{d}/train.bin") == 2 * 1003854, "train.bin size")
    check(os.path.getsize(f"{d}/val.bin") == 2 * 111540, "val.bin size")
    meta = json.load(open(f"{d}/meta.json"))
    check(meta["vocab_size"] == 65 and meta["itos"][0] == "\n" and meta["itos"][-1] == "z", "meta.json vocab")
    # nanoGPT's encoding: ids of the sorted characters, first 90% train, the rest val.
    text = open(SHAKESPEARE, encoding="utf-8").read()
    stoi = {c: i for i, c in enumerate(sorted(set(text)))}
    n = int(len(text) * 0.9)
    train = open(f"{d}/train.bin", "rb").read()
    val = open(f"{d}/val.bin", "rb").read()
    check(train[:2000] == b"".join(stoi[c].to_bytes(2, "little") for c in text[:1000]), "train.bin head")
    check(val[-2000:] == b"".join(stoi[c].to_bytes(2, "little") for c in text[-1000:]), "val.bin tail")
    check(train[-2:] == stoi[text[n - 1]].to_bytes(2, "little"), "split point")
    # an input.txt already in the output folder is used without --input
    other = os.path.join(WORK, "other")
    os.makedirs(other)
    shutil.copy(SHAKESPEARE, os.path.join(other, "input.txt"))
    run("prepare", "shakespeare_char", "--out", other)
    check(open(f"{other}/val.bin", "rb").read() == val, "prepare from DIR/input.txt")
    error_case(["prepare", "shakespeare_char", "--input", "/nonexistent/input.txt"], "/nonexistent/input.txt")
    error_case(["prepare", "tinystories"], "unknown dataset 'tinystories'")
    for sub in ["prepare", "train", "sample", "eval", "comms"]:
        p = run(sub, "--help")
        check("Usage" in p.stdout or "usage" in p.stdout.lower(), f"{sub} --help")
    check("block_types" in run("train", "--help").stdout, "train --help lists config keys")


def suite_errors():
    prepare_shakespeare_char()
    base = ["train", *TINY, "--max_iters=1", "--out_dir=out"]
    error_case([*base, "--n_embed=64"], "n_embed", "n_embd")
    error_case([*base, "--n_layer=3.5"], "n_layer", "3.5")
    error_case([*base, "--block_types=['spd'*"], "block_types")
    error_case([*base, "--model_type=distributed_gpt", "--block_types=['spd']*3"], "block_types", "3", "4")
    error_case([*base, "--model_type=distributed_gpt", "--block_types=['tp','spd','foo','tp']"], "foo")
    error_case([*base, "--model_type=distributed_gpt", "--tp_size=3"], "n_head", "3")
    error_case([*base, "--init_from=gpt3"], "init_from", "'gpt2'")
    cfg = os.path.join(WORK, "bad.py")
    open(cfg, "w").write("n_layer = 4\nbatch_sise = 8  # typo\n")
    error_case(["train", cfg, *TINY], "batch_sise", "bad.py:2", "batch_size")
    # data files: missing, empty, odd-sized, too short
    error_case([*base, "--dataset=nothing"], "data/nothing/train.bin")
    for name, content, needle in [("empty", b"", "empty"), ("odd", b"\x01\x00\x02", "odd"),
                                  ("short", b"\x01\x00" * 10, "too few")]:
        d = os.path.join(WORK, "data", name)
        os.makedirs(d, exist_ok=True)
        for split in ["train", "val"]:
            open(os.path.join(d, f"{split}.bin"), "wb").write(content)
        error_case([*base, f"--dataset={name}"], needle)
    # resume without a checkpoint, and from corrupt ones
    error_case([*base, "--init_from=resume", "--out_dir=none"], "none/ckpt.pt")
    os.makedirs(os.path.join(WORK, "corrupt"))
    open(os.path.join(WORK, "corrupt/ckpt.pt"), "wb").write(b"PK\x03\x04 this is not a checkpoint")
    error_case([*base, "--init_from=resume", "--out_dir=corrupt"], "corrupt/ckpt.pt")
    error_case(["sample", "--out_dir=corrupt", "--device=cpu"], "corrupt/ckpt.pt", "invalid")
    error_case(["eval", "--out_dir=corrupt", "--tokens=data/shakespeare_char/val.bin"], "invalid")
    error_case(["comms", "--n_head=6", "--tp_size=4", "--model_type=distributed_gpt"], "n_head")
    # NCCL: built only with a CUDA LibTorch, and always on GPUs
    p = run("train", *TINY, "--backend=nccl", "--max_iters=1", expect=None)
    check(p.returncode == 2 and ("LibTorch with CUDA" in p.stderr or "device='cuda'" in p.stderr),
          f"--backend=nccl here: {p.returncode} {p.stderr!r}")
    p = run("train", *TINY, "--device=cuda", "--max_iters=1", expect=None)
    if p.returncode != 0:  # a CPU-only LibTorch: asking for CUDA explicitly is an error
        check(p.returncode == 2 and "CUDA" in p.stderr, f"--device=cuda without CUDA: {p.stderr!r}")


def suite_resume():
    """2k iterations in one run == k, then resume for k more: bitwise on CPU."""
    prepare_shakespeare_char()
    k = 6
    common = [*TINY, "--model_type=distributed_gpt", "--tp_size=2",
              "--block_types=['tp','spd','parallel','parallel']", "--dropout=0.1", "--bias=True",
              "--gradient_accumulation_steps=2", "--grad_clip=0.5", f"--eval_interval={k}",
              "--log_interval=1", "--always_save_checkpoint=True"]
    # float64 too: its checkpoint's weights must come back without passing through float32
    for dtype, full_dir, split_dir in [("float32", "full", "split"), ("float64", "full64", "split64")]:
        run("train", *common, f"--dtype={dtype}", f"--max_iters={2 * k}", f"--out_dir={full_dir}")
        run("train", *common, f"--dtype={dtype}", f"--max_iters={k}", f"--out_dir={split_dir}")
        run("train", *common, f"--dtype={dtype}", f"--max_iters={2 * k}", f"--out_dir={split_dir}", "--init_from=resume")
        full = losses(full_dir)
        split = metrics(split_dir, "train")
        check(sorted(full) == list(range(2 * k + 1)), f"{dtype} full run iterations {sorted(full)}")
        # the first run also did iteration k (after saving); the resumed run redoes it identically
        split_iters = [e["iter"] for e in split]
        check(split_iters == list(range(k + 1)) + list(range(k, 2 * k + 1)), f"split iterations {split_iters}")
        for e in split:
            check(e["loss"] == full[e["iter"]],
                  f"{dtype} iter {e['iter']}: resumed loss {e['loss']!r} != {full[e['iter']]!r}")
        ev_full = {e["iter"]: e["val_loss"] for e in metrics(full_dir, "eval")}
        ev_split = {e["iter"]: e["val_loss"] for e in metrics(split_dir, "eval")}
        check(ev_full == ev_split, f"{dtype} eval losses {ev_full} vs {ev_split}")
        check(not any(".tmp" in f for f in os.listdir(os.path.join(WORK, split_dir))), "temporary files left")

    # An all-tp model resumes at another tp_size (and as nanoGPT's dense GPT computes the same), with
    # dropout: its masks are per replicated tensor and per head, the same at every tp_size.
    tp = [*TINY, "--model_type=distributed_gpt", f"--eval_interval={k}", "--log_interval=1",
          "--always_save_checkpoint=True", "--grad_clip=1.0", "--dropout=0.1"]
    run("train", *tp, "--tp_size=2", f"--max_iters={2 * k}", "--out_dir=tp_full")
    run("train", *tp, "--tp_size=2", f"--max_iters={k}", "--out_dir=tp_split")
    shutil.copytree(os.path.join(WORK, "tp_split"), os.path.join(WORK, "tp_split4"))
    run("train", *tp, "--tp_size=4", f"--max_iters={2 * k}", "--out_dir=tp_split4", "--init_from=resume")
    ref = losses("tp_full")
    for e in metrics("tp_split4", "train"):
        # float32; tp_size changes the summation order only: 1e-5 relative
        check(abs(e["loss"] - ref[e["iter"]]) <= 1e-5 * abs(ref[e["iter"]]),
              f"tp 2->4 resume iter {e['iter']}: {e['loss']} vs {ref[e['iter']]}")
    # spd/parallel blocks are tied to their tp_size
    error_case(["train", *common, "--tp_size=4", f"--max_iters={2 * k}", "--out_dir=split", "--init_from=resume"],
               "tp_size")


def suite_checkpoint():
    """ckpt.pt is readable by Python's torch.load, in nanoGPT's dense layout, and a dense
    forward pass written here from those weights gives the loss `dgpt eval` prints."""
    prepare_shakespeare_char()
    try:
        import torch
        import torch.nn.functional as F
    except ImportError:
        skip("this python3 has no torch (install python3-torch)")
    run("train", *TINY, "--model_type=distributed_gpt", "--tp_size=4", "--bias=True", "--max_iters=8",
        "--eval_interval=4", "--out_dir=tp4")
    path = os.path.join(WORK, "tp4/ckpt.pt")
    # PyTorch >= 2.6 loads with weights_only=True by default: the pickle may reference only the
    # globals its restricted unpickler allows (1.13's early version lacks float opcodes, so it
    # cannot be asked; the globals are checked directly instead).
    import pickletools
    import zipfile
    with zipfile.ZipFile(path) as z:
        pkl = z.read(next(n for n in z.namelist() if n.endswith("data.pkl")))
    allowed = {"torch._utils _rebuild_tensor_v2", "collections OrderedDict", "torch FloatStorage",
               "torch DoubleStorage", "torch LongStorage", "torch ByteStorage"}
    used = {arg for op, arg, _ in pickletools.genops(pkl) if op.name == "GLOBAL"}
    check(used <= allowed, f"pickle globals outside the weights-only set: {used - allowed}")
    major = int(torch.__version__.split(".")[0])
    ck = torch.load(path, map_location="cpu", **({"weights_only": True} if major >= 2 else {}))
    for key in ["model", "optimizer", "model_args", "iter_num", "best_val_loss", "config"]:
        check(key in ck, f"checkpoint key {key}")
    a = ck["model_args"]
    check(a["tp_size"] == 4 and a["block_types"] == ["tp"] * 4 and a["parallel_merge"] == "sum", f"model_args {a}")
    check(ck["iter_num"] == 8, f"iter_num {ck['iter_num']}")
    sd = ck["model"]
    C, L, V, T = 32, 4, 65, 32
    names = {"transformer.wte.weight": (V, C), "transformer.wpe.weight": (T, C), "lm_head.weight": (V, C),
             "transformer.ln_f.weight": (C,), "transformer.ln_f.bias": (C,)}
    for l in range(L):
        p = f"transformer.h.{l}."
        names.update({p + "ln_1.weight": (C,), p + "ln_1.bias": (C,), p + "ln_2.weight": (C,), p + "ln_2.bias": (C,),
                      p + "attn.c_attn.weight": (3 * C, C), p + "attn.c_attn.bias": (3 * C,),
                      p + "attn.c_proj.weight": (C, C), p + "attn.c_proj.bias": (C,),
                      p + "mlp.c_fc.weight": (4 * C, C), p + "mlp.c_fc.bias": (4 * C,),
                      p + "mlp.c_proj.weight": (C, 4 * C), p + "mlp.c_proj.bias": (C,)})
    check(set(sd) == set(names), f"state dict names differ: {set(sd) ^ set(names)}")
    for n, shape in names.items():
        check(n in sd and tuple(sd[n].shape) == shape, f"{n} shape")
    check(set(ck["optimizer"]["state"]) == set(names) - {"lm_head.weight"}, "optimizer state names")
    check(all(tuple(s["exp_avg"].shape) == names[n] for n, s in ck["optimizer"]["state"].items()),
          "optimizer moments in dense layout")

    def dense_loss(x, y):  # nanoGPT's GPT forward, from the dense state dict
        h = sd["transformer.wte.weight"][x] + sd["transformer.wpe.weight"][: x.shape[1]]
        for l in range(L):
            p = f"transformer.h.{l}."
            u = F.layer_norm(h, (C,), sd[p + "ln_1.weight"], sd[p + "ln_1.bias"])
            q, k, v = F.linear(u, sd[p + "attn.c_attn.weight"], sd[p + "attn.c_attn.bias"]).split(C, 2)
            B, Tn = x.shape
            q, k, v = (t.view(B, Tn, 4, C // 4).transpose(1, 2) for t in (q, k, v))
            att = (q @ k.transpose(-2, -1)) / math.sqrt(C // 4)
            att = att.masked_fill(torch.ones(Tn, Tn, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
            yv = (att @ v).transpose(1, 2).reshape(B, Tn, C)
            h = h + F.linear(yv, sd[p + "attn.c_proj.weight"], sd[p + "attn.c_proj.bias"])
            u = F.layer_norm(h, (C,), sd[p + "ln_2.weight"], sd[p + "ln_2.bias"])
            h = h + F.linear(F.gelu(F.linear(u, sd[p + "mlp.c_fc.weight"], sd[p + "mlp.c_fc.bias"])),
                             sd[p + "mlp.c_proj.weight"], sd[p + "mlp.c_proj.bias"])
        h = F.layer_norm(h, (C,), sd["transformer.ln_f.weight"], sd["transformer.ln_f.bias"])
        logits = h @ sd["lm_head.weight"].t()
        return F.cross_entropy(logits.reshape(-1, V).double(), y.reshape(-1), reduction="sum")

    import numpy as np
    tokens = torch.from_numpy(np.fromfile(os.path.join(WORK, "data/shakespeare_char/val.bin"), dtype=np.uint16)
                              .astype(np.int64))
    windows = 10
    with torch.no_grad():
        x = tokens[: windows * T].view(windows, T)
        y = tokens[1: windows * T + 1].view(windows, T)
        ref = (dense_loss(x, y) / (windows * T)).item()
    for tp in ["4", "2", "1"]:
        p = run("eval", "--out_dir=tp4", "--tokens=data/shakespeare_char/val.bin", f"--max_windows={windows}",
                "--batch_size=3", f"--tp_size={tp}")
        last = p.stdout.strip().splitlines()[-1]
        check(last.startswith("loss "), f"eval last line {last!r}")
        value = last.split()[1]
        check(len(value.replace(".", "").lstrip("0")) >= 9, f"eval prints 9 significant digits: {value}")
        # float32 model vs a float32 reference in another library: 1e-5 relative
        check(abs(float(value) - ref) <= 1e-5 * ref, f"eval at tp_size {tp}: {value} vs Python reference {ref}")

    # the checkpoint is replaced atomically: the temporary file never stays behind
    # (train.lock is the one-run-per-out_dir lock, kept so the next run can take it)
    check(sorted(os.listdir(os.path.join(WORK, "tp4"))) == ["ckpt.pt", "metrics.jsonl", "train.lock"], "out_dir contents")
    # a truncated checkpoint is a clear error
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    error_case(["eval", "--out_dir=tp4", "--tokens=data/shakespeare_char/val.bin"], "tp4/ckpt.pt")


def suite_inference():
    prepare_shakespeare_char()
    # trained enough (300 steps of one micro-batch of 16, ~8 s; val loss ~2.56) for greedy samples that are
    # not a constant on any CPU (150 steps of 8 gave "\n" after "First Citizen:" on some machines' BLAS)
    run("train", *TINY, "--model_type=distributed_gpt", "--tp_size=2", "--block_types=['spd','parallel','parallel','tp']",
        "--max_iters=300", "--eval_interval=300", "--gradient_accumulation_steps=1", "--batch_size=16",
        "--learning_rate=1e-2", "--lr_decay_iters=300", "--min_lr=1e-3", "--out_dir=mixed")
    p = run("sample", "--out_dir=mixed", "--device=cpu", "--num_samples=3", "--max_new_tokens=40", "--start=ROMEO:")
    parts = p.stdout.split("\n---------------\n")
    check(len(parts) == 4 and parts[-1] == "", f"3 samples: {p.stdout!r}")
    check(all(s.startswith("ROMEO:") and len(s) == len("ROMEO:") + 40 for s in parts[:3]), f"samples {parts}")
    check("forward all-reduces" in p.stderr, "sample reports its all-reduces")
    check(re.search(r"sampling: 120 new tokens in [0-9.]+s, [0-9.]+ tokens/s", p.stderr), f"tokens/s: {p.stderr!r}")
    again = run("sample", "--out_dir=mixed", "--device=cpu", "--num_samples=3", "--max_new_tokens=40", "--start=ROMEO:")
    check(again.stdout == p.stdout, "sampling with the same seed is reproducible")
    prompt = os.path.join(WORK, "prompt.txt")
    open(prompt, "w").write("KING:\n")
    p = run("sample", "--out_dir=mixed", "--device=cpu", "--num_samples=1", "--max_new_tokens=5", f"--start=FILE:{prompt}",
            "--temperature=0")
    check(p.stdout.startswith("KING:\n"), f"FILE: start {p.stdout!r}")
    error_case(["sample", "--out_dir=mixed", "--device=cpu", "--tp_size=1"], "tp_size=2")
    error_case(["sample", "--out_dir=mixed", "--device=cpu", "--start=\u00e9"], "vocabulary")
    sampling_with_cache_matches_reference("mixed")
    sampling_streams("mixed")
    for bad, needle in [("--top_p=0", "top_p"), ("--top_p=1.5", "top_p"), ("--top_p=-0.1", "top_p"),
                        ("--max_new_tokens=-1", "max_new_tokens"), ("--temperature=-1", "temperature"),
                        ("--top_k=-1", "top_k"), ("--num_samples=0", "num_samples")]:
        error_case(["sample", "--out_dir=mixed", "--device=cpu", bad], needle, bad.split("=")[1])

    p = run("comms", "--model_type=distributed_gpt", "--n_layer=6", "--tp_size=2", "--batch_size=4", "--block_size=32",
            "--n_embd=32", "--n_head=4", "--gradient_accumulation_steps=3",
            "--block_types=['tp','spd','parallel','parallel','spd','parallel']", "--json", "--dataset=shakespeare_char")
    plan = json.loads(p.stdout)
    check(plan["forward_allreduce"] == 2 + 1 + 1 + 1 + 1 and plan["backward_allreduce"] == 6, f"plan {plan}")
    check(plan["collectives_per_step"] == 3 * 12 + 2, f"collectives {plan['collectives_per_step']}")
    # nanoGPT's defaults, device 'cuda' and dtype 'bfloat16': f and g send bfloat16 (2 bytes).
    check(plan["bytes_per_step"] == 3 * 12 * 4 * 32 * 32 * 2 + (2 * 32 * 2 + 3 * 2 * 32) * 4 + 8,
          f"bytes {plan['bytes_per_step']}")
    check(plan["precision"] == "bfloat16 autocast, float32 parameters", f"precision {plan['precision']}")
    p = run("comms", "--model_type=distributed_gpt", "--n_layer=6", "--tp_size=2", "--batch_size=4", "--block_size=32",
            "--n_embd=32", "--n_head=4", "--gradient_accumulation_steps=3", "--device=cpu",
            "--block_types=['tp','spd','parallel','parallel','spd','parallel']", "--json", "--dataset=shakespeare_char")
    plan = json.loads(p.stdout)  # the CPU computes in float32 whatever dtype says
    check(plan["bytes_per_step"] == 3 * 12 * 4 * 32 * 32 * 4 + (2 * 32 * 2 + 3 * 2 * 32) * 4 + 8,
          f"cpu bytes {plan['bytes_per_step']}")
    p = run("comms", "--model_type=distributed_gpt", "--n_layer=6", "--tp_size=2", "--dataset=shakespeare_char")
    check("total per optimizer step" in p.stdout and p.stdout.count("\n") >= 6 + 4, p.stdout)
    # measured counts of a run equal the plan
    run("train", *TINY, "--model_type=distributed_gpt", "--tp_size=4", "--block_types=['parallel','spd','tp','parallel']",
        "--max_iters=2", "--eval_interval=100", "--gradient_accumulation_steps=2", "--out_dir=counted")
    for e in metrics("counted", "train"):
        check(e["forward_allreduce"] == 2 * 5 and e["backward_allreduce"] == 2 * 5 and
              e["replicated_grad_sync"] == 1 and e["grad_norm_allreduce"] == 1, f"measured counts {e}")


def tiny_flops_per_step():
    """nanoGPT's estimate_mfu FLOPs for TINY at batch 4 x 32 tokens, counted here by hand."""
    C, L, H, T, V = 32, 4, 4, 32, 65
    per_layer = C + 3 * C * C + C * C + C + 4 * C * C + 4 * C * C  # ln_1, c_attn, c_proj, ln_2, c_fc, c_proj (no biases)
    params = V * C + L * per_layer + C  # wte (tied lm_head), blocks, ln_f; not wpe
    return (6 * params + 12 * L * H * (C // H) * T) * 4 * T


def sampling_with_cache_matches_reference(out_dir):
    """dgpt's sampling (KV cache, streamed) = nanoGPT's generate written in Python from the checkpoint
    (tests/gpt_reference.py: SPEC §1 per shard, no cache, float64): greedy, and with the same seed
    temperature / top_k / top_p draws (torch's multinomial on float32 probabilities in both; a draw
    could differ only within float32 rounding of a boundary). 14 + 60 tokens outgrow block_size 32:
    the cropped context is re-prefilled."""
    try:
        import torch
    except ImportError:
        skip("no torch in this python (python3-torch): sampling cannot be compared with the Python reference")
    from gpt_reference import Reference
    ref = Reference(os.path.join(WORK, out_dir, "ckpt.pt"))
    meta = json.load(open(os.path.join(WORK, "data/shakespeare_char/meta.json")))
    itos = meta["itos"]
    start = "First Citizen:"
    prompt = [meta["stoi"][c] for c in start]

    def reference_sample(n, temperature, top_k, top_p, seed=1337):
        torch.manual_seed(seed)
        ids = list(prompt)
        with torch.no_grad():
            for _ in range(n):
                logits = ref.logits(ids[-ref.T:])
                if temperature == 0:
                    ids.append(int(logits.argmax()))
                    continue
                logits = logits.float().view(1, -1) / temperature
                if top_k:
                    v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                    logits[logits < v[:, [-1]]] = -float("inf")
                if top_p < 1:  # nucleus: drop a token once the more likely ones hold top_p
                    sorted_logits, order = torch.sort(logits, descending=True)
                    probs = sorted_logits.softmax(-1)
                    logits[0, order[0][(probs.cumsum(-1) - probs >= top_p)[0]]] = -float("inf")
                ids.append(int(torch.multinomial(logits.softmax(-1), 1)))
        return "".join(itos[i] for i in ids)

    outputs = {}
    for temperature, top_k, top_p in [(0, 0, 1.0), (0.8, 200, 1.0), (0.8, 200, 0.5), (1.0, 10, 0.9)]:
        args = [f"--temperature={temperature}", f"--top_k={top_k}", f"--top_p={top_p}"]
        p = run("sample", f"--out_dir={out_dir}", "--device=cpu", "--num_samples=1", "--max_new_tokens=60",
                f"--start={start}", *args)
        got = p.stdout
        want = reference_sample(60, temperature, top_k, top_p) + "\n---------------\n"
        check(got == want, f"sample {args} = the Python reference: {got!r} vs {want!r}")
        outputs[(temperature, top_k, top_p)] = got
    greedy = outputs[(0, 0, 1.0)]
    check(len(set(greedy[len(start):])) > 3, f"greedy sample is not a constant: {greedy!r}")
    # top_p changes what is drawn; top_p = 1 (the default) is no top_p at all
    default = run("sample", f"--out_dir={out_dir}", "--device=cpu", "--num_samples=1", "--max_new_tokens=60",
                  f"--start={start}").stdout  # temperature 0.8, top_k 200
    check(outputs[(0.8, 200, 1.0)] == default, "top_p=1 changes nothing")
    check(outputs[(0.8, 200, 0.5)] != default, "top_p=0.5 changes the sample")


def sampling_streams(out_dir):
    """Tokens reach stdout as they are generated (flushed per token), and the streamed text is the
    whole output of the same run written at once."""
    args = [DGPT, "sample", f"--out_dir={out_dir}", "--device=cpu", "--num_samples=1", "--max_new_tokens=300",
            "--start=ROMEO:", "--seed=7"]
    proc = subprocess.Popen(args, cwd=WORK, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    first = b""
    while len(first) < len("ROMEO:") + 3:  # the prompt and the first new tokens
        chunk = os.read(proc.stdout.fileno(), 4096)
        if not chunk:
            break
        first += chunk
    still_running = proc.poll() is None
    rest, err = proc.communicate(timeout=300)
    check(proc.returncode == 0, f"streaming sample: exit {proc.returncode} {err[-2000:]!r}")
    check(still_running, "the first tokens arrived only when sampling ended: not streamed")
    streamed = (first + rest).decode("utf-8")
    whole = run(*args[1:]).stdout
    check(streamed == whole and streamed.startswith("ROMEO:") and len(streamed) == len("ROMEO:") + 300 + 17,
          f"streamed output {streamed[:80]!r}... ({len(streamed)} chars) vs {whole[:80]!r}... ({len(whole)})")


def suite_bench():
    """dgpt bench: the three times (simulated, per rank, projected), checked against hand arithmetic,
    the plan, and a Gloo rank's own shapes and collectives."""
    prepare_shakespeare_char()
    common = [*TINY, "--model_type=distributed_gpt", "--tp_size=2", "--iters=3", "--burnin=1",
              "--gradient_accumulation_steps=1"]
    p = run("bench", *common, "--block_types=['tp','spd','parallel','parallel']")
    for column in ["strategy", "sim ms", "T_rank ms", "x dense", "rank tok/s", "MFU", "fwd AR", "coll/step",
                   "bytes/step"]:
        check(column in p.stdout, f"bench prints {column}: {p.stdout}")
    check("peak:" in p.stdout and "measured" in p.stdout, "bench measures the peak")
    check("all N shards on this one device" in p.stdout, "simulated time is labelled as such")
    p = run("bench", *common, "--compare=['tp']*4; ['spd']*4; ['parallel']*4", "--project=nvlink,100gbe,mine:8:25",
            "--json=-", "--peak_flops=1e12", "--ranks=all")
    j = json.loads(p.stdout)  # --json=- prints only the JSON on stdout
    rows = {r["strategy"]: r for r in j["rows"]}
    check(list(rows) == ["['tp']*4", "['spd']*4", "['parallel']*4", "dense"], f"rows {list(rows)}")
    check(rows["dense"]["model_type"] == "gpt" and rows["dense"]["devices"] == 1 and rows["['tp']*4"]["devices"] == 2,
          "devices: N for sharded rows, 1 for the dense model")
    check([rows[k]["forward_allreduce"] for k in rows] == [8, 4, 1, 0], f"forward all-reduces {rows}")
    check(j["peak_flops"] == 1e12, "peak_flops as given")
    # MFU against FLOPs counted by hand and the row's own times.
    flops = tiny_flops_per_step()
    for name, r in rows.items():
        check(r["flops_per_step"] == flops, f"{name}: {r['flops_per_step']} FLOPs per step, by hand {flops}")
        want = flops / (r["devices"] * r["rank_ms"] / 1e3 * 1e12)
        check(abs(r["rank_mfu"] - want) <= 1e-9 * want, f"{name}: rank MFU {r['rank_mfu']} vs {want}")
        want = flops / (r["sim_ms_per_step"] / 1e3 * 1e12)
        check(abs(r["sim_mfu"] - want) <= 1e-9 * want, f"{name}: simulated MFU {r['sim_mfu']} vs {want}")
    # --ranks=all: every rank timed, the slowest one is T_rank.
    for name in ["['tp']*4", "['spd']*4", "['parallel']*4"]:
        by_rank = rows[name]["rank_ms_by_rank"]
        check([x["rank"] for x in by_rank] == [0, 1] and rows[name]["rank_ms"] == max(x["ms"] for x in by_rank),
              f"{name}: ranks {by_rank}")
    check(rows["dense"]["rank_ms"] == rows["dense"]["sim_ms_per_step"], "the dense model's T_rank is its own step")
    # The solo rank tallies what the plan says a real rank sends.
    for name, types in [("['tp']*4", "['tp']*4"), ("['spd']*4", "['spd']*4"), ("['parallel']*4", "['parallel']*4")]:
        plan_args = [a for a in common if not a.startswith(("--iters", "--burnin"))]
        plan = json.loads(run("comms", *plan_args, f"--block_types={types}", "--dtype=float32", "--json").stdout)
        r = rows[name]
        check(r["forward_allreduce"] == plan["forward_allreduce"] and r["backward_allreduce"] == plan["backward_allreduce"]
              and r["replicated_grad_sync"] == plan["replicated_grad_sync"]
              and r["grad_norm_allreduce"] == plan["grad_norm_allreduce"]
              and r["collectives_per_step"] == plan["collectives_per_step"]
              and r["bytes_per_step"] == plan["bytes_per_step"], f"{name}: solo rank {r} vs plan {plan}")
    # A solo rank holds a real rank's shapes: L = 1 shard of c_attn [3C/N, C] and the c_proj columns [C, C/N].
    shapes = dict((n, s) for n, s in rows["['tp']*4"]["rank_param_shapes"])
    check(shapes["transformer.h.0.attn.c_attn.weight"] == [1, 48, 32] and
          shapes["transformer.h.0.attn.c_proj.weight"] == [1, 32, 16] and
          shapes["transformer.h.0.mlp.c_fc.weight"] == [1, 64, 32] and shapes["transformer.wte.weight"] == [65, 32],
          f"solo-rank shapes {shapes}")
    # Projections: T_rank + the ring all-reduces, by hand.
    proj = [x for x in j["projections"] if x["interconnect"] == "100gbe"]
    check(len(proj) == 4 and len(j["projections"]) == 12, f"projections {len(j['projections'])}")
    by = {x["strategy"]: x for x in proj}
    # 8 fwd + 8 bwd all-reduces of 4 x 32 x 32 x 4 bytes at n = 2, plus 1 grad-norm of 8 bytes, on 100 GbE
    ar = 2 * 20e-6 + 16384 / 12.5e9
    expected = 16 * ar + (2 * 20e-6 + 8 / 12.5e9)
    tp_row = by["['tp']*4"]
    check(abs(tp_row["comm_ms"] - expected * 1e3) < 1e-9, f"projected comm {tp_row['comm_ms']} vs {expected * 1e3}")
    check(tp_row["rank_ms"] == rows["['tp']*4"]["rank_ms"] and
          abs(tp_row["projected_ms"] - (tp_row["rank_ms"] + expected * 1e3)) < 1e-9, "projected = T_rank + comm")
    # spd: 4 + 4 all-reduces, the grad norm, and the replicated-gradient sync of 2 x 32 x 4 x 4 bytes
    spd = by["['spd']*4"]
    expected_spd = 8 * ar + (2 * 20e-6 + 8 / 12.5e9) + (2 * 20e-6 + 4 * 2 * 32 * 4 / 12.5e9)
    check(abs(spd["projected_ms"] - (rows["['spd']*4"]["rank_ms"] + expected_spd * 1e3)) < 1e-9, f"spd projection {spd}")
    check(abs(spd["speedup_vs_all_tp"] - tp_row["projected_ms"] / spd["projected_ms"]) < 1e-12, "vs all-tp")
    check(abs(spd["speedup_vs_dense"] - by["dense"]["projected_ms"] / spd["projected_ms"]) < 1e-12, "vs dense")
    check(by["dense"]["comm_ms"] == 0 and by["dense"]["projected_ms"] == rows["dense"]["rank_ms"],
          "the dense model is one device: nothing sent")
    want = flops / (2 * spd["projected_ms"] / 1e3 * 1e12)
    check(abs(spd["mfu"] - want) <= 1e-9 * want, f"projected MFU {spd['mfu']} vs {want}")
    check("projection on nvlink" in p.stderr and "vs all-tp" in p.stderr, "projection tables on stderr")
    # ladder: its 8 forward all-reduces overlap compute; each is charged max(0, t - T_next) with T_next the
    # solo rank's measured compute while it was in flight (SPEC §5), the backward ones and the grad norm in full.
    p = run("bench", *common, "--compare=['tp']*4; ['ladder']*4", "--project=100gbe,slow:2000:0.001", "--json=-")
    j = json.loads(p.stdout)
    lad = {r["strategy"]: r for r in j["rows"]}["['ladder']*4"]
    windows = lad["rank_overlap_windows_ms"]
    check(lad["forward_allreduce"] == 8 and lad["overlapping_per_step"] == 8 and len(windows) == 8
          and all(w > 0 for w in windows), f"ladder's overlapping all-reduces and their T_next: {lad}")
    check(abs(sum(windows) - lad["rank_overlap_compute_ms"]) < 1e-9, "windows add up to the in-flight compute")
    for net, alpha, bw in [("100gbe", 20e-6, 12.5e9), ("slow", 2000e-6, 0.001e9)]:
        t = (2 * alpha + 16384 / bw) * 1e3  # ms, one B*T*C all-reduce at n = 2
        want = 8 * t + sum(max(0.0, t - w) for w in windows) + (2 * alpha + 8 / bw) * 1e3
        got = [x for x in j["projections"] if x["interconnect"] == net and x["strategy"] == "['ladder']*4"][0]
        check(abs(got["comm_ms"] - want) < 1e-6 * want, f"ladder on {net}: exposed {got['comm_ms']} ms, by hand {want}")
    t_fast, t_slow = (2 * 20e-6 + 16384 / 12.5e9) * 1e3, (2 * 2000e-6 + 16384 / 0.001e9) * 1e3
    check(any(w > t_fast for w in windows) and all(w < t_slow for w in windows),
          f"both sides of max(0, t - T_next) exercised: T_next {windows} ms, t {t_fast:.4f} / {t_slow:.1f} ms")
    error_case(["bench", *common, "--compare=['tp']*3"], "block_types")
    error_case(["bench", *common, "--project=infiniband"], "infiniband")
    error_case(["bench", *common, "--ranks=first"], "--ranks")
    error_case(["bench", *common, "--mode=serve"], "--mode")
    # --mode=generate: prefill and per-token decode with the KV cache; a decode step sends B*C elements per
    # forward all-reduce (SPEC §6), a prefill of P tokens B*P*C.
    p = run("bench", *common, "--mode=generate", "--prompt_len=8", "--new_tokens=4", "--gen_batch=2",
            "--compare=['tp']*4; ['spd']*4; ['parallel']*4", "--project=100gbe", "--json=-")
    g = {r["strategy"]: r for r in json.loads(p.stdout)["rows"]}
    for name, ar in [("['tp']*4", 8), ("['spd']*4", 4), ("['parallel']*4", 1), ("dense", 0)]:
        r = g[name]
        check(r["decode_forward_allreduce"] == ar and r["decode_forward_allreduce_bytes"] == ar * 2 * 32 * 4 and
              r["prefill_forward_allreduce"] == ar and r["prefill_forward_allreduce_bytes"] == ar * 2 * 8 * 32 * 4 and
              r["decode_backward_allreduce"] == 0, f"generate {name}: {r}")
    gp = {x["strategy"]: x for x in json.loads(p.stdout)["projections"]}
    t_ar = 2 * 20e-6 + 2 * 32 * 4 / 12.5e9  # one decode all-reduce of B*C float32 at n = 2 on 100 GbE
    check(abs(gp["['tp']*4"]["ms_per_token"] - (g["['tp']*4"]["decode_ms_per_token"] + 8 * t_ar * 1e3)) < 1e-9,
          f"per-token projection {gp}")
    check(abs(gp["['spd']*4"]["speedup_vs_all_tp"] - gp["['tp']*4"]["ms_per_token"] / gp["['spd']*4"]["ms_per_token"])
          < 1e-12, "generate: vs all-tp")
    error_case(["bench", *common, "--mode=generate", "--prompt_len=30", "--new_tokens=8"], "block_size")
    # Gloo: fit alpha and beta on loopback; every rank's step, time in collectives and own solo rank; a real
    # rank holds exactly the solo rank's shapes and sends exactly what the solo rank tallies.
    out = os.path.join(WORK, "bench_gloo.json")
    p = run("launch", "--nproc", "2", "--", "bench", *common, "--backend=gloo", "--fit_alpha_beta=True",
            "--compare=['tp']*4; ['spd']*4", f"--json={out}")
    check("alpha-beta fit of Gloo all-reduces over 2 processes" in p.stdout, f"fit printed: {p.stdout[-2000:]}")
    check(p.stdout.count("predicted") == 2, "prediction against each measured run")
    check("time model against this real run" in p.stdout, "validation table printed")
    g = json.load(open(out))
    for r in g["rows"]:
        if r["model_type"] == "gpt":
            continue
        check(r["real_param_shapes"] == r["rank_param_shapes"], f"{r['strategy']}: a Gloo rank's shapes = the solo rank's")
        for kind in ["forward_allreduce", "backward_allreduce", "replicated_grad_sync", "grad_norm_allreduce"]:
            check(r["real_" + kind] == r[kind] and r[f"real_{kind}_bytes"] == r[f"{kind}_bytes"],
                  f"{r['strategy']}: measured {kind} {r['real_' + kind]} vs solo rank {r[kind]}")
    v = g["validation"]
    check(len(v) == 4 and sorted(x["rank"] for x in v) == [0, 0, 1, 1], f"validation rows {v}")
    check(all(abs(x["compute_ms"] - (x["step_ms"] - x["comm_ms"])) < 1e-9 and "projected_ms" in x for x in v),
          "compute = step - comm, projected with the fit")


if __name__ == "__main__":
    main(globals())
