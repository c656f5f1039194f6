"""Generates the yolo-loss fixtures in tests/data/yolo_loss/ by running Darknet itself (harness.c).

Usage: python3 tools/yolo_loss_cases/gen.py <darknet source tree built with `make` (GPU=0)>
Each case: case.cfg ([net] + one [yolo]), truth.bin, and Darknet's output.bin
(l.output), delta.bin (l.delta), result.json (l.cost, counters) and darknet_log.txt.
"""
import json
import os
import subprocess
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "tests", "data", "yolo_loss")

ANCHORS = "0.75,1, 1.25,2.75, 3,2, 2.5,5, 5,3.75, 7,7"  # net is 8x8 (the yolo layer is the first layer)
BASE = dict(classes=3, num=6, max=12)

# Each case: extra [yolo] keys, mask, grid, raw-input generator.
CASES = {
    "giou_batch2": dict(keys="iou_loss=giou\niou_normalizer=0.5\nignore_thresh=0.3\ntruth_thresh=1", mask="3,4,5"),
    "diou_iou_thresh_giou_kind": dict(
        keys="iou_loss=diou\niou_normalizer=0.25\niou_thresh=0.3\niou_thresh_kind=giou\nmax_delta=3\n"
        "scale_x_y=1.1\nlabel_smooth_eps=0.1\nignore_thresh=0.4",
        mask="0,1,2",
    ),
    "mse_truth_thresh_smooth": dict(
        keys="iou_loss=mse\ntruth_thresh=0.35\nignore_thresh=0.2\nobjectness_smooth=1\nobj_normalizer=0.7\n"
        "cls_normalizer=0.5",
        mask="0,1,2",
    ),
    "ciou_counters_per_class": dict(
        keys="iou_loss=ciou\niou_normalizer=0.07\ncounters_per_class=10,50,100\ncls_normalizer=2\nmax_delta=20\n"
        "iou_thresh=0.213\nscale_x_y=1.05\nignore_thresh=0.5\ntruth_thresh=0.6",
        mask="3,4,5",
    ),
    "iou_focal": dict(keys="iou_loss=iou\nfocal_loss=1\nignore_thresh=0.35", mask="0,1,2"),
    "mse_show_details0_new_coords": dict(
        keys="iou_loss=mse\nshow_details=0\nnew_coords=1\nscale_x_y=2.0\niou_thresh=0.25\nignore_thresh=0.3",
        mask="3,4,5",
        new_coords=True,
    ),
    "ciou_new_coords_smooth": dict(
        keys="iou_loss=ciou\nnew_coords=1\nscale_x_y=2.0\niou_thresh=0.2\nobjectness_smooth=1\ntruth_thresh=0.4\n"
        "ignore_thresh=0.25\nlabel_smooth_eps=0.05",
        mask="0,1,2",
        new_coords=True,
    ),
}

W = H = 8
BATCH = 2


def truth_for(rng, b):
    """12 slots; several boxes; two in the same cell with different classes; an invalid class; a terminator."""
    t = np.zeros((12, 6), np.float32)
    boxes = []
    for _ in range(5):
        x, y = rng.uniform(0.05, 0.95, 2)
        w, h = rng.uniform(0.05, 0.7, 2)
        boxes.append([x, y, w, h, rng.integers(0, 3), 0])
    x, y = boxes[0][0], boxes[0][1]
    boxes.append([x + 0.01, y - 0.01, boxes[0][2] * 0.9, boxes[0][3] * 1.1, (boxes[0][4] + 1) % 3, 7])
    boxes.append([0.5, 0.5, 0.2, 0.2, 5, 0])  # class >= classes: skipped by Darknet
    if b == 1:
        boxes = boxes[:4]
    for k, bx in enumerate(boxes):
        t[k] = bx
    # After the terminator (x == 0): must be ignored.
    t[len(boxes) + 1] = [0.3, 0.3, 0.2, 0.2, 1, 0]
    return t


def main():
    darknet = os.path.abspath(sys.argv[1])
    exe = os.path.abspath(os.path.join(darknet, "yolo_loss_harness"))
    objs = [os.path.join(darknet, "obj", f) for f in sorted(os.listdir(os.path.join(darknet, "obj")))
            if f.endswith(".o") and f != "darknet.o"]
    subprocess.run(["g++", "-O2", "-x", "c", os.path.join(os.path.dirname(__file__), "harness.c"), "-x", "none",
                    "-I", os.path.join(darknet, "include"), "-I", os.path.join(darknet, "src"),
                    *objs, "-o", exe, "-lm", "-pthread"], check=True)
    rng = np.random.default_rng(20261127)
    os.makedirs(OUT, exist_ok=True)
    for name, case in CASES.items():
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        n = len(case["mask"].split(","))
        cfg = (f"[net]\nbatch={BATCH}\nsubdivisions=1\nwidth={W}\nheight={H}\nchannels={n * (5 + BASE['classes'])}\n\n"
               f"[yolo]\nmask={case['mask']}\nanchors={ANCHORS}\nclasses={BASE['classes']}\nnum={BASE['num']}\n"
               f"max={BASE['max']}\n{case['keys']}\n")
        with open(os.path.join(d, "case.cfg"), "w") as f:
            f.write(cfg)
        shape = (BATCH, n * (5 + BASE["classes"]), H, W)
        if case.get("new_coords"):
            raw = rng.uniform(0.02, 0.98, shape).astype(np.float32)
        else:
            raw = (rng.standard_normal(shape) * 1.5).astype(np.float32)
        raw.tofile(os.path.join(d, "input.bin"))
        truth = np.stack([truth_for(rng, b) for b in range(BATCH)])
        truth.tofile(os.path.join(d, "truth.bin"))
        log = subprocess.run([exe, os.path.join(d, "case.cfg"), os.path.join(d, "input.bin"),
                              os.path.join(d, "truth.bin"), d], capture_output=True, text=True, check=True)
        with open(os.path.join(d, "darknet_log.txt"), "w") as f:
            f.write(log.stderr)
        # The raw input is not needed by the tests (they start from Darknet's activated output.bin).
        os.remove(os.path.join(d, "input.bin"))
        print(name, json.load(open(os.path.join(d, "result.json"))))


if __name__ == "__main__":
    main()
