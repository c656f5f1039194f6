#!/usr/bin/env python3
"""Anchor k-means in numpy, the same algorithm as `candle-darknet anchors` (Darknet's `calc_anchors` /
`do_kmeans`): distance 1 - IoU of (w, h) pairs, Lloyd iterations until no assignment changes (at most 1000),
an empty cluster keeps its centre, anchors sorted by area, average IoU = 100 * sum(best IoU) / n.
Initialisation: k-means++ (default) or darknet (first k of a random permutation).

It is the peer of the Rust implementation in tools/bench_anchors.sh. It also writes the synthetic label
file that benchmark uses (--generate).

  kmeans_numpy.py --labels DIR -n 9 --size 416x416 --seed 1 --restarts 3 --json out.json
  kmeans_numpy.py --generate 1000000 --out DIR/boxes.txt --seed 1
"""
import argparse
import glob
import json
import os
import sys
import time

import numpy as np

# yolov3's published anchors (network pixels at 416x416), the cluster centres of the synthetic data.
CENTRES = np.array([[10, 13], [16, 30], [33, 23], [30, 61], [62, 45], [59, 119], [116, 90], [156, 198], [373, 326]],
                   dtype=np.float32)


def iou_wh(boxes, centers):
    """(n, 2) x (k, 2) -> (n, k) IoU of corner-aligned (w, h) pairs, float32 as Darknet's dist()."""
    inter = np.minimum(boxes[:, None, 0], centers[None, :, 0]) * np.minimum(boxes[:, None, 1], centers[None, :, 1])
    union = (boxes[:, 0] * boxes[:, 1])[:, None] + (centers[:, 0] * centers[:, 1])[None, :] - inter
    return inter / union


def assign(boxes, centers):
    # argmin of 1 - IoU: the first minimum wins, as closest_center().
    return np.argmin(np.float32(1) - iou_wh(boxes, centers), axis=1)


def init_darknet(boxes, k, rng):
    return boxes[rng.permutation(len(boxes))[:k]].copy()


def init_kmeanspp(boxes, k, rng):
    centers = [boxes[rng.integers(len(boxes))]]
    d = np.maximum(np.float32(1) - iou_wh(boxes, centers[0][None, :])[:, 0], 0)
    d2 = (d * d).astype(np.float64)
    while len(centers) < k:
        total = d2.sum()
        if total > 0:
            idx = int(np.searchsorted(np.cumsum(d2), rng.random() * total, side="right"))
            idx = min(idx, len(boxes) - 1)
        else:
            idx = int(rng.integers(len(boxes)))
        c = boxes[idx]
        centers.append(c)
        d = np.maximum(np.float32(1) - iou_wh(boxes, c[None, :])[:, 0], 0)
        d2 = np.minimum(d2, d * d)
    return np.array(centers, dtype=np.float32)


def lloyd(boxes, centers, max_iter=1000):
    k = len(centers)
    asg = np.zeros(len(boxes), dtype=np.int64)

    def maximize(asg, centers):
        counts = np.bincount(asg, minlength=k)
        new = centers.copy()
        for j in range(2):
            s = np.bincount(asg, weights=boxes[:, j].astype(np.float64), minlength=k)
            m = counts > 0
            new[m, j] = (s[m] / counts[m]).astype(np.float32)
        return new

    if k == 1:
        centers = maximize(asg, centers)
    i = 0
    while i < max_iter:
        new = assign(boxes, centers)
        converged = np.array_equal(new, asg)
        asg = new
        if converged:
            break
        centers = maximize(asg, centers)
        i += 1
    return centers, i


def average_iou(boxes, anchors):
    iou = iou_wh(boxes, anchors)
    best = np.argmin(np.float32(1) - iou, axis=1)
    b = iou[np.arange(len(boxes)), best].astype(np.float64)
    ok = (b >= 0) & (b <= 1)
    return 100.0 * b[ok].sum() / len(boxes), np.bincount(best, minlength=len(anchors))


def load_labels(folder, w, h):
    arrays = []
    for f in sorted(glob.glob(os.path.join(folder, "**", "*.txt"), recursive=True)):
        with open(f) as fh:
            v = np.array(fh.read().split(), dtype=np.float32)
        if v.size:
            arrays.append(v.reshape(-1, 5)[:, 3:5])
    rel = np.concatenate(arrays)
    return (rel * np.array([w, h], dtype=np.float32)).astype(np.float32)


def generate(n, out, seed, size=(416, 416), spread=0.5):
    rng = np.random.default_rng(seed)
    c = CENTRES[rng.integers(len(CENTRES), size=n)]
    jit = 1 + spread * (rng.random((n, 2), dtype=np.float32) * 2 - 1)
    wh = np.clip(c * jit, 1, np.array(size, dtype=np.float32)) / np.array(size, dtype=np.float32)
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w") as fh:
        for i in range(0, n, 100000):
            part = wh[i:i + 100000]
            fh.write("".join(f"0 0.5 0.5 {w:.6f} {h:.6f}\n" for w, h in part))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--labels")
    ap.add_argument("-n", type=int, default=9)
    ap.add_argument("--size", default="416x416")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--restarts", type=int, default=1)
    ap.add_argument("--init", choices=["kmeans++", "darknet"], default="kmeans++")
    ap.add_argument("--json")
    ap.add_argument("--generate", type=int, help="write N synthetic label lines to --out and exit")
    ap.add_argument("--out")
    a = ap.parse_args()
    w, h = (int(x) for x in a.size.lower().split("x"))
    if a.generate:
        generate(a.generate, a.out, a.seed, (w, h))
        return
    t = time.perf_counter()
    boxes = load_labels(a.labels, w, h)
    load_s = time.perf_counter() - t
    if len(boxes) < a.n:
        sys.exit(f"only {len(boxes)} boxes for {a.n} clusters")
    rng = np.random.default_rng(a.seed)
    best, secs, iters, ious = None, [], [], []
    for r in range(max(1, a.restarts)):
        t = time.perf_counter()
        init = init_kmeanspp if a.init == "kmeans++" else init_darknet
        centers, it = lloyd(boxes, init(boxes, a.n, rng))
        anchors = centers[np.argsort(centers[:, 0] * centers[:, 1], kind="stable")]
        avg, counts = average_iou(boxes, anchors)
        secs.append(time.perf_counter() - t)
        iters.append(it)
        ious.append(avg)
        print(f" restart {r}: iterations = {it}, avg IoU = {avg:.2f} %, {secs[-1]:.3f} s")
        if best is None or avg > best[1]:
            best = (anchors, avg, counts)
    anchors, avg, counts = best
    print(" avg IoU = %2.2f %%" % avg)
    print("anchors = " + ", ".join("%3.0f,%3.0f" % (x, y) for x, y in anchors))
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"anchors": anchors.tolist(), "avg_iou": avg / 100, "counts": counts.tolist(),
                       "restart_seconds": secs, "restart_iterations": iters, "load_seconds": load_s,
                       "boxes": len(boxes)}, fh)


if __name__ == "__main__":
    main()
