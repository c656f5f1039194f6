#!/usr/bin/env python3
"""Runs an ONNX file from `candle-darknet export` in ONNX Runtime, OpenVINO or ncnn (converted by pnnx) and writes
every graph output, for the Rust tests (tests/export.rs) to compare with Darknet's dumps and our network.

    tools/onnx_run.py --engine onnxruntime|openvino|ncnn --onnx M.onnx --input input.bin --out DIR
        [--thresh 0.25 --nms 0.45]

input.bin: raw float32 NCHW, the shape of the graph's input (batch 1 for ncnn). DIR receives `<output>.bin` (raw
float32) per graph output and `outputs.json` ({"outputs": [{"name", "shape", "file"}], "engine", "version"}).
With --thresh, a model with `boxes`/`scores` outputs is also post-processed as a consumer would (the recipe of
docs/export.md): per image, candidates with score > thresh, per class greedy NMS (sort by score, drop boxes whose
IoU with a kept one is > nms); DIR/detections.json lists [class, score, x, y, w, h] per image.

Engines: onnxruntime (CPUExecutionProvider), openvino (CPU, INFERENCE_PRECISION_HINT=f32), ncnn (pnnx fp16=0, then
ncnn.Net without fp16/bf16 paths; pnnx names the graph outputs out0, out1, ... in graph order).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))


def onnx_io(path: str) -> tuple[list[int], list[str]]:
    """(input shape, output names) read from the ONNX file."""
    import onnx

    m = onnx.load(path)
    dims = m.graph.input[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.dim_value > 0 else 1 for d in dims]
    return shape, [o.name for o in m.graph.output]


def run_onnxruntime(path: str, x: np.ndarray, names: list[str]) -> tuple[list[np.ndarray], str]:
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return sess.run(names, {sess.get_inputs()[0].name: x}), ort.__version__


def run_openvino(path: str, x: np.ndarray, names: list[str]) -> tuple[list[np.ndarray], str]:
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    res = compiled.create_infer_request().infer({0: x})
    by_name = {}
    for o in compiled.outputs:
        for n in o.get_names():
            by_name[n] = res[o]
    return [by_name[n] for n in names], ov.__version__


def run_ncnn(path: str, x: np.ndarray, names: list[str]) -> tuple[list[np.ndarray], str]:
    import ncnn

    import bench_peers

    exe = bench_peers.pnnx_binary()
    if exe is None:
        raise RuntimeError(bench_peers.missing("ncnn"))
    if x.shape[0] != 1:
        raise ValueError("ncnn runs batch 1 here")
    with tempfile.TemporaryDirectory(prefix="pnnx.") as t:
        # pnnx writes side files next to its input: convert a copy in a scratch directory.
        shutil.copyfile(path, os.path.join(t, "m.onnx"))
        shape = ",".join(str(d) for d in x.shape)
        cmd = [exe, "m.onnx", f"inputshape=[{shape}]f32", "fp16=0", "device=cpu", "ncnnparam=m.ncnn.param",
               "ncnnbin=m.ncnn.bin", "ncnnpy=m_ncnn.py", "pnnxparam=m.pnnx.param", "pnnxbin=m.pnnx.bin",
               "pnnxpy=m_pnnx.py", "pnnxonnx=m.pnnx.onnx"]
        r = subprocess.run(cmd, cwd=t, capture_output=True, text=True)
        if r.returncode != 0 or not os.path.isfile(os.path.join(t, "m.ncnn.param")):
            raise RuntimeError(f"pnnx failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        net = ncnn.Net()
        o = net.opt
        o.use_vulkan_compute = False
        for a in dir(o):
            if a.startswith("use_") and ("fp16" in a or "bf16" in a):
                setattr(o, a, False)
        if net.load_param(os.path.join(t, "m.ncnn.param")) != 0 or \
                net.load_model(os.path.join(t, "m.ncnn.bin")) != 0:
            raise RuntimeError("ncnn could not load the pnnx conversion")
        ex = net.create_extractor()
        ex.input("in0", ncnn.Mat(np.ascontiguousarray(x[0])))
        outs = []
        for k in range(len(names)):
            rc, m = ex.extract(f"out{k}")
            if rc != 0:
                raise RuntimeError(f"ncnn: extract(out{k}) for {names[k]} returned {rc}")
            outs.append(np.array(m)[None])
    return outs, bench_peers._version("ncnn") or "?"


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box a (x, y, w, h centre form) with each row of b, as Darknet's box_iou."""
    def overlap(x1, w1, x2, w2):
        left = np.maximum(x1 - w1 / 2, x2 - w2 / 2)
        right = np.minimum(x1 + w1 / 2, x2 + w2 / 2)
        return right - left
    w = overlap(a[0], a[2], b[:, 0], b[:, 2])
    h = overlap(a[1], a[3], b[:, 1], b[:, 3])
    inter = np.where((w > 0) & (h > 0), w * h, 0)
    return inter / (a[2] * a[3] + b[:, 2] * b[:, 3] - inter)


def postprocess(boxes: np.ndarray, scores: np.ndarray, thresh: float, nms: float) -> list[list[float]]:
    """One image's detections: per class, candidates with score > thresh, greedy NMS at IoU > nms."""
    out = []
    for c in range(scores.shape[1]):
        idx = np.nonzero(scores[:, c] > thresh)[0]
        idx = idx[np.argsort(-scores[idx, c], kind="stable")]
        kept: list[int] = []
        for i in idx:
            if kept and np.any(iou(boxes[i], boxes[kept]) > nms):
                continue
            kept.append(i)
        out += [[c, float(scores[i, c])] + [float(v) for v in boxes[i]] for i in kept]
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--engine", required=True, choices=["onnxruntime", "openvino", "ncnn"])
    p.add_argument("--onnx", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--thresh", type=float)
    p.add_argument("--nms", type=float, default=0.45)
    a = p.parse_args(argv)
    shape, names = onnx_io(a.onnx)
    x = np.fromfile(a.input, np.float32)
    per = int(np.prod(shape[1:]))
    if x.size % per:
        raise SystemExit(f"{a.input}: {x.size} floats is not a whole number of {shape[1:]} images")
    x = x.reshape([x.size // per] + shape[1:])
    run = {"onnxruntime": run_onnxruntime, "openvino": run_openvino, "ncnn": run_ncnn}[a.engine]
    outs, version = run(a.onnx, x, names)
    os.makedirs(a.out, exist_ok=True)
    entries = []
    for n, o in zip(names, outs):
        o = np.ascontiguousarray(o, np.float32)
        o.tofile(os.path.join(a.out, n + ".bin"))
        entries.append({"name": n, "shape": list(o.shape), "file": n + ".bin"})
    info = {"engine": a.engine, "version": version, "outputs": entries}
    if a.thresh is not None and "boxes" in names:
        b, s = outs[names.index("boxes")], outs[names.index("scores")]
        b = b.reshape(x.shape[0], -1, 4)
        s = s.reshape(x.shape[0], b.shape[1], -1)
        dets = [postprocess(b[k], s[k], a.thresh, a.nms) for k in range(x.shape[0])]
        with open(os.path.join(a.out, "detections.json"), "w") as f:
            json.dump(dets, f)
    with open(os.path.join(a.out, "outputs.json"), "w") as f:
        json.dump(info, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
