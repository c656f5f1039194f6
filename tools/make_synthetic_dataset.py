#!/usr/bin/env python3
"""Generate a small Darknet-format detection dataset of coloured shapes on textured backgrounds.

Three classes: 0 circle (red-ish), 1 square (green-ish), 2 triangle (blue-ish), 1-4 objects per image,
random sizes/positions, mild colour jitter, on noisy gradient + stripe/blob textures.

Writes, under OUT:
  images/{train,valid}/NNNN.jpg      the images (JPEG, SIZE x SIZE)
  images/{train,valid}/NNNN.txt      Darknet labels: `class xc yc w h` (relative), beside each image
  train.txt, valid.txt              absolute image paths, one per line
  shapes.names                      class names
  shapes.data                       classes=, train=, valid=, names=, backup=

Usage: make_synthetic_dataset.py OUT [--train 200] [--valid 50] [--size 320] [--seed 1]
"""

import argparse
import os

import cv2
import numpy as np

NAMES = ["circle", "square", "triangle"]
COLOURS = [(220, 40, 40), (40, 200, 60), (40, 80, 230)]  # RGB


def background(rng, size):
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = rng.uniform(60, 200, 3)
    grad = rng.uniform(-60, 60, (2, 3))
    img = base[None, None, :] + xx[..., None] * grad[0] + yy[..., None] * grad[1]
    # stripes
    f = rng.uniform(4, 20)
    ang = rng.uniform(0, np.pi)
    stripes = np.sin(2 * np.pi * f * (np.cos(ang) * xx + np.sin(ang) * yy))
    img += stripes[..., None] * rng.uniform(5, 25)
    # grey blobs
    for _ in range(rng.integers(3, 8)):
        c = (int(rng.integers(0, size)), int(rng.integers(0, size)))
        r = int(rng.integers(size // 30, size // 8))
        g = float(rng.uniform(60, 200))
        tmp = np.zeros((size, size), np.uint8)
        cv2.circle(tmp, c, r, 255, -1)
        m = tmp > 0
        img[m] = img[m] * 0.5 + g * 0.5
    img += rng.normal(0, 8, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


def draw(rng, img, cls, size, placed):
    for _ in range(30):
        s = int(rng.uniform(0.10, 0.30) * size)
        x0 = int(rng.integers(0, size - s))
        y0 = int(rng.integers(0, size - s))
        box = (x0, y0, x0 + s, y0 + s)
        if all(box[2] <= p[0] or box[0] >= p[2] or box[3] <= p[1] or box[1] >= p[3] for p in placed):
            break
    else:
        return None
    col = np.clip(np.array(COLOURS[cls]) + rng.integers(-25, 26, 3), 0, 255)
    col = tuple(int(v) for v in col)
    if cls == 0:
        cv2.circle(img, (x0 + s // 2, y0 + s // 2), s // 2, col, -1, lineType=cv2.LINE_AA)
    elif cls == 1:
        cv2.rectangle(img, (x0, y0), (x0 + s - 1, y0 + s - 1), col, -1)
    else:
        pts = np.array([[x0 + s // 2, y0], [x0, y0 + s - 1], [x0 + s - 1, y0 + s - 1]], np.int32)
        cv2.fillPoly(img, [pts], col, lineType=cv2.LINE_AA)
    placed.append(box)
    return (cls, (x0 + s / 2) / size, (y0 + s / 2) / size, s / size, s / size)


def split(rng, out, name, n, size):
    d = os.path.join(out, "images", name)
    os.makedirs(d, exist_ok=True)
    paths = []
    for i in range(n):
        img = background(rng, size)
        placed, labels = [], []
        for _ in range(int(rng.integers(1, 5))):
            lab = draw(rng, img, int(rng.integers(0, 3)), size, placed)
            if lab:
                labels.append(lab)
        p = os.path.abspath(os.path.join(d, f"{i:04d}.jpg"))
        cv2.imwrite(p, cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
        with open(p[:-4] + ".txt", "w") as f:
            for c, x, y, w, h in labels:
                f.write(f"{c} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n")
        paths.append(p)
    with open(os.path.join(out, f"{name}.txt"), "w") as f:
        f.write("\n".join(paths) + "\n")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out")
    ap.add_argument("--train", type=int, default=200)
    ap.add_argument("--valid", type=int, default=50)
    ap.add_argument("--size", type=int, default=320)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    rng = np.random.default_rng(a.seed)
    os.makedirs(a.out, exist_ok=True)
    split(rng, a.out, "train", a.train, a.size)
    split(rng, a.out, "valid", a.valid, a.size)
    out = os.path.abspath(a.out)
    with open(os.path.join(out, "shapes.names"), "w") as f:
        f.write("\n".join(NAMES) + "\n")
    with open(os.path.join(out, "shapes.data"), "w") as f:
        f.write(f"classes={len(NAMES)}\ntrain={out}/train.txt\nvalid={out}/valid.txt\n"
                f"names={out}/shapes.names\nbackup={out}/backup\n")
    print(f"wrote {a.train} train and {a.valid} valid images ({a.size}x{a.size}) under {out}")


if __name__ == "__main__":
    main()
