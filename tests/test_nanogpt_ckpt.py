#!/usr/bin/env python3
"""nanoGPT's own checkpoints ("From pretrained weights", part 2): usage: test_nanogpt_ckpt.py DGPT_BINARY SUITE.

The reference is outside dgpt: a tiny GPT written here as nanoGPT's model.py names and computes it
(transformer.wte/wpe/h.i.ln_1/attn.c_attn/attn.c_proj/ln_2/mlp.c_fc/mlp.c_proj/ln_f, lm_head tied
to wte, the causal-mask buffer attn.bias that PyTorch < 2 gets), trained a few steps by nanoGPT's
loop with a real torch.optim.AdamW over nanoGPT's two parameter groups on shakespeare_char batches,
and saved by torch.save as nanoGPT's train.py saves it (model, optimizer, model_args, iter_num,
best_val_loss as a tensor, config of train.py's globals), also with torch.compile's '_orig_mod.'
prefixes and without the mask buffers (PyTorch >= 2).

Suites: eval (dgpt eval = the Python model's loss, dgpt sample's greedy tokens = the Python model's,
for bias True and False, plain and compiled, pickle protocols 2 and 4), resume (the AdamW moments
mapped by name: dgpt's own checkpoint after resuming holds the Python optimizer's moments and step
counts exactly; one resumed step = the Python optimizer's step on the batch dgpt draws; a
checkpoint whose param_groups are not nanoGPT's restarts the optimizer with a notice) and corrupt
(truncated archives, a pickle naming os.system (refused, and nothing executed), storages shorter
than claimed, a bad CRC, unknown opcodes, corrupt memo and stack, tensors past their storage, deep
and self-referencing nesting: one `error:` line each, exit code 2).
"""
import copy
import io
import json
import math
import os
import struct
import sys
import zipfile

import numpy as np

import harness
from harness import WORK, check, check_one_error, main, prepare_shakespeare_char, skip
from harness import run_dgpt as run

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

try:
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError:  # the suites skip (fail in CI) below
    torch = None

N_LAYER, N_HEAD, N_EMBD, BLOCK, BATCH = 2, 4, 32, 32, 4
LR, WD, BETAS, CLIP = 1e-3, 0.1, (0.9, 0.99), 1.0
STEPS = 3  # nanoGPT steps before its checkpoint: iter_num = STEPS
HANG = 60


def need_torch():
    if torch is None:
        skip("this python3 has no torch (install python3-torch)")


# ---------------------------------------------------------------------------------------------
# nanoGPT's model.py, as it names and computes things (PyTorch 1.13 has no flash attention, so each
# attention keeps the causal mask as the buffer `bias`, as nanoGPT's does there).

if torch is not None:
    class LayerNorm(nn.Module):
        def __init__(self, ndim, bias):
            super().__init__()
            self.weight = nn.Parameter(torch.ones(ndim))
            self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

        def forward(self, x):
            return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)

    class CausalSelfAttention(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.c_attn = nn.Linear(c.n_embd, 3 * c.n_embd, bias=c.bias)
            self.c_proj = nn.Linear(c.n_embd, c.n_embd, bias=c.bias)
            self.n_head, self.n_embd = c.n_head, c.n_embd
            self.register_buffer("bias", torch.tril(torch.ones(c.block_size, c.block_size))
                                 .view(1, 1, c.block_size, c.block_size))

        def forward(self, x):
            B, T, C = x.size()
            q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
            k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            y = F.softmax(att, dim=-1) @ v
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))

    class MLP(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.c_fc = nn.Linear(c.n_embd, 4 * c.n_embd, bias=c.bias)
            self.gelu = nn.GELU()
            self.c_proj = nn.Linear(4 * c.n_embd, c.n_embd, bias=c.bias)

        def forward(self, x):
            return self.c_proj(self.gelu(self.c_fc(x)))

    class Block(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.ln_1 = LayerNorm(c.n_embd, bias=c.bias)
            self.attn = CausalSelfAttention(c)
            self.ln_2 = LayerNorm(c.n_embd, bias=c.bias)
            self.mlp = MLP(c)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPTConfig:
        def __init__(self, **kw):
            self.__dict__.update(kw)

    class GPT(nn.Module):
        def __init__(self, c):
            super().__init__()
            self.config = c
            self.transformer = nn.ModuleDict(dict(
                wte=nn.Embedding(c.vocab_size, c.n_embd), wpe=nn.Embedding(c.block_size, c.n_embd),
                drop=nn.Dropout(c.dropout), h=nn.ModuleList([Block(c) for _ in range(c.n_layer)]),
                ln_f=LayerNorm(c.n_embd, bias=c.bias)))
            self.lm_head = nn.Linear(c.n_embd, c.vocab_size, bias=False)
            self.transformer.wte.weight = self.lm_head.weight  # weight tying
            self.apply(self._init_weights)
            for pn, p in self.named_parameters():
                if pn.endswith("c_proj.weight"):
                    torch.nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * c.n_layer))

        def _init_weights(self, module):
            if isinstance(module, nn.Linear):
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)
                if module.bias is not None:
                    torch.nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Embedding):
                torch.nn.init.normal_(module.weight, mean=0.0, std=0.02)

        def forward(self, idx, targets=None):
            t = idx.size(1)
            pos = torch.arange(0, t, dtype=torch.long)
            x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))
            for block in self.transformer.h:
                x = block(x)
            logits = self.lm_head(self.transformer.ln_f(x))
            loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1),
                                                                 ignore_index=-1)
            return logits, loss

        def configure_optimizers(self, weight_decay, learning_rate, betas):
            param_dict = {pn: p for pn, p in self.named_parameters() if p.requires_grad}
            decay_params = [p for n, p in param_dict.items() if p.dim() >= 2]
            nodecay_params = [p for n, p in param_dict.items() if p.dim() < 2]
            optim_groups = [{"params": decay_params, "weight_decay": weight_decay},
                            {"params": nodecay_params, "weight_decay": 0.0}]
            return torch.optim.AdamW(optim_groups, lr=learning_rate, betas=betas)


def tokens(split):
    return np.fromfile(os.path.join(WORK, f"data/shakespeare_char/{split}.bin"), dtype=np.uint16)


def nanogpt_config(bias):
    """train.py's config dict: its globals of int, float, bool and str, dgpt-unknown ones included."""
    return {"out_dir": "out", "eval_interval": 1, "log_interval": 1, "eval_iters": 1, "eval_only": False,
            "always_save_checkpoint": True, "init_from": "scratch", "wandb_log": False, "wandb_project": "owt",
            "wandb_run_name": "gpt2", "dataset": "shakespeare_char", "gradient_accumulation_steps": 1,
            "batch_size": BATCH, "block_size": BLOCK, "n_layer": N_LAYER, "n_head": N_HEAD, "n_embd": N_EMBD,
            "dropout": 0.0, "bias": bias, "learning_rate": LR, "max_iters": STEPS, "weight_decay": WD,
            "beta1": BETAS[0], "beta2": BETAS[1], "grad_clip": CLIP, "decay_lr": False, "warmup_iters": 0,
            "lr_decay_iters": STEPS, "min_lr": LR / 10, "backend": "nccl", "device": "cpu", "dtype": "float32",
            "compile": False}


class Trained:
    """A nanoGPT model and its AdamW after STEPS steps of nanoGPT's loop, and its checkpoint dict."""

    def __init__(self, bias, seed=1337):
        torch.manual_seed(seed)
        model_args = dict(n_layer=N_LAYER, n_head=N_HEAD, n_embd=N_EMBD, block_size=BLOCK, bias=bias,
                          vocab_size=65, dropout=0.0)
        self.model = GPT(GPTConfig(**model_args))
        self.optimizer = self.model.configure_optimizers(WD, LR, BETAS)
        data = torch.from_numpy(tokens("train").astype(np.int64))
        for _ in range(STEPS):  # nanoGPT's get_batch and training step
            ix = torch.randint(len(data) - BLOCK, (BATCH,))
            x = torch.stack([data[i:i + BLOCK] for i in ix])
            y = torch.stack([data[i + 1:i + 1 + BLOCK] for i in ix])
            _, loss = self.model(x, y)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), CLIP)
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        self.model_args = model_args
        self.bias = bias

    def checkpoint(self, compiled=False, mask_buffers=True):
        sd = self.model.state_dict()  # an OrderedDict, with _metadata
        if not mask_buffers:  # PyTorch >= 2: flash attention, no buffer
            for k in [k for k in sd if k.endswith(".attn.bias")]:
                del sd[k]
        if compiled:  # torch.compile's OptimizedModule names everything _orig_mod.<name>
            meta = sd._metadata
            sd = type(sd)(("_orig_mod." + k, v) for k, v in sd.items())
            sd._metadata = meta
        return {"model": sd, "optimizer": self.optimizer.state_dict(), "model_args": dict(self.model_args),
                "iter_num": STEPS, "best_val_loss": torch.tensor(2.5), "config": nanogpt_config(self.bias)}

    def named_params(self):
        return dict(self.model.named_parameters())  # the tied weight once, as transformer.wte.weight


def save(ck, out_dir, **kw):
    os.makedirs(os.path.join(WORK, out_dir), exist_ok=True)
    path = os.path.join(WORK, out_dir, "ckpt.pt")
    torch.save(ck, path, **kw)
    return path


def python_eval_loss(model, T, max_windows):
    """dgpt eval's windows: x = val[jT, jT+T), y = val[jT+1, jT+T+1), j < max_windows; the mean loss."""
    val = torch.from_numpy(tokens("val").astype(np.int64))
    n = min((len(val) - 1) // T, max_windows)
    x = val[:n * T].view(n, T)
    y = val[1:n * T + 1].view(n, T)
    with torch.no_grad():
        model.eval()
        _, loss = model(x, y)
        model.train()
    return loss.item()


def dgpt_loss(stdout):
    lines = [l for l in stdout.splitlines() if l.startswith("loss ")]
    return float(lines[-1].split()[1]) if lines else float("nan")


def greedy(model, start_ids, n):
    ids = list(start_ids)
    with torch.no_grad():
        model.eval()
        for _ in range(n):
            logits, _ = model(torch.tensor([ids[-BLOCK:]]))
            ids.append(int(logits[0, -1].argmax()))
        model.train()
    return ids


def suite_eval():
    need_torch()
    prepare_shakespeare_char()
    meta = json.load(open(os.path.join(WORK, "data/shakespeare_char/meta.json")))
    itos = meta["itos"] if isinstance(meta["itos"], list) else [meta["itos"][str(i)] for i in range(len(meta["itos"]))]
    stoi = {c: i for i, c in enumerate(itos)}
    windows = 24
    for bias in (True, False):
        t = Trained(bias)
        want = python_eval_loss(t.model, BLOCK, windows)
        prompt = "ROMEO:"
        want_text = "".join(itos[i] for i in greedy(t.model, [stoi[c] for c in prompt], 40))
        variants = {"plain": dict(), "compiled": dict(compiled=True),
                    "compiled_no_buffers": dict(compiled=True, mask_buffers=False),
                    "no_buffers": dict(mask_buffers=False)}
        for name, kw in variants.items():
            for protocol in (2, 4):
                if protocol == 4 and name not in ("plain", "compiled_no_buffers"):
                    continue
                out_dir = f"bias{int(bias)}_{name}_p{protocol}"
                save(t.checkpoint(**kw), out_dir, pickle_protocol=protocol)
                p = run("eval", f"--out_dir={out_dir}", "--tokens=data/shakespeare_char/val.bin",
                        f"--max_windows={windows}", "--device=cpu", timeout=HANG)
                got = dgpt_loss(p.stdout)
                rel = abs(got - want) / abs(want)
                print(f"eval {out_dir}: dgpt {got:.10f}, Python nanoGPT model {want:.10f}, relative {rel:.2e}")
                check(rel < 1e-5, f"{out_dir}: dgpt eval {got} vs the Python model's {want} (relative {rel:.2e})")
                p = run("sample", f"--out_dir={out_dir}", "--device=cpu", "--num_samples=1", "--max_new_tokens=40",
                        f"--start={prompt}", "--temperature=0", timeout=HANG)
                text = p.stdout.split("\n---------------\n")[0]
                check(text == want_text, f"{out_dir}: dgpt's greedy sample {text!r}, the Python model's {want_text!r}")
    # as any dense checkpoint: sampled as the tensor-parallel model at tp_size 2 (the same function),
    # evaluated at tp_size 1 only (eval has no model_type: the dense 'gpt' is not sharded)
    p = run("sample", "--out_dir=bias1_plain_p2", "--device=cpu", "--num_samples=1", "--max_new_tokens=40",
            "--start=ROMEO:", "--temperature=0", "--model_type=distributed_gpt", "--tp_size=2", timeout=HANG)
    t = Trained(True)
    want_text = "".join(itos[i] for i in greedy(t.model, [stoi[c] for c in "ROMEO:"], 40))
    check(p.stdout.split("\n---------------\n")[0] == want_text, f"sample at tp_size 2: {p.stdout!r} vs {want_text!r}")
    p = run("eval", "--out_dir=bias1_plain_p2", "--tokens=data/shakespeare_char/val.bin", "--device=cpu",
            "--tp_size=2", expect=None, timeout=HANG)
    check_one_error(p.returncode, p.stderr, "eval --tp_size=2 of a nanoGPT checkpoint", "tp_size=2")

    # an untied lm_head is not nanoGPT's model: refused, naming it
    t = Trained(True)
    ck = t.checkpoint()
    ck["model"]["lm_head.weight"] = ck["model"]["lm_head.weight"].clone() + 1
    save(ck, "untied")
    p = run("eval", "--out_dir=untied", "--tokens=data/shakespeare_char/val.bin", "--device=cpu", expect=None)
    check_one_error(p.returncode, p.stderr, "untied lm_head", "untied/ckpt.pt", "lm_head.weight", "ties")


def resume_args(out_dir, bias, max_iters):
    return ["train", "--device=cpu", "--dataset=shakespeare_char", f"--out_dir={out_dir}", "--init_from=resume",
            f"--n_layer={N_LAYER}", f"--n_head={N_HEAD}", f"--n_embd={N_EMBD}", f"--block_size={BLOCK}",
            f"--bias={bias}", f"--batch_size={BATCH}", "--gradient_accumulation_steps=1", f"--learning_rate={LR}",
            "--decay_lr=False", f"--weight_decay={WD}", f"--beta1={BETAS[0]}", f"--beta2={BETAS[1]}",
            f"--grad_clip={CLIP}", "--dropout=0.0", "--eval_interval=1", "--eval_iters=1", "--log_interval=1",
            "--always_save_checkpoint=True", f"--max_iters={max_iters}"]


def rel_diff(a, b):
    return ((a.double() - b.double()).abs().max() / b.double().abs().max().clamp_min(1e-30)).item()


def suite_resume():
    need_torch()
    prepare_shakespeare_char()
    from gpt_reference import train_batch
    for bias, kw in [(True, dict()), (False, dict(compiled=True, mask_buffers=False))]:
        t = Trained(bias)
        params = t.named_params()
        tag = f"bias{int(bias)}"
        ck = t.checkpoint(**kw)

        # 0 new steps before the first save: dgpt's checkpoint at iter STEPS is what it loaded
        save(ck, f"{tag}_zero")
        p = run(*resume_args(f"{tag}_zero", bias, STEPS), timeout=300)
        log = p.stdout + p.stderr  # (train prints its notices on stdout)
        check("notice: " in log and f"nanoGPT checkpoint: read as the dense 'gpt' model, the AdamW moments of "
              f"{len(params)} tensors mapped" in log, f"{tag}: the resume's notice: {log[:3000]!r}")
        check("notice: the nanoGPT checkpoint's AdamW" not in log, f"{tag}: same AdamW settings: {log[:3000]!r}")
        check(f"step {STEPS}:" in p.stdout, f"{tag}: the resumed run starts at iter {STEPS}: {p.stdout[-800:]!r}")
        mine = torch.load(os.path.join(WORK, f"{tag}_zero/ckpt.pt"), map_location="cpu")
        check(mine["iter_num"] == STEPS, f"{tag}: iter_num {mine['iter_num']}")
        state = mine["optimizer"]["state"]
        check(set(state) == set(params), f"{tag}: moments of {sorted(state)}, parameters {sorted(params)}")
        exact = True
        for name, p_ in params.items():
            s = t.optimizer.state[p_]
            if name not in state:
                continue
            for key in ("exp_avg", "exp_avg_sq"):
                same = torch.equal(state[name][key], s[key])
                exact = exact and same
                check(same, f"{tag}: {key} of {name} = the Python optimizer's")
            check(state[name]["step"] == int(s["step"]), f"{tag}: step of {name}: {state[name]['step']} vs {s['step']}")
            check(torch.equal(mine["model"][name], p_.detach()), f"{tag}: weights of {name}")
        print(f"{tag}: moments of {len(params)} tensors mapped by name, bitwise equal: {exact}")

        # one resumed step = the Python optimizer's step on the batch dgpt draws at iter STEPS
        save(ck, f"{tag}_one")
        run(*resume_args(f"{tag}_one", bias, STEPS + 1), timeout=300)
        mine = torch.load(os.path.join(WORK, f"{tag}_one/ckpt.pt"), map_location="cpu")
        check(mine["iter_num"] == STEPS + 1, f"{tag}: iter_num after one step {mine['iter_num']}")
        x, y = train_batch(tokens("train"), 1337, STEPS, 0, BATCH, BLOCK)
        model, optimizer = t.model, t.optimizer
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        dgpt_losses = harness.losses(f"{tag}_one")
        got = dgpt_losses.get(STEPS, float("nan"))
        check(abs(got - loss.item()) <= 1e-5 * abs(loss.item()),
              f"{tag}: dgpt's loss at iter {STEPS} {got} vs the Python model's {loss.item()}")
        worst_w = worst_m = worst_key_bias = 0.0
        worst_name = None
        for name, p_ in params.items():
            got_w, want_w = mine["model"][name], p_.detach()
            if name.endswith(".attn.c_attn.bias"):
                # The key bias's gradient is zero in exact arithmetic (softmax is shift-invariant along a row), so
                # its AdamW update is driven by rounding noise and any two correct programs differ there by up to
                # about lr: the key third is held to that bound, the query and value thirds to the others'.
                c = got_w.numel() // 3
                worst_key_bias = max(worst_key_bias, (got_w[c:2 * c].double() - want_w[c:2 * c].double()).abs().max().item())
                got_w = torch.cat([got_w[:c], got_w[2 * c:]])
                want_w = torch.cat([want_w[:c], want_w[2 * c:]])
            d = rel_diff(got_w, want_w)
            if d > worst_w:
                worst_w, worst_name = d, name
            for key in ("exp_avg", "exp_avg_sq"):
                worst_m = max(worst_m, rel_diff(mine["optimizer"]["state"][name][key], optimizer.state[p_][key]))
            check(mine["optimizer"]["state"][name]["step"] == STEPS + 1, f"{tag}: step of {name} after one step")
        print(f"{tag}: one resumed step: loss {got:.8f} vs {loss.item():.8f}; weights within {worst_w:.2e}, "
              f"moments within {worst_m:.2e} (relative to each tensor's largest entry; the weights' worst: {worst_name}); "
              f"key biases (zero gradient, rounding-driven) within {worst_key_bias:.1e}")
        check(worst_w < 1e-6, f"{tag}: weights after one resumed step differ by {worst_w:.2e}")
        check(worst_key_bias <= LR, f"{tag}: the key biases after one resumed step differ by {worst_key_bias:.2e} > lr")
        check(worst_m < 1e-4, f"{tag}: moments after one resumed step differ by {worst_m:.2e}")

    # param_groups that are not nanoGPT's two (one group for everything): the optimizer restarts, said so
    t = Trained(True)
    model = t.model
    one_group = torch.optim.AdamW(model.parameters(), lr=LR, betas=BETAS)
    x, y = train_batch(tokens("train"), 7, 0, 0, BATCH, BLOCK)
    model(x, y)[1].backward()
    one_group.step()
    ck = t.checkpoint()
    ck["optimizer"] = one_group.state_dict()
    save(ck, "one_group")
    p = run(*resume_args("one_group", True, STEPS), timeout=300)
    log = p.stdout + p.stderr
    check("does not follow nanoGPT's parameter groups (it has 1 param_groups" in log and
          "restarts from zero moments" in log, f"one param group: the notice: {log[:3000]!r}")
    mine = torch.load(os.path.join(WORK, "one_group/ckpt.pt"), map_location="cpu")
    check(all(float(s["exp_avg_sq"].abs().max()) == 0 and s["step"] == 0 for s in mine["optimizer"]["state"].values()),
          "one param group: dgpt's checkpoint at the resumed iter holds zero moments")

    # other AdamW settings in the checkpoint than in the config: said so
    t = Trained(False)
    ck = t.checkpoint()
    ck["optimizer"]["param_groups"][0]["betas"] = (0.8, 0.95)
    save(ck, "betas")
    p = run(*resume_args("betas", False, STEPS), timeout=300)
    log = p.stdout + p.stderr
    check("betas=(0.8, 0.95)" in log and "beta1=0.9" in log, f"other betas: the notice: {log[:3000]!r}")


# ---------------------------------------------------------------------------------------------
# Hand-made pickles and archives.

def binunicode(s):
    b = s.encode()
    return b"X" + struct.pack("<I", len(b)) + b


def binint(i):
    """BININT, or LONG1 beyond 32 bits."""
    if -2 ** 31 <= i < 2 ** 31:
        return b"J" + struct.pack("<i", i)
    b = i.to_bytes(8, "little", signed=True)
    return b"\x8a\x08" + b


def glob(module, name):
    return b"c" + f"{module}\n{name}\n".encode()


def tup(*items):
    return b"(" + b"".join(items) + b"t"


def tensor_pickle(numel, size, stride, offset=0, storage="FloatStorage"):
    """{'w': _rebuild_tensor_v2(('storage', torch.<storage>, '0', 'cpu', numel), offset, size, stride, False,
    OrderedDict())}, protocol 2."""
    pid = tup(binunicode("storage"), glob("torch", storage), binunicode("0"), binunicode("cpu"), binint(numel))
    args = tup(pid + b"Q", binint(offset), tup(*map(binint, size)), tup(*map(binint, stride)), b"\x89",
               glob("collections", "OrderedDict") + b")R")
    return b"\x80\x02}" + binunicode("w") + glob("torch._utils", "_rebuild_tensor_v2") + args + b"Rs."


def archive(out_dir, pickle_bytes, storages=None, folder="ckpt"):
    os.makedirs(os.path.join(WORK, out_dir), exist_ok=True)
    path = os.path.join(WORK, out_dir, "ckpt.pt")
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        z.writestr(f"{folder}/data.pkl", pickle_bytes)
        for key, data in (storages or {}).items():
            z.writestr(f"{folder}/data/{key}", data)
        z.writestr(f"{folder}/version", b"3\n")
    return path


def rewrite(src, out_dir, change):
    """The archive `src` with each entry's bytes replaced by change(name, bytes), written by zipfile."""
    os.makedirs(os.path.join(WORK, out_dir), exist_ok=True)
    path = os.path.join(WORK, out_dir, "ckpt.pt")
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zout:
        for name in zin.namelist():
            zout.writestr(name, change(name, zin.read(name)))
    return path


def suite_corrupt():
    need_torch()
    prepare_shakespeare_char()
    good = save(Trained(True).checkpoint(), "good")
    blob = open(good, "rb").read()
    val = "--tokens=data/shakespeare_char/val.bin"

    def refused(out_dir, *needles, commands=("eval",)):
        for command in commands:
            args = {"eval": ["eval", f"--out_dir={out_dir}", val, "--device=cpu"],
                    "sample": ["sample", f"--out_dir={out_dir}", "--device=cpu", "--max_new_tokens=3"],
                    "resume": resume_args(out_dir, True, STEPS + 2)}[command]
            p = run(*args, expect=None, timeout=HANG)
            check_one_error(p.returncode, p.stderr, f"{command} {out_dir}", f"{out_dir}/ckpt.pt", *needles)
            if command != "resume":
                check(p.stdout == "", f"{command} {out_dir}: stdout {p.stdout[:300]!r}")
        return p.stderr.strip()

    shown = []
    # truncated archives: half the file, all but its last 10 bytes
    for name, cut in [("half", len(blob) // 2), ("short_tail", len(blob) - 10)]:
        os.makedirs(os.path.join(WORK, name))
        open(os.path.join(WORK, name, "ckpt.pt"), "wb").write(blob[:cut])
        shown.append(refused(name, "end-of-central-directory", "truncated", commands=("eval", "sample", "resume")))

    # os.system: refused by name, never run (the command would create `marker`)
    marker = os.path.join(WORK, "executed")
    call = binunicode(f"touch {marker}") + b"\x85R."
    archive("os_system", b"\x80\x02" + glob("os", "system") + call)
    shown.append(refused("os_system", "'os.system'", "not loaded", commands=("eval", "sample", "resume")))
    archive("stack_global", b"\x80\x04\x95\x20\x00\x00\x00\x00\x00\x00\x00\x8c\x05posix\x94\x8c\x06system\x94\x93\x94"
            + binunicode(f"touch {marker}") + b"\x94\x85\x94R\x94.")
    refused("stack_global", "'posix.system'")
    archive("builtins_eval", b"\x80\x02" + glob("builtins", "eval") + binunicode("1") + b"\x85R.")
    refused("builtins_eval", "'builtins.eval'")
    # the global inside a tensor's reconstruction (not at the top)
    bad_rebuild = tensor_pickle(4, [4], [1]).replace(glob("torch._utils", "_rebuild_tensor_v2"),
                                                     glob("torch._utils", "_rebuild_device_tensor_from_numpy"))
    archive("rebuild_numpy", bad_rebuild, {"0": b"\0" * 16})
    refused("rebuild_numpy", "'torch._utils._rebuild_device_tensor_from_numpy'")
    check(not os.path.exists(marker), "nothing in a refused pickle was executed")

    # a storage shorter than data.pkl says (a consistent archive written by zipfile, CRCs right)
    shorter = rewrite(good, "short_storage", lambda n, b: b[:-4] if n.endswith("/data/0") else b)
    shown.append(refused("short_storage", "storage", "data/0", "bytes", "elements", commands=("eval", "sample", "resume")))
    archive("huge_numel", tensor_pickle(1 << 40, [4], [1]), {"0": b"\0" * 16})
    refused("huge_numel", "holds 16 bytes", "1099511627776 elements")
    archive("missing_storage", tensor_pickle(4, [4], [1]))
    refused("missing_storage", "storage 0", "lacks")
    # a flipped byte inside a storage: its CRC-32
    with zipfile.ZipFile(good) as z:
        info = next(i for i in z.infolist() if i.filename.endswith("/data/0"))
    corrupt = bytearray(blob)
    name_len, extra_len = struct.unpack("<HH", blob[info.header_offset + 26:info.header_offset + 30])
    corrupt[info.header_offset + 30 + name_len + extra_len] ^= 0x40
    os.makedirs(os.path.join(WORK, "crc"))
    open(os.path.join(WORK, "crc/ckpt.pt"), "wb").write(bytes(corrupt))
    shown.append(refused("crc", "CRC-32", "data/0"))
    # a compressed entry (torch.save never writes one)
    os.makedirs(os.path.join(WORK, "deflated"))
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(os.path.join(WORK, "deflated/ckpt.pt"), "w",
                                                        zipfile.ZIP_DEFLATED) as zout:
        for n in zin.namelist():
            zout.writestr(n, zin.read(n))
    refused("deflated", "compressed")

    # tensors reaching past their storage
    archive("past_end", tensor_pickle(4, [2, 3], [3, 1]), {"0": b"\0" * 16})
    shown.append(refused("past_end", "reaches past", "[2, 3]"))
    archive("offset_past", tensor_pickle(4, [2], [1], offset=3), {"0": b"\0" * 16})
    refused("offset_past", "reaches past")
    archive("overlapping", tensor_pickle(4, [1000000], [0]), {"0": b"\0" * 16})
    refused("overlapping", "overlapping")
    archive("negative_stride", tensor_pickle(4, [2], [-1]), {"0": b"\0" * 16})
    refused("negative_stride", "negative")

    # pickle machinery: unknown opcodes, the memo, the stack, marks, nesting, truncation
    cases = {
        "opcode_inst": (b"\x80\x02(ios\nsystem\n.", ["opcode 0x69", "INST"]),
        "opcode_ext1": (b"\x80\x02\x82\x01.", ["EXT1"]),
        "opcode_set": (b"\x80\x04\x8f.", ["EMPTY_SET"]),
        "protocol_6": (b"\x80\x06N.", ["protocol 6"]),
        "memo_missing": (b"\x80\x02h\x05.", ["memo entry 5"]),
        "underflow": (b"\x80\x02R.", ["REDUCE", "too few"]),
        "underflow_mark": (b"\x80\x02N(a.", ["APPEND", "too few"]),
        "no_mark": (b"\x80\x02Nt.", ["TUPLE", "no mark"]),
        "no_stop": (b"\x80\x02}", ["STOP", "truncated"]),
        "inside_opcode": (b"\x80\x02X\xff\xff\x00\x00ab", ["BINUNICODE", "truncated"]),
        "long_int": (b"\x80\x02\x8a\x09" + b"\x01" * 9 + b".", ["9 bytes"]),
        "deep": (b"\x80\x02)" + b"\x85" * 100000 + b".", ["deeper than 200"]),
        "self_list": (b"\x80\x02]q\x00h\x00a.", ["contains itself"]),
        "append_to_int": (b"\x80\x02K\x01Na.", ["APPEND", "int"]),
        "call_str": (b"\x80\x02" + binunicode("x") + b")R.", ["calls a str"]),
        "tuple_key": (b"\x80\x02}))s.", ["dict key", "tuple"]),
        "top_list": (b"\x80\x02]K\x01a.", ["top level is not a dict"]),
        "not_storage_pid": (b"\x80\x02" + binunicode("x") + b"Q.", ["persistent id"]),
    }
    for name, (pkl, needles) in cases.items():
        archive(name, pkl)
        msg = refused(name, *needles)
        if name in ("opcode_inst", "memo_missing", "deep"):
            shown.append(msg)
    # no data.pkl at all; two of them
    os.makedirs(os.path.join(WORK, "no_pickle"))
    with zipfile.ZipFile(os.path.join(WORK, "no_pickle/ckpt.pt"), "w") as z:
        z.writestr("x/other.txt", b"hello")
    refused("no_pickle", "no data.pkl")
    print("some of the messages:\n  " + "\n  ".join(shown))


if __name__ == "__main__":
    main(globals())
