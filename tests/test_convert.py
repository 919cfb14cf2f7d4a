#!/usr/bin/env python3
"""A checkpoint's weights under other block types (conversion, zero-shot) and `dgpt sensitivity`.

usage: test_convert.py DGPT_BINARY SUITE   (suites: convert, sensitivity)

Both suites train a small all-tp model (4 layers of 32, 4 heads, block 16, biases, tp_size 4, float64,
200 steps: it has learnt enough for greedy samples and losses to tell block types apart). The references
are outside dgpt's code: tests/gpt_reference.py's SpecGPT (SPEC §1 per shard, float64) on the checkpoint's
weights as each block type holds them (parallel blocks have no c_proj biases, README "Checkpoints"), the
windows `dgpt eval` documents (x = tokens[jT, jT+T), y shifted by one), and separate `dgpt eval` /
`dgpt comms --json` runs for what `dgpt sensitivity` reports.

convert: `dgpt eval --block_types=... [--tp_size=N]` = SpecGPT of the converted weights (1e-5 relative: eval
runs in float32) for all-spd, a tp/spd/parallel mix, all-neox and all-ladder, at tp_size 2, 4 and 1; the one
notice line (the layers that change, the dropped biases, "another function"); what computes the same function
(tp_size changes, the dense 'gpt', block_types equal to the checkpoint's) gives the same loss (1e-6) and says so;
parallel -> tp adds zero c_proj biases; `dgpt sample --block_types` = SpecGPT's greedy tokens; `dgpt train
--init_from=DIR/ckpt.pt` under other block types: the checkpoint's sizes, its converted weights in init.pt,
the first step's loss = SpecGPT's on dgpt's first batch (float64, 1e-10), AdamW step counts of the new run
only, block_size cropped; errors.

sensitivity: every single-block and cumulative entry = a separate `dgpt eval` of its block_types minus the
base eval (1e-9 absolute), the base = plain eval, forward all-reduces = `dgpt comms --json`, the budget plan
re-derived from "single" (greedy, least sensitive first), its predicted and measured losses; a checkpoint
with a block already of the target type (delta 0); an all-spd checkpoint to parallel, where a lone switch saves
nothing but a run of two does (every budget its cumulative order reaches must be within reach); the table;
`--json=-`; errors.
"""
import json
import os
import re
import shutil
import sys

import numpy as np
import torch

from harness import WORK, check, error_case, main, metrics, prepare_shakespeare_char, run_dgpt

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from gpt_reference import SpecGPT, train_batch  # noqa: E402

SEED = 4242
BASE = ["--device=cpu", "--dataset=shakespeare_char", "--n_layer=4", "--n_head=4", "--n_embd=32", "--block_size=16",
        "--batch_size=16", "--gradient_accumulation_steps=1", "--bias=True", "--dropout=0.0", "--learning_rate=1e-2",
        "--decay_lr=False", "--warmup_iters=0", "--weight_decay=0.1", "--grad_clip=1.0", "--eval_iters=1",
        "--log_interval=1", "--always_save_checkpoint=True", f"--seed={SEED}", "--dtype=float64"]
VAL = "data/shakespeare_char/val.bin"
WINDOWS, T, EVAL_BATCH = 12, 16, 5  # 12 windows in batches of 5: the last batch is partial
EVAL = [f"--tokens={VAL}", f"--max_windows={WINDOWS}", f"--block_size={T}", f"--batch_size={EVAL_BATCH}"]
NO_CPROJ_BIAS = {"parallel"}  # README "Checkpoints": parallel blocks have no c_proj biases
ALL_TP = ["tp"] * 4
MIX = ["tp", "spd", "parallel", "parallel"]


def train_base(name="tp4", extra=(), steps=200):
    run_dgpt("train", *BASE, "--model_type=distributed_gpt", "--tp_size=4", f"--max_iters={steps}",
             f"--eval_interval={steps}", f"--out_dir={name}", *extra)
    return load(name)


def load(name, file="ckpt.pt"):
    return torch.load(os.path.join(WORK, name, file), map_location="cpu")


def weights(ck):
    return {k: v.double() for k, v in ck["model"].items() if k != "lm_head.weight"}


def as_type(sd, types):
    """The dense weights as a model of `types` holds them: no c_proj biases in parallel layers, zero ones
    added in the others where the weights have none (bias=True)."""
    out, C = dict(sd), sd["transformer.wte.weight"].shape[1]
    for l, t in enumerate(types):
        for name in ("attn.c_proj.bias", "mlp.c_proj.bias"):
            key = f"transformer.h.{l}.{name}"
            if t in NO_CPROJ_BIAS:
                out.pop(key, None)
            elif key not in out:
                out[key] = torch.zeros(C, dtype=torch.float64)
    return out


def val_windows():
    val = np.fromfile(os.path.join(WORK, VAL), dtype=np.uint16).astype(np.int64)
    x = torch.from_numpy(val[: WINDOWS * T].reshape(WINDOWS, T))
    y = torch.from_numpy(val[1: WINDOWS * T + 1].reshape(WINDOWS, T))
    return x, y


def spec_model(ck, types, tp_size, sd=None):
    args = dict(ck["model_args"], model_type="distributed_gpt", block_types=list(types), tp_size=tp_size)
    return SpecGPT(as_type(weights(ck) if sd is None else sd, types), args)


def spec_loss(ck, types, tp_size, sd=None):
    with torch.no_grad():
        return float(spec_model(ck, types, tp_size, sd).forward(*val_windows())[1])


def dgpt_eval(out_dir, *extra):
    """(loss, stderr lines) of `dgpt eval` on the test's windows."""
    p = run_dgpt("eval", f"--out_dir={out_dir}", *EVAL, *extra)
    last = p.stdout.strip().splitlines()[-1].split()
    check(last[0] == "loss" and f"evaluated {WINDOWS} windows of {T} tokens" in p.stdout, f"eval output {p.stdout!r}")
    return float(last[1]), [l for l in p.stderr.splitlines() if l.strip()]


def rel(a, b):
    return abs(a - b) / abs(b)


def bt(types):
    return "--block_types=" + repr(list(types))


def check_conversion_notice(lines, what, src, dst, dropped=(), added=(), same=False):
    """One notice line: the old and new block_types, the layers that change, the biases, which function."""
    check(len(lines) == 1, f"{what}: expected one notice line on stderr, got {lines}")
    line = lines[0] if lines else ""
    changed = [l for l, (a, b) in enumerate(zip(src, dst)) if a != b]
    check(line.startswith(f"converting weights: block_types {src!r} -> {dst!r}"), f"{what}: notice {line!r}")
    m = re.search(r"changed: layers? ([\d, ]+);", line)
    check(m is not None and [int(x) for x in m.group(1).split(",")] == changed,
          f"{what}: notice names changed layers {m.group(1) if m else None}, expected {changed}: {line!r}")
    for t in sorted(set(dst[l] for l in changed)):
        check(f"'{t}': " in line, f"{what}: notice does not say what '{t}' is: {line!r}")
    for layers, verb in ((dropped, "dropped"), (added, "added as zeros")):
        phrase = f"attn.c_proj.bias and mlp.c_proj.bias of layers {', '.join(map(str, layers))} {verb}"
        check((phrase in line) == bool(layers) and (verb in line) == bool(layers),
              f"{what}: notice about {verb} biases (layers {list(layers)}): {line!r}")
    check(("the same function" in line) == same and ("another function" in line) == (not same),
          f"{what}: notice should say {'the same' if same else 'another'} function: {line!r}")


# --------------------------------------------------------------------------------------------------------------
def suite_convert():
    prepare_shakespeare_char()
    ck = train_base()
    check(ck["model_args"]["block_types"] in (None, ALL_TP) and ck["model_args"]["tp_size"] == 4, f"{ck['model_args']}")
    base, lines = dgpt_eval("tp4")
    ref = spec_loss(ck, ALL_TP, 4)
    check(rel(base, ref) <= 1e-5 and not lines, f"unconverted eval {base} vs SpecGPT {ref}, notices {lines}")

    # (a, b) zero-shot: eval under other block types = SpecGPT of the converted weights; the notice
    worst = 0.0
    for types, tp in [(["spd"] * 4, 2), (MIX, 2), (["neox"] * 4, 2), (["ladder"] * 4, 2), (["spd"] * 4, 4),
                      (["parallel"] * 4, 4), (["ladder", "neox", "parallel", "spd"], 4), (["neox", "tp"] * 2, 1)]:
        what = f"eval --tp_size={tp} {bt(types)}"
        loss, lines = dgpt_eval("tp4", f"--tp_size={tp}", bt(types))
        ref = spec_loss(ck, types, tp)
        worst = max(worst, rel(loss, ref))
        check(rel(loss, ref) <= 1e-5, f"{what}: {loss} vs SpecGPT {ref} ({rel(loss, ref):.1e} relative)")
        # another function: dgpt's loss is the converted reference's, far nearer it than the unconverted loss (how
        # far the two references lie apart depends on the trained weights, so no fixed gap is asked for)
        check(rel(loss, base) > 1e-6 and rel(loss, base) > 100 * rel(loss, ref),
              f"{what}: the loss {loss} is not told apart from the unconverted {base} (SpecGPT {ref}): "
              f"not another function?")
        check_conversion_notice(lines, what, ALL_TP, types, dropped=[l for l, t in enumerate(types) if t == "parallel"])
    print(f"zero-shot eval = SpecGPT within {worst:.1e} relative (8 patterns); unconverted {base:.6f}", flush=True)

    # (c) the same function: another tp_size, the dense 'gpt', block_types equal to the checkpoint's
    same_worst = 0.0
    for extra in (["--tp_size=2"], ["--tp_size=1"], ["--tp_size=2", "--vocab_parallel=1"]):
        loss, lines = dgpt_eval("tp4", *extra)
        same_worst = max(same_worst, rel(loss, base))
        check(rel(loss, base) <= 1e-6, f"eval {extra}: {loss} vs unconverted {base}")
        check(len(lines) == 1 and lines[0].startswith("running the weights as distributed_gpt at tp_size")
              and "the same function" in lines[0] and "another function" not in lines[0], f"eval {extra}: notice {lines}")
    loss, lines = dgpt_eval("tp4", bt(ALL_TP))
    check(loss == base and not lines, f"eval with the checkpoint's own block_types: {loss} vs {base}, notices {lines}")
    # spd at tp_size 1 is the tp block (one shard: its partial attention is the whole sum; the biases kept)
    loss, _ = dgpt_eval("tp4", "--tp_size=1", bt(["spd"] * 4))
    check(rel(loss, base) <= 1e-6 and rel(spec_loss(ck, ["spd"] * 4, 1), spec_loss(ck, ALL_TP, 1)) <= 1e-12,
          f"all-spd at tp_size 1: {loss} vs unconverted {base}")
    # all-tp as the dense gpt: a fresh eval-only run from the checkpoint saves its converted weights in init.pt
    p = run_dgpt("train", *BASE, "--model_type=gpt", "--init_from=tp4/ckpt.pt", "--eval_only=True",
                 "--save_initial_weights=True", "--out_dir=dense")
    text = p.stdout + p.stderr
    check("the same function" in text and "another function" not in text, f"train --model_type=gpt notice:\n{text[-3000:]}")
    init = load("dense", "init.pt")
    check(init["model_args"]["model_type"] == "gpt" and init["iter_num"] == 0, f"dense init.pt {init['model_args']}")
    check(set(init["model"]) == set(ck["model"]) and all(torch.equal(init["model"][k], ck["model"][k]) for k in ck["model"]),
          "dense init.pt: the checkpoint's weights bitwise")
    os.makedirs(os.path.join(WORK, "dense_ck"))
    shutil.copy(os.path.join(WORK, "dense", "init.pt"), os.path.join(WORK, "dense_ck", "ckpt.pt"))
    loss, _ = dgpt_eval("dense_ck")
    same_worst = max(same_worst, rel(loss, base))
    check(rel(loss, base) <= 1e-6, f"dense conversion: eval {loss} vs unconverted {base}")
    # both eval-only runs draw the same batches (seed): step-0 losses of the same function, float64
    run_dgpt("train", *BASE, "--model_type=distributed_gpt", "--tp_size=2", "--init_from=tp4/ckpt.pt",
             "--eval_only=True", "--out_dir=tp2_only")
    a, b = metrics("dense", "eval")[0], metrics("tp2_only", "eval")[0]
    check(a["iter"] == b["iter"] == 0 and rel(a["val_loss"], b["val_loss"]) <= 1e-10
          and rel(a["train_loss"], b["train_loss"]) <= 1e-10, f"eval-only runs: dense {a} vs tp_size 2 {b}")
    print(f"the same function (tp_size 2, 1, vocab_parallel, dense gpt): eval within {same_worst:.1e} relative of the "
          f"unconverted; eval-only runs dense vs tp_size 2: {rel(a['val_loss'], b['val_loss']):.1e}", flush=True)
    greedy = ["sample", "--out_dir=tp4", "--device=cpu", "--num_samples=1", "--max_new_tokens=30", "--start=ROMEO:",
              "--temperature=0"]
    plain = run_dgpt(*greedy)
    for extra in (["--model_type=gpt"], ["--tp_size=2"], ["--block_types=None"]):
        p = run_dgpt(*greedy, *extra)
        check(p.stdout == plain.stdout, f"sample {extra}: {p.stdout!r} vs {plain.stdout!r}")
        notes = [l for l in p.stderr.splitlines() if not l.startswith("sampling:")]
        check((notes == []) if extra == ["--block_types=None"] else
              (len(notes) == 1 and "the same function" in notes[0]), f"sample {extra}: notices {notes}")

    # sample --block_types: SpecGPT's greedy tokens of the converted weights
    meta = json.load(open(os.path.join(WORK, "data/shakespeare_char/meta.json")))
    for types, tp in [(["spd"] * 4, 2), (MIX, 2)]:
        p = run_dgpt(*greedy, f"--tp_size={tp}", bt(types))
        model = spec_model(ck, types, tp)
        ids = [meta["stoi"][c] for c in "ROMEO:"]
        with torch.no_grad():
            for _ in range(30):
                ids.append(int(model.forward(torch.tensor([ids[-T:]]))[0][0, -1].argmax()))
        want = "".join(meta["itos"][i] for i in ids)
        check(p.stdout == want + "\n---------------\n", f"sample {bt(types)} tp {tp}: {p.stdout!r}, SpecGPT {want!r}")
        notes = [l for l in p.stderr.splitlines() if not l.startswith("sampling:")]
        check_conversion_notice(notes, f"sample {bt(types)}", ALL_TP, types,
                                dropped=[l for l, t in enumerate(types) if t == "parallel"])

    # (e) training from the checkpoint's weights under the mix at tp_size 2; the config's sizes are not used
    steps = 10
    p = run_dgpt("train", *BASE, "--model_type=distributed_gpt", "--tp_size=2", bt(MIX), "--n_layer=6",
                 "--n_head=8", "--n_embd=64", "--init_from=tp4/ckpt.pt", f"--max_iters={steps}",
                 f"--eval_interval={steps}", "--save_initial_weights=True", "--out_dir=mix2")
    text = p.stdout + p.stderr
    check("initializing from the weights of tp4/ckpt.pt (iter 200): n_layer=4, n_head=4, n_embd=32, bias=True" in text,
          f"train --init_from: what it takes from the checkpoint:\n{text[-3000:]}")
    notes = [l[len("notice: "):] for l in text.splitlines() if l.startswith("notice: converting weights")]
    check_conversion_notice(notes, "train --init_from mix", ALL_TP, MIX, dropped=[2, 3])
    events = metrics("mix2")
    evals = metrics("mix2", "eval")
    check([e["iter"] for e in events] == list(range(steps + 1)) and evals[0]["iter"] == 0,
          f"mix2: logged iterations {[e['iter'] for e in events]}, evals {[e['iter'] for e in evals]}")
    check(all(np.isfinite(e["loss"]) for e in events), "mix2: finite losses")
    init = load("mix2", "init.pt")
    a = init["model_args"]
    check(a["n_layer"] == 4 and a["n_head"] == 4 and a["n_embd"] == 32 and a["bias"] is True and a["tp_size"] == 2
          and a["block_types"] == MIX and a["block_size"] == 16 and init["iter_num"] == 0, f"mix2 init.pt {a}")
    want = as_type({k: v for k, v in ck["model"].items() if k != "lm_head.weight"}, MIX)
    got = {k: v for k, v in init["model"].items() if k != "lm_head.weight"}
    check(set(got) == set(want) and all(torch.equal(got[k], want[k]) for k in want),
          f"mix2 init.pt: the checkpoint's weights less layers 2, 3's c_proj biases ({sorted(set(got) ^ set(want))})")
    # the first step's loss: SpecGPT of the converted weights on dgpt's first batch (no dropout, one micro-step)
    train_tokens = np.fromfile(os.path.join(WORK, "data/shakespeare_char/train.bin"), dtype=np.uint16)
    x, y = train_batch(train_tokens, SEED, 0, 0, 16, T)
    with torch.no_grad():
        first = float(spec_model(ck, MIX, 2).forward(x, y)[1])
    check(rel(events[0]["loss"], first) <= 1e-10, f"mix2 iter 0 loss {events[0]['loss']} vs SpecGPT {first}")
    print(f"train --init_from (mix, tp_size 2): iter 0 loss {events[0]['loss']:.10f} = SpecGPT on the first batch "
          f"within {rel(events[0]['loss'], first):.1e} relative", flush=True)
    ckpt = load("mix2")
    counts = {int(s["step"]) for s in ckpt["optimizer"]["state"].values()}
    check(ckpt["iter_num"] == steps and counts == {steps}, f"mix2 ckpt: iter {ckpt['iter_num']}, AdamW steps {counts}")
    check(ckpt["model_args"]["block_types"] == MIX and ckpt["model_args"]["tp_size"] == 2, f"{ckpt['model_args']}")
    # the run resumes as any other (its block_types and sizes from its own checkpoint): the step counts go on
    shutil.copytree(os.path.join(WORK, "mix2"), os.path.join(WORK, "mix2_resumed"))
    run_dgpt("train", *BASE, "--model_type=distributed_gpt", "--tp_size=2", "--init_from=resume",
             f"--max_iters={2 * steps}", f"--eval_interval={steps}", "--out_dir=mix2_resumed")
    resumed = load("mix2_resumed")
    counts = {int(s["step"]) for s in resumed["optimizer"]["state"].values()}
    check(resumed["iter_num"] == 2 * steps and counts == {2 * steps} and resumed["model_args"]["block_types"] == MIX,
          f"mix2 resumed: iter {resumed['iter_num']}, AdamW steps {counts}, {resumed['model_args']['block_types']}")
    # init.pt evaluates as eval --block_types of the source
    os.makedirs(os.path.join(WORK, "mix2_init"))
    shutil.copy(os.path.join(WORK, "mix2", "init.pt"), os.path.join(WORK, "mix2_init", "ckpt.pt"))
    a_loss, lines = dgpt_eval("mix2_init")
    b_loss, _ = dgpt_eval("tp4", "--tp_size=2", bt(MIX))
    check(a_loss == b_loss and not lines, f"mix2 init.pt eval {a_loss} vs eval --block_types of the source {b_loss}")

    # (d) parallel -> tp: zero c_proj biases added; the trained mix checkpoint's own eval as a control
    mix = weights(ckpt)
    check("transformer.h.2.attn.c_proj.bias" not in mix and "transformer.h.1.mlp.c_proj.bias" in mix, "mix2 biases")
    loss, lines = dgpt_eval("mix2")
    ref = spec_loss(ckpt, MIX, 2, mix)
    check(rel(loss, ref) <= 1e-5 and not lines, f"mix2 eval {loss} vs SpecGPT {ref}, notices {lines}")
    zero_worst = 0.0
    for types, tp in [(ALL_TP, 2), (ALL_TP, 4), (["spd", "tp", "neox", "ladder"], 2)]:
        what = f"mix2 eval --tp_size={tp} {bt(types)}"
        loss, lines = dgpt_eval("mix2", f"--tp_size={tp}", bt(types))
        ref = spec_loss(ckpt, types, tp, mix)  # as_type adds the zeros
        zero_worst = max(zero_worst, rel(loss, ref))
        check(rel(loss, ref) <= 1e-5, f"{what}: {loss} vs SpecGPT with zero biases {ref}")
        check_conversion_notice(lines, what, MIX, types, added=[2, 3])
    print(f"parallel -> tp/spd/neox/ladder (zero c_proj biases added) = SpecGPT within {zero_worst:.1e} relative",
          flush=True)
    # a trained spd checkpoint at another tp_size: another function, so only with block_types given
    error_case(["eval", "--out_dir=mix2", *EVAL, "--tp_size=4"], "tp_size=2", "block_types")
    loss, lines = dgpt_eval("mix2", "--tp_size=4", bt(MIX))
    check(rel(loss, spec_loss(ckpt, MIX, 4, mix)) <= 1e-5, f"mix2 at tp_size 4 with block_types given: {loss}")
    check(len(lines) == 1 and lines[0].startswith("running the weights as distributed_gpt at tp_size 4")
          and "another function" in lines[0], f"mix2 at tp_size 4: notice {lines}")

    # block_size at most the checkpoint's: wpe cropped
    run_dgpt("train", *BASE, "--model_type=distributed_gpt", "--tp_size=2", "--block_types=['spd']*4",
             "--block_size=8", "--init_from=tp4/ckpt.pt", "--eval_only=True", "--save_initial_weights=True",
             "--out_dir=crop")
    init = load("crop", "init.pt")
    check(init["model_args"]["block_size"] == 8 and
          torch.equal(init["model"]["transformer.wpe.weight"], ck["model"]["transformer.wpe.weight"][:8]),
          f"block_size 8 from 16: wpe {tuple(init['model']['transformer.wpe.weight'].shape)}")

    # errors: one line each
    train = ["train", *BASE, "--model_type=distributed_gpt", "--tp_size=2", "--out_dir=bad", "--max_iters=2"]
    error_case([*train, f"--init_from={os.path.join(WORK, 'nope', 'ckpt.pt')}"], "nope/ckpt.pt")
    error_case([*train, "--init_from=tp4/ckpt.pt", "--block_types=['spd']*3"], "3 entries", "n_layer is 4")
    error_case([*train, "--init_from=tp4/ckpt.pt", "--block_types=['spd','tp','bogus','tp']"], "bogus")
    error_case([*train, "--init_from=tp4/ckpt.pt", "--block_size=32"], "block_size=32", "16")
    error_case([*train, "--init_from=tp4/ckpt.pt", "--tp_size=3"], "tp_size")
    error_case(["eval", "--out_dir=tp4", *EVAL, "--block_types=['spd']*3"], "3 entries", "n_layer is 4")
    error_case(["eval", "--out_dir=tp4", *EVAL, "--block_types=['foo']*4"], "foo")
    error_case(["eval", "--out_dir=tp4", *EVAL, "--block_types=spd"], "--block_types")
    error_case(["eval", "--out_dir=tp4", *EVAL, "--block_types=[]"], "block_types")
    error_case([*greedy, "--block_types=['tp']*5"], "5 entries")
    error_case([*greedy, "--block_types=['tp','tp','xyz','tp']"], "xyz")
    check(not os.path.exists(os.path.join(WORK, "bad", "ckpt.pt")), "a failed run wrote no checkpoint")


# --------------------------------------------------------------------------------------------------------------
def comms_forward(types, tp):
    """dgpt comms' forward all-reduces per micro-step of the model at tp_size `tp` with `types`."""
    plan = json.loads(run_dgpt("comms", *BASE, "--dtype=float32", "--model_type=distributed_gpt", f"--tp_size={tp}",
                               f"--batch_size={EVAL_BATCH}", bt(types), "--json").stdout)
    return plan["forward_allreduce"]


def sensitivity(out_dir, *extra, expect=0):
    return run_dgpt("sensitivity", f"--out_dir={out_dir}", *EVAL, "--device=cpu", *extra, expect=expect)


def check_report(doc, out_dir, base_types, tp, to, what, budget=None, exact_plan=True):
    """Every number of a sensitivity report against separate dgpt eval / comms runs (exact_plan=False: the budget
    plan only within the budget, switching blocks not already `to`, not re-derived block by block)."""
    n = len(base_types)
    check(doc["tp_size"] == tp and doc["to"] == to and doc["windows"] == WINDOWS and doc["block_size"] == T
          and doc["tokens"].endswith(VAL) and doc["checkpoint"].endswith(os.path.join(out_dir, "ckpt.pt")),
          f"{what}: header {dict((k, doc.get(k)) for k in ('checkpoint', 'tp_size', 'to', 'windows', 'block_size', 'tokens'))}")
    base, _ = dgpt_eval(out_dir, f"--tp_size={tp}")
    check(doc["base"]["block_types"] == base_types and abs(doc["base"]["loss"] - base) <= 1e-9
          and doc["base"]["forward_allreduce"] == comms_forward(base_types, tp),
          f"{what}: base {doc['base']} vs eval {base}")
    worst = [0.0]
    fwd_cache = {}

    def entry_ok(e, types, label):
        check(e["block_types"] == types, f"{what}: {label} block_types {e['block_types']}, expected {types}")
        if types == base_types:
            loss = base
        else:
            loss, _ = dgpt_eval(out_dir, f"--tp_size={tp}", bt(types))
        err = max(abs(e["loss"] - loss), abs(e["delta"] - (loss - base)))
        worst[0] = max(worst[0], err)
        check(err <= 1e-9, f"{what}: {label} loss {e['loss']} delta {e['delta']} vs eval {loss} - {base}")
        key = tuple(types)
        fwd_cache.setdefault(key, comms_forward(types, tp))
        check(e["forward_allreduce"] == fwd_cache[key], f"{what}: {label} forward_allreduce {e['forward_allreduce']} "
                                                        f"vs comms {fwd_cache[key]}")

    single = doc["single"]
    check([e["layer"] for e in single] == list(range(n)), f"{what}: single layers {[e['layer'] for e in single]}")
    for e in single:
        l = e["layer"]
        types = [to if i == l else t for i, t in enumerate(base_types)]
        entry_ok(e, types, f"single layer {l}")
        if base_types[l] == to:
            check(e["delta"] == 0 and e["loss"] == doc["base"]["loss"], f"{what}: layer {l} already {to}: {e}")
    cum = doc["cumulative"]
    check([e["k"] for e in cum] == list(range(1, n + 1)), f"{what}: cumulative k {[e['k'] for e in cum]}")
    for e in cum:  # the SPD paper's order: the last k layers switched
        entry_ok(e, [to if i >= n - e["k"] else t for i, t in enumerate(base_types)], f"cumulative k={e['k']}")
    if budget is not None:
        b = doc["budget"]
        check(b["forward_allreduce_budget"] == budget, f"{what}: budget {b}")
        # the plan re-derived: the least sensitive blocks switched one by one until the count fits, skipping a
        # switch that costs more (a block of a parallel run switched to spd costs one more)
        plan = list(base_types)
        for e in sorted((e for e in single if base_types[e["layer"]] != to), key=lambda e: e["delta"]):
            if comms_forward(plan, tp) <= budget:
                break
            tried = [to if i == e["layer"] else t for i, t in enumerate(plan)]
            if comms_forward(tried, tp) <= comms_forward(plan, tp):
                plan = tried
        check(b["block_types"] == plan or not exact_plan, f"{what}: budget plan {b['block_types']}, re-derived {plan}")
        check(all(t == to for t, u in zip(b["block_types"], base_types) if t != u),
              f"{what}: budget plan {b['block_types']} switches blocks to other types than {to!r}")
        fwd = comms_forward(b["block_types"], tp)
        check(b["forward_allreduce"] == fwd <= budget, f"{what}: budget plan's forward_allreduce {b['forward_allreduce']},"
                                                       f" comms {fwd}, budget {budget}")
        predicted = doc["base"]["loss"] + sum(e["delta"] for e in single if b["block_types"][e["layer"]] != base_types[e["layer"]])
        check(abs(b["predicted_loss"] - predicted) <= 1e-12, f"{what}: predicted {b['predicted_loss']} vs {predicted}")
        measured, _ = dgpt_eval(out_dir, f"--tp_size={tp}", bt(b["block_types"]))
        worst[0] = max(worst[0], abs(b["measured_loss"] - measured))
        check(abs(b["measured_loss"] - measured) <= 1e-9, f"{what}: measured {b['measured_loss']} vs eval {measured}")
        print(f"{what}: budget {budget} -> {b['block_types']} ({b['forward_allreduce']} forward all-reduces), "
              f"predicted {b['predicted_loss']:.6f}, measured {b['measured_loss']:.6f}", flush=True)
    else:
        check("budget" not in doc, f"{what}: a budget entry without --budget")
    print(f"{what}: {len(single)} single + {len(cum)} cumulative entries = separate evals within {worst[0]:.1e}",
          flush=True)
    return base


def suite_sensitivity():
    prepare_shakespeare_char()
    train_base()
    p = run_dgpt("sensitivity", "--help")
    check("--budget" in p.stdout and "--to" in p.stdout and "--json" in p.stdout, f"sensitivity --help:\n{p.stdout}")

    # all-tp at tp_size 2 (8 forward all-reduces), to spd: budget 6 switches the 2 least sensitive blocks
    path = os.path.join(WORK, "sens.json")
    p = sensitivity("tp4", "--tp_size=2", "--to=spd", "--budget=6", f"--json={path}")
    doc = json.load(open(path))
    base = check_report(doc, "tp4", ALL_TP, 2, "spd", "tp4 -> spd at tp_size 2", budget=6)
    check(doc["base"]["forward_allreduce"] == 8 and [e["forward_allreduce"] for e in doc["cumulative"]] == [7, 6, 5, 4],
          f"all-reduce counts {doc['base']['forward_allreduce']}, {[e['forward_allreduce'] for e in doc['cumulative']]}")
    # the table: a row per layer with its loss, the cumulative rows, the suggestion
    table = p.stdout + p.stderr
    for e in doc["single"] + doc["cumulative"]:
        check(f"{e['loss']:.6f}" in table, f"table lacks the loss {e['loss']:.6f}:\n{table}")
    check(f"{base:.6f}" in table and repr(doc["budget"]["block_types"]) in table, f"table: base and plan\n{table}")

    # --json=-: only JSON on stdout (the table on stderr), the same numbers
    p = sensitivity("tp4", "--tp_size=2", "--to=spd", "--budget=6", "--json=-")
    try:
        same = json.loads(p.stdout)
    except ValueError:
        same = None
    check(same is not None, f"--json=-: stdout is not one JSON document: {p.stdout[:2000]!r}")
    if same is not None:
        check(same == doc, "--json=- and --json=FILE differ")
    check(all(f"{e['loss']:.6f}" in p.stderr for e in doc["single"]), f"--json=-: the table on stderr:\n{p.stderr}")

    # to parallel at the checkpoint's tp_size 4 with a budget of 3 (runs of parallel blocks count once)
    p = sensitivity("tp4", "--to=parallel", "--budget=3", "--json=-")
    check_report(json.loads(p.stdout), "tp4", ALL_TP, 4, "parallel", "tp4 -> parallel at tp_size 4", budget=3)
    # no budget: no budget entry
    p = sensitivity("tp4", "--tp_size=2", "--to=neox", "--json=-")
    check_report(json.loads(p.stdout), "tp4", ALL_TP, 2, "neox", "tp4 -> neox at tp_size 2")

    # a checkpoint with a block already of the target type: delta 0 there
    run_dgpt("train", *BASE, "--model_type=distributed_gpt", "--tp_size=2", bt(MIX), "--init_from=tp4/ckpt.pt",
             "--max_iters=20", "--eval_interval=20", "--out_dir=mix2")
    # (tp, spd, parallel run) = 4; only the tp block's switch saves one: 3 is the fewest
    p = sensitivity("mix2", "--to=spd", "--budget=3", "--json=-")
    check_report(json.loads(p.stdout), "mix2", MIX, 2, "spd", "mix2 -> spd", budget=3)
    error_case(["sensitivity", "--out_dir=mix2", "--tokens=data/shakespeare_char/val.bin", "--max_windows=2",
                "--budget=2"], "--budget=2", "out of reach", "down to 3")

    # an all-spd checkpoint to parallel: a lone parallel block costs what spd does (1), so a run of them saves only
    # once it has two blocks; every budget the cumulative order reaches (down to 1: all parallel) is within reach
    run_dgpt("train", *BASE, "--model_type=distributed_gpt", "--tp_size=2", bt(["spd"] * 4), "--init_from=tp4/ckpt.pt",
             "--max_iters=20", "--eval_interval=20", "--out_dir=spd2")
    p = sensitivity("spd2", "--to=parallel", "--json=-")
    doc = json.loads(p.stdout)
    check_report(doc, "spd2", ["spd"] * 4, 2, "parallel", "spd2 -> parallel")
    check([e["forward_allreduce"] for e in doc["cumulative"]] == [4, 3, 2, 1],
          f"spd2 -> parallel: cumulative counts {[e['forward_allreduce'] for e in doc['cumulative']]}")
    for budget in (3, 1):
        p = sensitivity("spd2", "--to=parallel", f"--budget={budget}", "--json=-", expect=None)
        check(p.returncode == 0, f"spd2 -> parallel --budget={budget}: the cumulative order reaches it, yet "
                                 f"exit {p.returncode}: {p.stderr.strip().splitlines()[-1:]}")
        if p.returncode == 0:
            check_report(json.loads(p.stdout), "spd2", ["spd"] * 4, 2, "parallel", "spd2 -> parallel", budget=budget,
                         exact_plan=False)

    # errors
    for args, needles in [(["--to=unknown"], ["unknown"]), (["--tp_size=2", "--to=spd", "--budget=3"], ["budget", "3"]),
                          (["--tp_size=2", "--to=parallel", "--budget=0"], ["budget", "0"]),
                          (["--tp_size=3"], ["tp_size"]), (["--tp_size=1"], ["tp_size", "2"])]:
        error_case(["sensitivity", "--out_dir=tp4", *EVAL, "--device=cpu", *args], *needles)
    error_case(["sensitivity", "--out_dir=nowhere", *EVAL, "--device=cpu"], "nowhere")
    # an spd checkpoint is tied to its tp_size: its unconverted model at another one would be another model
    error_case(["sensitivity", "--out_dir=spd2", *EVAL, "--device=cpu", "--tp_size=4"], "tp_size=2", "block_types")


if __name__ == "__main__":
    main(globals())
