"""SPEC §1 written out in Python torch on a dict of dense weights: the reference the training and
sampling tests compare dgpt with. Nothing here is taken from dgpt's C++ code.

Every block type is computed the way SPEC §1 states it, shard by shard (tp: the dense block;
spd: each shard's MLP sees its own partial attention; parallel: one stream per shard, merged at
the run's end by 'sum' or 'mean'; neox: attention and MLP of the same input, summed; ladder: each
sub-layer reads the stream without its predecessor's output). Dropout follows the rule dgpt documents (src/model/dropout.h,
README "Reproducibility"), implemented here again with numpy's uint64 arithmetic: a mask per
replicated tensor, per shard of a shard-local tensor, and per attention head.

`SpecGPT` is differentiable (weights may require grad) and batched; `Reference` loads a checkpoint
in float64 and generates as nanoGPT's GPT.generate does (crop to block_size, recompute, argmax).
"""
import math

import numpy as np
import torch
import torch.nn.functional as F

M64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
SITE_EMBEDDING, SITE_ATTN_PROBS, SITE_ATTN_OUT, SITE_MLP_OUT, SITE_BLOCK_OUT = 0, 1, 2, 3, 4


def splitmix64(z):
    """splitmix64's finalizer on a Python int."""
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & M64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & M64
    return z ^ (z >> 31)


def mix_seed(*parts):
    """A 64-bit seed from a tuple of integers, splitmix64 chained (README "Reproducibility")."""
    h = GOLDEN
    for p in parts:
        h = splitmix64((h + (p & M64) + GOLDEN) & M64)
    return h


def keep_mask(key, n, p):
    """Element e of a unit keyed `key` is kept iff splitmix64(key + (e+1)*golden) >> 40 >= round(p * 2^24)."""
    with np.errstate(over="ignore"):
        z = np.uint64(key) + np.arange(1, n + 1, dtype=np.uint64) * np.uint64(GOLDEN)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(40)) >= np.uint64(math.floor(p * (1 << 24) + 0.5))


class Dropout:
    """The masks of one micro-step: (seed, iter, micro) -> the step key, then one key per unit."""

    def __init__(self, p, seed, it, micro):
        self.p, self.step_key = p, mix_seed(seed, 3, it, micro)

    def mask(self, site, layer, unit, shape, dtype):
        keep = keep_mask(mix_seed(self.step_key, site, layer, unit), math.prod(shape), self.p)
        return torch.from_numpy(keep.reshape(shape)).to(dtype) * (1.0 / (1.0 - self.p))


def uniform_below(state, n):
    """dgpt's batch sampler: a splitmix64 stream from `state`, integers in [0, n) by rejection."""
    limit = M64 - M64 % n
    while True:
        state = (state + GOLDEN) & M64
        r = splitmix64(state)
        if r < limit:
            return r % n, state


def train_batch(tokens, seed, it, micro, batch_size, block_size):
    """Micro-batch `micro` of iteration `it`: B windows at offsets drawn from mix_seed(seed, 1, it, micro)."""
    state, xs, ys = mix_seed(seed, 1, it, micro), [], []
    for _ in range(batch_size):
        start, state = uniform_below(state, len(tokens) - block_size)
        xs.append(tokens[start:start + block_size].astype(np.int64))
        ys.append(tokens[start + 1:start + 1 + block_size].astype(np.int64))
    return torch.from_numpy(np.stack(xs)), torch.from_numpy(np.stack(ys))


class SpecGPT:
    """SPEC §1 on dense weights `sd` (nanoGPT names, no lm_head alias) for `model_args`."""

    def __init__(self, sd, model_args):
        a = model_args
        self.sd = sd
        self.C, self.H, self.L, self.T = a["n_embd"], a["n_head"], a["n_layer"], a["block_size"]
        dense = a["model_type"] == "gpt"
        self.N = 1 if dense else a["tp_size"]
        self.types = ["tp"] * self.L if dense or not a.get("block_types") else list(a["block_types"])
        self.merge = a.get("parallel_merge", "sum")
        self.gelu = "tanh" if a.get("activation", "gelu") == "gelu_tanh" else "none"  # GPT-2's gelu_new: tanh
        self.drop = None  # a Dropout while training

    def _ln(self, x, name):
        return F.layer_norm(x, (self.C,), self.sd[name + ".weight"], self.sd.get(name + ".bias"))

    def _dropout(self, x, site, layer, unit):
        if self.drop is None:
            return x
        return x * self.drop.mask(site, layer, unit, tuple(x.shape), x.dtype)

    def _attn(self, u, p, l, i):
        """A_i(u): shard i's heads, its columns of c_proj, no bias."""
        C, H, N = self.C, self.H, self.N
        hs, hd = H // N, C // H
        W, b = self.sd[p + "attn.c_attn.weight"], self.sd.get(p + "attn.c_attn.bias")
        qkv = []
        for part in range(3):  # c_attn is [q; k; v], each split by heads
            rows = slice(part * C + i * hs * hd, part * C + (i + 1) * hs * hd)
            qkv.append(F.linear(u, W[rows], None if b is None else b[rows]))
        B, T = u.shape[0], u.shape[1]
        q, k, v = (t.view(B, T, hs, hd).transpose(1, 2) for t in qkv)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(hd))
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
        if self.drop is not None:  # one mask per head, by its global index
            att = torch.stack([self._dropout(att[:, j], SITE_ATTN_PROBS, l, i * hs + j) for j in range(hs)], 1)
        y = (att @ v).transpose(1, 2).reshape(B, T, hs * hd)
        return F.linear(y, self.sd[p + "attn.c_proj.weight"][:, i * hs * hd:(i + 1) * hs * hd])

    def _mlp(self, u, p, i):
        """M_i(u): shard i's rows of c_fc, its columns of c_proj, no c_proj bias."""
        F4 = 4 * self.C // self.N
        rows = slice(i * F4, (i + 1) * F4)
        b = self.sd.get(p + "mlp.c_fc.bias")
        h = F.gelu(F.linear(u, self.sd[p + "mlp.c_fc.weight"][rows], None if b is None else b[rows]),
                   approximate=self.gelu)
        return F.linear(h, self.sd[p + "mlp.c_proj.weight"][:, rows])

    def _bias(self, name):
        return self.sd.get(name, 0.0)

    def forward(self, idx, targets=None):
        """idx [B, T] -> logits [B, T, V] and, with targets, the mean cross-entropy."""
        T = idx.shape[1]
        x = self.sd["transformer.wte.weight"][idx] + self.sd["transformer.wpe.weight"][:T]
        x = self._dropout(x, SITE_EMBEDDING, 0, 0)
        shards = range(self.N)
        l = 0
        while l < self.L:
            p = f"transformer.h.{l}."
            t = self.types[l]
            b_attn, b_mlp = self._bias(p + "attn.c_proj.bias"), self._bias(p + "mlp.c_proj.bias")
            if t == "tp":  # nanoGPT's block: dropout on each sub-layer's output (bias included)
                a = sum(self._attn(self._ln(x, p + "ln_1"), p, l, i) for i in shards) + b_attn
                h = x + self._dropout(a, SITE_ATTN_OUT, l, 0)
                m = sum(self._mlp(self._ln(h, p + "ln_2"), p, i) for i in shards) + b_mlp
                x = h + self._dropout(m, SITE_MLP_OUT, l, 0)
                l += 1
            elif t == "spd":  # each shard's partial outputs dropped with its own masks, biases not
                a = [self._dropout(self._attn(self._ln(x, p + "ln_1"), p, l, i), SITE_ATTN_OUT, l, i) for i in shards]
                x = x + b_attn + b_mlp + sum(
                    a[i] + self._dropout(self._mlp(self._ln(x + a[i] + b_attn, p + "ln_2"), p, i), SITE_MLP_OUT, l, i)
                    for i in shards)
                l += 1
            elif t == "parallel":
                x0, xs = x, [x] * self.N
                while l < self.L and self.types[l] == "parallel":
                    p = f"transformer.h.{l}."
                    zs = []
                    for i in shards:
                        a = self._dropout(self._attn(self._ln(xs[i], p + "ln_1"), p, l, i), SITE_ATTN_OUT, l, i)
                        m = self._dropout(self._mlp(self._ln(xs[i] + a, p + "ln_2"), p, i), SITE_MLP_OUT, l, i)
                        zs.append(a + m)
                    before, xs = xs, [xs[i] + zs[i] for i in shards]
                    l += 1
                if self.merge == "sum":
                    x = x0 + sum(xs[i] - x0 for i in shards)
                else:
                    x = sum(before) / self.N + sum(zs)
            elif t == "neox":  # one dropout on the sum of both sub-layers (site 4, unit 0)
                z = sum(self._attn(self._ln(x, p + "ln_1"), p, l, i) + self._mlp(self._ln(x, p + "ln_2"), p, i)
                        for i in shards)
                x = x + self._dropout(z + b_attn + b_mlp, SITE_BLOCK_OUT, l, 0)
                l += 1
            elif t == "ladder":  # x_m = x_{m-1} + drop(S_m(LN_m(x_{m-2})) + b_m), x_0 = x_{-1} = x
                xs = [x, x]
                while l < self.L and self.types[l] == "ladder":
                    p = f"transformer.h.{l}."
                    a = sum(self._attn(self._ln(xs[-2], p + "ln_1"), p, l, i) for i in shards)
                    xs.append(xs[-1] + self._dropout(a + self._bias(p + "attn.c_proj.bias"), SITE_ATTN_OUT, l, 0))
                    m = sum(self._mlp(self._ln(xs[-2], p + "ln_2"), p, i) for i in shards)
                    xs.append(xs[-1] + self._dropout(m + self._bias(p + "mlp.c_proj.bias"), SITE_MLP_OUT, l, 0))
                    l += 1
                x = xs[-1]
            else:
                raise ValueError(f"no reference for block type {t!r}")
        x = self._ln(x, "transformer.ln_f")
        logits = x @ self.sd["transformer.wte.weight"].t()
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits.view(-1, logits.size(-1)), targets.view(-1), ignore_index=-1)


class Reference:
    """A checkpoint's model in float64, for generation without a cache."""

    def __init__(self, ckpt_path):
        ck = torch.load(ckpt_path, map_location="cpu")
        sd = {k: v.double() for k, v in ck["model"].items() if k != "lm_head.weight"}
        self.model = SpecGPT(sd, ck["model_args"])
        self.T = self.model.T
        self.config = dict(ck["config"])

    def logits(self, ids):
        """Logits [V] of the last position of the token list `ids` (at most block_size)."""
        return self.model.forward(torch.tensor([ids]))[0][0, -1]

    def greedy(self, ids, max_new_tokens):
        ids = list(ids)
        with torch.no_grad():
            for _ in range(max_new_tokens):
                ids.append(int(self.logits(ids[-self.T:]).argmax()))
        return ids
