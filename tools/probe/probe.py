#!/usr/bin/env python3
"""Hostile-input probe of the candle-darknet CLI (issue #15).

    python3 tools/probe/probe.py [--bin target/release/candle-darknet] [--work target/probe] [--json out.json]
                                 [--jobs 2] [--timeout 30] [--quick] [--family cfg] [--verbose]

Builds a corpus of bad inputs (cfgs, weights, safetensors, images, datasets, CLI numbers; see corpus.py), runs
every case under an 8 GiB address-space limit (RLIMIT_AS) and a timeout, and classifies each run:

  ok      exit 0 on an input that is odd but legitimate (the case says so: Darknet accepts it too)
  clear   exit 1/2 with a message that names where (a file of the case, a line, a byte offset, a layer or a flag)
  vague   exit 1/2 but the message names none of these
  warned  exit 0 and a warning on stderr (a bad record skipped and counted, as Darknet keeps going)
  silent  exit 0 and no warning: the bad input was accepted
  panic   exit 101
  abort   killed by a signal (allocation failure aborts, stack overflow, ...)
  hang    still running at the timeout

Exit status 1 when any case panics, aborts or hangs (and with --strict also when one is vague or silent).
`--quick` runs the fast subset (`quick=True` cases), which tools/test_tools.py runs in CI.
"""
from __future__ import annotations

import argparse
import collections
import concurrent.futures as cf
import json
import os
import re
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import corpus  # noqa: E402

AS_LIMIT = 8 << 30
CLASSES = ["ok", "clear", "vague", "warned", "silent", "panic", "abort", "hang"]
BAD = {"panic", "abort", "hang"}


def limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
    os.setsid()


def names_where(case: corpus.Case, err: str) -> bool:
    """Does the message say where: a file of the case, `:line`, an offset/layer word, or a `--flag`?"""
    for tok in case.where:
        if tok and tok in err:
            return True
    for a in case.argv:
        if os.path.sep in a or "." in a:
            base = os.path.basename(a.rstrip("/"))
            if len(base) > 2 and base in err:
                return True
    return bool(re.search(r"(:\d+|line \d+|offset|byte \d+|layer \d+|\(layer|--[a-z][a-z-]+|'<[A-Z_]+>'|<[A-Z_]+>)", err))


def classify(case: corpus.Case, rc: int | None, err: str) -> str:
    if rc is None:
        return "hang"
    if rc == 101:
        return "panic"
    if rc < 0:
        return "abort"
    if rc == 0 and case.valid:
        return "ok"
    if rc == 0:
        return "warned" if re.search(r"warning|skipp", err, re.I) else "silent"
    return "clear" if names_where(case, err) else "vague"


def run_case(binary: str, case: corpus.Case, timeout: float, cwd: str) -> dict:
    t0 = time.monotonic()
    env = dict(os.environ, RUST_BACKTRACE="0", CANDLE_DARKNET_HOME=os.path.join(cwd, "home"))
    p = subprocess.Popen([binary] + case.argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         stdin=case.stdin and subprocess.PIPE or subprocess.DEVNULL, preexec_fn=limit_memory,
                         env=env)
    try:
        _, err = p.communicate(timeout=timeout)
        rc = p.returncode
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, 9)
        _, err = p.communicate()
        rc = None
    err = err.decode("utf-8", "replace")
    cls = classify(case, rc, err)
    last = [l for l in err.strip().splitlines() if l.strip()]
    return {"family": case.family, "name": case.name, "argv": case.argv, "rc": rc, "class": cls,
            "seconds": round(time.monotonic() - t0, 2), "message": (last[-1] if last else "")[:400]}


def table(results: list[dict]) -> str:
    fams = sorted({r["family"] for r in results})
    counts = collections.Counter((r["family"], r["class"]) for r in results)
    head = f"{'family':<12}" + "".join(f"{c:>8}" for c in CLASSES) + f"{'total':>8}"
    lines = [head]
    for f in fams + ["TOTAL"]:
        row = [sum(counts[(g, c)] for g in fams) if f == "TOTAL" else counts[(f, c)] for c in CLASSES]
        lines.append(f"{f:<12}" + "".join(f"{n:>8}" for n in row) + f"{sum(row):>8}")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(ROOT, "target/release/candle-darknet"))
    ap.add_argument("--work", default=os.path.join(ROOT, "target/probe"))
    ap.add_argument("--shared", default=os.environ.get("CANDLE_DARKNET_SHARED") or os.path.join(ROOT, "..", "shared"))
    ap.add_argument("--json")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--family")
    ap.add_argument("--name", help="substring of the case names to run")
    ap.add_argument("--strict", action="store_true")
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    binary = os.path.abspath(a.bin)
    work = os.path.abspath(a.work)
    cases = corpus.build(work, os.path.abspath(a.shared), binary)
    if a.quick:
        cases = [c for c in cases if c.quick]
    if a.family:
        cases = [c for c in cases if c.family == a.family]
    if a.name:
        cases = [c for c in cases if a.name in c.name]
    t0 = time.monotonic()
    with cf.ThreadPoolExecutor(a.jobs) as ex:
        results = list(ex.map(lambda c: run_case(binary, c, a.timeout, work), cases))
    for r in results:
        if a.verbose or r["class"] not in ("ok", "clear", "warned"):
            print(f"[{r['class']:>6}] {r['family']}/{r['name']} rc={r['rc']} {r['seconds']}s: {r['message']}")
    print(table(results))
    print(f"{len(results)} cases in {time.monotonic() - t0:.0f} s")
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump(results, f, indent=1)
        os.replace(a.json + ".tmp", a.json)
    bad = {"panic", "abort", "hang"} | ({"vague", "silent"} if a.strict else set())
    return 1 if any(r["class"] in bad for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
