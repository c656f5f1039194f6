#!/usr/bin/env python3
"""OpenCV DNN latency / throughput / peak memory for a Darknet cfg+weights (the peer for our benchmarks).

    tools/bench_opencv.py --cfg X.cfg --weights X.weights --image img.jpg [--size 416] [--batch 1] [--runs 20]
        [--warmup 5] [--threads 2] [--no-winograd] [--no-fusion] [--json out.json]

Importable: `measure(cfg, weights, image, size=416, batch=1, runs=20, warmup=5, threads=2, ...) -> dict`.

Input: the image is preprocessed exactly as `darknet detector test` (tools/darknet_image.py: RGB, /255, Darknet's
stretch `resize_image` to size x size, no letterbox) once, outside the timed region, and replicated `batch` times.
Timed: `net.setInput(blob); net.forward(output_names)` for every unconnected output (the [yolo] heads), with
`time.perf_counter`, `warmup` untimed iterations first. Latency percentiles are over `runs` forward calls of the
whole batch; throughput = batch * 1000 / median_ms (images/s). Peak RSS is the process's `ru_maxrss` after the
runs (includes Python, numpy and cv2 themselves; `rss_before_load_mb` is the peak before the net was loaded).
OpenCV is used as a user gets it: DNN_BACKEND_OPENCV, DNN_TARGET_CPU, FP32, fusion and Winograd on (its defaults)
unless --no-fusion / --no-winograd.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import darknet_image as di  # noqa: E402


def _rss_mb() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    return r / 1024.0


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _pct(xs: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(xs, np.float64), q))


def measure(cfg: str, weights: str, image: str, size: int | tuple[int, int] = 416, batch: int = 1, runs: int = 20,
            warmup: int = 5, threads: int | None = 2, fusion: bool = True, winograd: bool = True) -> dict:
    """Benchmark OpenCV DNN on one image replicated `batch` times. Returns the result dict (see module doc)."""
    import cv2

    if runs < 1 or warmup < 0 or batch < 1:
        raise ValueError("runs >= 1, warmup >= 0, batch >= 1 required")
    w, h = (size, size) if isinstance(size, int) else size
    if threads:
        cv2.setNumThreads(int(threads))
    rss0 = _rss_mb()
    t = time.perf_counter()
    x, iw, ih = di.darknet_input(image, w, h)
    pre_ms = (time.perf_counter() - t) * 1e3
    blob = np.ascontiguousarray(np.broadcast_to(x, (batch,) + x.shape), np.float32)

    t = time.perf_counter()
    net = cv2.dnn.readNetFromDarknet(cfg, weights)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    net.enableFusion(fusion)
    net.enableWinograd(winograd)
    load_ms = (time.perf_counter() - t) * 1e3
    outs_names = list(net.getUnconnectedOutLayersNames())

    def once() -> float:
        t0 = time.perf_counter()
        net.setInput(blob)
        net.forward(outs_names)
        return (time.perf_counter() - t0) * 1e3

    first_ms = once()  # includes OpenCV's lazy network setup (allocation, fusion)
    for _ in range(max(0, warmup - 1)):
        once()
    lat = [once() for _ in range(runs)]
    med = _pct(lat, 50)
    return {
        "engine": "opencv-dnn",
        "opencv_version": cv2.__version__,
        "backend": "DNN_BACKEND_OPENCV/DNN_TARGET_CPU/FP32",
        "fusion": fusion,
        "winograd": winograd,
        "cfg": os.path.basename(cfg),
        "image": os.path.basename(image),
        "image_wh": [iw, ih],
        "size": [w, h],
        "batch": batch,
        "runs": runs,
        "warmup": warmup,
        "threads": cv2.getNumThreads(),
        "latency_ms": {"median": med, "p10": _pct(lat, 10), "p90": _pct(lat, 90), "mean": float(np.mean(lat)),
                       "min": float(np.min(lat)), "max": float(np.max(lat))},
        "per_image_ms": med / batch,
        "throughput_ips": batch * 1000.0 / med,
        "first_forward_ms": first_ms,
        "load_ms": load_ms,
        "preprocess_ms_numpy": pre_ms,
        "peak_rss_mb": _rss_mb(),
        "rss_before_load_mb": rss0,
        "cpu": _cpu_model(),
        "loadavg_1m_after": os.getloadavg()[0],
        "nproc": os.cpu_count(),
    }


def format_result(r: dict) -> str:
    L = r["latency_ms"]
    return (f"OpenCV {r['opencv_version']} {r['cfg']} {r['size'][0]}x{r['size'][1]} batch {r['batch']} "
            f"threads {r['threads']} (winograd {'on' if r['winograd'] else 'off'}, fusion "
            f"{'on' if r['fusion'] else 'off'}): forward median {L['median']:.1f} ms (p10 {L['p10']:.1f}, "
            f"p90 {L['p90']:.1f}) = {r['per_image_ms']:.1f} ms/image, {r['throughput_ips']:.2f} images/s, "
            f"peak RSS {r['peak_rss_mb']:.0f} MB (before load {r['rss_before_load_mb']:.0f} MB), "
            f"load {r['load_ms']:.0f} ms")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="OpenCV DNN benchmark for a Darknet model")
    p.add_argument("--cfg", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--size", type=int, default=416)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--no-winograd", action="store_true")
    p.add_argument("--no-fusion", action="store_true")
    p.add_argument("--json", help="also write the result here")
    args = p.parse_args(argv)
    for f in (args.cfg, args.weights, args.image):
        if not os.path.isfile(f):
            p.error(f"{f}: no such file")
    try:
        r = measure(args.cfg, args.weights, args.image, args.size, args.batch, args.runs, args.warmup, args.threads,
                    fusion=not args.no_fusion, winograd=not args.no_winograd)
    except ValueError as e:
        p.error(str(e))
    print(format_result(r))
    if args.json:
        tmp = args.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump(r, f, indent=1)
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
