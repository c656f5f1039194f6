#!/usr/bin/env python3
"""Collects what tools/cuda/device-check.sh left in its WORK directory into one JSON: the steps (rc, seconds),
the `compare` verdicts, GPU-vs-CPU detections, ours-vs-Darknet bench and training speed with their ratios.
Standard library only (runs on the device machine).

  device_report.py --work WORK --out FILE.json [--dry-run 0|1] [--train-batch N]
"""
import argparse
import glob
import json
import os
import re
import sys

# " 12: 3.1, 3.4 avg loss, 0.001 rate, 0.25 seconds, 768 images ..." (Darknet's train_detector line; ours
# prints the same fields).
ITER = re.compile(r"^\s*(\d+): \S+, \S+ avg loss, \S+ rate, ([0-9.]+) seconds, (\d+) images")
SKIP_ITERS = 5  # warm-up iterations (cuDNN algorithm search, allocator growth) left out of images/s


def load_json(path):
    try:
        with open(path) as f:
            text = f.read().strip()
        return json.loads(text) if text else None
    except (OSError, ValueError):
        return None


def read_lines(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except (OSError, ValueError):
        return []


def compare_summary(path):
    rep = load_json(path)
    if rep is None:
        return {"passed": False, "error": f"no report ({os.path.basename(path)})"}
    stats = [r["stats"] for r in rep.get("layers", []) if r.get("stats")]
    return {
        "passed": bool(rep.get("passed")),
        "layers": len(rep.get("layers", [])),
        "first_failure": rep.get("first_failure"),
        "max_abs": max((s["max_abs"] for s in stats if s["max_abs"] is not None), default=None),
        "failing_values": sum(s["failing"] for s in stats),
    }


def detections_agreement(a_path, b_path):
    a, b = load_json(a_path), load_json(b_path)
    if a is None or b is None:
        return None
    by_image = {x["image"]: x["detections"] for x in b}
    out = {"images": len(a), "same_count": True, "max_abs_rel_box": 0.0, "max_abs_prob": 0.0, "same_classes": True}
    for x in a:
        da, db = x["detections"], by_image.get(x["image"], [])
        if len(da) != len(db):
            out["same_count"] = False
            continue
        key = lambda d: (d["class_id"], d["cx"], d["cy"])
        for p, q in zip(sorted(da, key=key), sorted(db, key=key)):
            out["same_classes"] &= p["class_id"] == q["class_id"]
            out["max_abs_rel_box"] = max(out["max_abs_rel_box"], *(abs(p[k] - q[k]) for k in ("cx", "cy", "w", "h")))
            out["max_abs_prob"] = max(out["max_abs_prob"], abs(p["prob"] - q["prob"]))
    return out


def train_speed(log_path, batch):
    """Steady-state images/s from the per-iteration lines (the first SKIP_ITERS left out)."""
    try:
        with open(log_path, errors="replace") as f:
            rows = [m.groups() for m in map(ITER.match, f) if m]
    except OSError:
        return None
    rows = [(int(i), float(s)) for i, s, _ in rows]
    steady = [s for i, s in rows if i > SKIP_ITERS] or [s for _, s in rows]
    if not steady or sum(steady) <= 0:
        return {"iterations": len(rows)}
    return {"iterations": len(rows), "timed_iterations": len(steady), "batch": batch,
            "images_per_s": round(batch * len(steady) / sum(steady), 2)}


def ratio(num, den):
    return round(num / den, 3) if num and den else None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--dry-run", type=int, default=0)
    ap.add_argument("--train-batch", type=int, default=64)
    a = ap.parse_args()
    w, r = a.work, os.path.join(a.work, "results")
    steps = read_lines(os.path.join(w, "steps.jsonl"))
    gpu = None
    if os.path.exists(os.path.join(w, "gpu.txt")):
        gpu = open(os.path.join(w, "gpu.txt")).read().strip()

    compare = {os.path.basename(p)[len("compare_"):-len(".json")]: compare_summary(p)
               for p in sorted(glob.glob(os.path.join(r, "compare_*.json")))}
    for s in steps:  # a compare that wrote no JSON still counts, as failed
        n = s["name"]
        if n.startswith("compare_") and n[len("compare_"):] not in compare:
            compare[n[len("compare_"):]] = {"passed": False, "error": f"rc {s.get('rc')}, no JSON"}

    bench = {}
    for p in sorted(glob.glob(os.path.join(r, "bench_*.json"))):
        who, rest = os.path.basename(p)[len("bench_"):-len(".json")].split("_", 1)
        model, b = rest.rsplit("_b", 1)
        j = load_json(p)
        if j is None:
            continue
        ms = j["forward"]["median_ms"] if who == "ours" else j["median_ms"]
        bench.setdefault(f"{model} b{b}", {})[who] = {"median_ms": ms, "images_per_s": j["images_per_s"]}
    for row in bench.values():
        o, d = row.get("ours"), row.get("darknet")
        if o and d:
            row["latency_ratio_ours_over_darknet"] = ratio(o["median_ms"], d["median_ms"])
            row["throughput_ratio_ours_over_darknet"] = ratio(o["images_per_s"], d["images_per_s"])

    train = {who: train_speed(os.path.join(w, "logs", f"train_{who}.log"), a.train_batch)
             for who in ("ours", "darknet")}
    ti = [train.get(k) and train[k].get("images_per_s") for k in ("ours", "darknet")]
    train["ratio_ours_over_darknet"] = ratio(*ti)

    device = "cpu" if a.dry_run else "cuda"
    report = {
        "dry_run": bool(a.dry_run),
        "gpu": gpu,
        "libraries": read_lines(os.path.join(w, "libs.jsonl")),
        "ldd": read_lines(os.path.join(w, "ldd.jsonl")),
        "steps": steps,
        "compare": compare,
        "compare_all_passed": bool(compare) and all(c["passed"] for c in compare.values()),
        "detect_vs_cpu": detections_agreement(os.path.join(r, f"detect_{device}.json"),
                                              os.path.join(r, "detect_cpu.json")) if not a.dry_run else None,
        "bench": bench,
        "train": train,
        "failed_steps": [s["name"] for s in steps if s.get("rc") not in (0, None)],
        "skipped_steps": [s["name"] for s in steps if s.get("skipped")],
    }
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
    os.replace(tmp, a.out)
    print(f"compare: {'all passed' if report['compare_all_passed'] else 'FAILED'} ({len(compare)} references)")
    for k, v in bench.items():
        print(f"bench {k}: {json.dumps(v)}")
    print(f"train: {json.dumps(train)}")
    print(f"failed steps: {report['failed_steps']}; skipped: {report['skipped_steps']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
