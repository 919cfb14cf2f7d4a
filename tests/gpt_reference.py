"""SPEC §1 written out in Python torch from a checkpoint's dense weights, without a KV cache: the
reference the sampling tests compare dgpt's cached generation with.

Every block type is computed the way SPEC §1 states it, shard by shard (tp: the dense block;
spd: each shard's MLP sees its own partial attention; parallel: one stream per shard, merged at
the run's end by 'sum' or 'mean'), in float64, and generation is nanoGPT's GPT.generate: crop the
context to the last block_size tokens, recompute, take the most likely token.
"""
import math

import torch
import torch.nn.functional as F


class Reference:
    def __init__(self, ckpt_path):
        ck = torch.load(ckpt_path, map_location="cpu")
        self.sd = {k: v.double() for k, v in ck["model"].items()}
        a = ck["model_args"]
        self.C, self.H, self.L, self.T = a["n_embd"], a["n_head"], a["n_layer"], a["block_size"]
        dense = a["model_type"] == "gpt"
        self.N = 1 if dense else a["tp_size"]
        self.types = ["tp"] * self.L if dense or not a.get("block_types") else list(a["block_types"])
        self.merge = a.get("parallel_merge", "sum")
        self.config = dict(ck["config"])

    def _ln(self, x, name):
        return F.layer_norm(x, (self.C,), self.sd[name + ".weight"], self.sd.get(name + ".bias"))

    def _attn(self, u, p, i):
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
        att = (q @ k.transpose(-2, -1)) / math.sqrt(hd)
        att = att.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, hs * hd)
        return F.linear(y, self.sd[p + "attn.c_proj.weight"][:, i * hs * hd:(i + 1) * hs * hd])

    def _mlp(self, u, p, i):
        """M_i(u): shard i's rows of c_fc, its columns of c_proj, no c_proj bias."""
        F4 = 4 * self.C // self.N
        rows = slice(i * F4, (i + 1) * F4)
        b = self.sd.get(p + "mlp.c_fc.bias")
        h = F.gelu(F.linear(u, self.sd[p + "mlp.c_fc.weight"][rows], None if b is None else b[rows]))
        return F.linear(h, self.sd[p + "mlp.c_proj.weight"][:, rows])

    def _bias(self, name):
        return self.sd.get(name, 0.0)

    def logits(self, ids):
        """Logits [V] of the last position of the token list `ids` (at most block_size)."""
        x = self.sd["transformer.wte.weight"][torch.tensor([ids])] + self.sd["transformer.wpe.weight"][: len(ids)]
        shards = range(self.N)
        l = 0
        while l < self.L:
            p = f"transformer.h.{l}."
            t = self.types[l]
            b_attn, b_mlp = self._bias(p + "attn.c_proj.bias"), self._bias(p + "mlp.c_proj.bias")
            if t == "tp":
                h = x + sum(self._attn(self._ln(x, p + "ln_1"), p, i) for i in shards) + b_attn
                x = h + sum(self._mlp(self._ln(h, p + "ln_2"), p, i) for i in shards) + b_mlp
                l += 1
            elif t == "spd":
                a = [self._attn(self._ln(x, p + "ln_1"), p, i) for i in shards]
                x = x + b_attn + b_mlp + sum(a[i] + self._mlp(self._ln(x + a[i] + b_attn, p + "ln_2"), p, i)
                                             for i in shards)
                l += 1
            elif t == "parallel":
                x0, xs = x, [x] * self.N
                while l < self.L and self.types[l] == "parallel":
                    p = f"transformer.h.{l}."
                    zs = []
                    for i in shards:
                        a = self._attn(self._ln(xs[i], p + "ln_1"), p, i)
                        zs.append(a + self._mlp(self._ln(xs[i] + a, p + "ln_2"), p, i))
                    before, xs = xs, [xs[i] + zs[i] for i in shards]
                    l += 1
                if self.merge == "sum":
                    x = x0 + sum(xs[i] - x0 for i in shards)
                else:
                    x = sum(before) / self.N + sum(zs)
            else:
                raise ValueError(f"no reference for block type {t!r}")
        x = self._ln(x, "transformer.ln_f")
        return (x @ self.sd["transformer.wte.weight"].t())[0, -1]

    def greedy(self, ids, max_new_tokens):
        ids = list(ids)
        with torch.no_grad():
            for _ in range(max_new_tokens):
                ids.append(int(self.logits(ids[-self.T:]).argmax()))
        return ids
