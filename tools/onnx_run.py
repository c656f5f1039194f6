#!/usr/bin/env python3
"""Runs an ONNX file from `candle-darknet export` in ONNX Runtime, OpenVINO or ncnn (converted by pnnx) and writes
every graph output, for the Rust tests (tests/export.rs) to compare with Darknet's dumps and our network.

    tools/onnx_run.py --engine onnxruntime|openvino|ncnn --onnx M.onnx --input input.bin --out DIR
        [--thresh 0.25 --nms 0.45] [--variants V1,V2,...]

input.bin: raw float32 NCHW, the shape of the graph's input (batch 1 for ncnn). DIR receives `<output>.bin` (raw
float32) per graph output and `outputs.json` ({"outputs": [{"name", "shape", "file"}], "engine", "version"}).
With --thresh, a model with `boxes`/`scores` outputs is also post-processed as a consumer would (the recipe of
docs/export.md): per image, candidates with score > thresh, per class greedy NMS (sort by score, drop boxes whose
IoU with a kept one is > nms); DIR/detections.json lists [class, score, x, y, w, h] per image.

Engines: onnxruntime (CPUExecutionProvider), openvino (CPU, INFERENCE_PRECISION_HINT=f32), ncnn (pnnx fp16=0, then
ncnn.Net without fp16/bf16 paths; pnnx names the graph outputs out0, out1, ... in graph order).

Variants (--variants, default `default`): the kernel choices a runtime makes by the CPU it finds, forced here so
that a test on one machine sees what another machine's runtime would compute (tests/export.rs, docs/export.md
"Peer tolerance"). Each variant's outputs go to DIR/<variant>/ when --variants is given.
- openvino: `default` (this CPU's best ISA), `avx2` (oneDNN limited by ONEDNN_MAX_CPU_ISA=AVX2, as on an AVX2-only
  machine; set before OpenVINO is loaded, so one variant per process).
- ncnn: `default`, `winograd23` / `winograd43` / `winograd63` (only that Winograd tile allowed: x86 ncnn picks among
  them by ISA, channel counts and map size), `sgemm` (no Winograd: im2col + sgemm), `direct` (neither: the packed
  direct kernels), `pack1` (no packing layout: the elempack-1 kernels of a machine without wide vectors).
- onnxruntime: `default` only (MLAS has no ISA switch).

--emulate-cpu MODEL runs the engine under qemu-user's CPU model MODEL (`qemu-x86_64 -cpu EPYC`: AVX2, no AVX-512,
Debian's qemu-user; `make test` installs it): the runtime then dispatches as on that machine — its ISA choices,
not only the options above. Emulation is ~50x slower: --until N runs only the part of the graph that computes the
layer outputs layer_XXX_* with XXX <= N (onnx.utils.Extractor), e.g. the first layers of a network.
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


def run_onnxruntime(path: str, x: np.ndarray, names: list[str], variants: list[str]) -> tuple[list[list[np.ndarray]], str]:
    import onnxruntime as ort

    sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    return [sess.run(names, {sess.get_inputs()[0].name: x}) for _ in variants], ort.__version__


NCNN_VARIANTS = {
    "default": {},
    "winograd23": {"use_winograd23_convolution": True, "use_winograd43_convolution": False,
                   "use_winograd63_convolution": False},
    "winograd43": {"use_winograd23_convolution": False, "use_winograd43_convolution": True,
                   "use_winograd63_convolution": False},
    "winograd63": {"use_winograd23_convolution": False, "use_winograd43_convolution": False,
                   "use_winograd63_convolution": True},
    "sgemm": {"use_winograd_convolution": False},
    "direct": {"use_winograd_convolution": False, "use_sgemm_convolution": False},
    "pack1": {"use_packing_layout": False},
}
# Environment set before the engine's library is loaded (one variant per process for these).
ENV_VARIANTS = {"openvino": {"default": {}, "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"}}}
VARIANTS = {"onnxruntime": ["default"], "openvino": list(ENV_VARIANTS["openvino"]), "ncnn": list(NCNN_VARIANTS)}


def run_openvino(path: str, x: np.ndarray, names: list[str], variants: list[str]) -> tuple[list[list[np.ndarray]], str]:
    if len(variants) != 1:
        raise ValueError("openvino: one variant per process (its ISA limit is read when the library loads)")
    os.environ.update(ENV_VARIANTS["openvino"][variants[0]])
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    res = compiled.create_infer_request().infer({0: x})
    by_name = {}
    for o in compiled.outputs:
        for n in o.get_names():
            by_name[n] = res[o]
    return [[by_name[n] for n in names]], ov.__version__


def run_ncnn(path: str, x: np.ndarray, names: list[str], variants: list[str]) -> tuple[list[list[np.ndarray]], str]:
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
        runs = [ncnn_forward(ncnn, t, x, len(names), NCNN_VARIANTS[v]) for v in variants]
    return runs, bench_peers._version("ncnn") or "?"


def ncnn_forward(ncnn, t: str, x: np.ndarray, n_out: int, options: dict) -> list[np.ndarray]:
    """One forward of the pnnx conversion in `t` with ncnn's options set (fp16/bf16 and Vulkan always off)."""
    net = ncnn.Net()
    o = net.opt
    o.use_vulkan_compute = False
    for a in dir(o):
        if a.startswith("use_") and ("fp16" in a or "bf16" in a):
            setattr(o, a, False)
    for k, v in options.items():
        setattr(o, k, v)
    if net.load_param(os.path.join(t, "m.ncnn.param")) != 0 or \
            net.load_model(os.path.join(t, "m.ncnn.bin")) != 0:
        raise RuntimeError("ncnn could not load the pnnx conversion")
    ex = net.create_extractor()
    ex.input("in0", ncnn.Mat(np.ascontiguousarray(x[0])))
    outs = []
    for k in range(n_out):
        rc, m = ex.extract(f"out{k}")
        if rc != 0:
            raise RuntimeError(f"ncnn: extract(out{k}) returned {rc}")
        outs.append(np.array(m)[None])
    return outs


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


def emulate(model: str, argv: list[str]) -> int:
    """Re-runs this script under `qemu-x86_64 -cpu model` (the interpreter itself, not a launcher script)."""
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        raise SystemExit("--emulate-cpu needs qemu-x86_64 (Debian: apt-get install qemu-user; `make test` installs it)")
    env = dict(os.environ, ONNX_RUN_EMULATED=model)
    cmd = [qemu, "-cpu", model, os.path.realpath(sys.executable), os.path.abspath(__file__)] + list(argv)
    r = subprocess.run(cmd, env=env, stderr=subprocess.PIPE, text=True)
    # qemu lists each host-model feature its TCG lacks (rdseed, sha-ni, ...): not the script's errors.
    sys.stderr.write("".join(l for l in r.stderr.splitlines(True) if "TCG doesn't support" not in l))
    return r.returncode


def cpu_seen(a) -> dict:
    """What the engine's process sees of the CPU: the emulated model, and ncnn's own AVX2 detection."""
    seen = {"emulated": os.environ.get("ONNX_RUN_EMULATED")}
    if a.engine == "ncnn":
        import ncnn

        seen["ncnn_avx2"] = bool(ncnn.cpu_support_x86_avx2())
    return seen


def layer_index(name: str) -> int | None:
    """XXX of an output named layer_XXX_<type> (`--all-outputs`), or of a bare layer index."""
    part = name[6:9] if name.startswith("layer_") else name
    return int(part) if part.isdigit() else None


def extract(path: str, names: list[str], out: str) -> str:
    """The subgraph of `path` from its input to `names`, written into `out` (onnx.utils.Extractor)."""
    import onnx
    import onnx.utils

    m = onnx.load(path)
    sub = onnx.utils.Extractor(m).extract_model([i.name for i in m.graph.input], names)
    os.makedirs(out, exist_ok=True)
    dst = os.path.join(out, "until.onnx")
    onnx.save(sub, dst)
    return dst


def write_outputs(out: str, a, x: np.ndarray, names: list[str], outs: list[np.ndarray], info: dict) -> None:
    """`<output>.bin` per graph output, outputs.json, and detections.json with --thresh, into `out`."""
    os.makedirs(out, exist_ok=True)
    entries = []
    for n, o in zip(names, outs):
        o = np.ascontiguousarray(o, np.float32)
        o.tofile(os.path.join(out, n + ".bin"))
        entries.append({"name": n, "shape": list(o.shape), "file": n + ".bin"})
    info = dict(info, outputs=entries)
    if a.thresh is not None and "boxes" in names:
        b, s = outs[names.index("boxes")], outs[names.index("scores")]
        b = b.reshape(x.shape[0], -1, 4)
        s = s.reshape(x.shape[0], b.shape[1], -1)
        dets = [postprocess(b[k], s[k], a.thresh, a.nms) for k in range(x.shape[0])]
        with open(os.path.join(out, "detections.json"), "w") as f:
            json.dump(dets, f)
    with open(os.path.join(out, "outputs.json"), "w") as f:
        json.dump(info, f, indent=1)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--engine", required=True, choices=["onnxruntime", "openvino", "ncnn"])
    p.add_argument("--onnx", required=True)
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--thresh", type=float)
    p.add_argument("--nms", type=float, default=0.45)
    p.add_argument("--variants", help="comma-separated kernel variants (see above); outputs in DIR/<variant>/")
    p.add_argument("--until", help="only the layer outputs (layer_XXX_*) up to this layer index (a subgraph is run)")
    p.add_argument("--emulate-cpu", help="run under qemu-x86_64 -cpu MODEL (e.g. EPYC)")
    a = p.parse_args(argv)
    if a.emulate_cpu and os.environ.get("ONNX_RUN_EMULATED") != a.emulate_cpu:
        return emulate(a.emulate_cpu, argv if argv is not None else sys.argv[1:])
    variants = a.variants.split(",") if a.variants else ["default"]
    unknown = [v for v in variants if v not in VARIANTS[a.engine]]
    if unknown:
        p.error(f"--variants: {a.engine} has no variant {', '.join(unknown)} (it has {', '.join(VARIANTS[a.engine])})")
    shape, names = onnx_io(a.onnx)
    if a.until:
        names = [n for n in names if layer_index(n) is not None and layer_index(n) <= layer_index(a.until)]
        a.onnx = extract(a.onnx, names, a.out)
    x = np.fromfile(a.input, np.float32)
    per = int(np.prod(shape[1:]))
    if x.size % per:
        raise SystemExit(f"{a.input}: {x.size} floats is not a whole number of {shape[1:]} images")
    x = x.reshape([x.size // per] + shape[1:])
    run = {"onnxruntime": run_onnxruntime, "openvino": run_openvino, "ncnn": run_ncnn}[a.engine]
    runs, version = run(a.onnx, x, names, variants)
    for v, outs in zip(variants, runs):
        write_outputs(a.out if a.variants is None else os.path.join(a.out, v), a, x, names, outs,
                      {"engine": a.engine, "variant": v, "version": version, "cpu": cpu_seen(a)})
    return 0


if __name__ == "__main__":
    sys.exit(main())
