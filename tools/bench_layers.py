#!/usr/bin/env python3
"""Per-layer time, ours against OpenVINO's, on the same model: where the remaining gap is (issue #13).

    python3 tools/bench_layers.py --cfg weights/yolov4-tiny.cfg --weights weights/yolov4-tiny.weights [--batch 8]
        [--size 416] [--runs 20] [--bin target/release/candle-darknet] [--json out.json]

Ours: `candle-darknet bench --layers --json` (each layer timed with the device synchronised after it, the kernel
that ran it named). OpenVINO: the ONNX graph `candle-darknet export` writes for tools/bench.py (node names start
with `L<layer>_`), compiled as bench.py compiles it (f32, LATENCY, 2 threads, 1 stream) with `PERF_COUNT`, each
node's median `real_time` over the runs, summed per Darknet layer (a layer's convolution, activation, and any
reorder OpenVINO inserts before it). OpenVINO fuses activations and adds into the convolutions, so compare
layers, and classes of layers, not nodes; profiling costs OpenVINO about 10-20% more in total than `make bench`
measures, so the totals here are not the benchmark's. Run it on a quiet machine and compare within one run.
"""

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import bench_peers  # noqa: E402


def darknet_layer(node_name: str) -> int | None:
    """The Darknet layer an exported node belongs to (`L<layer>_<op>_<n>`, also inside names OpenVINO derives
    from it such as `input_abcd_acdb_L0_Conv_3_node/WithoutBiases`), None for nodes of no layer."""
    m = re.search(r"(?:^|_)L(\d+)_", node_name)
    return int(m.group(1)) if m else None


def ours(binary: str, cfg: str, weights: str, batch: int, size: int, runs: int, threads: int) -> list[dict]:
    """Our per-layer rows (`bench --layers --json`)."""
    with tempfile.TemporaryDirectory(prefix="bench_layers.") as t:
        out = os.path.join(t, "ours.json")
        cmd = [binary, "bench", cfg, weights, "--batch", str(batch), "--size", f"{size}x{size}", "--runs",
               str(runs), "--pipeline-runs", "0", "--layers", "--json", out]
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        r = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
        with open(out) as f:
            return json.load(f)["layers"]


def openvino(onnx: str, batch: int, runs: int, threads: int) -> dict[int, tuple[float, list[str]]]:
    """OpenVINO's time per Darknet layer (ms, median over `runs` after 5 warm-up runs) and its node kinds."""
    import numpy as np
    import openvino as ov

    core = ov.Core()
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads,
              "NUM_STREAMS": 1, "PERF_COUNT": True}
    compiled = core.compile_model(core.read_model(onnx), "CPU", config)
    req = compiled.create_infer_request()
    x = np.random.default_rng(0).random(list(compiled.input(0).shape), dtype=np.float32)
    times = collections.defaultdict(list)
    kinds = {}
    for i in range(runs + 5):
        req.infer({0: x})
        if i < 5:
            continue
        per_layer = collections.defaultdict(float)
        for p in req.profiling_info:
            layer = darknet_layer(p.node_name)
            if layer is None:
                continue
            per_layer[layer] += p.real_time.total_seconds() * 1e3
            if p.real_time.total_seconds() > 0:
                kinds.setdefault(layer, set()).add(p.exec_type)
        for layer, ms in per_layer.items():
            times[layer].append(ms)
    return {layer: (float(np.median(v)), sorted(kinds.get(layer, ()))) for layer, v in times.items()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--cfg", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--size", type=int, default=416)
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bin", default=bench_peers.BIN)
    p.add_argument("--cache", default=os.path.join("target", "bench"))
    p.add_argument("--json")
    a = p.parse_args(argv)
    if bench_peers.missing("openvino"):
        print(bench_peers.missing("openvino"), file=sys.stderr)
        return 2
    onnx = bench_peers.onnx_path(a.cfg, a.weights, a.batch, a.cache, a.size, a.bin)
    rows = ours(a.bin, a.cfg, a.weights, a.batch, a.size, a.runs, a.threads)
    ovt = openvino(onnx, a.batch, a.runs, a.threads)
    print(f"{os.path.basename(a.cfg)} {a.size}x{a.size} batch {a.batch}, {a.threads} threads, median of {a.runs}")
    print(f"{'layer':>5} {'type':14} {'our kernel':16} {'input -> output':>34} {'ours ms':>8} {'OpenVINO':>9} "
          f"{'ratio':>6}  OpenVINO kernels")
    by_class = collections.defaultdict(lambda: [0.0, 0.0])
    out = []
    for r in rows:
        i = r["index"]
        o, kinds = ovt.get(i, (0.0, []))
        shape = "{}x{}x{} -> {}x{}x{}".format(*r["input"], *r["output"])
        ratio = r["median_ms"] / o if o > 0 else float("nan")
        print(f"{i:5d} {r['type']:14} {r['kernel']:16} {shape:>34} {r['median_ms']:8.3f} {o:9.3f} {ratio:6.2f}  "
              f"{','.join(kinds)}")
        cls = r["kernel"] if r["type"] == "convolutional" else r["type"]
        by_class[cls][0] += r["median_ms"]
        by_class[cls][1] += o
        out.append({"index": i, "type": r["type"], "kernel": r["kernel"], "ours_ms": r["median_ms"],
                    "openvino_ms": o, "openvino_kernels": kinds})
    print("\nby class (our kernel, or the layer type):")
    for cls, (ms, o) in sorted(by_class.items(), key=lambda kv: -kv[1][0]):
        print(f"  {cls:16} ours {ms:8.2f} ms  OpenVINO {o:8.2f} ms  difference {ms - o:+8.2f}")
    total = sum(v[0] for v in by_class.values()), sum(v[1] for v in by_class.values())
    print(f"  {'total':16} ours {total[0]:8.2f} ms  OpenVINO {total[1]:8.2f} ms  (sums of per-layer medians)")
    if a.json:
        with open(a.json + ".tmp", "w") as f:
            json.dump({"cfg": a.cfg, "batch": a.batch, "size": a.size, "layers": out}, f, indent=1)
        os.replace(a.json + ".tmp", a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
