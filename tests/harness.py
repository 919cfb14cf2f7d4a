"""What the end-to-end test scripts share: the dgpt binary, a scratch folder, checks, the runner.

A script is run as `SCRIPT.py DGPT_BINARY SUITE`, defines `suite_<name>()` functions and ends with
`harness.main(globals())`: the suite runs in WORK (removed afterwards), every check is counted, and
the exit code is 1 if any failed (77, ctest's skip code, is for suites that cannot run here, and
only outside CI: with CI=true, `skip` fails).
"""
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile

DGPT = os.path.abspath(sys.argv[1])
SUITE = sys.argv[2] if len(sys.argv) > 2 else ""
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The tinyshakespeare text that ships with dgpt (DGPT_SHAKESPEARE may point at another copy).
SHAKESPEARE = os.environ.get("DGPT_SHAKESPEARE") or os.path.join(REPO, "data", "shakespeare_char", "input.txt")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
_SCRIPT = os.path.splitext(os.path.basename(sys.argv[0]))[0]
WORK = tempfile.mkdtemp(prefix=f"dgpt_{_SCRIPT}_{SUITE}_")
FAILURES = []
CHECKS = [0]


def check(cond, what):
    CHECKS[0] += 1
    if not cond:
        FAILURES.append(what)
        print("FAIL:", what, flush=True)


def skip(reason):
    """Ends a suite that cannot run its checks here: ctest's skip code, but a failure in CI (CI=true)."""
    print(("FAIL (CI=true, so not skipped): " if IN_CI else "skipped: ") + reason, flush=True)
    shutil.rmtree(WORK, ignore_errors=True)
    sys.exit(1 if IN_CI else 77)


def shakespeare_text():
    """The path of the tinyshakespeare text, or a skip (a failure in CI) when it is missing."""
    if not os.path.isfile(SHAKESPEARE):
        skip(f"no tinyshakespeare text at {SHAKESPEARE!r}")
    return SHAKESPEARE


def run_dgpt(*args, expect=0, cwd=None, env=None, timeout=600):
    """dgpt ARGS in WORK (or cwd), with `env` as the whole environment when given."""
    p = subprocess.run([DGPT, *args], cwd=cwd or WORK, capture_output=True, text=True, timeout=timeout, env=env)
    if expect is not None and p.returncode != expect:
        raise AssertionError(f"dgpt {' '.join(args)}: exit {p.returncode}, expected {expect}\n"
                             f"stdout:\n{p.stdout[-4000:]}\nstderr:\n{p.stderr[-4000:]}")
    return p


def check_one_error(returncode, stderr, what, *needles, code=2):
    """A failed run: exit `code`, one `error:` line on stderr holding every needle, no stack trace."""
    err = stderr.strip()
    check(returncode == code, f"{what}: exit {returncode}, expected {code} ({err[:500]})")
    check(err.startswith("error: ") and len(err.splitlines()) == 1, f"{what}: expected one 'error:' line, got {err[:2000]!r}")
    check("Traceback" not in stderr and "Exception raised from" not in stderr, f"{what}: stack trace")
    for n in needles:
        check(n in err, f"{what}: message {err[:1000]!r} lacks {n!r}")


def error_case(args, *needles, code=2, **run_kw):
    """dgpt ARGS fails with exit `code` and one `error:` line holding every needle, no stack trace."""
    p = run_dgpt(*args, expect=None, **run_kw)
    check_one_error(p.returncode, p.stderr, args, *needles, code=code)


def prepare_shakespeare_char():
    """data/shakespeare_char/{train,val}.bin and meta.json in WORK, from the shipped text (once per suite)."""
    text = shakespeare_text()
    if not os.path.exists(os.path.join(WORK, "data/shakespeare_char/train.bin")):
        run_dgpt("prepare", "shakespeare_char", "--input", text)


def metrics(out_dir, event="train"):
    """The events of one kind in out_dir/metrics.jsonl (out_dir relative to WORK)."""
    with open(os.path.join(WORK, out_dir, "metrics.jsonl")) as f:
        return [e for e in map(json.loads, f) if e["event"] == event]


def losses(out_dir):
    """{iter: loss} of the train events in out_dir/metrics.jsonl."""
    return {e["iter"]: e["loss"] for e in metrics(out_dir)}


def free_port(lo=0, hi=0):
    """A loopback port nobody listens on: any (lo = 0), or one in [lo, hi)."""
    for candidate in ([0] if lo == 0 else random.sample(range(lo, hi), 200)):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return s.getsockname()[1]
    raise AssertionError(f"no free port in [{lo}, {hi})")


def main(namespace):
    try:
        namespace["suite_" + SUITE]()
    except AssertionError as e:
        FAILURES.append(str(e))
        print("FAIL:", e)
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    print(f"{SUITE}: {CHECKS[0]} checks, {len(FAILURES)} failed")
    sys.exit(1 if FAILURES else 0)
