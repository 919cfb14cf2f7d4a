"""nanoGPT's training loop in PyTorch, as its train.py writes it, over the SPEC §1 model of
gpt_reference.py: the outside reference dgpt's optimizer, schedule, clipping, accumulation and
dropout are checked against.

From dgpt's initial weights (out_dir/init.pt, `save_initial_weights = True`) and its config:
torch.optim.AdamW with nanoGPT's parameter groups (weight decay on tensors of dim >= 2), nanoGPT's
get_lr (linear warmup, cosine decay to min_lr), torch.nn.utils.clip_grad_norm_, and gradient
accumulation (each micro-step's loss divided by gradient_accumulation_steps). The micro-batches
and dropout masks are drawn by the rules dgpt documents (README "Reproducibility"), written again
in gpt_reference.py. Nothing of dgpt's C++ code is used.
"""
import math

import numpy as np
import torch

from gpt_reference import Dropout, SpecGPT, train_batch


def get_lr(it, c):
    """nanoGPT's learning-rate schedule."""
    if not c["decay_lr"]:
        return c["learning_rate"]
    if it < c["warmup_iters"]:
        return c["learning_rate"] * (it + 1) / (c["warmup_iters"] + 1)
    if it > c["lr_decay_iters"]:
        return c["min_lr"]
    decay_ratio = (it - c["warmup_iters"]) / (c["lr_decay_iters"] - c["warmup_iters"])
    coeff = 0.5 * (1.0 + math.cos(math.pi * decay_ratio))
    return c["min_lr"] + coeff * (c["learning_rate"] - c["min_lr"])


class Trained:
    """What the reference run leaves: per-iteration losses, norms and lrs, and the state after `steps` steps."""

    def __init__(self):
        self.losses, self.grad_norms, self.lrs = [], [], []
        self.weights, self.moments = None, None


def train(init_path, train_bin, steps, extra_iters=1):
    """Trains `steps` + `extra_iters` iterations from init_path; weights and AdamW moments are
    taken after `steps` steps (the checkpoint dgpt writes at iter `steps`), losses for every one."""
    ck = torch.load(init_path, map_location="cpu")
    c = dict(ck["config"])
    dtype = {"float64": torch.float64, "float32": torch.float32}[c["dtype"]]
    sd = {k: v.to(dtype).clone().requires_grad_(True) for k, v in ck["model"].items() if k != "lm_head.weight"}
    model = SpecGPT(sd, ck["model_args"])
    tokens = np.fromfile(train_bin, dtype=np.uint16)

    # nanoGPT's configure_optimizers: every 2D+ tensor decays, biases and LayerNorms do not.
    names = list(sd)
    decay = [sd[n] for n in names if sd[n].dim() >= 2]
    no_decay = [sd[n] for n in names if sd[n].dim() < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": c["weight_decay"]},
                                   {"params": no_decay, "weight_decay": 0.0}],
                                  lr=c["learning_rate"], betas=(c["beta1"], c["beta2"]))
    accum, p = c["gradient_accumulation_steps"], c["dropout"]
    out = Trained()
    for it in range(steps + extra_iters):
        if it == steps:
            out.weights = {n: t.detach().clone() for n, t in sd.items()}
            out.moments = {n: {k: v.clone() if torch.is_tensor(v) else v for k, v in optimizer.state[sd[n]].items()}
                           for n in names if sd[n] in optimizer.state}
        lr = get_lr(it, c)
        for group in optimizer.param_groups:
            group["lr"] = lr
        loss_sum = 0.0
        for micro in range(accum):
            x, y = train_batch(tokens, c["seed"], it, micro, c["batch_size"], c["block_size"])
            model.drop = Dropout(p, c["seed"], it, micro) if p > 0 else None
            _, loss = model.forward(x, y)
            loss = loss / accum
            loss.backward()
            loss_sum += loss.item()
        model.drop = None
        norm = torch.nn.utils.clip_grad_norm_(list(sd.values()), c["grad_clip"]) if c["grad_clip"] > 0 else None
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        out.losses.append(loss_sum)
        out.grad_norms.append(None if norm is None else float(norm))
        out.lrs.append(lr)
    return out
