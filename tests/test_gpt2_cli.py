#!/usr/bin/env python3
"""End-to-end tests of dgpt's GPT-2 BPE datasets: usage: test_gpt2_cli.py DGPT_BINARY SUITE.

Suites: shakespeare (`prepare shakespeare`: nanoGPT's 301,966 / 36,059 tokens), openwebtext
(`prepare openwebtext` on a generated corpus), train_sample (a GPT-2-vocabulary model trains and
samples). The token streams are checked with a GPT-2 decoder written here from encoder.json
(independent of dgpt) and, where the bpe_reference_setup fixture installed it, against npm's
js-tiktoken (DGPT_BPE_REFERENCE_DIR).
"""
import json
import math
import os
import pty
import random
import shutil
import subprocess
import sys

import harness
from harness import DGPT, SHAKESPEARE, WORK, check, main, run_dgpt, shakespeare_text, skip
GPT2_DIR = next((d for d in os.environ.get("DGPT_TEST_GPT2_DIRS", "").split(":")
                 if d and os.path.exists(os.path.join(d, "encoder.json"))
                 and os.path.exists(os.path.join(d, "vocab.bpe"))), None)
REFERENCE_DIR = os.environ.get("DGPT_BPE_REFERENCE_DIR", "")
EOT = 50256


def env(gpt2=True):
    e = dict(os.environ)
    e.pop("DGPT_GPT2_DIR", None)
    if gpt2:
        e["DGPT_GPT2_DIR"] = GPT2_DIR
    return e


def run(*args, gpt2=True, **kw):
    return run_dgpt(*args, env=env(gpt2), timeout=900, **kw)


def error_case(args, *needles, gpt2=True, **kw):
    harness.error_case(args, *needles, env=env(gpt2), timeout=900, **kw)


def needs(shakespeare=False):
    if GPT2_DIR is None:
        skip(f"no GPT-2 encoder.json/vocab.bpe in {os.environ.get('DGPT_TEST_GPT2_DIRS')!r} (./setup.sh)")
    if shakespeare:
        shakespeare_text()


# A GPT-2 decoder of our own: encoder.json's strings through the inverse of bytes_to_unicode.
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


_DECODER = None


def decode(ids):
    global _DECODER
    if _DECODER is None:
        inv = {c: b for b, c in bytes_to_unicode().items()}
        enc = json.load(open(os.path.join(GPT2_DIR, "encoder.json"), encoding="utf-8"))
        _DECODER = {i: (bytes(inv[c] for c in s) if s != "<|endoftext|>" else s.encode()) for s, i in enc.items()}
    return b"".join(_DECODER[i] for i in ids).decode("utf-8")


def read_ids(path):
    data = open(path, "rb").read()
    return [int.from_bytes(data[i:i + 2], "little") for i in range(0, len(data), 2)]


def reference_ids(texts):
    """js-tiktoken's encode_ordinary of each text, or None when the fixture did not install it."""
    script = os.path.join(REFERENCE_DIR, "reference.mjs")
    if not (REFERENCE_DIR and os.path.exists(os.path.join(REFERENCE_DIR, "node_modules", "js-tiktoken"))
            and shutil.which("node")):
        print("note: no js-tiktoken reference installed; checked with the decoder only")
        return None
    p = subprocess.run(["node", script], input=json.dumps(texts), capture_output=True, text=True, timeout=600)
    if p.returncode != 0:
        raise AssertionError(f"reference.mjs failed: {p.stderr[-2000:]}")
    return [c["ordinary"] for c in json.loads(p.stdout)["cases"]]


# ---------------------------------------------------------------------------------------------


def suite_shakespeare():
    needs(shakespeare=True)
    p = run("prepare", "shakespeare", "--input", SHAKESPEARE)
    check("train has 301966 tokens" in p.stdout and "val has 36059 tokens" in p.stdout, p.stdout)
    d = os.path.join(WORK, "data/shakespeare")
    check(os.path.getsize(f"{d}/train.bin") == 2 * 301966, "train.bin size")
    check(os.path.getsize(f"{d}/val.bin") == 2 * 36059, "val.bin size")
    check(json.load(open(f"{d}/meta.json")) == {"tokenizer": "gpt2", "vocab_size": 50257}, "meta.json")
    text = open(SHAKESPEARE, encoding="utf-8").read()
    n = int(len(text) * 0.9)
    train, val = read_ids(f"{d}/train.bin"), read_ids(f"{d}/val.bin")
    check(train[:7] == [5962, 22307, 25, 198, 8421, 356, 5120], f"first ids {train[:7]}")  # "First Citizen:\nBefore we proceed"
    check(decode(train) == text[:n], "train.bin decodes to the first 90% of the characters")
    check(decode(val) == text[n:], "val.bin decodes to the rest")
    ref = reference_ids([text[:n], text[n:]])
    if ref is not None:
        check(ref[0] == train, "train.bin = js-tiktoken's ids")
        check(ref[1] == val, "val.bin = js-tiktoken's ids")
    # an input.txt already in the output folder is used without --input
    other = os.path.join(WORK, "other")
    os.makedirs(other)
    shutil.copy(SHAKESPEARE, os.path.join(other, "input.txt"))
    run("prepare", "shakespeare", "--out", other)
    check(open(f"{other}/val.bin", "rb").read() == open(f"{d}/val.bin", "rb").read(), "prepare from DIR/input.txt")
    # data/gpt2/ in the working directory is found without $DGPT_GPT2_DIR
    local = os.path.join(WORK, "local")
    shutil.copytree(GPT2_DIR, os.path.join(local, "data/gpt2"))
    run("prepare", "shakespeare", "--input", SHAKESPEARE, cwd=local, gpt2=False)
    check(open(f"{local}/data/shakespeare/train.bin", "rb").read() == open(f"{d}/train.bin", "rb").read(),
          "tokenizer files from ./data/gpt2")
    # errors: no tokenizer files, several inputs, missing input
    error_case(["prepare", "shakespeare", "--input", SHAKESPEARE, "--out", "x"], "data/gpt2", "DGPT_GPT2_DIR",
               "setup.sh", gpt2=False)
    check(not os.path.exists(os.path.join(WORK, "x")), "nothing written without the tokenizer files")
    error_case(["prepare", "shakespeare", "--input", SHAKESPEARE, SHAKESPEARE], "one --input")
    error_case(["prepare", "shakespeare", "--input", "/nonexistent/input.txt"], "/nonexistent/input.txt")
    check("openwebtext" in run("prepare", "--help").stdout, "prepare --help names the datasets")


def make_corpus(root):
    """Two .jsonl files and a folder of .txt files; returns (inputs, valid documents, records)."""
    rng = random.Random(5)
    text = open(SHAKESPEARE, encoding="utf-8").read() if os.path.exists(SHAKESPEARE) else "To be, or not to be.\n" * 5000
    alphabet = ["é", "ß", "Ω", "中文", "😀", "👍🏽", " ", "  ", "\n", "\n\n", "\t", "'s", "'ll", "123", "<|endoftext|>", "\u00a0"]
    docs, records = [], 0
    os.makedirs(os.path.join(root, "txt", "more"))

    def doc(i):
        start = rng.randrange(0, len(text) - 20000)
        body = text[start:start + rng.choice([50, 500, 5000, 15000])]
        extra = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 30)))
        return f"Document {i}: {extra}\n{body}"

    inputs = []
    for name, count in [("a.jsonl", 150), ("b.jsonl", 120)]:
        path = os.path.join(root, name)
        inputs.append(path)
        with open(path, "wb") as f:
            for i in range(count):
                d = doc(len(docs))
                docs.append(d)
                records += 1
                f.write((json.dumps({"text": d, "url": f"http://x/{i}"}, ensure_ascii=rng.random() < 0.5) + "\n").encode())
                if i == 3:
                    f.write(b"{\"text\": \"unterminated\n")  # malformed
                    records += 1
                if i == 7:
                    f.write(b"\n  \r\n")  # blank lines: not documents
                if i == 9 and name == "b.jsonl":
                    f.write(b"{\"title\": \"no text\"}\n{\"text\": null}\n[\"text\"]\n{\"text\": \"bad \xff byte\"}\n")
                    records += 4
            f.write(json.dumps({"text": "last line without a newline"}).encode())
            docs.append("last line without a newline")
            records += 1
    txt = os.path.join(root, "txt")
    inputs.append(txt)
    for i in range(60):
        d = doc(len(docs))
        docs.append(d)
        records += 1
        with open(os.path.join(txt, "more" if i % 3 == 0 else "", f"{i:03d}.txt"), "w", encoding="utf-8") as f:
            f.write(d)
    with open(os.path.join(txt, "bad.txt"), "wb") as f:
        f.write(b"latin-1 \xe9t\xe9")
    records += 1
    with open(os.path.join(txt, "ignored.md"), "w") as f:
        f.write("not a .txt or .jsonl file")
    return inputs, docs, records


def split_docs(ids):
    docs, cur = [], []
    for i in ids:
        if i == EOT:
            docs.append(cur)
            cur = []
        else:
            cur.append(i)
    check(cur == [], "the stream ends with <|endoftext|>")
    return docs


def suite_openwebtext():
    needs()
    inputs, docs, records = make_corpus(os.path.join(WORK, "corpus"))
    malformed = 2 + 4 + 1  # an unterminated line per .jsonl file, four in b.jsonl, bad.txt
    outs = {}
    for threads in ["1", "4"]:
        out = os.path.join(WORK, f"owt{threads}")
        p = run("prepare", "openwebtext", "--input", *inputs, "--out", out, "--val_fraction", "0.1", "--seed", "3",
                "--threads", threads)
        check(f"{records:,} documents" in p.stdout, f"record count {records} in {p.stdout}")
        check(f"{malformed} malformed" in p.stdout, f"malformed count in {p.stdout}")
        for needle in ["a.jsonl:5: not valid JSON", "b.jsonl:5: not valid JSON", "b.jsonl:14: no \"text\" field",
                       "b.jsonl:15: \"text\" is not a string", "b.jsonl:16: not a JSON object",
                       "b.jsonl:17: not valid JSON", "bad.txt: not valid UTF-8"]:
            check(needle in p.stdout, f"report {needle!r} in {p.stdout}")
        check("\r" not in p.stderr, "no progress bar when stderr is not a terminal")
        check(sorted(os.listdir(out)) == ["meta.json", "train.bin", "val.bin"], f"outputs {os.listdir(out)}")
        check(json.load(open(f"{out}/meta.json")) == {"tokenizer": "gpt2", "vocab_size": 50257}, "meta.json")
        outs[threads] = (open(f"{out}/train.bin", "rb").read(), open(f"{out}/val.bin", "rb").read(), p.stdout)
    check(outs["1"][:2] == outs["4"][:2], "same train.bin and val.bin with 1 and 4 threads")
    out = os.path.join(WORK, "owt1")
    train, val = split_docs(read_ids(f"{out}/train.bin")), split_docs(read_ids(f"{out}/val.bin"))
    n_val = math.ceil(0.1 * records)
    check(n_val - malformed <= len(val) <= n_val, f"{len(val)} val documents, {n_val} drawn")
    check(len(train) + len(val) == len(docs), f"{len(train)} + {len(val)} documents, {len(docs)} valid")
    train_text = [decode(d) for d in train]
    val_text = [decode(d) for d in val]
    check(sorted(train_text + val_text) == sorted(docs), "the documents decode back to the inputs, each once")
    check(not set(train_text) & set(val_text), "train and val share no document")
    check(f"{len(train):,} train, {len(val):,} val" in outs["1"][2], outs["1"][2])
    ref = reference_ids(docs)
    if ref is not None:
        want = {d: r for d, r in zip(docs, ref)}
        check(all(want[t] == ids for t, ids in zip(train_text + val_text, train + val)),
              "every document's ids = js-tiktoken's encode_ordinary")
        total = sum(len(r) + 1 for r in ref)
        check(len(outs["1"][0]) // 2 + len(outs["1"][1]) // 2 == total, f"token count = {total}")
    # another seed draws other val documents; --val_fraction 0 puts every document in train
    p = run("prepare", "openwebtext", "--input", *inputs, "--out", "seed4", "--val_fraction", "0.1", "--seed", "4")
    check(open(os.path.join(WORK, "seed4/val.bin"), "rb").read() != outs["1"][1], "the seed changes the split")
    p = run("prepare", "openwebtext", "--input", *inputs, "--val_fraction=0")
    d = os.path.join(WORK, "data/openwebtext")  # the default --out
    check(os.path.getsize(f"{d}/val.bin") == 0, "val_fraction 0: empty val.bin")
    check(os.path.getsize(f"{d}/train.bin") == len(outs["1"][0]) + len(outs["1"][1]), "val_fraction 0: all in train")
    # default split: ceil(0.0005 * records) = 1 document to val
    run("prepare", "openwebtext", "--input", inputs[0], "--out", "default")
    check(len(split_docs(read_ids(os.path.join(WORK, "default/val.bin")))) == 1, "default val_fraction: 1 document")
    # a progress bar on a terminal
    master, slave = pty.openpty()
    proc = subprocess.Popen([DGPT, "prepare", "openwebtext", "--input", *inputs, "--out", "tty"], cwd=WORK, env=env(),
                            stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    try:
        while True:
            chunk = os.read(master, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    except OSError:  # EIO once the process closed its end
        pass
    os.close(master)
    proc.wait(timeout=600)
    p = proc
    shown = b"".join(chunks).decode(errors="replace")
    check(p.returncode == 0 and "\r" in shown and "ETA" in shown and "docs" in shown and "tokens" in shown
          and "/s" in shown, f"progress bar on a terminal: {shown[-500:]!r}")
    # errors leave nothing under the final names
    existing = os.path.join(WORK, "owt4/train.bin")
    before = open(existing, "rb").read()
    error_case(["prepare", "openwebtext", "--input", inputs[0], "/nonexistent.jsonl", "--out", "owt4"],
               "/nonexistent.jsonl")
    check(open(existing, "rb").read() == before and sorted(os.listdir(os.path.join(WORK, "owt4"))) ==
          ["meta.json", "train.bin", "val.bin"], "a failed run leaves the previous outputs, no temporary files")
    bad = os.path.join(WORK, "allbad.jsonl")
    open(bad, "w").write("nope\n{\"text\": 1}\n")
    error_case(["prepare", "openwebtext", "--input", bad, "--out", "allbad"], "no document")
    check(os.listdir(os.path.join(WORK, "allbad")) == [], "no output and no temporary file after an error")
    error_case(["prepare", "openwebtext"], "--input")
    error_case(["prepare", "openwebtext", "--input", os.path.join(WORK, "corpus/txt/ignored.md")], ".jsonl", ".txt")
    error_case(["prepare", "openwebtext", "--input", inputs[0], "--val_fraction", "1"], "val_fraction")
    error_case(["prepare", "openwebtext", "--input", inputs[0]], "data/gpt2", gpt2=False)


def sample_streams_as_decoded(out_dir):
    """The streamed sample (tokens printed as they come, a character cut between tokens held back
    until complete) is the text of the whole id sequence decoded at once, as tiktoken's
    decode(errors="replace"): the ids from nanoGPT's sampling written in Python (tests/gpt_reference.py,
    same seed: torch's multinomial on float32 probabilities in both), decoded by this file's decoder."""
    try:
        import torch
    except ImportError:
        skip("no torch in this python (python3-torch): the streamed sample cannot be compared with the Python reference")
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from gpt_reference import Reference
    ref = Reference(os.path.join(out_dir, "ckpt.pt"))
    decode("")  # loads the decoder
    torch.manual_seed(1337)
    ids = [EOT]
    with torch.no_grad():
        for _ in range(40):  # nanoGPT's defaults: temperature 0.8, top_k 200
            logits = ref.logits(ids[-ref.T:]).float().view(1, -1) / 0.8
            v, _ = torch.topk(logits, 200)
            logits[logits < v[:, [-1]]] = -float("inf")
            ids.append(int(torch.multinomial(logits.softmax(-1), 1)))
    raw = b"".join(_DECODER.get(i, "\ufffd".encode()) for i in ids)  # padding rows: U+FFFD
    want = raw.decode("utf-8", errors="replace") + "\n---------------\n"
    p = run_dgpt("sample", f"--out_dir={out_dir}", "--device=cpu", "--num_samples=1", "--max_new_tokens=40",
                 "--start=<|endoftext|>", env=env(), timeout=900)
    check(p.stdout == want, f"streamed GPT-2 sample {p.stdout!r} vs decoded reference {want!r}")


def suite_train_sample():
    needs(shakespeare=True)
    run("prepare", "shakespeare", "--input", SHAKESPEARE)
    out = os.path.join(WORK, "out-gpt2")
    p = run("train", "--dataset=shakespeare", "--device=cpu", "--n_layer=2", "--n_head=2", "--n_embd=32",
            "--block_size=32", "--batch_size=2", "--max_iters=3", "--eval_interval=2", "--eval_iters=1",
            f"--out_dir={out}")
    check("iter 2" in p.stdout or "step 2" in p.stdout, f"training log {p.stdout[-1500:]}")
    check(os.path.exists(os.path.join(out, "ckpt.pt")), "checkpoint written")
    try:
        import torch
        ck = torch.load(os.path.join(out, "ckpt.pt"), map_location="cpu")
        # nanoGPT pads GPT-2's 50257 to 50304
        check(ck["model_args"]["vocab_size"] == 50304, f"vocab_size {ck['model_args']['vocab_size']}")
        check(tuple(ck["model"]["transformer.wte.weight"].shape) == (50304, 32), "wte shape")
    except ImportError:
        skip("no torch in this python (python3-torch): checkpoint contents cannot be checked")
    p = run("sample", f"--out_dir={out}", "--device=cpu", "--num_samples=1", "--max_new_tokens=10", "--start=Hello")
    parts = p.stdout.split("\n---------------\n")
    check(len(parts) == 2 and parts[0].startswith("Hello") and len(parts[0]) > len("Hello"), f"sample {p.stdout!r}")
    again = run("sample", f"--out_dir={out}", "--device=cpu", "--num_samples=1", "--max_new_tokens=10",
                "--start=Hello")
    check(again.stdout == p.stdout, "reproducible")
    # <|endoftext|> in a prompt is the special token; unicode prompts encode
    p = run("sample", f"--out_dir={out}", "--device=cpu", "--num_samples=2", "--max_new_tokens=5",
            "--start=<|endoftext|>Ünïcödé 中文 😀", "--temperature=0")
    check(p.stdout.startswith("<|endoftext|>Ünïcödé 中文 😀"), f"special/unicode prompt {p.stdout[:200]!r}")
    prompt = os.path.join(WORK, "prompt.txt")
    open(prompt, "w", encoding="utf-8").write("ROMEO:\nBut soft, what light")
    p = run("sample", f"--out_dir={out}", "--device=cpu", "--num_samples=1", "--max_new_tokens=3",
            f"--start=FILE:{prompt}")
    check(p.stdout.startswith("ROMEO:\nBut soft, what light"), f"FILE: prompt {p.stdout[:100]!r}")
    sample_streams_as_decoded(out)
    # sampling needs the tokenizer files; training does not
    error_case(["sample", f"--out_dir={out}", "--device=cpu", "--max_new_tokens=2"], "data/gpt2", gpt2=False)


if __name__ == "__main__":
    main(globals())
