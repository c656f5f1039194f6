#!/usr/bin/env python3
"""Darknet's own noise floor: two harness runs of the same case (the reference build, AVX=1 -Ofast with
OMP_NUM_THREADS=2, and the baseline build, AVX=0 -O2 with OMP_NUM_THREADS=1; make_ref.sh) compared per
iteration with the metrics `candle-darknet train-compare` uses (src/train/parity.rs):

* loss: |a - b| / |b|; yolo costs: the worst layer's |a - b| / |b|;
* weights: per tensor max|a - b| / max|b| (0 when both are all zero), the worst tensor of the network.

Usage: noise_floor.py REFERENCE_DIR BASELINE_DIR > noise_floor.json
"""
import json
import struct
import sys

import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype="<f4")
    return out


def rel(a, b):
    scale = float(np.max(np.abs(b))) if b.size else 0.0
    diff = float(np.max(np.abs(a.astype(np.float64) - b))) if b.size else 0.0
    if scale == 0.0:
        return 0.0 if diff == 0.0 else float("inf")
    return diff / scale


def main():
    ref, base = sys.argv[1], sys.argv[2]
    lines = lambda d: [json.loads(l) for l in open(f"{d}/iterations.jsonl")]
    rows = []
    for r, b in zip(lines(ref), lines(base)):
        k = r["iteration"]
        tr = read_safetensors(f"{ref}/iter_{k:03d}.safetensors")
        tb = read_safetensors(f"{base}/iter_{k:03d}.safetensors")
        worst, worst_name = 0.0, ""
        for name, a in tb.items():
            d = rel(a, tr[name])
            if d > worst or not worst_name:
                worst, worst_name = d, name
        costs = {c["layer"]: c["cost"] for c in r["costs"]}
        cost_rel = max((abs(c["cost"] - costs[c["layer"]]) / max(abs(costs[c["layer"]]), 1e-30)
                        for c in b["costs"]), default=0.0)
        rows.append({
            "iteration": k,
            "loss_rel": abs(b["loss"] - r["loss"]) / max(abs(r["loss"]), 1e-30),
            "cost_rel": cost_rel,
            "weights_rel": worst,
            "worst_tensor": worst_name,
            "same_batch": r["x_fnv"] == b["x_fnv"] and r["y_fnv"] == b["y_fnv"],
        })
    json.dump({"reference_threads": 2, "baseline_threads": 1,
               "reference_build": "AVX=1 OPTS=-Ofast", "baseline_build": "AVX=0 OPTS=-O2",
               "iterations": rows}, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
