#!/usr/bin/env python3
"""nanoGPT's training step in PyTorch beside dgpt's, measured in one run (issue 15; README "Performance notes").

usage: /usr/bin/python3 bench/nanogpt_step.py [--train_step build/bench/train_step] [--rounds 5] [--iters 20]
                                              [--threads 1,2] [--n_head 4]

The Python side is nanoGPT's model and step as its train.py runs them on the CPU, written out here
(no nanoGPT checkout needed): GPT-2's block with bias=False, dropout 0, the explicit causal
attention nanoGPT falls back to without scaled_dot_product_attention (PyTorch 1.13), the tied
lm_head, cross_entropy, torch.optim.AdamW with nanoGPT's decay groups, clip_grad_norm_(1.0),
zero_grad(set_to_none=True). The config is nanoGPT's shakespeare_char CPU run: 4 layers, 128 wide,
4 heads, block 64, batch 12, vocab 65, float32. Each round times `--iters` steps of nanoGPT at every
thread count of `--threads` (torch.set_num_threads) and then `train_step --types=dense` (dgpt's
step at its default threads) for as many steps, so a drift of the machine's speed moves both;
the medians over all rounds are compared; train_step also times dgpt's step with its own CPU
kernels off (ATen's ops throughout), in the same round. Prints one Markdown table and the speedup
of dgpt over nanoGPT's best thread count.
"""
import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

N_LAYER, N_EMBD, BLOCK, BATCH, VOCAB = 4, 128, 64, 12, 65


class CausalSelfAttention(nn.Module):
    def __init__(self, n_head):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(N_EMBD, 3 * N_EMBD, bias=False)
        self.c_proj = nn.Linear(N_EMBD, N_EMBD, bias=False)
        self.register_buffer("mask", torch.tril(torch.ones(BLOCK, BLOCK)).view(1, 1, BLOCK, BLOCK))

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        att = att.masked_fill(self.mask[:, :, :T, :T] == 0, float("-inf"))
        y = F.softmax(att, dim=-1) @ v
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(self, n_head):
        super().__init__()
        self.ln_1 = nn.LayerNorm(N_EMBD, elementwise_affine=True)
        self.attn = CausalSelfAttention(n_head)
        self.ln_2 = nn.LayerNorm(N_EMBD, elementwise_affine=True)
        self.c_fc = nn.Linear(N_EMBD, 4 * N_EMBD, bias=False)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * N_EMBD, N_EMBD, bias=False)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.c_proj(self.gelu(self.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, n_head):
        super().__init__()
        self.wte = nn.Embedding(VOCAB, N_EMBD)
        self.wpe = nn.Embedding(BLOCK, N_EMBD)
        self.h = nn.ModuleList(Block(n_head) for _ in range(N_LAYER))
        self.ln_f = nn.LayerNorm(N_EMBD)
        for m in (self.ln_f, *[b.ln_1 for b in self.h], *[b.ln_2 for b in self.h]):
            m.bias = None  # nanoGPT's LayerNorm with bias=False
        self.lm_head = nn.Linear(N_EMBD, VOCAB, bias=False)
        self.lm_head.weight = self.wte.weight  # tied, as nanoGPT
        for p in self.parameters():
            nn.init.normal_(p, 0.0, 0.02) if p.dim() >= 2 else None

    def forward(self, idx, targets):
        pos = torch.arange(idx.size(1))
        x = self.wte(idx) + self.wpe(pos)
        for block in self.h:
            x = block(x)
        logits = self.lm_head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)


def nanogpt_step_times(model, optimizer, iters, gen):
    times = []
    for _ in range(iters):
        t0 = time.perf_counter()
        xy = torch.randint(VOCAB, (BATCH, BLOCK + 1), generator=gen)
        loss = model(xy[:, :-1].contiguous(), xy[:, 1:].contiguous())  # as nanoGPT's get_batch stacks them
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def dgpt_step_times(train_step, n_head, iters):
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "r.json")
        subprocess.run([train_step, "--types=dense", f"--n_head={n_head}", "--rounds=1", f"--iters={iters}",
                        "--burnin=3", f"--json={out}"], check=True, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
        with open(out) as f:
            rows = json.load(f)["rows"]
        # rows[0]: dgpt's step as it runs; rows[1]: the same with dgpt's CPU kernels off (--aten_row)
        return rows[0]["step_ms"], rows[1]["step_ms"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--train_step", default="build/bench/train_step")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--n_head", type=int, default=4)
    a = ap.parse_args()
    if not os.access(a.train_step, os.X_OK):
        sys.exit(f"error: {a.train_step} is not an executable (build dgpt, or pass --train_step)")
    threads = [int(t) for t in a.threads.split(",")]
    torch.manual_seed(1337)
    gen = torch.Generator().manual_seed(1337)
    model = GPT(a.n_head)
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                  lr=1e-3, betas=(0.9, 0.99))
    py = {t: [] for t in threads}
    ours, ours_aten = [], []
    for r in range(a.rounds):
        for t in threads:
            torch.set_num_threads(t)
            nanogpt_step_times(model, optimizer, 3, gen)  # warm up at this thread count
            py[t] += nanogpt_step_times(model, optimizer, a.iters, gen)
        dgpt, dgpt_aten = dgpt_step_times(a.train_step, a.n_head, a.iters)
        ours += dgpt
        ours_aten += dgpt_aten
        print(f"round {r + 1}/{a.rounds} done", file=sys.stderr)
    med = {t: statistics.median(v) for t, v in py.items()}
    best_t = min(med, key=med.get)
    dgpt_ms = statistics.median(ours)
    print(f"nanoGPT's step (PyTorch {torch.__version__}) and dgpt's, {N_LAYER} layers, n_embd {N_EMBD}, "
          f"n_head {a.n_head}, block {BLOCK}, batch {BATCH}, float32; medians of {a.rounds} x {a.iters} steps\n")
    print("| run | ms per step |\n|---|---|")
    for t in threads:
        print(f"| nanoGPT, torch.set_num_threads({t}) | {med[t]:.2f} |")
    print(f"| dgpt, default threads | {dgpt_ms:.2f} |")
    print(f"| dgpt, default threads, its CPU kernels off (DGPT_CPU_KERNELS=0: ATen's ops) | "
          f"{statistics.median(ours_aten):.2f} |")
    print(f"\ndgpt's speedup over nanoGPT's best ({best_t} threads): {med[best_t] / dgpt_ms:.2f}x")


if __name__ == "__main__":
    main()
