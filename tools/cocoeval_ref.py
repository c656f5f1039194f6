#!/usr/bin/env python3
"""pycocotools peer for candle-darknet's COCOeval (src/eval/coco.rs).

Two modes:
  cocoeval_ref.py --seed N --out-dir DIR   generate a random case (DIR/gt.json, DIR/results.json), score it
  cocoeval_ref.py --gt GT --results RES    score given files

Prints one JSON object on stdout: {"stats": [12 numbers], "gt": path, "results": path}. pycocotools' own
progress output goes to stderr. Exit status 2 (with a message) when numpy or pycocotools is missing.

The generated cases cover what COCOeval treats specially: crowd ground truth (IoU over the detection area,
matched by many detections), a json `area` different from w*h (the area ranges use the json value), objects in
all three area ranges and on their borders, images without ground truth, images without detections, an image
with neither, a category without ground truth, a category without detections, duplicate detections, more than
100 detections on one image (maxDets), tied scores inside and across images (stable mergesort order), and
detections of a category id unknown to the ground truth (ignored), an annotation id 0 and a repeated
annotation id (seed-dependent).
"""
import argparse
import contextlib
import json
import os
import random
import sys


def need_deps():
    try:
        import numpy  # noqa: F401
        from pycocotools.coco import COCO  # noqa: F401
        from pycocotools.cocoeval import COCOeval  # noqa: F401
    except ImportError as e:
        sys.stderr.write(f"cocoeval_ref.py: {e}; run `make pydeps` (pip install -r tools/requirements.txt)\n")
        sys.exit(2)


def rand_box(rng, iw, ih):
    # Sizes spread over small (<32^2), medium and large (>96^2), a few exactly on the borders.
    kind = rng.random()
    if kind < 0.05:
        w, h = 32.0, 32.0
    elif kind < 0.10:
        w, h = 96.0, 96.0
    else:
        w = float(round(2 ** rng.uniform(2, 8.2), 2))
        h = float(round(2 ** rng.uniform(2, 8.2), 2))
    w, h = min(w, iw - 1), min(h, ih - 1)
    x = float(round(rng.uniform(0, iw - w), 2))
    y = float(round(rng.uniform(0, ih - h), 2))
    return [x, y, w, h]


def jitter(rng, b, s):
    x, y, w, h = b
    return [
        round(x + rng.gauss(0, s * w), 3),
        round(y + rng.gauss(0, s * h), 3),
        round(max(1.0, w * (1 + rng.gauss(0, s))), 3),
        round(max(1.0, h * (1 + rng.gauss(0, s))), 3),
    ]


def generate(seed, out_dir):
    rng = random.Random(seed)
    cat_ids = [1, 3, 7, 10, 22, 40]  # 40: never in the ground truth; 22: never detected
    n_images = 14
    images, anns, dets = [], [], []
    ann_id = 1
    for i in range(n_images):
        img_id = 100 + 7 * i
        iw, ih = rng.choice([(640, 480), (320, 240), (1000, 800)])
        images.append({"id": img_id, "width": iw, "height": ih, "file_name": f"{img_id}.jpg"})
        no_gt = i in (1, 5)
        no_dt = i in (2, 5)
        n_gt = 0 if no_gt else rng.randint(1, 12)
        gts = []
        for _ in range(n_gt):
            cat = rng.choice(cat_ids[:5])
            b = rand_box(rng, iw, ih)
            crowd = 1 if rng.random() < 0.12 else 0
            r = rng.random()
            area = b[2] * b[3] if r < 0.3 else round(b[2] * b[3] * rng.uniform(0.4, 1.0), 2)
            if r > 0.95:
                area = 1024.0  # exactly on the small/medium border
            anns.append({"id": ann_id, "image_id": img_id, "category_id": cat, "bbox": b,
                         "area": area, "iscrowd": crowd})
            gts.append((cat, b, crowd))
            ann_id += 1
        if no_dt:
            continue
        for cat, b, crowd in gts:
            if cat == 22:
                continue
            if rng.random() < 0.75:
                for _ in range(1 if rng.random() < 0.7 else rng.randint(2, 4)):
                    dets.append({"image_id": img_id, "category_id": cat, "bbox": jitter(rng, b, 0.08),
                                 "score": round(rng.random(), 2)})
            if crowd:
                for _ in range(rng.randint(1, 3)):
                    sub = [b[0] + rng.uniform(0, b[2] / 2), b[1] + rng.uniform(0, b[3] / 2), b[2] / 3, b[3] / 3]
                    dets.append({"image_id": img_id, "category_id": cat, "bbox": [round(v, 3) for v in sub],
                                 "score": round(rng.random(), 2)})
        n_fp = rng.randint(0, 130) if i == 3 else rng.randint(0, 8)
        for _ in range(n_fp):
            cat = rng.choice([c for c in cat_ids if c != 22])
            dets.append({"image_id": img_id, "category_id": cat, "bbox": rand_box(rng, iw, ih),
                         "score": round(rng.random(), 2)})
    rng.shuffle(dets)
    # pycocotools quirks on odd ids: a gt id of 0 reads as "unmatched" (dtMatches == 0), and a repeated
    # annotation id makes both entries the last annotation with that id (COCO.anns is a dict).
    if seed % 3 == 1 and anns:
        anns[0]["id"] = 0
    if seed % 3 == 2 and len(anns) > 3:
        anns[3]["id"] = anns[1]["id"]
    # File order differs from id order: COCOeval sorts image and category ids, which sets the order in which
    # tied scores of different images meet in `accumulate`.
    rng.shuffle(images)
    cats = [{"id": c, "name": f"cat{c}"} for c in cat_ids if c != 40]
    rng.shuffle(cats)
    gt = {"images": images, "annotations": anns, "categories": cats}
    os.makedirs(out_dir, exist_ok=True)
    gt_path = os.path.join(out_dir, "gt.json")
    res_path = os.path.join(out_dir, "results.json")
    with open(gt_path, "w") as f:
        json.dump(gt, f)
    with open(res_path, "w") as f:
        json.dump(dets, f)
    return gt_path, res_path


def score(gt_path, res_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    with contextlib.redirect_stdout(sys.stderr):
        gt = COCO(gt_path)
        dt = gt.loadRes(res_path)
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return [float(v) for v in ev.stats]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seed", type=int)
    ap.add_argument("--out-dir")
    ap.add_argument("--gt")
    ap.add_argument("--results")
    a = ap.parse_args()
    need_deps()
    if a.seed is not None:
        if not a.out_dir:
            ap.error("--seed needs --out-dir")
        gt_path, res_path = generate(a.seed, a.out_dir)
    elif a.gt and a.results:
        gt_path, res_path = a.gt, a.results
    else:
        ap.error("give --seed N --out-dir DIR, or --gt GT --results RES")
    stats = score(gt_path, res_path)
    print(json.dumps({"stats": stats, "gt": gt_path, "results": res_path}))


if __name__ == "__main__":
    main()
