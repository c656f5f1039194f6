#!/usr/bin/env python3
"""`make bench-loader`: our loader (`candle-darknet augment --bench`) and Darknet's own
(`load_data_detection` of AlexeyAB/darknet 59596d7 through tools/loader_bench/harness.c) in one run, on the
same images, labels, parameters and srand() seed, at 416 and 608, mosaic off and on, 1, 2 and N threads.

Ours is measured three ways: the fused kernel with the decoded-image cache (what training uses), the fused
kernel decoding every time (as Darknet does), and the step-by-step path without cache (the code before the
fused kernel). Prints a markdown table and, as its last line,
`loader images/s at 416 mosaic, 1 thread: ours X, darknet Y, ratio Z` (ours = fused + cache).
"""
import argparse
import json
import os
import subprocess
import sys


def ours(bin_, list_, sizes, mosaic, threads, secs, warm, extra):
    cmd = [bin_, "augment", "--bench", "--json", "--data", list_,
           "--bench-sizes", ",".join(map(str, sizes)), "--bench-mosaic", ",".join(map(str, mosaic)),
           "--bench-threads", ",".join(map(str, threads)),
           "--bench-seconds", str(secs), "--warmup-seconds", str(warm)] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["rows"]


def darknet(harness, root, paths, size, mosaic, threads, batch, secs, warm, seed):
    cmd = [harness, root, str(size), str(mosaic), str(threads), str(batch), str(warm), str(secs), str(seed)]
    out = subprocess.run(cmd + paths, check=True, capture_output=True, text=True).stdout
    line = [l for l in out.splitlines() if l.startswith("darknet_loader ")][-1].split()
    return float(line[line.index("images_per_s") + 1])


def shares(row):
    s = row["stages"]
    total = max(s["total"], 1e-12)
    named = ["decode", "crop_resize", "hsv", "mosaic", "to_float", "truth"]
    other = max(total - sum(s[k] for k in named), 0.0)
    return " | ".join(f"{100 * s[k] / total:.0f}%" for k in named) + f" | {100 * other / total:.0f}%"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", required=True)
    ap.add_argument("--harness", required=True)
    ap.add_argument("--root", required=True, help="directory of the relative image paths (augment root)")
    ap.add_argument("--list", required=True, help="image list, paths relative to --root")
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--warmup", type=float, default=0.5)
    ap.add_argument("--sizes", default="416,608")
    ap.add_argument("--threads", default="")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--no-stepwise", action="store_true", help="skip the step-by-step path")
    a = ap.parse_args()
    sizes = [int(s) for s in a.sizes.split(",")]
    threads = sorted({1, 2, os.cpu_count() or 1}) if not a.threads else [int(t) for t in a.threads.split(",")]
    paths = [l.strip() for l in open(a.list) if l.strip()]
    common = (a.bin, a.list, sizes, [0, 1], threads, a.seconds, a.warmup)
    seed = ["--seed", str(a.seed), "--batch", str(a.batch)]
    variants = [("fused+cache", ours(*common, seed + ["--cache-images"])),
                ("fused", ours(*common, seed))]
    if not a.no_stepwise:
        variants.append(("stepwise (before)", ours(*common, seed + ["--stepwise"])))
    dk = {}
    for size in sizes:
        for m in (0, 1):
            for t in threads:
                dk[(size, m, t)] = darknet(a.harness, a.root, paths, size, m, t, a.batch, a.seconds,
                                           a.warmup, a.seed)
    print(f"loader benchmark, {len(paths)} images, batch {a.batch}, srand({a.seed}); {os.cpu_count()} cores")
    print("| size | mosaic | threads | loader | images/s | vs darknet | decode | crop_resize | hsv | mosaic | "
          "to_float | truth | other |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for size in sizes:
        for m in (0, 1):
            for t in threads:
                d = dk[(size, m, t)]
                print(f"| {size} | {m} | {t} | darknet | {d:.1f} | 1.00 | | | | | | | |")
                for name, rows in variants:
                    r = next(r for r in rows if (r["size"], int(r["mosaic"]), r["threads"]) == (size, m, t))
                    print(f"| {size} | {m} | {t} | {name} | {r['images_per_s']:.1f} | "
                          f"{r['images_per_s'] / d:.2f} | {shares(r)} |")
    pick = lambda rows: next(r for r in rows if (r["size"], r["mosaic"], r["threads"]) == (416, True, 1))
    if 416 in sizes and 1 in threads:
        d = dk[(416, 1, 1)]
        nc = pick(variants[1][1])["images_per_s"]
        print(f"without the decoded-image cache: ours {nc:.1f}, ratio {nc / d:.2f}")
        o = pick(variants[0][1])["images_per_s"]
        print(f"loader images/s at 416 mosaic, 1 thread: ours {o:.1f}, darknet {d:.1f}, ratio {o / d:.2f}")


if __name__ == "__main__":
    sys.exit(main())
