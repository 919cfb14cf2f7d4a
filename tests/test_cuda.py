#!/usr/bin/env python3
"""CUDA and NCCL end to end: what only a GPU machine can check (ctest registers these suites only
when LibTorch has CUDA; bench/gpu_check.sh runs them).

usage: test_cuda.py DGPT_BINARY SUITE   (suites: nccl, sample, bench, hf)

- nccl: `device='cuda'` simulation against `backend='nccl'` with one process (all shards of
  tp_size 2 in it, through ProcessGroupNCCL), for each block type and a mix of all of them, in
  float32 (and bfloat16 autocast for the mix): the per-step losses equal; the mix's CUDA run against
  the CPU run of the same model (float32; CUDA's matmuls use TF32, as nanoGPT sets them, so within
  1e-2); and bfloat16 against float32 (autocast did change the arithmetic, and stays within 5%).
  With one process every shard is local, so no NCCL collective runs: this proves the NCCL
  backend's setup and one-GPU-per-rank placement, not NCCL's all-reduce (that needs two GPUs).
- sample: `dgpt sample` on CUDA with the KV cache, greedy: the tokens the CPU picks for the
  same checkpoint (the first 20 at least: TF32 may flip a near tie later), tokens/s printed.
- bench: `dgpt bench --device=cuda` fills the peak-memory column of every row.
- hf: a randomly initialised `transformers.GPT2LMHeadModel` written with `save_pretrained` loads
  with `--init_from=gpt2 --pretrained_dir=...`; `dgpt eval`'s loss equals the loss of
  transformers' own logits on the same windows (float32 on the CPU within 1e-5, on CUDA within
  1e-3 because of TF32).

DGPT_CUDA_DRY_RUN=1 runs the same commands with the CPU and Gloo in place of CUDA and NCCL, to
check this script where there is no GPU (the bfloat16 and peak-memory checks then fail: dgpt
autocasts on CUDA only, and has no peak memory to report on the CPU).
"""
import json
import os
import sys

from harness import WORK, check, losses, main, prepare_shakespeare_char, run_dgpt, skip

STEPS = 10
BASE = ["--dataset=shakespeare_char", "--n_layer=5", "--n_head=4", "--n_embd=64", "--block_size=32",
        "--batch_size=8", "--learning_rate=1e-3", "--warmup_iters=2", f"--lr_decay_iters={STEPS}",
        "--min_lr=1e-4", "--eval_iters=2", "--log_interval=1", f"--max_iters={STEPS}",
        f"--eval_interval={STEPS}", "--always_save_checkpoint=True", "--model_type=distributed_gpt",
        "--tp_size=2", "--bias=False", "--dropout=0.0", "--comm_timeout=120"]
DRY = os.environ.get("DGPT_CUDA_DRY_RUN") == "1"
CUDA, NCCL = ("cpu", "gloo") if DRY else ("cuda", "nccl")
PATTERNS = [("tp", "['tp']*5"), ("spd", "['spd']*5"), ("parallel", "['parallel']*5"), ("neox", "['neox']*5"),
            ("ladder", "['ladder']*5"), ("mixed", "['tp','spd','parallel','neox','ladder']")]


def train(out_dir, *extra, nccl=False):
    args = ["train", *BASE, *extra, f"--out_dir={out_dir}"]
    if nccl:
        return run_dgpt("launch", "--nproc", "1", "--", *args, f"--backend={NCCL}", timeout=300)
    return run_dgpt(*args, timeout=300)


def rel_worst(a, b):
    la, lb = losses(a), losses(b)
    if sorted(la) != sorted(lb) or len(la) < STEPS:
        return None
    return max(abs(la[i] - lb[i]) / abs(lb[i]) for i in la)


def compared(a, b, what, tol):
    worst = rel_worst(a, b)
    check(worst is not None, f"{what}: iterations {sorted(losses(a))} vs {sorted(losses(b))}")
    if worst is not None:
        check(worst <= tol, f"{what}: per-step losses differ by {worst:.2e} relative (tolerance {tol})")
        print(f"{what}: worst per-step loss difference {worst:.2e} (tolerance {tol})", flush=True)
    return worst


def needs_cuda():
    p = run_dgpt("bench", f"--device={CUDA}", "--n_layer=1", "--n_embd=32", "--n_head=2", "--block_size=8",
                 "--batch_size=2", "--gradient_accumulation_steps=1", "--iters=1", "--burnin=0", expect=None, timeout=300)
    if p.returncode != 0:
        skip(f"no CUDA device usable by dgpt: {p.stderr.strip()[:300]}")


def suite_nccl():
    needs_cuda()
    prepare_shakespeare_char()
    for name, types in PATTERNS:
        bt = f"--block_types={types}"
        mixed = name == "mixed"  # every check on the mix; on each single type the ones that tell types apart
        for dtype in ["float32", "bfloat16"]:
            train(f"{name}_{dtype}_sim", bt, f"--device={CUDA}", f"--dtype={dtype}")
            if dtype == "float32" or mixed:
                train(f"{name}_{dtype}_nccl", bt, f"--device={CUDA}", f"--dtype={dtype}", nccl=True)
                compared(f"{name}_{dtype}_nccl", f"{name}_{dtype}_sim", f"{name} {dtype}: nccl (1 process) vs cuda sim",
                         1e-6)
        w = compared(f"{name}_bfloat16_sim", f"{name}_float32_sim", f"{name}: bfloat16 vs float32 on cuda", 5e-2)
        check(w is not None and w > 1e-6, f"{name}: bfloat16 autocast changed the arithmetic (difference {w})")
        if mixed:
            train(f"{name}_cpu", bt, "--device=cpu", "--dtype=float32")
            compared(f"{name}_float32_sim", f"{name}_cpu", f"{name}: cuda vs cpu, float32 (TF32 matmuls)", 1e-2)


def greedy(out_dir, device):
    p = run_dgpt("sample", f"--out_dir={out_dir}", f"--device={device}", "--temperature=0", "--num_samples=1",
                 "--max_new_tokens=100", "--start=\n", "--seed=1", timeout=300)
    return p


def suite_sample():
    needs_cuda()
    prepare_shakespeare_char()
    train("ckpt", "--block_types=['tp','spd','parallel','neox','ladder']", f"--device={CUDA}")
    on_cuda, on_cpu = greedy("ckpt", CUDA), greedy("ckpt", "cpu")
    a, b = on_cuda.stdout, on_cpu.stdout
    same = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    print(f"greedy text: cuda and cpu agree on the first {same} characters of {len(b)}", flush=True)
    check(len(a) > 50 and same >= min(20, len(b)), f"cuda greedy text {a[:200]!r} vs cpu {b[:200]!r}")
    check("tokens/s" in on_cuda.stderr + on_cuda.stdout, f"sample prints tokens/s: {on_cuda.stderr[-500:]!r}")
    print(on_cuda.stderr.strip().splitlines()[-1] if on_cuda.stderr.strip() else "", flush=True)


def suite_bench():
    needs_cuda()
    out = os.path.join(WORK, "bench.json")
    run_dgpt("bench", f"--device={CUDA}", "--dtype=" + ("float32" if DRY else "bfloat16"), "--n_layer=4", "--n_head=4", "--n_embd=128",
             "--block_size=64", "--batch_size=12", "--gradient_accumulation_steps=1", "--model_type=distributed_gpt", "--tp_size=2",
             "--iters=3", "--burnin=1", "--compare=['tp']*4; ['spd']*4; ['parallel']*4", f"--json={out}", timeout=300)
    rows = json.load(open(out))["rows"]
    check(len(rows) >= 4, f"bench rows: {[r['strategy'] for r in rows]}")
    for r in rows:
        check(isinstance(r.get("peak_memory_bytes"), int) and r["peak_memory_bytes"] > 0,
              f"{r['strategy']}: peak memory {r.get('peak_memory_bytes')!r}")
        print(f"{r['strategy']}: peak memory {r.get('peak_memory_bytes')} bytes, T_rank {r['rank_ms']:.2f} ms", flush=True)


def suite_hf():
    try:
        import numpy as np
        import torch
        import torch.nn.functional as F
        import transformers
    except ImportError as e:
        skip(f"no transformers here ({e})")
    torch.manual_seed(0)
    V, T, L, H, C = 1000, 64, 2, 4, 64
    cfg = transformers.GPT2Config(vocab_size=V, n_positions=T, n_embd=C, n_layer=L, n_head=H,
                                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    model = transformers.GPT2LMHeadModel(cfg).eval()
    folder = os.path.join(WORK, "hf")
    model.save_pretrained(folder, safe_serialization=True)
    g = np.random.default_rng(3)
    tokens = g.integers(0, V, 8 * T + 1)
    tokens.astype("<u2").tofile(os.path.join(WORK, "val.bin"))
    windows = 8
    x = torch.tensor(np.stack([tokens[j * T:(j + 1) * T] for j in range(windows)]), dtype=torch.long)
    y = torch.tensor(np.stack([tokens[j * T + 1:(j + 1) * T + 1] for j in range(windows)]), dtype=torch.long)
    with torch.no_grad():
        logits = model(x).logits
    ref = F.cross_entropy(logits.reshape(-1, V).double(), y.reshape(-1)).item()
    print(f"transformers {transformers.__version__}: loss {ref:.8f} on {windows} windows of {T}", flush=True)
    for device, tol in [("cpu", 1e-5), (CUDA, 1e-3)]:
        p = run_dgpt("eval", "--init_from=gpt2", f"--pretrained_dir={folder}", "--tokens=val.bin",
                     f"--block_size={T}", f"--max_windows={windows}", f"--device={device}", expect=None, timeout=300)
        check(p.returncode == 0, f"eval on {device}: exit {p.returncode}: {p.stderr[-1500:]}")
        if p.returncode != 0:
            continue
        got = float(p.stdout.strip().splitlines()[-1].split()[1])
        rel = abs(got - ref) / abs(ref)
        check(rel <= tol, f"eval on {device}: dgpt {got!r} vs transformers {ref!r} ({rel:.2e}, tolerance {tol})")
        print(f"dgpt eval on {device}: {got:.8f}, relative difference {rel:.2e} (tolerance {tol})", flush=True)


if __name__ == "__main__":
    main(globals())
