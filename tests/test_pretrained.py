#!/usr/bin/env python3
"""GPT-2 weights from Hugging Face's files, and `dgpt export` back to them: usage:
test_pretrained.py DGPT_BINARY SUITE.

Suites: import (init_from='gpt2' from a folder: `dgpt eval` and greedy `dgpt sample` against a GPT-2
forward pass written here from the file, weights bitwise in init.pt, block_size cropping, tp_size and
other block types), cache (the Hugging Face cache layout under $HF_HOME / $HF_HUB_CACHE, and the
error that says where it looked and how to fetch the files), files (corrupt, truncated and hostile
safetensors and config.json files: one `error:` line each), train (fine-tuning from GPT-2: a fresh
optimizer at iter 0, resume, the config keys that apply on top) and export (`dgpt export` of dense
and all-tp checkpoints: the file read by the reader here gives dgpt's loss in the forward pass here,
export then import is bitwise; bias=False, padded vocabularies, refused block types).

Everything here is independent of dgpt's code: the safetensors writer and reader (struct + json +
numpy) follow the format's specification, and the forward pass is GPT-2's as Hugging Face's
GPT2LMHeadModel computes it (Conv1D: x @ W + b with W [in, out], LayerNorm eps 1e-5, causal
attention, tied lm_head), with the exact GELU dgpt and nanoGPT use or GPT-2's tanh approximation.
"""
import hashlib
import json
import math
import os
import re
import shutil
import struct

import numpy as np

import harness
from harness import WORK, check, check_one_error, main, prepare_shakespeare_char, skip
from harness import run_dgpt as run

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # pragma: no cover
    torch = None

GPT2_DIR = next((d for d in os.environ.get("DGPT_TEST_GPT2_DIRS", "").split(":")
                 if d and os.path.exists(os.path.join(d, "encoder.json"))
                 and os.path.exists(os.path.join(d, "vocab.bpe"))), None)
V = 50257
L, H, C, T = 2, 2, 16, 32  # the tiny GPT-2 of these tests: 2 layers, 2 heads, 16 wide, 32 positions
CPU = ["--device=cpu"]
HANG = 120

# ---------------------------------------------------------------------------------------------
# safetensors, written and read here (the format: u64 little-endian header length N, N bytes of JSON,
# then the data; offsets relative to the data's start)

NP_DTYPES = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4", "U8": "u1"}


def st_bytes(tensors, metadata=None, dtype="F32"):
    """The bytes of a safetensors file holding `tensors` ({name: array}, in this order)."""
    header, blobs, offset = {}, [], 0
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, a in tensors.items():
        b = np.ascontiguousarray(a).astype(NP_DTYPES[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": list(np.shape(a)), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    return header_bytes(header) + b"".join(blobs)


def header_bytes(header):
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)  # as Hugging Face's writer pads it
    return struct.pack("<Q", len(h)) + h


def read_st(path):
    """({name: float64 array}, metadata, header) of a safetensors file, checked as the format says."""
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8:8 + n])
    meta = header.pop("__metadata__", {})
    buf = data[8 + n:]
    out, spans = {}, []
    for name, e in header.items():
        b, end = e["data_offsets"]
        dt = np.dtype(NP_DTYPES[e["dtype"]])
        assert end - b == dt.itemsize * int(np.prod(e["shape"], dtype=np.int64)), name
        spans.append((b, end))
        out[name] = np.frombuffer(buf[b:end], dtype=dt).reshape(e["shape"])
    spans.sort()
    covered = 0
    for b, end in spans:
        assert b == covered, "holes or overlaps"
        covered = end
    assert covered == len(buf), "bytes after the last tensor"
    return out, meta, header


# ---------------------------------------------------------------------------------------------
# A GPT-2-shaped model in Hugging Face's layout (Conv1D weights [in, out]) and its forward pass

def tiny_gpt2(seed, n_layer=L, n_embd=C, n_pos=T, vocab=V, scale=0.3):
    g = np.random.default_rng(seed)
    c = n_embd
    w = {"wte.weight": g.normal(0, scale, (vocab, c)), "wpe.weight": g.normal(0, 0.1, (n_pos, c))}
    for l in range(n_layer):
        p = f"h.{l}."
        for ln in ("ln_1", "ln_2"):
            w[p + ln + ".weight"] = 1 + g.normal(0, 0.1, c)
            w[p + ln + ".bias"] = g.normal(0, 0.1, c)
        for name, shape in [("attn.c_attn", (c, 3 * c)), ("attn.c_proj", (c, c)), ("mlp.c_fc", (c, 4 * c)),
                            ("mlp.c_proj", (4 * c, c))]:
            w[p + name + ".weight"] = g.normal(0, scale, shape)
            w[p + name + ".bias"] = g.normal(0, 0.05, shape[1])
    w["ln_f.weight"] = 1 + g.normal(0, 0.1, c)
    w["ln_f.bias"] = g.normal(0, 0.1, c)
    # reorder as GPT2Model.state_dict() lists them (wte, wpe, h.0..., ln_f) with ln_1/attn/ln_2/mlp in order
    order = ["wte.weight", "wpe.weight"]
    for l in range(n_layer):
        p = f"h.{l}."
        order += [p + s for s in ["ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                                  "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                                  "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"]]
    order += ["ln_f.weight", "ln_f.bias"]
    return {k: w[k].astype(np.float32) for k in order}


def hf_config(n_layer=L, n_head=H, n_embd=C, n_pos=T, vocab=V, **extra):
    """gpt2's config.json as the hub has it, with these sizes."""
    c = {"activation_function": "gelu_new", "architectures": ["GPT2LMHeadModel"], "attn_pdrop": 0.1,
         "bos_token_id": 50256, "embd_pdrop": 0.1, "eos_token_id": 50256, "initializer_range": 0.02,
         "layer_norm_epsilon": 1e-05, "model_type": "gpt2", "n_ctx": n_pos, "n_embd": n_embd, "n_head": n_head,
         "n_layer": n_layer, "n_positions": n_pos, "resid_pdrop": 0.1, "summary_activation": None,
         "summary_first_dropout": 0.1, "summary_proj_to_labels": True, "summary_type": "cls_index",
         "summary_use_proj": True, "task_specific_params": {"text-generation": {"do_sample": True, "max_length": 50}},
         "vocab_size": vocab}
    c.update(extra)
    return c


def hub_style(w, n_pos=T):
    """The hub's gpt2 model.safetensors: GPT2Model's bare names, with the causal-mask buffers h.N.attn.bias."""
    out = {}
    for k, v in w.items():
        out[k] = v
        if k.endswith("ln_1.bias"):
            out[k.replace("ln_1.bias", "attn.bias")] = np.tril(np.ones((n_pos, n_pos), np.float32))[None, None]
    return out


def saved_style(w, lm_head=False):
    """What GPT2LMHeadModel.save_pretrained writes: 'transformer.' names, the tied lm_head left out (or kept)."""
    out = {"transformer." + k: v for k, v in w.items()}
    if lm_head:
        out["lm_head.weight"] = w["wte.weight"]
    return out


def write_model(folder, w, style="hub", config=None, **style_kw):
    os.makedirs(folder, exist_ok=True)
    tensors = hub_style(w) if style == "hub" else saved_style(w, **style_kw)
    open(os.path.join(folder, "model.safetensors"), "wb").write(st_bytes(tensors, {"format": "pt"}))
    json.dump(config or hf_config(), open(os.path.join(folder, "config.json"), "w"), indent=2)
    return folder


def bare(w):
    """{bare GPT2Model name: float64 torch tensor} from any of the styles."""
    out = {}
    for k, v in w.items():
        k = k[len("transformer."):] if k.startswith("transformer.") else k
        if k == "lm_head.weight" or re.fullmatch(r"h\.\d+\.attn\.(masked_)?bias", k):
            continue  # the tied output layer, the causal-mask buffers
        out[k] = torch.tensor(np.asarray(v), dtype=torch.float64)
    return out


def gpt2_logits(w, idx, n_head=H, gelu="tanh"):
    """GPT2LMHeadModel's forward pass in float64: logits [B, T, V]."""
    w = bare(w)
    n_layer = sum(1 for k in w if k.endswith(".ln_1.weight"))
    c = w["wte.weight"].shape[1]
    idx = torch.as_tensor(idx, dtype=torch.long)
    b, t = idx.shape
    x = w["wte.weight"][idx] + w["wpe.weight"][:t]
    mask = torch.ones(t, t, dtype=torch.bool).tril()
    act = (lambda z: F.gelu(z)) if gelu == "exact" else (lambda z: F.gelu(z, approximate="tanh"))
    for l in range(n_layer):
        p = f"h.{l}."
        h = F.layer_norm(x, (c,), w[p + "ln_1.weight"], w[p + "ln_1.bias"], 1e-5)
        q, k, v = (h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]).split(c, -1)
        q, k, v = (z.view(b, t, n_head, c // n_head).transpose(1, 2) for z in (q, k, v))
        att = (q @ k.transpose(-2, -1)) / math.sqrt(c // n_head)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(b, t, c)
        x = x + y @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = F.layer_norm(x, (c,), w[p + "ln_2.weight"], w[p + "ln_2.bias"], 1e-5)
        x = x + act(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]) @ w[p + "mlp.c_proj.weight"] \
            + w[p + "mlp.c_proj.bias"]
    x = F.layer_norm(x, (c,), w["ln_f.weight"], w["ln_f.bias"], 1e-5)
    return x @ w["wte.weight"].T


def window_loss(w, tokens, block, windows, **kw):
    """dgpt eval's loss: mean cross-entropy over consecutive windows x = tokens[jT, jT+T), y shifted by one."""
    x = torch.tensor([tokens[j * block:(j + 1) * block] for j in range(windows)])
    y = torch.tensor([tokens[j * block + 1:(j + 1) * block + 1] for j in range(windows)])
    logits = gpt2_logits(w, x, **kw)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1)).item()


def eval_loss(*args, **kw):
    p = run("eval", *args, timeout=HANG, **kw)
    return float(p.stdout.strip().splitlines()[-1].split()[1])


def close(a, b, rel=1e-5):
    return abs(a - b) <= rel * max(abs(b), 1e-30)


# ---------------------------------------------------------------------------------------------
# Data and helpers

def random_dataset(name="rnd", n_train=4096, n_val=1024, vocab=V, seed=7):
    """data/NAME/{train,val}.bin of random GPT-2 ids (< 50257) and no meta.json: a GPT-2 dataset."""
    d = os.path.join(WORK, "data", name)
    os.makedirs(d, exist_ok=True)
    g = np.random.default_rng(seed)
    for split, n in [("train", n_train), ("val", n_val)]:
        g.integers(0, vocab, n).astype("<u2").tofile(os.path.join(d, f"{split}.bin"))
    return d


def tokens_of(path):
    return np.fromfile(path, dtype="<u2").astype(np.int64).tolist()


def needs_torch():
    if torch is None:
        skip("this python3 has no torch (install python3-torch)")


def load_ckpt(path):
    return torch.load(path, map_location="cpu")


def nano_from_hf(w):
    """The nanoGPT-named, [out, in] tensors a GPT-2 file holds (the mask buffers dropped)."""
    out = {}
    for k, v in bare(w).items():
        v = v.float()
        if any(k.endswith(s) for s in ("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            v = v.t()
        out["transformer." + k] = v
    return out


def failing(args, *needles, env=None):
    p = run(*args, expect=None, timeout=HANG, env=env)
    check_one_error(p.returncode, p.stderr, [a[:80] for a in args], *needles)
    return p


def env_with(**kw):
    e = {k: v for k, v in os.environ.items() if not k.startswith("HF_") and k not in ("HUGGINGFACE_HUB_CACHE",
                                                                                      "XDG_CACHE_HOME")}
    e.update(kw)
    return e


# ---------------------------------------------------------------------------------------------

def suite_import():
    needs_torch()
    w = tiny_gpt2(1)
    folder = write_model(os.path.join(WORK, "gpt2"), w)  # the hub's own layout and names
    random_dataset()
    val = tokens_of(os.path.join(WORK, "data/rnd/val.bin"))
    ev = ["--init_from=gpt2", f"--pretrained_dir={folder}", "--tokens=data/rnd/val.bin"]

    # (b) dgpt eval = GPT-2's forward pass here (config.json's gelu_new: the tanh GELU, which dgpt then computes),
    # full and short windows
    for block, windows in [(T, 8), (7, 5), (1, 3)]:
        ref = window_loss(w, val, block, windows)
        got = eval_loss(*ev, f"--block_size={block}", f"--max_windows={windows}")
        check(close(got, ref), f"eval T={block}: dgpt {got!r} vs the forward pass here {ref!r}")
        print(f"eval T={block} x {windows}: dgpt {got:.10f}, reference {ref:.10f}, diff {abs(got - ref):.2e}")
    tanh = window_loss(w, val, T, 8, gelu="tanh")
    exact = window_loss(w, val, T, 8, gelu="exact")
    print(f"loss with GPT-2's tanh GELU {tanh:.8f} vs exact GELU {exact:.8f}: diff {abs(tanh - exact):.2e}")
    check(abs(tanh - exact) > 1e-6, "this model tells the two GELUs apart (else the check above proves little)")
    p = run("eval", *ev, "--max_windows=2", timeout=HANG)
    check("tanh approximation" in p.stderr and "exact GELU" in p.stderr, f"the GELU notice: {p.stderr!r}")
    check("not gpt2's standard 12, 12, 768" in p.stderr, f"the sizes notice: {p.stderr!r}")
    # eval at tp_size 2 (all tp: the same function), and a save_pretrained file with lm_head
    got = eval_loss(*ev, "--max_windows=8", "--tp_size=2")
    check(close(got, tanh), f"eval at tp_size 2: {got!r} vs {tanh!r}")
    saved = write_model(os.path.join(WORK, "saved"), w, style="saved", lm_head=True,
                        config=hf_config(activation_function="gelu"))
    got = eval_loss("--init_from=gpt2", f"--pretrained_dir={saved}", "--tokens=data/rnd/val.bin", "--max_windows=8")
    check(close(got, exact), f"save_pretrained layout with lm_head: {got!r} vs {exact!r}")
    p = run("eval", "--init_from=gpt2", f"--pretrained_dir={saved}", "--tokens=data/rnd/val.bin", "--max_windows=1",
            timeout=HANG)
    check("tanh" not in p.stderr, f"activation_function 'gelu' gives no GELU notice: {p.stderr!r}")
    # pytorch_model.bin alone: PyTorch's torch.save of the state dict (an OrderedDict, with the mask buffers,
    # as older Hugging Face uploads hold), read by dgpt's torch.save reader: the same loss
    import collections
    binonly = os.path.join(WORK, "bin_ok")
    os.makedirs(binonly)
    sd = collections.OrderedDict((k, torch.tensor(np.asarray(v))) for k, v in hub_style(w).items())
    sd["h.0.attn.bias"] = torch.ones(1, 1, T, T).tril()
    torch.save(sd, os.path.join(binonly, "pytorch_model.bin"))
    json.dump(hf_config(), open(os.path.join(binonly, "config.json"), "w"))
    got = eval_loss("--init_from=gpt2", f"--pretrained_dir={binonly}", "--tokens=data/rnd/val.bin", "--max_windows=8")
    check(got == eval_loss(*ev, "--max_windows=8"), f"pytorch_model.bin: {got!r} vs model.safetensors")
    check(close(got, tanh), f"pytorch_model.bin: {got!r} vs the forward pass here {tanh!r}")

    # the weights, bitwise, as training sees them: init.pt of an eval_only run, dense and at tp_size 2
    tr = ["train", *CPU, "--dataset=rnd", "--init_from=gpt2", f"--pretrained_dir={folder}", "--eval_only=True",
          "--save_initial_weights=True", "--eval_iters=1", "--batch_size=2"]
    p = run(*tr, f"--block_size={T}", "--out_dir=dense", timeout=HANG)
    check("initializing from gpt2 weights" in p.stdout, f"train says where the weights come from: {p.stdout[-2000:]!r}")
    expect = nano_from_hf(w)
    ck = load_ckpt(os.path.join(WORK, "dense/init.pt"))
    names = set(ck["model"]) - {"lm_head.weight"}
    check(names == set(expect), f"init.pt names {sorted(names ^ set(expect))}")
    for k, v in expect.items():
        check(k in ck["model"] and torch.equal(ck["model"][k], v), f"init.pt {k} is the file's tensor, bitwise")
    check(torch.equal(ck["model"]["lm_head.weight"], ck["model"]["transformer.wte.weight"]), "lm_head tied to wte")
    a = ck["model_args"]
    check((a["n_layer"], a["n_head"], a["n_embd"], a["vocab_size"], a["block_size"], a["bias"]) ==
          (L, H, C, V, T, True), f"model_args {a}")
    check(ck["iter_num"] == 0 and all(s["step"] == 0 for s in ck["optimizer"]["state"].values()),
          "a fresh optimizer at iter 0")
    # block_size smaller than n_positions crops wpe (nanoGPT's crop_block_size)
    run(*tr, "--block_size=12", "--out_dir=crop", timeout=HANG)
    ck = load_ckpt(os.path.join(WORK, "crop/init.pt"))
    check(ck["model_args"]["block_size"] == 12 and torch.equal(ck["model"]["transformer.wpe.weight"],
                                                               expect["transformer.wpe.weight"][:12]),
          "block_size=12: wpe cropped to its first 12 rows")
    failing([*tr, "--block_size=33", "--out_dir=big"], "block_size=33", f"{T} positions", "at most 32")
    # tp_size 2, all tp: the same weights (gathered), and the same loss from them
    run(*tr, f"--block_size={T}", "--model_type=distributed_gpt", "--tp_size=2", "--out_dir=tp2", timeout=HANG)
    ck2 = load_ckpt(os.path.join(WORK, "tp2/init.pt"))
    check(all(torch.equal(ck2["model"][k], v) for k, v in expect.items()), "tp_size 2: the same weights")
    shutil.copy(os.path.join(WORK, "tp2/init.pt"), os.path.join(WORK, "tp2/ckpt.pt"))
    got = eval_loss("--out_dir=tp2", "--tokens=data/rnd/val.bin", "--max_windows=8")
    check(close(got, tanh), f"tp_size 2 checkpoint of GPT-2: {got!r} vs {tanh!r}")
    got = eval_loss("--out_dir=tp2", "--tokens=data/rnd/val.bin", "--max_windows=8", "--tp_size=1")
    check(close(got, tanh), f"... evaluated at tp_size 1: {got!r} vs {tanh!r}")
    # the checkpoint records GPT-2's GELU, and its export says gelu_new again: the same function back
    check(ck2["model_args"].get("activation") == "gelu_tanh", f"activation recorded: {ck2['model_args']}")
    run("export", "--out_dir=tp2", "--to=hf_back", timeout=HANG)
    back_cfg = json.load(open(os.path.join(WORK, "hf_back/config.json")))
    check(back_cfg["activation_function"] == "gelu_new", f"exported activation {back_cfg['activation_function']!r}")
    again = eval_loss("--init_from=gpt2", "--pretrained_dir=hf_back", "--tokens=data/rnd/val.bin", "--max_windows=8")
    check(again == got, f"export of the imported GPT-2, imported again: {again!r} vs {got!r}")

    # other block types: a notice of what is reinterpreted; parallel blocks drop the c_proj biases
    p = run(*tr, f"--block_size={T}", "--model_type=distributed_gpt", "--tp_size=2",
            "--block_types=['spd','parallel']", "--out_dir=mixed", timeout=HANG)
    check("'spd'" in p.stdout and "'parallel'" in p.stdout and "starting point" in p.stdout
          and "c_proj biases" in p.stdout, f"the block-types notice: {p.stdout[-3000:]!r}")
    ck = load_ckpt(os.path.join(WORK, "mixed/init.pt"))
    check("transformer.h.0.attn.c_proj.bias" in ck["model"] and "transformer.h.1.attn.c_proj.bias" not in ck["model"]
          and "transformer.h.1.mlp.c_proj.bias" not in ck["model"], "parallel layer 1 has no c_proj biases")
    check(all(torch.equal(ck["model"][k], v) for k, v in expect.items() if k in ck["model"]),
          "spd/parallel: every tensor they keep is GPT-2's")
    # errors on the weights' sizes: block_types of the config's n_layer, tp_size not dividing n_head=2
    failing([*tr, "--block_size=16", "--block_types=['tp']*12", "--model_type=distributed_gpt", "--out_dir=e1"],
            "n_layer=2", "block_types has 12 entries")
    failing([*tr, "--block_size=16", "--model_type=distributed_gpt", "--tp_size=4", "--out_dir=e2"], "n_head=2",
            "tp_size (4)")
    # a character dataset does not fit GPT-2's vocabulary
    prepare_shakespeare_char()
    failing(["train", *CPU, "--dataset=shakespeare_char", "--init_from=gpt2", f"--pretrained_dir={folder}",
             "--block_size=16", "--max_iters=1", "--out_dir=e3"], "50257", "65 characters")

    # sample --init_from=gpt2 uses the GPT-2 tokenizer: greedy tokens = the forward pass here
    if GPT2_DIR is None:
        if harness.IN_CI:
            skip(f"no GPT-2 encoder.json/vocab.bpe in {os.environ.get('DGPT_TEST_GPT2_DIRS')!r} (./setup.sh)")
        print("no GPT-2 tokenizer files: the sampling checks are skipped")
        return
    env = dict(os.environ, DGPT_GPT2_DIR=GPT2_DIR)
    ids = [50256]
    for _ in range(12):
        logits = gpt2_logits(w, [ids[-T:]])[0, -1]
        top = logits.topk(2).values
        check(float(top[0] - top[1]) > 1e-4, "greedy choice is not a near tie")
        ids.append(int(logits.argmax()))
    text = "<|endoftext|>" + decode(ids[1:])
    for extra in [[], ["--tp_size=2"], ["--model_type=distributed_gpt", "--tp_size=2"]]:
        p = run("sample", *CPU, "--init_from=gpt2", f"--pretrained_dir={folder}", "--start=<|endoftext|>",
                "--num_samples=1", "--max_new_tokens=12", "--temperature=0", *extra, env=env, timeout=HANG)
        check(p.stdout == text + "\n---------------\n", f"sample {extra}: {p.stdout!r} vs {text!r}")
    # a vocabulary smaller than the tokenizer's
    small = write_model(os.path.join(WORK, "small"), tiny_gpt2(2, vocab=100), config=hf_config(vocab=100))
    failing(["sample", *CPU, "--init_from=gpt2", f"--pretrained_dir={small}"], "vocabulary of 100", "50257", env=env)


_DECODER = None


def decode(ids):
    global _DECODER
    if _DECODER is None:
        bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
        cs, n = bs[:], 0
        for b in range(256):
            if b not in bs:
                bs.append(b)
                cs.append(256 + n)
                n += 1
        inv = {chr(c): b for b, c in zip(bs, cs)}
        enc = json.load(open(os.path.join(GPT2_DIR, "encoder.json"), encoding="utf-8"))
        _DECODER = {i: bytes(inv[ch] for ch in s) for s, i in enc.items()}
    return b"".join(_DECODER[i] for i in ids).decode("utf-8", errors="replace")


def make_cache(hub, repo, w, ref=True, style="hub"):
    """huggingface_hub's layout: hub/models--REPO/{blobs/<sha256>, snapshots/<commit>/<file> -> ../../blobs/<sha256>,
    refs/main}, plus an older snapshot that lacks the weights."""
    root = os.path.join(hub, "models--" + repo)
    commit = hashlib.sha1(repo.encode()).hexdigest()
    snap = os.path.join(root, "snapshots", commit)
    os.makedirs(snap, exist_ok=True)
    os.makedirs(os.path.join(root, "blobs"), exist_ok=True)
    tensors = hub_style(w) if style == "hub" else saved_style(w)
    for name, data in [("model.safetensors", st_bytes(tensors, {"format": "pt"})),
                       ("config.json", json.dumps(hf_config(), indent=2).encode())]:
        sha = hashlib.sha256(data).hexdigest()
        open(os.path.join(root, "blobs", sha), "wb").write(data)
        os.symlink(os.path.join("..", "..", "blobs", sha), os.path.join(snap, name))
    old = os.path.join(root, "snapshots", "0" * 40)
    os.makedirs(old, exist_ok=True)
    open(os.path.join(old, "config.json"), "w").write("{}")  # no weights: never chosen
    if ref:
        os.makedirs(os.path.join(root, "refs"), exist_ok=True)
        open(os.path.join(root, "refs", "main"), "w").write(commit)
    return snap


def suite_cache():
    needs_torch()
    random_dataset()
    val = tokens_of(os.path.join(WORK, "data/rnd/val.bin"))
    ev = ["--tokens=data/rnd/val.bin", "--max_windows=4"]
    # (c) $HF_HOME/hub/models--gpt2/snapshots/<refs/main>/, files as symlinks into blobs/
    w = tiny_gpt2(3)
    snap = make_cache(os.path.join(WORK, "hfhome", "hub"), "gpt2", w)
    env = env_with(HF_HOME=os.path.join(WORK, "hfhome"))
    got = eval_loss("--init_from=gpt2", *ev, env=env)
    check(close(got, window_loss(w, val, T, 4)), f"found via HF_HOME: {got!r}")
    p = run("train", *CPU, "--dataset=rnd", "--init_from=gpt2", "--eval_only=True", "--eval_iters=1",
            "--block_size=8", "--batch_size=2", "--out_dir=o", env=env, timeout=HANG)
    check(snap in p.stdout, f"train names the snapshot it read ({snap}): {p.stdout[-1500:]!r}")
    # without refs/main: the snapshot that holds the files; the hub's newer name models--openai-community--gpt2
    w2 = tiny_gpt2(4)
    make_cache(os.path.join(WORK, "hub2"), "openai-community--gpt2-medium", w2, ref=False, style="saved")
    env2 = env_with(HF_HUB_CACHE=os.path.join(WORK, "hub2"), HF_HOME=os.path.join(WORK, "hfhome"))
    got = eval_loss("--init_from=gpt2-medium", *ev, env=env2)
    check(close(got, window_loss(w2, val, T, 4)), f"HF_HUB_CACHE before HF_HOME, openai-community name: {got!r}")
    # XDG_CACHE_HOME, then ~/.cache
    env3 = env_with(XDG_CACHE_HOME=os.path.join(WORK, "xdg"))
    make_cache(os.path.join(WORK, "xdg", "huggingface", "hub"), "gpt2", w2)
    got = eval_loss("--init_from=gpt2", *ev, env=env3)
    check(close(got, window_loss(w2, val, T, 4)), f"found via XDG_CACHE_HOME: {got!r}")
    env4 = env_with(HOME=os.path.join(WORK, "home"))
    make_cache(os.path.join(WORK, "home", ".cache", "huggingface", "hub"), "gpt2-large", w)
    got = eval_loss("--init_from=gpt2-large", *ev, env=env4)
    check(close(got, window_loss(w, val, T, 4)), f"found in ~/.cache/huggingface/hub: {got!r}")

    # (d) missing files: one line that says where it looked and the command that fetches them
    empty = env_with(HF_HOME=os.path.join(WORK, "nothing"))
    hub = os.path.join(WORK, "nothing", "hub")
    for cmd in (["eval", "--init_from=gpt2-xl", *ev],
                ["train", *CPU, "--dataset=rnd", "--init_from=gpt2-xl", "--block_size=16", "--out_dir=o2"],
                ["sample", *CPU, "--init_from=gpt2-xl"]):
        failing(cmd, f"{hub}/models--gpt2-xl/snapshots/*/", f"{hub}/models--openai-community--gpt2-xl/snapshots/*/",
                "model.safetensors and config.json", "$HF_HOME/hub",
                "`huggingface-cli download gpt2-xl model.safetensors config.json`", "hf_hub_download", "pretrained_dir",
                env=empty)
    failing(["eval", "--init_from=gpt2", "--pretrained_dir=nowhere", *ev], "pretrained_dir='nowhere' does not exist",
            "--local-dir nowhere", "huggingface-cli download gpt2")
    os.makedirs(os.path.join(WORK, "onlyconfig"))
    json.dump(hf_config(), open(os.path.join(WORK, "onlyconfig/config.json"), "w"))
    failing(["eval", "--init_from=gpt2", "--pretrained_dir=onlyconfig", *ev], "has no model.safetensors")
    # a folder with only pytorch_model.bin: the file dgpt needs, named
    os.makedirs(os.path.join(WORK, "binonly"))
    json.dump(hf_config(), open(os.path.join(WORK, "binonly/config.json"), "w"))
    open(os.path.join(WORK, "binonly/pytorch_model.bin"), "wb").write(b"PK\x03\x04")
    failing(["eval", "--init_from=gpt2", "--pretrained_dir=binonly", *ev], "pytorch_model.bin")  # a truncated zip
    failing(["eval", "--init_from=gpt3", *ev], "--init_from=gpt3", "'gpt2'")
    failing(["sample", *CPU, "--init_from=gpt3"], "init_from='gpt3'", "'gpt2'")
    failing(["train", *CPU, "--init_from=gpt3"], "init_from", "'gpt2-xl'", "'gpt3'")


def suite_files():
    """Hostile safetensors and config.json files: each one `error:` line naming the file and the problem."""
    needs_torch()
    random_dataset()
    w = tiny_gpt2(5)
    good = st_bytes(hub_style(w), {"format": "pt"})
    n = struct.unpack("<Q", good[:8])[0]
    header = json.loads(good[8:8 + n])
    body = good[8 + n:]

    def hdr(mutate):
        h = json.loads(json.dumps(header))
        mutate(h)
        return header_bytes(h) + body

    def shift(h, name, db, de):
        h[name]["data_offsets"] = [h[name]["data_offsets"][0] + db, h[name]["data_offsets"][1] + de]

    last = list(header)[-1]
    cases = {
        "empty": (b"", ["0 bytes", "fewer than the 8"]),
        "four": (b"\x01\x02\x03\x04", ["4 bytes", "truncated"]),
        "huge_header": (struct.pack("<Q", 1 << 40) + b"{}", ["header length is 1099511627776", "limit"]),
        "long_header": (struct.pack("<Q", 4096) + b"{}" + b" " * 100, ["header length is 4096", "only 102 bytes",
                                                                        "truncated"]),
        "truncated": (good[:len(good) - 1000], ["beyond the", "bytes of data", "truncated"]),
        "cut_in_header": (good[:8 + n // 2], ["header length", "truncated"]),
        "bad_json": (header_bytes({}).replace(b"{}", b"{[") + body, ["not valid JSON"]),
        "not_object": (struct.pack("<Q", 8) + b"[1,2,3] " + body, ["not a JSON object"]),
        "unknown_dtype": (hdr(lambda h: h["wte.weight"].update(dtype="F33")), ["unknown dtype 'F33'", "wte.weight"]),
        "no_dtype": (hdr(lambda h: h["wte.weight"].pop("dtype")), ["no dtype"]),
        "negative_shape": (hdr(lambda h: h["wpe.weight"].update(shape=[-1, C])), ["not a size"]),
        "shape_mismatch": (hdr(lambda h: h["wpe.weight"].update(shape=[T, C + 1])), ["wpe.weight", "needs",
                                                                                     "data_offsets"]),
        "overlap": (hdr(lambda h: shift(h, "wpe.weight", -4, -4)), ["overlaps"]),
        "reversed": (hdr(lambda h: h["wpe.weight"].update(data_offsets=[100, 50])), ["begin <= end"]),
        "out_of_range": (hdr(lambda h: shift(h, last, 0, 1 << 40)), ["beyond the", "truncated"]),
        "hole": (hdr(lambda h: shift(h, "wpe.weight", 4, 4)), ["belong to no tensor"]),
        "trailing": (good + b"\0" * 16, ["tensors end at byte"]),
        "bad_metadata": (hdr(lambda h: h.update(__metadata__={"format": 1})), ["__metadata__['format']"]),
        "offsets_missing": (hdr(lambda h: h["wte.weight"].pop("data_offsets")), ["no data_offsets"]),
        "unsupported_dtype": (hdr(lambda h: h["wpe.weight"].update(dtype="U16", shape=[T, 2 * C])),
                              ["dtype U16", "cannot hold"]),
    }
    ev = ["--tokens=data/rnd/val.bin", "--max_windows=1"]
    for name, (data, needles) in cases.items():
        d = os.path.join(WORK, "bad", name)
        os.makedirs(d)
        open(os.path.join(d, "model.safetensors"), "wb").write(data)
        json.dump(hf_config(), open(os.path.join(d, "config.json"), "w"))
        failing(["eval", "--init_from=gpt2", f"--pretrained_dir={d}", *ev], f"{d}/model.safetensors", *needles)
    # the same through train and sample
    d = os.path.join(WORK, "bad", "truncated")
    failing(["train", *CPU, "--dataset=rnd", "--init_from=gpt2", f"--pretrained_dir={d}", "--block_size=16",
             "--out_dir=o"],
            "model.safetensors", "truncated")
    failing(["sample", *CPU, "--init_from=gpt2", f"--pretrained_dir={d}"], "model.safetensors", "truncated")

    # valid safetensors that are not GPT-2's weights
    def weights_case(name, tensors, needles, config=None, dtype="F32"):
        d = os.path.join(WORK, "bad", name)
        os.makedirs(d)
        open(os.path.join(d, "model.safetensors"), "wb").write(st_bytes(tensors, {"format": "pt"}, dtype))
        json.dump(config or hf_config(), open(os.path.join(d, "config.json"), "w"))
        failing(["eval", "--init_from=gpt2", f"--pretrained_dir={d}", *ev], *needles)

    missing = dict(w)
    del missing["h.1.mlp.c_fc.bias"]
    weights_case("missing", missing, ["has no tensor 'h.1.mlp.c_fc.bias'"])
    weights_case("extra", {**w, "h.2.ln_1.weight": w["h.1.ln_1.weight"]}, ["'transformer.h.2.ln_1.weight'", "2 layers"])
    transposed = dict(w)
    transposed["h.0.mlp.c_fc.weight"] = w["h.0.mlp.c_fc.weight"].T  # nanoGPT's [out, in]: not Hugging Face's
    weights_case("transposed", transposed, ["h.0.mlp.c_fc.weight", "[64, 16]", "[16, 64]", "Conv1D"])
    weights_case("ints", w, ["dtype Long", "floating point"], dtype="I64")
    nan = dict(w)
    nan["ln_f.bias"] = nan["ln_f.bias"].copy()
    nan["ln_f.bias"][3] = np.nan
    weights_case("nan", nan, ["ln_f.bias", "inf or nan"])
    untied = saved_style(w, lm_head=True)
    untied["lm_head.weight"] = untied["lm_head.weight"] + 1
    weights_case("untied", untied, ["lm_head.weight is not wte.weight"])
    twice = {**saved_style(w), "wpe.weight": w["wpe.weight"]}
    weights_case("twice", twice, ["twice"])
    weights_case("sizes", w, ["'wte.weight' has shape [50257, 16]", "says [50257, 32]"], config=hf_config(n_embd=32))

    # F16 weights load, converted to float32
    d = os.path.join(WORK, "f16")
    os.makedirs(d)
    open(os.path.join(d, "model.safetensors"), "wb").write(st_bytes(hub_style(w), {"format": "pt"}, "F16"))
    json.dump(hf_config(), open(os.path.join(d, "config.json"), "w"))
    w16 = {k: v.astype(np.float16).astype(np.float32) for k, v in w.items()}
    val = tokens_of(os.path.join(WORK, "data/rnd/val.bin"))
    got = eval_loss("--init_from=gpt2", f"--pretrained_dir={d}", "--tokens=data/rnd/val.bin", "--max_windows=2")
    check(close(got, window_loss(w16, val, T, 2)), f"F16 file: {got!r}")

    # config.json: not GPT-2's architecture
    for name, text, needles in [
        ("cfg_json", "{not json", ["config.json", "not valid JSON"]),
        ("cfg_list", "[1]", ["not a JSON object"]),
        ("cfg_nolayer", json.dumps({k: v for k, v in hf_config().items() if k != "n_layer"}), ["no 'n_layer'"]),
        ("cfg_zero", json.dumps(hf_config(n_head=0)), ["'n_head' is 0"]),
        ("cfg_relu", json.dumps(hf_config(activation_function="relu")), ["activation_function is 'relu'"]),
        ("cfg_eps", json.dumps(hf_config(layer_norm_epsilon=1e-6)), ["layer_norm_epsilon", "1e-5"]),
        ("cfg_inner", json.dumps(hf_config(n_inner=48)), ["n_inner is 48", "4*n_embd = 64"]),
        ("cfg_type", json.dumps(hf_config(model_type="gpt_neo")), ["model_type is \"gpt_neo\""]),
        ("cfg_scale", json.dumps(hf_config(scale_attn_by_inverse_layer_idx=True)), ["scale_attn_by_inverse_layer_idx"]),
        ("cfg_heads", json.dumps(hf_config(n_head=3)), ["n_embd (16) is not divisible by n_head (3)"]),
    ]:
        d = os.path.join(WORK, "bad", name)
        os.makedirs(d)
        open(os.path.join(d, "model.safetensors"), "wb").write(good)
        open(os.path.join(d, "config.json"), "w").write(text)
        failing(["eval", "--init_from=gpt2", f"--pretrained_dir={d}", *ev], f"{d}/config.json", *needles)
    # a directory and a FIFO where the files should be
    d = os.path.join(WORK, "bad", "dirs")
    os.makedirs(os.path.join(d, "model.safetensors"))
    json.dump(hf_config(), open(os.path.join(d, "config.json"), "w"))
    failing(["eval", "--init_from=gpt2", f"--pretrained_dir={d}", *ev], "has no model.safetensors")


def suite_train():
    """Fine-tuning from GPT-2 as nanoGPT's finetune_shakespeare.py: a fresh optimizer at iter 0, then resume."""
    needs_torch()
    w = tiny_gpt2(6)
    folder = write_model(os.path.join(WORK, "gpt2"), w)
    random_dataset()
    cfg = os.path.join(WORK, "finetune.py")
    open(cfg, "w").write(f"""import time
out_dir = 'ft'
eval_interval = 2
eval_iters = 2
wandb_log = False
wandb_run_name = 'ft-' + str(time.time())
dataset = 'rnd'
init_from = 'gpt2'
pretrained_dir = {folder!r}
always_save_checkpoint = False
batch_size = 2
gradient_accumulation_steps = 2
max_iters = 4
block_size = 16
learning_rate = 3e-5
decay_lr = False
device = 'cpu'
dropout = 0.1
""")
    p = run("train", cfg, timeout=HANG)
    check("initializing from gpt2 weights" in p.stdout and "dropout=0.1" in p.stdout, f"{p.stdout[:3000]!r}")
    ev = harness.metrics("ft", "eval")
    tr = harness.metrics("ft", "train")
    check([e["iter"] for e in tr] == [0, 1, 2, 3, 4], f"iterations from 0: {[e['iter'] for e in tr]}")
    check(ev[0]["iter"] == 0, "the first evaluation is of GPT-2's weights, at iter 0")
    ck = load_ckpt(os.path.join(WORK, "ft/ckpt.pt"))
    steps = {s["step"] for s in ck["optimizer"]["state"].values()}
    check(steps == {ck["iter_num"]}, f"AdamW steps {steps} = iterations {ck['iter_num']} (a fresh optimizer)")
    check(ck["model_args"]["vocab_size"] == V and ck["model_args"]["bias"] is True and
          ck["model_args"]["dropout"] == 0.1 and ck["model_args"]["block_size"] == 16, f"{ck['model_args']}")
    # training moved the weights away from GPT-2's
    moved = any(not torch.equal(ck["model"][k], v) for k, v in nano_from_hf(w).items() if k != "transformer.wpe.weight")
    check(moved, "training changed the weights")
    # resume (the checkpoint's vocabulary of 50257 on a GPT-2 dataset of 50304) and sample from it
    run("train", cfg, "--init_from=resume", "--max_iters=6", timeout=HANG)
    tr = harness.metrics("ft", "train")
    check([e["iter"] for e in tr][-2:] == [5, 6] or [e["iter"] for e in tr][-3:] == [4, 5, 6],
          f"resumed iterations {[e['iter'] for e in tr]}")
    got = eval_loss("--out_dir=ft", "--tokens=data/rnd/val.bin", "--block_size=16", "--max_windows=4")
    ck = load_ckpt(os.path.join(WORK, "ft/ckpt.pt"))
    hf_now = {k: v for k, v in ck["model"].items() if k != "lm_head.weight"}
    ref = window_loss(export_layout(hf_now), tokens_of(os.path.join(WORK, "data/rnd/val.bin")), 16, 4)
    check(close(got, ref), f"the fine-tuned checkpoint evaluates as the forward pass here: {got!r} vs {ref!r}")
    # tp_size 2 fine-tuning starts from the same weights and loss as the dense run (all tp: the same function)
    run("train", cfg, "--model_type=distributed_gpt", "--tp_size=2", "--out_dir=ft_tp2", timeout=HANG)
    a = harness.losses("ft")
    b = harness.losses("ft_tp2")
    for it in range(0, 5):
        check(close(b[it], a[it], 1e-4), f"tp_size 2 iter {it}: {b[it]} vs dense {a[it]}")


def export_layout(nano):
    """nanoGPT-named tensors -> the bare Hugging Face names and [in, out] layout (for the forward pass here)."""
    out = {}
    for k, v in nano.items():
        v = v.double()
        if any(k.endswith(s) for s in ("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            v = v.t()
        out[k[len("transformer."):]] = v.numpy()
    return out


def check_export(folder, ck, what, vocab=None, bias=True):
    """The exported files: Hugging Face's names and layout, values = the checkpoint's, config.json's keys."""
    tensors, meta, header = read_st(os.path.join(WORK, folder, "model.safetensors"))
    n = struct.unpack("<Q", open(os.path.join(WORK, folder, "model.safetensors"), "rb").read(8))[0]
    check(n % 8 == 0, f"{what}: header padded to 8 bytes")
    check(meta == {"format": "pt"}, f"{what}: __metadata__ {meta}")
    a = ck["model_args"]
    vocab = vocab or a["vocab_size"]
    expect = {}
    for k, v in ck["model"].items():
        if k == "lm_head.weight":
            continue
        if k == "transformer.wte.weight":
            v = v[:vocab]
        if any(k.endswith(s) for s in ("c_attn.weight", "c_proj.weight", "c_fc.weight")):
            v = v.t()
        expect[k] = v
    if not bias:
        for l in range(a["n_layer"]):
            p = f"transformer.h.{l}."
            for s, width in [("ln_1.bias", 1), ("attn.c_attn.bias", 3), ("attn.c_proj.bias", 1), ("ln_2.bias", 1),
                             ("mlp.c_fc.bias", 4), ("mlp.c_proj.bias", 1)]:
                expect[p + s] = torch.zeros(width * a["n_embd"])
        expect["transformer.ln_f.bias"] = torch.zeros(a["n_embd"])
    check(set(tensors) == set(expect), f"{what}: names {sorted(set(tensors) ^ set(expect))}")
    for k, v in expect.items():
        check(k in tensors and header[k]["dtype"] == "F32" and torch.equal(torch.from_numpy(tensors[k].copy()), v),
              f"{what}: {k} = the checkpoint's, [in, out], bitwise")
    cfg = json.load(open(os.path.join(WORK, folder, "config.json")))
    want = {"activation_function": "gelu", "architectures": ["GPT2LMHeadModel"], "model_type": "gpt2",
            "n_layer": a["n_layer"], "n_head": a["n_head"], "n_embd": a["n_embd"], "n_positions": a["block_size"],
            "n_ctx": a["block_size"], "vocab_size": vocab, "layer_norm_epsilon": 1e-5, "tie_word_embeddings": True,
            "n_inner": None, "scale_attn_weights": True, "torch_dtype": "float32"}
    for k, v in want.items():
        check(cfg.get(k) == v, f"{what}: config.json {k} = {cfg.get(k)!r}, expected {v!r}")
    check(not any(".tmp." in f for f in os.listdir(os.path.join(WORK, folder))), f"{what}: no temporary file")
    return {k[len("transformer."):]: t.astype(np.float64) for k, t in tensors.items()}


def suite_export():
    needs_torch()
    random_dataset()
    val = tokens_of(os.path.join(WORK, "data/rnd/val.bin"))
    base = ["train", *CPU, "--dataset=rnd", "--n_layer=2", "--n_head=2", "--n_embd=16", "--block_size=16",
            "--batch_size=2", "--max_iters=2", "--eval_interval=2", "--eval_iters=1", "--gradient_accumulation_steps=1"]
    # a dense model with biases and nanoGPT's padded 50304 rows
    run(*base, "--bias=True", "--out_dir=dense", timeout=HANG)
    p = run("export", "--out_dir=dense", "--to=hf_dense", timeout=HANG)
    check("exported dense/ckpt.pt" in p.stdout and "vocab 50304" in p.stdout, f"export's line: {p.stdout!r}")
    ck = load_ckpt(os.path.join(WORK, "dense/ckpt.pt"))
    w = check_export("hf_dense", ck, "dense")
    # the exported file in the forward pass here = dgpt eval of the checkpoint
    got = eval_loss("--out_dir=dense", "--tokens=data/rnd/val.bin", "--max_windows=6")
    ref = window_loss(w, val, 16, 6, gelu="exact")  # a dgpt model: activation 'gelu'
    check(close(got, ref), f"exported dense: the forward pass here {ref!r} vs dgpt eval {got!r}")
    print(f"export dense: dgpt eval {got:.10f}, forward pass on the exported file {ref:.10f}, diff {abs(got - ref):.2e}")
    # export then import: bitwise the checkpoint's weights (init.pt of an eval_only run from the export)
    run("train", *CPU, "--dataset=rnd", "--init_from=gpt2", "--pretrained_dir=hf_dense", "--block_size=16",
        "--eval_only=True", "--save_initial_weights=True", "--eval_iters=1", "--batch_size=2", "--out_dir=back",
        timeout=HANG)
    back = load_ckpt(os.path.join(WORK, "back/init.pt"))
    check(set(back["model"]) == set(ck["model"]), f"re-imported names {sorted(set(back['model']) ^ set(ck['model']))}")
    for k, v in ck["model"].items():
        check(k in back["model"] and torch.equal(back["model"][k], v), f"re-imported {k} bitwise")
    got2 = eval_loss("--init_from=gpt2", "--pretrained_dir=hf_dense", "--tokens=data/rnd/val.bin", "--max_windows=6")
    check(got2 == got, f"eval of the export = eval of the checkpoint, exactly: {got2!r} vs {got!r}")
    # --vocab_size=50257: GPT-2's rows only (nanoGPT's padding rows are never targets)
    p = run("export", "--out_dir=dense", "--to=hf_50257", "--vocab_size=50257", timeout=HANG)
    check("first 50257 of the checkpoint's 50304" in p.stdout and "47 rows" in p.stdout, f"{p.stdout!r}")
    w = check_export("hf_50257", ck, "50257 rows", vocab=V)
    got3 = eval_loss("--init_from=gpt2", "--pretrained_dir=hf_50257", "--tokens=data/rnd/val.bin", "--max_windows=6")
    check(close(got3, window_loss(w, val, 16, 6, gelu="exact")), f"50257-row export: {got3!r}")
    failing(["export", "--out_dir=dense", "--to=x", "--vocab_size=60000"], "--vocab_size=60000", "50304 rows")
    failing(["export", "--out_dir=dense", "--to=x", "--vocab_size=0"], "--vocab_size=0", ">= 1")

    # all-tp at tp_size 2, bias=False, a character vocabulary: zero biases, the same function
    prepare_shakespeare_char()
    chars = ["train", *CPU, "--dataset=shakespeare_char", "--n_layer=2", "--n_head=4", "--n_embd=32",
             "--block_size=32", "--batch_size=4", "--max_iters=2", "--eval_interval=2", "--eval_iters=1",
             "--gradient_accumulation_steps=1", "--model_type=distributed_gpt", "--tp_size=2"]
    run(*chars, "--out_dir=tp2", timeout=HANG)
    p = run("export", "--out_dir=tp2", "--to=hf_tp2", timeout=HANG)
    check("bias=False" in p.stdout and "zeros" in p.stdout, f"bias notice: {p.stdout!r}")
    ck = load_ckpt(os.path.join(WORK, "tp2/ckpt.pt"))
    w = check_export("hf_tp2", ck, "tp2 bias=False", bias=False)
    cval = tokens_of(os.path.join(WORK, "data/shakespeare_char/val.bin"))
    got = eval_loss("--out_dir=tp2", "--tokens=data/shakespeare_char/val.bin", "--max_windows=6")
    ref = window_loss(w, cval, 32, 6, n_head=4, gelu="exact")
    check(close(got, ref), f"exported tp_size-2 bias=False: {ref!r} vs dgpt eval {got!r}")
    print(f"export tp2: dgpt eval {got:.10f}, forward pass on the exported file {ref:.10f}, diff {abs(got - ref):.2e}")
    cfg = json.load(open(os.path.join(WORK, "hf_tp2/config.json")))
    check("bos_token_id" not in cfg and cfg["vocab_size"] == 65, f"a 65-symbol vocabulary: {cfg}")
    # and back, into the character dataset (65 = its vocabulary), as a dense model at tp_size 4
    run("train", *CPU, "--dataset=shakespeare_char", "--init_from=gpt2", "--pretrained_dir=hf_tp2", "--eval_only=True",
        "--save_initial_weights=True", "--eval_iters=1", "--batch_size=2", "--block_size=32", "--out_dir=back_tp",
        "--model_type=distributed_gpt", "--tp_size=4", timeout=HANG)
    back = load_ckpt(os.path.join(WORK, "back_tp/init.pt"))
    for k, v in ck["model"].items():
        check(torch.equal(back["model"][k], v), f"tp2 re-imported {k} bitwise")
    check(back["model_args"]["bias"] is True and not back["model"]["transformer.ln_f.bias"].any(),
          "re-imported with GPT-2's biases, all zero")

    # block types that are not GPT-2's function: refused, saying why
    for types, needles in [("['tp','spd']", ["'spd' (layers 1)", "partial attention output"]),
                           ("['parallel','parallel']", ["'parallel' (layers 0, 1)", "own residual stream"]),
                           ("['neox','tp']", ["'neox' (layers 0)", "same input"]),
                           ("['ladder','ladder']", ["'ladder' (layers 0, 1)", "predecessor"])]:
        out = "bt_" + types.strip("[]").replace("'", "").replace(",", "_")
        run(*chars, f"--block_types={types}", f"--out_dir={out}", timeout=HANG)
        failing(["export", f"--out_dir={out}", "--to=hf_x"], "cannot export", "not GPT-2's block", *needles,
                "only the dense model")
        check(not os.path.exists(os.path.join(WORK, "hf_x")), "nothing written for a refused export")
    # missing checkpoint, an output path that is a file
    failing(["export", "--out_dir=none", "--to=hf_y"], "none/ckpt.pt")
    open(os.path.join(WORK, "afile"), "w").write("x")
    failing(["export", "--out_dir=dense", "--to=afile"], "afile")
    failing(["export", "--out_dir=dense"], "--to")


main(globals())
