#!/usr/bin/env python3
"""Compare two reference directories (shared/reference format) layer by layer.

    tools/compare_refs.py A B [--tol-abs 1e-4] [--tol-rel 1e-4] [--json out.json]

B is treated as the reference (denominators use B). Per layer it prints:
  max_abs   = max |a - b|
  max|b|    = max |b|
  rel_max   = max_abs / max|b|               (the convention of shared/reference/README.md)
  max_rel   = max |a - b| / (|b| + 1e-3)      (element-wise, floored to avoid division by ~0)
  bad       = number of elements with |a - b| > tol_abs + tol_rel*|b|
Both directories must describe the same network: layer count, types and shapes must agree (else exit 2).
Layers whose file is null on either side are listed as SKIP with the note. If one side has Darknet's yolo output
(`file`) and the other an OpenCV Region output (`opencv_region_file`, see tools/opencv_reference.py), the Darknet
tensor is decoded the way OpenCV does and compared on the box/objectness columns (and class scores where both are
non-zero), reported as `yolo~region`. Exit status: 0 all compared layers within tolerance, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

import numpy as np


def load_manifest(d: str) -> dict:
    p = os.path.join(d, "manifest.json")
    try:
        with open(p) as f:
            return json.load(f)
    except FileNotFoundError:
        raise SystemExit(f"error: {p}: not found")
    except json.JSONDecodeError as e:
        raise SystemExit(f"error: {p}:{e.lineno}: invalid JSON: {e.msg}")


def load_bin(d: str, name: str, count: int) -> np.ndarray:
    p = os.path.join(d, name)
    a = np.fromfile(p, np.float32)
    if a.size != count:
        raise SystemExit(f"error: {p}: {a.size} floats, manifest says {count}")
    return a


def stats(a: np.ndarray, b: np.ndarray, tol_abs: float, tol_rel: float) -> dict:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    d = np.abs(a - b)
    finite = np.isfinite(a) == np.isfinite(b)
    mb = float(np.abs(b).max()) if b.size else 0.0
    ma = float(d.max()) if d.size else 0.0
    return {
        "max_abs": ma,
        "max_ref": mb,
        "rel_max": ma / mb if mb > 0 else (0.0 if ma == 0 else float("inf")),
        "max_rel": float((d / (np.abs(b) + 1e-3)).max()) if d.size else 0.0,
        "bad": int(((d > tol_abs + tol_rel * np.abs(b)) | ~finite).sum()),
        "n": int(d.size),
    }


def decode_yolo_like_opencv(y: np.ndarray, L: dict, net_w: int, net_h: int) -> np.ndarray:
    """Darknet yolo l.output (a-major planes [x,y,w,h,obj,cls..]) -> OpenCV Region rows, before thresholding."""
    n, h, w, k = L["num_anchors_in_layer"], L["h"], L["w"], L["classes"]
    y = y.reshape(n, 5 + k, h, w).astype(np.float64)
    anchors = np.asarray(L["anchors"], np.float64).reshape(-1, 2)[L["mask"]]
    gx = np.arange(w)[None, None, :]
    gy = np.arange(h)[None, :, None]
    out = np.empty((h, w, n, 5 + k))
    out[..., 0] = ((gx + y[:, 0]) / w).transpose(1, 2, 0)
    out[..., 1] = ((gy + y[:, 1]) / h).transpose(1, 2, 0)
    out[..., 2] = (np.exp(y[:, 2]) * anchors[:, 0, None, None] / net_w).transpose(1, 2, 0)
    out[..., 3] = (np.exp(y[:, 3]) * anchors[:, 1, None, None] / net_h).transpose(1, 2, 0)
    out[..., 4] = y[:, 4].transpose(1, 2, 0)
    out[..., 5:] = (y[:, 4:5] * y[:, 5:]).transpose(2, 3, 0, 1)
    return out.reshape(h * w * n, 5 + k)


def compare_yolo_region(dark_dir, La, ma, ocv_dir, Lb, mb, tol_abs, tol_rel) -> dict:
    y = load_bin(dark_dir, La["file"], La["outputs"])
    rows = La["h"] * La["w"] * La["num_anchors_in_layer"]
    r = load_bin(ocv_dir, Lb["opencv_region_file"], rows * (5 + La["classes"]) * mb.get("batch", 1))
    r = r.reshape(-1, rows, 5 + La["classes"])[0].astype(np.float64)
    e = decode_yolo_like_opencv(y, La, ma["net_w"], ma["net_h"])
    box = stats(r[:, :5], e[:, :5], tol_abs, tol_rel)
    both = (r[:, 5:] > 0) & (e[:, 5:] > 0)
    cls = stats(r[:, 5:][both], e[:, 5:][both], tol_abs, tol_rel) if both.any() else None
    box["note"] = f"box/obj columns; class scores compared on {int(both.sum())} entries non-zero in both"
    if cls:
        box["class_max_abs"] = cls["max_abs"]
        box["bad"] += cls["bad"]
    return box


def compare(dir_a: str, dir_b: str, tol_abs: float = 1e-4, tol_rel: float = 1e-4, out=sys.stdout) -> dict:
    ma, mb = load_manifest(dir_a), load_manifest(dir_b)
    la, lb = ma["layers"], mb["layers"]
    if len(la) != len(lb):
        raise SystemExit(f"error: {dir_a} has {len(la)} layers, {dir_b} has {len(lb)}")
    rows = []
    ia, ib = ma["input"], mb["input"]
    if (ia["c"], ia["h"], ia["w"]) != (ib["c"], ib["h"], ib["w"]):
        raise SystemExit(f"error: input shapes differ: {ia} vs {ib}")
    n_in = ia["c"] * ia["h"] * ia["w"]
    xa = np.fromfile(os.path.join(dir_a, ia["file"]), np.float32)[:n_in]
    xb = np.fromfile(os.path.join(dir_b, ib["file"]), np.float32)[:n_in]
    rows.append({"index": "input", "type": "input", **stats(xa, xb, tol_abs, tol_rel)})
    for La, Lb in zip(la, lb):
        key = ("index", "type", "c", "h", "w")
        if any(La[k] != Lb[k] for k in key):
            raise SystemExit(f"error: layer mismatch: {[La[k] for k in key]} vs {[Lb[k] for k in key]}")
        row = {"index": La["index"], "type": La["type"]}
        if La.get("file") and Lb.get("file"):
            a = load_bin(dir_a, La["file"], La["outputs"] * ma.get("batch", 1))[: La["outputs"]]
            b = load_bin(dir_b, Lb["file"], Lb["outputs"] * mb.get("batch", 1))[: Lb["outputs"]]
            row.update(stats(a, b, tol_abs, tol_rel))
        elif La["type"] == "yolo" and La.get("file") and Lb.get("opencv_region_file"):
            row.update(compare_yolo_region(dir_a, La, ma, dir_b, Lb, mb, tol_abs, tol_rel), type="yolo~region")
        elif Lb["type"] == "yolo" and Lb.get("file") and La.get("opencv_region_file"):
            row.update(compare_yolo_region(dir_b, Lb, mb, dir_a, La, ma, tol_abs, tol_rel), type="yolo~region")
        else:
            row["skip"] = La.get("note") or Lb.get("note") or "no file"
        rows.append(row)
    print(f"A = {dir_a}\nB = {dir_b} (reference)\ntolerance: |a-b| <= {tol_abs} + {tol_rel}*|b|", file=out)
    print(f"{'layer':>5} {'type':<14} {'max_abs':>10} {'max|b|':>9} {'rel_max':>9} {'max_rel':>9} {'bad':>7}",
          file=out)
    for r in rows:
        if "skip" in r:
            print(f"{r['index']:>5} {r['type']:<14} SKIP: {r['skip']}", file=out)
            continue
        print(f"{r['index']:>5} {r['type']:<14} {r['max_abs']:10.3e} {r['max_ref']:9.3g} {r['rel_max']:9.2e} "
              f"{r['max_rel']:9.2e} {r['bad']:>7}", file=out)
    cmp = [r for r in rows if "skip" not in r and r["index"] != "input"]
    summary = {
        "compared": len(cmp),
        "skipped": sum(1 for r in rows if "skip" in r),
        "worst_abs": max(cmp, key=lambda r: r["max_abs"]) if cmp else None,
        "worst_rel_max": max(cmp, key=lambda r: r["rel_max"]) if cmp else None,
        "layers_out_of_tolerance": [r["index"] for r in cmp if r["bad"]],
        "rows": rows,
    }
    if cmp:
        wa, wr = summary["worst_abs"], summary["worst_rel_max"]
        print(f"worst max_abs: {wa['max_abs']:.3e} (layer {wa['index']} {wa['type']}); worst rel_max: "
              f"{wr['rel_max']:.2e} (layer {wr['index']} {wr['type']}); layers out of tolerance: "
              f"{summary['layers_out_of_tolerance'] or 'none'}; skipped: {summary['skipped']}", file=out)
    return summary


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="compare two layer-dump directories (B = reference)")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--tol-abs", type=float, default=1e-4)
    p.add_argument("--tol-rel", type=float, default=1e-4)
    p.add_argument("--json", help="write the per-layer statistics here")
    args = p.parse_args(argv)
    s = compare(args.a, args.b, args.tol_abs, args.tol_rel)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(s, f, indent=1)
    return 1 if s["layers_out_of_tolerance"] else 0


if __name__ == "__main__":
    sys.exit(main())
