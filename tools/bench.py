#!/usr/bin/env python3
"""CPU speed of candle-darknet against OpenCV DNN (and ONNX Runtime), measured in the same run (`make bench`).

    tools/bench.py --bin target/release/candle-darknet [--cfg weights/yolov4-tiny.cfg]
        [--weights weights/yolov4-tiny.weights] [--image weights/bus.jpg] [--yolov4-cfg PATH] [--runs 20]
        [--warmup 5] [--threads 2] [--skip-yolov4] [--no-ort] [--json out.json]

Builds nothing: `--bin` must be an existing (release) binary. Cases: yolov4-tiny 416 batch 1, yolov4-tiny 416
batch 8, and yolov4 416 batch 1 with random weights (`candle-darknet random-weights`, written once to
target/bench/yolov4-random.weights; the speed of a dense network does not depend on the weight values).

For every case, ours (`candle-darknet bench --json`, RAYON_NUM_THREADS=threads) and then OpenCV DNN
(tools/bench_opencv.py `measure()`, cv2.setNumThreads(threads), its defaults: fusion and Winograd on) run on the
same image, each in its own process (so each peak RSS is that engine's alone); then ONNX Runtime (CPU provider,
intra-op threads = threads) on the graph tools/darknet_to_onnx.py builds from the same cfg/weights (cached in
target/bench/), when `onnx` and `onnxruntime` are importable (`make bench` installs them; --no-ort skips it).
Each engine reports the median of
`runs` forward calls of the whole batch after `warmup` untimed ones. Printed: medians, ours/OpenCV ratio (< 1
means we are faster), GFLOP/s (Darknet's BFLOP count), peak RSS, and how far ours is from the compute floor
(BFLOPs / PEAK_GFLOPS; PEAK_GFLOPS = 157, the issue's nominal 2-core AVX2 figure; this Xeon measures 228 GFLOP/s per core with AVX-512) — and the 1-minute load
average before and after, since the machine is shared.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

PEAK_GFLOPS = 157.0


def _worker(q, module, func, kwargs):
    import importlib

    try:
        q.put(getattr(importlib.import_module(module), func)(**kwargs))
    except Exception as e:  # reported by the parent
        q.put({"error": repr(e)})


def _in_fresh_process(what, module, func, **kwargs) -> dict:
    """`module.func(**kwargs)` in a spawned process (so its peak RSS is that engine's alone)."""
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    p = ctx.Process(target=_worker, args=(q, module, func, kwargs))
    p.start()
    r = q.get()
    p.join()
    if "error" in r:
        raise RuntimeError(f"{what} failed: {r['error']}")
    return r


def opencv(cfg, weights, image, batch, runs, warmup, threads) -> dict:
    """`bench_opencv.measure` in a fresh process."""
    return _in_fresh_process(f"OpenCV DNN on {cfg}", "bench_opencv", "measure", cfg=cfg, weights=weights,
                             image=image, size=416, batch=batch, runs=runs, warmup=warmup, threads=threads)


def ort_available() -> bool:
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnxruntime_peer(cfg, weights, image, batch, runs, warmup, threads) -> dict:
    """ONNX Runtime on our Darknet->ONNX graph of cfg/weights at 416 (built once per batch), in a fresh process."""
    import onnx

    import darknet_to_onnx as d2o

    stem = os.path.splitext(os.path.basename(weights))[0]
    path = os.path.join("target", "bench", f"{stem}-416-b{batch}.onnx")
    if not os.path.isfile(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        model, _ = d2o.build_onnx(cfg, weights, 416, 416, batch=batch)
        onnx.save(model, path + ".tmp")
        os.replace(path + ".tmp", path)
    return _in_fresh_process(f"ONNX Runtime on {path}", "darknet_to_onnx", "measure_ort", onnx_path=path,
                             image=image, batch=batch, runs=runs, warmup=warmup, threads=threads)


def ours(binary, cfg, weights, image, batch, runs, warmup, threads) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "bench.json")
        cmd = [binary, "bench", cfg, weights, "--image", image, "--batch", str(batch), "--runs", str(runs),
               "--warmup", str(warmup), "--size", "416x416", "--pipeline-runs", "0", "--json", out]
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
        with open(out) as f:
            return json.load(f)


def random_weights(binary, cfg, path):
    if os.path.isfile(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # The CLI writes atomically itself.
    r = subprocess.run([binary, "random-weights", cfg, "-o", path], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"random-weights {cfg} failed:\n{r.stderr}")


def _default_yolov4_cfg() -> str:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for base in (os.path.join(root, "..", "shared"), "/work/shared"):
        p = os.path.join(base, "darknet", "cfg", "yolov4.cfg")
        if os.path.isfile(p):
            return os.path.normpath(p)
    return os.path.join(root, "..", "shared", "darknet", "cfg", "yolov4.cfg")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="candle-darknet vs OpenCV DNN on the CPU, same run")
    p.add_argument("--bin", default="target/release/candle-darknet")
    p.add_argument("--cfg", default="weights/yolov4-tiny.cfg")
    p.add_argument("--weights", default="weights/yolov4-tiny.weights")
    p.add_argument("--image", default="weights/bus.jpg")
    p.add_argument("--yolov4-cfg", default=_default_yolov4_cfg())
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-yolov4", action="store_true")
    p.add_argument("--no-ort", action="store_true", help="do not measure ONNX Runtime")
    p.add_argument("--json", help="also write all results here")
    a = p.parse_args(argv)
    if a.runs < 20:
        p.error("--runs must be >= 20 (medians of fewer runs are too noisy on a shared machine)")
    for f in (a.bin, a.cfg, a.weights, a.image):
        if not os.path.isfile(f):
            p.error(f"{f}: no such file (build with `cargo build --release`, fetch weights with `make weights`)")
    cases = [("yolov4-tiny", a.cfg, a.weights, 1), ("yolov4-tiny", a.cfg, a.weights, 8)]
    if not a.skip_yolov4:
        if not os.path.isfile(a.yolov4_cfg):
            p.error(f"{a.yolov4_cfg}: no such file (or pass --skip-yolov4)")
        w = os.path.join("target", "bench", "yolov4-random.weights")
        random_weights(a.bin, a.yolov4_cfg, w)
        cases.append(("yolov4", a.yolov4_cfg, w, 1))

    use_ort = not a.no_ort and ort_available()
    if not a.no_ort and not use_ort:
        print("ONNX Runtime: not measured (pip install onnx onnxruntime)", flush=True)
    load0 = os.getloadavg()[0]
    results = []
    for name, cfg, weights, batch in cases:
        o = ours(a.bin, cfg, weights, a.image, batch, a.runs, a.warmup, a.threads)
        c = opencv(cfg, weights, a.image, batch, a.runs, a.warmup, a.threads)
        t = onnxruntime_peer(cfg, weights, a.image, batch, a.runs, a.warmup, a.threads) if use_ort else None
        ort_ms = t["latency_ms"]["median"] if t else float("nan")
        bflops = o["bflops_per_image"]
        ours_ms, cv_ms = o["forward"]["median_ms"], c["latency_ms"]["median"]
        floor_ms = bflops * batch / PEAK_GFLOPS * 1000.0
        results.append({
            "model": name, "batch": batch, "bflops_per_image": bflops,
            "ours_ms": ours_ms, "opencv_ms": cv_ms, "ratio_ours_over_opencv": ours_ms / cv_ms,
            "ours_gflops": bflops * batch / (ours_ms / 1000.0), "opencv_gflops": bflops * batch / (cv_ms / 1000.0),
            "ours_peak_rss_mib": o.get("peak_rss_mib"), "opencv_peak_rss_mb": c["peak_rss_mb"],
            "floor_ms": floor_ms, "ours_over_floor": ours_ms / floor_ms,
            "ort_ms": ort_ms if t else None, "ratio_ours_over_ort": ours_ms / ort_ms if t else None,
            "ort_peak_rss_mb": t["peak_rss_mb"] if t else None,
            "ours": o, "opencv": c, "onnxruntime": t,
        })
        r = results[-1]
        print(f"{name} 416 batch {batch}: ours {ours_ms:.1f} ms, OpenCV {c['opencv_version']} {cv_ms:.1f} ms, "
              f"ours/OpenCV {r['ratio_ours_over_opencv']:.2f}"
              + (f", ONNX Runtime {t['onnxruntime_version']} {ort_ms:.1f} ms, ours/ORT {ours_ms / ort_ms:.2f}"
                 if t else ""), flush=True)
    load1 = os.getloadavg()[0]

    print()
    print(f"median of {a.runs} runs after {a.warmup} warm-up, {a.threads} threads each; "
          f"load average (1 min) {load0:.2f} before, {load1:.2f} after; floor = BFLOPs / {PEAK_GFLOPS:.0f} GFLOP/s")
    hdr = (f"{'model':<12} {'batch':>5} {'ours ms':>9} {'OpenCV ms':>10} {'ours/OpenCV':>12} {'ours GF/s':>10} "
           f"{'OpenCV GF/s':>12} {'ours RSS MiB':>13} {'OpenCV RSS MB':>14} {'floor ms':>9} {'ours/floor':>10} "
           f"{'ORT ms':>8} {'ours/ORT':>9} {'ORT RSS MB':>11}")
    print(hdr)
    for r in results:
        rss = r["ours_peak_rss_mib"]
        print(f"{r['model']:<12} {r['batch']:>5} {r['ours_ms']:>9.1f} {r['opencv_ms']:>10.1f} "
              f"{r['ratio_ours_over_opencv']:>12.2f} {r['ours_gflops']:>10.1f} {r['opencv_gflops']:>12.1f} "
              f"{(rss if rss is not None else float('nan')):>13.0f} {r['opencv_peak_rss_mb']:>14.0f} "
              f"{r['floor_ms']:>9.1f} {r['ours_over_floor']:>10.2f} "
              + (f"{r['ort_ms']:>8.1f} {r['ratio_ours_over_ort']:>9.2f} {r['ort_peak_rss_mb']:>11.0f}"
                 if r["ort_ms"] is not None else f"{'-':>8} {'-':>9} {'-':>11}"))
    if a.json:
        tmp = a.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"load_before": load0, "load_after": load1, "threads": a.threads, "runs": a.runs,
                       "warmup": a.warmup, "results": results}, f, indent=1)
        os.replace(tmp, a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
