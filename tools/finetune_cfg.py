#!/usr/bin/env python3
"""Derive the fine-tuning cfg of tools/finetune_demo.sh from yolov4-tiny.cfg: classes, filters before each
[yolo] = 3*(5+classes), input size, batch, schedule, and optionally `stopbackward=1` on layer FREEZE (Darknet
then trains only the layers after it: fine-tuning the head on a frozen backbone).

Usage: finetune_cfg.py SRC OUT --classes 3 --size 256 --batch 8 --subdivisions 1 --lr 0.002 --burn-in 40
                       --iters 300 [--freeze 8]
"""
import argparse


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--classes", type=int, default=3)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--subdivisions", type=int, default=1)
    ap.add_argument("--lr", type=float, default=0.002)
    ap.add_argument("--burn-in", type=int, default=40)
    ap.add_argument("--iters", type=int, default=300)
    ap.add_argument("--freeze", type=int, default=-1, help="layer index that gets stopbackward=1")
    a = ap.parse_args()
    net = {"batch": a.batch, "subdivisions": a.subdivisions, "width": a.size, "height": a.size,
           "learning_rate": a.lr, "burn_in": a.burn_in, "max_batches": a.iters,
           "steps": f"{a.iters * 8 // 10},{a.iters * 9 // 10}", "scales": ".1,.1"}
    sections = []  # [header, [lines]]
    for line in open(a.src):
        s = line.strip()
        if s.startswith("["):
            sections.append([s, []])
        elif sections:
            sections[-1][1].append(s)
    filters = 3 * (5 + a.classes)
    out = []
    for i, (head, lines) in enumerate(sections):
        layer = i - 1  # section 0 is [net]
        nxt = sections[i + 1][0] if i + 1 < len(sections) else ""
        out.append(head)
        for s in lines:
            k = s.split("=")[0].strip()
            if head == "[net]" and k in net:
                s = f"{k}={net.pop(k)}"
            elif head == "[yolo]" and k == "classes":
                s = f"classes={a.classes}"
            elif head == "[convolutional]" and nxt == "[yolo]" and k == "filters":
                s = f"filters={filters}"
            out.append(s)
        if head == "[net]":
            out += [f"{k}={v}" for k, v in net.items()]
        if layer == a.freeze:
            out.append("stopbackward=1")
        out.append("")
    open(a.out, "w").write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
