#!/usr/bin/env python3
"""Hostile inputs (issue 13, part 3): usage: test_inputs.py DGPT_BINARY SUITE.

Suites: data (token files, meta.json, their vocabulary against the model's), checkpoint (hostile
ckpt.pt files: model_args out of range, non-float weights, FIFOs and devices), config (nesting,
directories, empty block_types, a byte-order mark, non-finite floats, sizes) and cli (CLI11's own
errors, numeric options out of range). Every case must be one `error: ` line on stderr naming the
cause, exit code 2, no stack trace, and nothing on stdout as if sample or eval had worked; nothing
may crash or hang (each run has a timeout).
"""
import json
import os
import shutil
import stat
import sys

import harness
from harness import WORK, check, check_one_error, main, prepare_shakespeare_char, skip
from harness import run_dgpt as run

# The tiny model of the brief: a checkpoint in a few seconds on 2 cores.
TINY = ["--device=cpu", "--dataset=shakespeare_char", "--n_layer=2", "--n_embd=32", "--n_head=4", "--block_size=32",
        "--batch_size=4", "--max_iters=2", "--eval_interval=2", "--eval_iters=1", "--gradient_accumulation_steps=1"]
HANG = 60  # seconds: a case that takes longer is a hang


def train_tiny(out_dir, *extra):
    prepare_shakespeare_char()
    run("train", *TINY, f"--out_dir={out_dir}", *extra)
    check(os.path.exists(os.path.join(WORK, out_dir, "ckpt.pt")), f"{out_dir}/ckpt.pt written")


def failing(args, *needles, quiet_stdout=None):
    """harness.error_case's checks (exit code 2, one `error:` line holding every needle, no stack trace) on one
    run, plus: nothing printed on stdout (sample and eval must not look as if they had worked)."""
    p = run(*args, expect=None, timeout=HANG)
    shown = [a if len(a) < 80 else a[:60] + "..." for a in args]
    check_one_error(p.returncode, p.stderr, shown, *needles)
    if quiet_stdout is None:  # train prints its effective config first, as it should
        quiet_stdout = not args or args[0] != "train"
    if quiet_stdout:
        check(p.stdout == "", f"{shown}: stdout should be empty, got {p.stdout[:300]!r}")


def dataset_copy(name, train=None, val=None, meta=None):
    """data/NAME: shakespeare_char's files, with train.bin / val.bin bytes and meta.json text replaced."""
    src = os.path.join(WORK, "data/shakespeare_char")
    d = os.path.join(WORK, "data", name)
    os.makedirs(d, exist_ok=True)
    for f, content in [("train.bin", train), ("val.bin", val)]:
        if content is None:
            shutil.copy(os.path.join(src, f), os.path.join(d, f))
        else:
            open(os.path.join(d, f), "wb").write(content)
    if meta is None:
        shutil.copy(os.path.join(src, "meta.json"), os.path.join(d, "meta.json"))
    elif meta is not False:
        open(os.path.join(d, "meta.json"), "w").write(meta)
    return d


def with_token(data, position, token):
    return data[:2 * position] + token.to_bytes(2, "little") + data[2 * position + 2:]


# ---------------------------------------------------------------------------------------------


def suite_data():
    prepare_shakespeare_char()
    src = os.path.join(WORK, "data/shakespeare_char")
    train = open(f"{src}/train.bin", "rb").read()
    val = open(f"{src}/val.bin", "rb").read()
    meta = json.load(open(f"{src}/meta.json"))
    base = ["train", *TINY, "--out_dir=out"]

    # a token id >= vocab_size: the file and the position are named (small files are checked whole at open)
    dataset_copy("badtrain", train=with_token(train, 12345, 70))
    failing([*base, "--dataset=badtrain"], "data/badtrain/train.bin", "token id 70", "position 12345", "65")
    dataset_copy("badval", val=with_token(val, 99, 65535))
    failing([*base, "--dataset=badval"], "data/badval/val.bin", "token id 65535", "position 99")
    # a file too big to scan at open is checked window by window as batches are drawn
    big = (1 << 26) + 4096
    dataset_copy("bigbad", train=(66).to_bytes(2, "little") * big)
    failing([*base, "--dataset=bigbad"], "data/bigbad/train.bin", "token id 66", "outside the vocabulary of 65")
    shutil.rmtree(os.path.join(WORK, "data/bigbad"))

    # meta.json against the data: a smaller vocabulary than the ids in train.bin
    small = dict(meta, itos=meta["itos"][:-1], vocab_size=64)
    small["stoi"] = {c: i for i, c in enumerate(small["itos"])}
    dataset_copy("smallmeta", meta=json.dumps(small))
    failing([*base, "--dataset=smallmeta"], "data/smallmeta/train.bin", "token id 64", "64 characters",
            "meta.json")
    # malformed or unreadable meta.json: an error, never a silent 50304-token GPT-2 model
    for name, text, needle in [("notjson", "{not json", "not JSON"),
                               ("notobject", "[1, 2]", "not a JSON object"),
                               ("noitos", json.dumps({"vocab_size": 65}), "itos"),
                               ("wrongsize", json.dumps(dict(meta, vocab_size=66)), "vocab_size is 66"),
                               ("unsorted", json.dumps(dict(meta, itos=meta["itos"][::-1], stoi={})), "ascending"),
                               ("twochars", json.dumps(dict(meta, itos=["ab"] + meta["itos"][1:])), "one character"),
                               ("badstoi", json.dumps(dict(meta, stoi={"a": 0})), "stoi"),
                               ("tokenizer", json.dumps({"tokenizer": "sentencepiece"}), "unknown tokenizer"),
                               ("gpt2size", json.dumps({"tokenizer": "gpt2", "vocab_size": 65}), "50257"),
                               ("empty", "", "not JSON")]:
        dataset_copy(f"meta_{name}", meta=text)
        failing([*base, f"--dataset=meta_{name}"], f"data/meta_{name}/meta.json", needle)
    d = dataset_copy("metadir", meta=False)
    os.makedirs(f"{d}/meta.json")
    failing([*base, "--dataset=metadir"], "data/metadir/meta.json", "not a regular file")
    if os.geteuid() != 0:  # root reads any file
        d = dataset_copy("metaperm")
        os.chmod(f"{d}/meta.json", 0)
        failing([*base, "--dataset=metaperm"], "data/metaperm/meta.json", "cannot read")

    # token files that are not regular files: refused at once, nothing read (no hang on a FIFO)
    d = dataset_copy("fifo")
    os.remove(f"{d}/train.bin")
    os.mkfifo(f"{d}/train.bin")
    failing([*base, "--dataset=fifo"], "data/fifo/train.bin", "not a regular file", "FIFO")
    d = dataset_copy("bindir")
    os.remove(f"{d}/val.bin")
    os.makedirs(f"{d}/val.bin")
    failing([*base, "--dataset=bindir"], "data/bindir/val.bin", "directory")

    # sample and eval with a checkpoint whose vocabulary is not the data's
    train_tiny("tiny")
    bad_eval = os.path.join(WORK, "bad_eval.bin")
    open(bad_eval, "wb").write(with_token(val[:4000], 321, 200))
    failing(["eval", "--out_dir=tiny", f"--tokens={bad_eval}"], "bad_eval.bin", "token id 200", "position 321",
            "vocabulary of 65")
    failing(["eval", "--out_dir=tiny", f"--tokens={src}"], "not a regular file")
    meta_path = f"{src}/meta.json"
    original = open(meta_path).read()
    try:
        open(meta_path, "w").write(json.dumps(small))
        failing(["sample", "--out_dir=tiny", "--device=cpu", "--max_new_tokens=5", "--num_samples=1"],
                "tiny/ckpt.pt", "vocabulary of 65", "64 characters", "data/shakespeare_char/meta.json")
        os.remove(meta_path)
        failing(["sample", "--out_dir=tiny", "--device=cpu", "--max_new_tokens=5", "--num_samples=1"],
                "vocabulary of 65", "50304", "does not exist")
        open(meta_path, "w").write("{")
        failing(["sample", "--out_dir=tiny", "--device=cpu", "--max_new_tokens=5", "--num_samples=1"],
                "meta.json", "not JSON")
    finally:
        open(meta_path, "w").write(original)
    p = run("sample", "--out_dir=tiny", "--device=cpu", "--max_new_tokens=5", "--num_samples=1")
    check(p.stdout.endswith("---------------\n"), f"sample works again with the right meta.json: {p.stdout!r}")
    # a FILE: prompt that is not a regular file
    os.mkfifo(os.path.join(WORK, "prompt.fifo"))
    for prompt in ["prompt.fifo", "data", "/dev/zero"]:
        failing(["sample", "--out_dir=tiny", "--device=cpu", f"--start=FILE:{prompt}"], prompt, "not a regular file")
    # resuming on data whose ids the checkpoint's vocabulary does not hold
    failing(["train", *TINY, "--out_dir=tiny", "--init_from=resume", "--dataset=badtrain", "--max_iters=4"],
            "data/badtrain/train.bin", "token id 70")


# ---------------------------------------------------------------------------------------------


def hostile_checkpoints(good):
    """{name: (mutation, needles)}: each variant of the checkpoint `good` is written to WORK/<name>/ckpt.pt by
    Python's torch.save (the zip format), as a user or a broken script could."""
    import torch
    ck = torch.load(good, map_location="cpu")

    def args(**kw):
        return lambda c: c["model_args"].update(kw)

    def model(fn):
        return lambda c: c["model"].update({k: fn(v) for k, v in c["model"].items()})

    def one_tensor(name, fn):
        return lambda c: c["model"].__setitem__(name, fn(c["model"][name]))

    def opt(name, key, fn):
        return lambda c: c["optimizer"]["state"][name].__setitem__(key, fn(c["optimizer"]["state"][name][key]))

    w = "transformer.h.0.attn.c_attn.weight"
    cases = {
        "resaved": (lambda c: None, None),
        # written before vocab_parallel existed: read as vocab_parallel = False
        "no_vocab_parallel_key": (lambda c: c["model_args"].pop("vocab_parallel"), None),
        "n_head0": (args(n_head=0), ["n_head must be positive, got 0"]),
        "n_head_neg": (args(n_head=-4), ["n_head", "-4"]),
        "n_embd_div": (args(n_head=5), ["n_embd (32)", "n_head (5)"]),
        "n_embd0": (args(n_embd=0), ["n_embd must be positive"]),
        "n_layer0": (args(n_layer=0, block_types=[]), ["n_layer must be positive"]),
        "n_layer_big": (args(n_layer=100000, block_types=["tp"] * 100000), ["2 layers", "n_layer = 100000"]),
        "block_size0": (args(block_size=0), ["block_size must be positive"]),
        "block_size_big": (args(block_size=10 ** 9), ["transformer.wpe.weight", "[1000000000, 32]"]),
        "vocab0": (args(vocab_size=0), ["vocab_size must be positive"]),
        "vocab_big": (args(vocab_size=100), ["transformer.wte.weight", "[100, 32]"]),
        "tp0": (args(tp_size=0), ["tp_size must be positive, got 0"]),
        "tp_neg": (args(tp_size=-2), ["tp_size", "-2"]),
        "tp3": (args(tp_size=3, model_type="distributed_gpt"), ["n_head (4)", "tp_size (3)"]),
        # (a list of one entry would take APPEND, which LibTorch 1.13's unpickler lacks as well)
        "types_short": (args(n_layer=3), ["block_types has 2 entries", "n_layer is 3"]),
        "types_long": (args(block_types=["tp"] * 3), ["block_types has 3 entries"]),
        "types_unknown": (args(block_types=["tp", "moe"], model_type="distributed_gpt"), ["unknown block type 'moe'"]),
        "types_not_str": (args(block_types=["tp", 3]), ["block_types", "non-string"]),
        "dense_spd": (args(block_types=["tp", "spd"]), ["model_type='gpt'", "'spd'"]),
        "model_type": (args(model_type="bert"), ["model_type", "'bert'"]),
        "merge": (args(parallel_merge="max"), ["parallel_merge", "'max'"]),
        "dropout": (args(dropout=1.5), ["dropout must be in [0, 1)"]),
        "dropout_nan": (args(dropout=float("nan")), ["dropout", "nan"]),
        "n_head_float": (args(n_head=4.0), ["'n_head' in model_args is not an int"]),
        "no_n_head": (lambda c: c["model_args"].pop("n_head"), ["no 'n_head' in model_args"]),
        "int64": (model(lambda t: t.long()), ["dtype", "Long", "floating point"]),
        "bool": (one_tensor(w, lambda t: t > 0), ["dtype", "Bool"]),
        "nan_weight": (one_tensor(w, lambda t: t.clone().fill_(float("nan"))), [w, "inf or nan"]),
        "shape": (one_tensor(w, lambda t: t[:5]), [w, "shape"]),
        "not_tensor": (one_tensor(w, lambda t: 3), [w, "not a tensor"]),
        "iter_neg": (lambda c: c.update(iter_num=-5), ["iter_num must be >= 0, got -5"]),
        "iter_float": (lambda c: c.update(iter_num=2.5), ["'iter_num'", "not an int"]),
        "best_nan": (lambda c: c.update(best_val_loss=float("nan")), ["best_val_loss is nan"]),
        "opt_shape": (opt(w, "exp_avg", lambda t: t[:3]), ["exp_avg of " + w, "shape"]),
        "opt_int": (opt(w, "exp_avg_sq", lambda t: t.long()), ["exp_avg_sq of " + w, "dtype"]),
        "opt_negative": (opt(w, "exp_avg_sq", lambda t: -t - 1), ["exp_avg_sq of " + w, "negative"]),
        "opt_step": (opt(w, "step", lambda s: -1), ["optimizer step of " + w, "negative"]),
        "opt_unknown": (lambda c: c["optimizer"]["state"].update(
            {"transformer.h.9.x": c["optimizer"]["state"][w]}), ["transformer.h.9.x"]),
        "rng": (lambda c: c.update(rng_state=torch.zeros(7)), ["rng_state", "Float"]),
        "no_model": (lambda c: c.pop("model"), ["no 'model'"]),
        "top_list": (lambda c: None, ["the top level is not a dict"]),
        # a one-entry dict (opcode SETITEM), which LibTorch 1.13's unpickler could not read: dgpt's own reads it
        "setitem": (lambda c: c["optimizer"].pop("param_groups"), None),
    }
    for name, (mutate, needles) in cases.items():
        c = torch.load(good, map_location="cpu")
        # LibTorch 1.13's unpickler lacks SETITEM, which Python writes for a dict of one entry: the
        # optimizer gets nanoGPT's second key (dgpt ignores it) so that every dict takes SETITEMS.
        c["optimizer"]["param_groups"] = []
        mutate(c)
        if name == "top_list":
            c = [1, 2, 3]
        os.makedirs(os.path.join(WORK, name), exist_ok=True)
        torch.save(c, os.path.join(WORK, name, "ckpt.pt"), _use_new_zipfile_serialization=True)
    return {name: needles for name, (_, needles) in cases.items()}, ck


def suite_checkpoint():
    try:
        import torch  # noqa: F401
    except ImportError:
        skip("this python3 has no torch (install python3-torch)")
    train_tiny("good")
    val = "--tokens=data/shakespeare_char/val.bin"
    cases, _ = hostile_checkpoints(os.path.join(WORK, "good/ckpt.pt"))

    # a checkpoint re-saved by Python's torch.save is read as dgpt's own
    ref = run("eval", "--out_dir=good", val, "--max_windows=4")
    p = run("eval", "--out_dir=resaved", val, "--max_windows=4")
    check(p.stdout == ref.stdout.replace("good", "resaved") and "loss " in p.stdout,
          f"re-saved checkpoint: {p.stdout!r} vs {ref.stdout!r}")
    run("sample", "--out_dir=resaved", "--device=cpu", "--num_samples=1", "--max_new_tokens=3")
    p = run("eval", "--out_dir=no_vocab_parallel_key", val, "--max_windows=4")
    check(p.stdout == ref.stdout.replace("good", "no_vocab_parallel_key"),
          f"a checkpoint without model_args['vocab_parallel']: {p.stdout!r} vs {ref.stdout!r}")
    p = run("eval", "--out_dir=setitem", val, "--max_windows=4")
    check(p.stdout == ref.stdout.replace("good", "setitem"), f"a one-entry optimizer dict: {p.stdout!r} vs {ref.stdout!r}")

    for name, needles in cases.items():
        if needles is None:
            continue
        failing(["eval", f"--out_dir={name}", val, "--max_windows=2"], f"{name}/ckpt.pt", *needles)
    # n_head = 0 was a SIGFPE in eval, sample and resume alike
    failing(["sample", "--out_dir=n_head0", "--device=cpu", "--max_new_tokens=3", "--num_samples=1"],
            "n_head0/ckpt.pt", "n_head must be positive")
    failing(["train", *TINY, "--out_dir=n_head0", "--init_from=resume", "--max_iters=4"], "n_head0/ckpt.pt",
            "n_head must be positive")
    failing(["sample", "--out_dir=int64", "--device=cpu", "--max_new_tokens=3", "--num_samples=1"], "dtype")
    failing(["train", *TINY, "--out_dir=iter_neg", "--init_from=resume", "--max_iters=4"], "iter_num")

    # not a regular file: refused before reading (a FIFO without a writer, /dev/zero would hang or read GBs)
    os.makedirs(os.path.join(WORK, "fifo"))
    os.mkfifo(os.path.join(WORK, "fifo/ckpt.pt"))
    os.makedirs(os.path.join(WORK, "zero"))
    os.symlink("/dev/zero", os.path.join(WORK, "zero/ckpt.pt"))
    os.makedirs(os.path.join(WORK, "isdir/ckpt.pt"))
    for out_dir, kind in [("fifo", "a FIFO"), ("zero", "a device"), ("isdir", "a directory")]:
        failing(["eval", f"--out_dir={out_dir}", val], f"{out_dir}/ckpt.pt", "not a regular file", kind)
        failing(["sample", f"--out_dir={out_dir}", "--device=cpu"], f"{out_dir}/ckpt.pt", "not a regular file")
    failing(["train", *TINY, "--out_dir=fifo", "--init_from=resume"], "fifo/ckpt.pt", "not a regular file")
    # sizes and formats no checkpoint has
    for name, content, needle in [("empty", b"", "0 bytes"), ("tiny", b"PK\x03\x04", "4 bytes"),
                                  ("legacy", b"\x80\x02" + b"\x00" * 64, "not a zip archive")]:
        os.makedirs(os.path.join(WORK, f"ck_{name}"))
        open(os.path.join(WORK, f"ck_{name}/ckpt.pt"), "wb").write(content)
        failing(["eval", f"--out_dir=ck_{name}", val], f"ck_{name}/ckpt.pt", needle)
    # eval's window longer than the model's context
    failing(["eval", "--out_dir=good", val, "--block_size=33"], "--block_size=33", "block_size=32", "[1, 32]")


# ---------------------------------------------------------------------------------------------


def write(name, text, mode="w"):
    path = os.path.join(WORK, name)
    open(path, mode).write(text)
    return path


def suite_config():
    comms = ["comms", "--model_type=distributed_gpt", "--tp_size=2", "--n_layer=2", "--n_head=4", "--n_embd=32",
             "--block_size=32", "--batch_size=4", "--device=cpu"]
    # deep nesting: an error, not a segmentation fault (files and overrides, lists, parentheses, signs)
    deep = "[" * 10000 + "]" * 10000
    failing(["train", write("deep.py", f"n_layer = {deep}\n")], "deep.py:1", "n_layer", "nested more than 100")
    failing(["train", write("parens.py", "seed = " + "(" * 10000 + "1" + ")" * 10000 + "\n")], "nested more than 100")
    failing(["train", f"--block_types={deep}"], "block_types", "nested more than 100")
    failing(["train", "--seed=" + "-" * 10000 + "1"], "seed", "nested more than 100")
    failing(["sample", write("deep_sample.py", f"top_k = {deep}\n")], "top_k", "nested more than 100")
    p = run("train", f"--block_types={deep}", expect=None, timeout=HANG)
    check(len(p.stderr) < 1000, f"the message quotes only the start of the value ({len(p.stderr)} bytes)")
    # what is not a config file
    os.makedirs(os.path.join(WORK, "cfgdir"))
    failing(["train", os.path.join(WORK, "cfgdir")], "cfgdir", "directory")
    failing(["train", "/dev/zero"], "/dev/zero", "not a regular file")
    os.mkfifo(os.path.join(WORK, "fifo.py"))  # no writer: opening it would block forever
    failing(["train", os.path.join(WORK, "fifo.py")], "fifo.py", "not a regular file", "FIFO")
    failing(["comms", write("huge.py", "# " + "x" * (17 << 20) + "\n")], "huge.py", "limit")
    # block_types = [] is not None: it names no layer
    failing(["train", write("empty_types.py", "n_layer = 2\nblock_types = []\n")], "empty_types.py:2", "block_types",
            "empty list", "None")
    failing(["train", "--block_types=['tp'] * 0"], "block_types", "empty list")
    # a UTF-8 byte-order mark at the start is skipped
    bom = write("bom.py", "\ufeffn_layer = 3  # written by a Windows editor\nblock_types = ['tp', 'spd', 'tp']\n",
                mode="w")
    check(open(bom, "rb").read(3) == b"\xef\xbb\xbf", "the file starts with a BOM")
    p = run("comms", bom, *[a for a in comms[1:] if not a.startswith("--n_layer")], "--json")
    plan = json.loads(p.stdout)
    check(plan["forward_allreduce"] == 2 + 1 + 2, f"BOM config: {plan['forward_allreduce']} forward all-reduces")
    failing(["train", write("bom_mid.py", "n_layer = 2\n\ufeffn_head = 4\n")], "bom_mid.py:2")
    # non-finite floats, in files and overrides, train and sample
    failing(["train", "--learning_rate=1e999"], "learning_rate", "finite", "inf")
    failing(["train", write("inf.py", "min_lr = 1e999\n")], "min_lr", "finite", "inf")
    failing(["train", "--learning_rate=-1e999"], "learning_rate must be >= 0", "-inf")
    failing(["train", "--dropout=1e999 - 1e999"], "dropout", "nan")
    failing(["train", "--comm_timeout=1e999"], "comm_timeout", "finite", "inf")
    failing([*comms, "--grad_clip=1e999"], "grad_clip", "finite")
    failing(["sample", "--temperature=1e999"], "temperature", "finite", "inf")
    failing(["sample", "--top_p=1e999"], "top_p must be in (0, 1]", "inf")
    failing(["sample", "--comm_timeout=-1e999"], "comm_timeout", "-inf")
    # numeric keys out of range name the key, the value and the range
    failing(["train", "--block_size=-5"], "block_size must be positive, got -5")
    failing(["train", "--block_size=0"], "block_size must be positive, got 0")
    failing(["sample", "--max_new_tokens=-1"], "max_new_tokens must be >= 0, got -1")
    failing(["sample", "--num_samples=0"], "num_samples must be >= 1, got 0")
    failing(["sample", "--num_samples=-3"], "num_samples", "-3")
    failing(["sample", "--temperature=-0.5"], "temperature must be >= 0", "-0.5")
    failing(["sample", "--top_k=-1"], "top_k must be >= 0", "-1")
    failing(["sample", write("sample_cfg.py", "num_samples = -2\n")], "num_samples", "-2")


# ---------------------------------------------------------------------------------------------


def suite_cli():
    # CLI11's own errors: one `error:` line each, exit code 2
    failing([], "subcommand")
    failing(["frobnicate"], "frobnicate")
    failing(["eval"], "--tokens", "required", "dgpt eval --help")
    failing(["eval", "--tokens"], "--tokens")
    failing(["eval", "--tokens=x.bin", "--frobnicate"], "--frobnicate")
    failing(["eval", "--tokens=x.bin", "--max_windows=many"], "--max_windows", "many")
    failing(["launch", "--nproc"], "--nproc")
    failing(["launch", "--nproc", "two", "--", "train"], "two")
    failing(["train", "--n_layer", "3"], "--n_layer")  # an override needs --key=value
    failing(["prepare"], "dataset", "required")
    # numeric options out of range: the option, its value and the range
    tokens = "--tokens=x.bin"
    for args, needles in [
            (["eval", tokens, "--max_windows=0"], ["--max_windows=0", ">= 1"]),
            (["eval", tokens, "--max_windows=-1"], ["--max_windows=-1", ">= 1"]),
            (["eval", tokens, "--block_size=0"], ["--block_size=0", ">= 1"]),
            (["eval", tokens, "--block_size=-8"], ["--block_size=-8", ">= 1"]),
            (["eval", tokens, "--batch_size=0"], ["--batch_size=0", ">= 1"]),
            (["eval", tokens, "--tp_size=0"], ["--tp_size=0", ">= 1"]),
            (["eval", tokens, "--tp_size=-2"], ["--tp_size=-2", ">= 1"]),
            (["bench", "--iters=0"], ["--iters=0", ">= 1"]),
            (["bench", "--burnin=-1"], ["--burnin=-1", ">= 0"]),
            (["bench", "--peak_flops=-1"], ["--peak_flops=-1", "> 0"]),
            (["bench", "--peak_flops=inf"], ["--peak_flops=inf", "finite"]),
            (["bench", "--new_tokens=0"], ["--new_tokens=0", ">= 1"]),
            (["bench", "--prompt_len=-3"], ["--prompt_len=-3", ">= 1"]),
            (["bench", "--gen_batch=0"], ["--gen_batch=0", ">= 1"]),
            (["launch", "--nproc=0", "--", "train"], ["--nproc=0", "[1, 4096]"]),
            (["launch", "--nproc=2", "--master_port=70000", "--", "train"], ["--master_port=70000", "[1, 65535]"]),
            (["prepare", "openwebtext", "--val_fraction=1.5"], ["--val_fraction=1.5", "[0, 1)"]),
            (["prepare", "openwebtext", "--val_fraction=nan"], ["--val_fraction=nan", "[0, 1)"]),
            (["prepare", "openwebtext", "--threads=0"], ["--threads=0", ">= 1"]),
    ]:
        failing(args, *needles)
    # the defaults that mean "not set" still work: eval without --max_windows reads every window
    prepare_shakespeare_char()
    run("train", *TINY, "--out_dir=cli")
    p = run("eval", "--out_dir=cli", "--tokens=data/shakespeare_char/val.bin", "--batch_size=64")
    check("evaluated 3485 windows of 32 tokens" in p.stdout, f"eval reads every window by default: {p.stdout!r}")


if __name__ == "__main__":
    main(globals())
