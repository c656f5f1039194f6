#!/usr/bin/env python3
"""The peers of `make bench` (tools/bench.py): OpenCV DNN, ONNX Runtime, OpenVINO and ncnn.

    tools/bench_peers.py installed      (prints each peer's version, or what to install; exit 1 if one is missing)

Importable; tools/bench.py calls `prepare()` in its own process (model conversion, cached in target/bench/) and
`run()` in a fresh spawned process per engine and phase, so that each peak RSS is that engine's alone:

  * mode "check": load the model as it will be timed, run the check input once and write the raw head outputs as
    `layer_XXX_<type>.bin` float32 files into `out_dir` (the layout of shared/reference, for `candle-darknet
    compare`). ONNX Runtime, OpenVINO and ncnn run the ONNX graph of `candle-darknet export` (the Rust exporter,
    docs/export.md; it verifies the graph layer by layer before writing it), whose outputs are the [yolo] layers'
    l.output; OpenCV's [yolo] output is decoded boxes, so for OpenCV the outputs are
    the convolutions that feed the [yolo] layers (Darknet's l.output of layer yolo-1).
  * mode "time": `warmup` untimed forward calls of the whole batch, then `runs` timed ones (time.perf_counter);
    median/percentiles, peak RSS (VmHWM, includes Python and numpy), load time.

Engines and their settings (all f32, CPU, `threads` threads):
  * opencv: cv2.dnn.readNetFromDarknet on the cfg and a copy of the weights with rolling_variance += 9e-6 (OpenCV's
    importer uses BN eps 1e-6, Darknet 1e-5: with the correction OpenCV computes Darknet's function; the speed does
    not depend on the values); DNN_BACKEND_OPENCV/DNN_TARGET_CPU, its defaults: fusion and Winograd on; timed:
    setInput + forward of the unconnected outputs (the [yolo] Region layers), as tools/bench_opencv.py does.
  * onnxruntime: CPUExecutionProvider, intra_op_num_threads=threads, inter_op 1, default graph optimisations.
  * openvino: Core().compile_model(the ONNX file, "CPU", INFERENCE_PRECISION_HINT=f32, PERFORMANCE_HINT=LATENCY,
    INFERENCE_NUM_THREADS=threads, NUM_STREAMS=1); one InferRequest. The ONNX file is read directly (no IR saved,
    so no fp16 weight compression can happen).
  * ncnn: the batch-1 ONNX converted by the `pnnx` binary of the pnnx wheel (`fp16=0`, cached as
    target/bench/<model>-416.ncnn.{param,bin}); ncnn.Net with num_threads=threads, use_vulkan_compute=False and
    every fp16/bf16 option (storage, packed, arithmetic) False; ncnn's own defaults otherwise (packing layout,
    Winograd, sgemm on). ncnn has no batch dimension: batch N is N extractions of one image each, in one timed call.
"""

from __future__ import annotations

import importlib.util
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

ENGINES = ("opencv", "onnxruntime", "openvino", "ncnn")
LABEL = {"opencv": "OpenCV DNN", "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO", "ncnn": "ncnn"}
# What `make bench` installs (tools/requirements*.txt); printed when a peer is missing.
INSTALL = {
    "opencv": "pip install -r tools/requirements.txt (opencv-python-headless==4.14.0.94)",
    "onnxruntime": "pip install -r tools/requirements-onnx.txt (onnx==1.23.2 onnxruntime==1.32.0)",
    "openvino": "pip install -r tools/requirements-bench.txt (openvino==2026.4.1)",
    "ncnn": "pip install -r tools/requirements-bench.txt (ncnn==1.0.20261020) and "
            "pip install --no-deps -r tools/requirements-bench-nodeps.txt (pnnx==20261020)",
}
# The versions the README's numbers are for; another installed version is measured but named in the output.
PINNED = {"opencv": "4.14.0", "onnxruntime": "1.32.0", "openvino": "2026.4.1", "ncnn": "1.0.20261020",
          "pnnx": "20261020"}


def pnnx_binary() -> str | None:
    """The `pnnx` executable shipped inside the pnnx wheel (found without importing the package, which wants torch)."""
    spec = importlib.util.find_spec("pnnx")
    if spec is None or not spec.submodule_search_locations:
        return None
    for d in spec.submodule_search_locations:
        p = os.path.join(d, "pnnx")
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    return None


def _version(dist: str) -> str | None:
    try:
        import importlib.metadata as md

        return md.version(dist)
    except Exception:
        return None


def missing(engine: str) -> str | None:
    """None when `engine` can run here, else what is missing and how to install it."""
    mods = {"opencv": ["cv2"], "onnxruntime": ["onnx", "onnxruntime"], "openvino": ["onnx", "openvino"],
            "ncnn": ["onnx", "ncnn"]}[engine]
    absent = [m for m in mods if importlib.util.find_spec(m) is None]
    if engine == "ncnn" and pnnx_binary() is None:
        absent.append("pnnx (its bundled binary)")
    if absent:
        return f"{LABEL[engine]} not installed (missing: {', '.join(absent)}): {INSTALL[engine]}"
    return None


def versions() -> dict:
    return {"opencv": _version("opencv-python-headless") or _version("opencv-python"),
            "onnxruntime": _version("onnxruntime"), "openvino": _version("openvino"), "ncnn": _version("ncnn"),
            "pnnx": _version("pnnx"), "onnx": _version("onnx")}


def _fresh(path: str, *sources: str) -> bool:
    """`path` exists and is newer than every source (a cache entry made from them)."""
    return os.path.isfile(path) and all(os.path.getmtime(path) >= os.path.getmtime(s) for s in sources)


def _atomic_copy(src: str, dst: str) -> None:
    shutil.copyfile(src, dst + ".tmp")
    os.replace(dst + ".tmp", dst)


BIN = os.path.join(os.path.dirname(HERE), "target", "release", "candle-darknet")


def onnx_path(cfg: str, weights: str, batch: int, cache: str, size: int = 416, exe: str = BIN) -> str:
    """`candle-darknet export` of cfg/weights at size x size and this batch, raw heads, verified by the exporter
    (cached; re-exported when the cfg, the weights or the binary are newer)."""
    if not os.path.isfile(exe):
        raise RuntimeError(f"{exe} is missing: build it with `cargo build --release` (it exports the ONNX graphs)")
    stem = os.path.splitext(os.path.basename(weights))[0]
    path = os.path.join(cache, f"{stem}-{size}-b{batch}.onnx")
    if not _fresh(path, cfg, weights, exe):
        os.makedirs(cache, exist_ok=True)
        # Mish as ONNX's op (opset 18): ncnn (pnnx) has no Where; it differs from Darknet's thresholded softplus by
        # at most 4.1e-8 (docs/export.md). Every ONNX peer runs this same graph.
        cmd = [exe, "export", cfg, weights, "-o", path, "--size", f"{size}x{size}", "--batch", str(batch),
               "--opset", "18", "--mish-op"]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return path


def ncnn_model(cfg: str, weights: str, cache: str, size: int = 416, exe: str = BIN) -> tuple[str, str]:
    """(param, bin) of ncnn's model converted by pnnx (fp16=0) from the batch-1 ONNX graph (cached)."""
    stem = os.path.splitext(os.path.basename(weights))[0]
    param = os.path.join(cache, f"{stem}-{size}.ncnn.param")
    binf = os.path.join(cache, f"{stem}-{size}.ncnn.bin")
    src = onnx_path(cfg, weights, 1, cache, size, exe)
    if _fresh(param, src) and _fresh(binf, src):
        return param, binf
    exe = pnnx_binary()
    if exe is None:
        raise RuntimeError(missing("ncnn"))
    with tempfile.TemporaryDirectory(prefix="pnnx.") as t:
        # pnnx writes several side files next to its input: work on a copy in a scratch directory.
        shutil.copyfile(src, os.path.join(t, "m.onnx"))
        cmd = [exe, "m.onnx", f"inputshape=[1,3,{size},{size}]f32", "fp16=0", "device=cpu",
               "ncnnparam=m.ncnn.param", "ncnnbin=m.ncnn.bin", "ncnnpy=m_ncnn.py", "pnnxparam=m.pnnx.param",
               "pnnxbin=m.pnnx.bin", "pnnxpy=m_pnnx.py", "pnnxonnx=m.pnnx.onnx"]
        r = subprocess.run(cmd, cwd=t, capture_output=True, text=True)
        if r.returncode != 0 or not os.path.isfile(os.path.join(t, "m.ncnn.param")):
            raise RuntimeError(f"pnnx failed ({r.returncode}) on {src}:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
        _atomic_copy(os.path.join(t, "m.ncnn.bin"), binf)
        _atomic_copy(os.path.join(t, "m.ncnn.param"), param)
    return param, binf


def opencv_weights(cfg: str, weights: str, cache: str) -> str:
    """A copy of the weights with OpenCV's BN eps corrected to Darknet's (tools/opencv_reference.py), cached."""
    import darknet_cfg as dc
    import opencv_reference as ocr

    stem = os.path.splitext(os.path.basename(weights))[0]
    out = os.path.join(cache, f"{stem}-opencv-bn-eps.weights")
    if not _fresh(out, cfg, weights):
        os.makedirs(cache, exist_ok=True)
        nw = dc.build_network(cfg)
        with tempfile.TemporaryDirectory(prefix="ocvw.", dir=cache) as t:
            p = ocr.bn_eps_corrected_weights(nw, weights, t)
            os.replace(p, out)
    return out


def prepare(engine: str, cfg: str, weights: str, batch: int, cache: str, size: int = 416, exe: str = BIN) -> dict:
    """The model files `run(engine, ...)` needs (converted and cached under `cache`; `exe`: the candle-darknet
    binary that exports the ONNX graph)."""
    if engine == "opencv":
        return {"cfg": cfg, "weights": opencv_weights(cfg, weights, cache)}
    if engine in ("onnxruntime", "openvino"):
        return {"onnx": onnx_path(cfg, weights, batch, cache, size, exe)}
    if engine == "ncnn":
        param, binf = ncnn_model(cfg, weights, cache, size, exe)
        return {"param": param, "bin": binf, "onnx": onnx_path(cfg, weights, 1, cache, size, exe)}
    raise ValueError(f"unknown engine {engine!r}")


def head_layers(cfg: str, size: int = 416) -> tuple[list[int], list[int]]:
    """(yolo layer indices, indices of the layers that feed them), in network order."""
    import darknet_cfg as dc

    nw = dc.build_network(cfg, size, size)
    yolo = [L["index"] for L in nw.layers if L["type"] == "yolo"]
    return yolo, [i - 1 for i in yolo]


def _peak_rss_mib() -> float:
    """This process's peak RSS (VmHWM, as `candle-darknet bench` reports it). Not ru_maxrss: Linux carries that
    over exec from the forked copy of the parent, so a spawned child would start at the parent's size."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


class _Runner:
    """forward(x) -> list of head outputs (N x C x H x W each), for one engine."""

    def __init__(self, engine: str, model: dict, cfg: str, batch: int, size: int, threads: int, mode: str):
        self.engine, self.batch = engine, batch
        yolo, feeding = head_layers(cfg, size)
        if engine == "opencv":
            import cv2

            import opencv_reference as ocr

            cv2.setNumThreads(int(threads))
            net = cv2.dnn.readNetFromDarknet(model["cfg"], model["weights"])
            net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
            net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
            net.enableFusion(True)
            net.enableWinograd(True)
            if mode == "check":
                mapping = ocr.opencv_to_darknet_index(list(net.getLayerNames()))
                self.names = [mapping[i] for i in feeding]
                self.layers = [(i, "convolutional") for i in feeding]
            else:  # as bench_opencv.measure: the unconnected outputs (the Region layers)
                self.names = list(net.getUnconnectedOutLayersNames())
            self.net = net
            self.version = cv2.__version__
        elif engine == "onnxruntime":
            import onnxruntime as ort

            so = ort.SessionOptions()
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
            self.sess = ort.InferenceSession(model["onnx"], so, providers=["CPUExecutionProvider"])
            self.outs = [o.name for o in self.sess.get_outputs()]
            self.version = ort.__version__
        elif engine == "openvino":
            import openvino as ov

            core = ov.Core()
            self.config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY",
                           "INFERENCE_NUM_THREADS": int(threads), "NUM_STREAMS": 1}
            self.compiled = core.compile_model(core.read_model(model["onnx"]), "CPU", self.config)
            got = {k: str(self.compiled.get_property(k)) for k in self.config}
            if "f32" not in got["INFERENCE_PRECISION_HINT"] and "float32" not in got["INFERENCE_PRECISION_HINT"]:
                raise RuntimeError(f"OpenVINO compiled with {got}, not f32")
            self.effective = got
            self.req = self.compiled.create_infer_request()
            self.outs = [self.compiled.output(i) for i in range(len(self.compiled.outputs))]
            self.version = ov.__version__
        elif engine == "ncnn":
            import ncnn

            net = ncnn.Net()
            o = net.opt
            o.num_threads = int(threads)
            o.use_vulkan_compute = False
            for a in dir(o):
                if a.startswith("use_") and ("fp16" in a or "bf16" in a):
                    setattr(o, a, False)
            self.options = {a: getattr(o, a) for a in dir(o) if a.startswith("use_")}
            if net.load_param(model["param"]) != 0 or net.load_model(model["bin"]) != 0:
                raise RuntimeError(f"ncnn could not load {model['param']}")
            self.net, self.ncnn = net, ncnn
            self.out_names = [f"out{k}" for k in range(len(yolo))]
            self.version = _version("ncnn") or "?"
        else:
            raise ValueError(engine)
        if engine != "opencv" or mode != "check":
            self.layers = [(i, "yolo") for i in yolo]

    def forward(self, x: np.ndarray) -> list[np.ndarray]:
        e = self.engine
        if e == "opencv":
            self.net.setInput(x)
            return list(self.net.forward(self.names))
        if e == "onnxruntime":
            return self.sess.run(None, {"input": x})
        if e == "openvino":
            r = self.req.infer({0: x})
            return [r[o] for o in self.outs]
        outs: list[list[np.ndarray]] = [[] for _ in self.out_names]
        for b in range(x.shape[0]):
            ex = self.net.create_extractor()
            ex.input("in0", self.ncnn.Mat(x[b]))
            for k, n in enumerate(self.out_names):
                rc, m = ex.extract(n)
                if rc != 0:
                    raise RuntimeError(f"ncnn: extract({n}) returned {rc}")
                outs[k].append(np.array(m))
        return [np.stack(o) for o in outs]


def run(engine: str, model: dict, cfg: str, input_bin: str, batch: int, threads: int, mode: str,
        out_dir: str | None = None, runs: int = 20, warmup: int = 5, size: int = 416) -> dict:
    """One phase for one engine; meant to run in a fresh process (see the module doc)."""
    rss0 = _peak_rss_mib()
    x = np.fromfile(input_bin, np.float32).reshape(batch, 3, size, size)
    t = time.perf_counter()
    r = _Runner(engine, model, cfg, batch, size, threads, mode)
    load_ms = (time.perf_counter() - t) * 1e3
    info = {"engine": engine, "version": r.version, "threads": threads, "batch": batch, "load_ms": load_ms}
    if engine == "openvino":
        info["openvino_config"] = r.effective
    if engine == "ncnn":
        info["ncnn_options"] = r.options
    if mode == "check":
        outs = r.forward(x)
        files = {}
        for (i, kind), o in zip(r.layers, outs):
            o = np.asarray(o, np.float32)
            if o.shape[0] != batch:
                raise RuntimeError(f"{engine}: output for layer {i} has batch {o.shape[0]}, expected {batch}")
            name = f"layer_{i:03d}_{kind}.bin"
            np.ascontiguousarray(o).tofile(os.path.join(out_dir, name))
            files[i] = {"file": name, "shape": list(o.shape)}
        info["files"] = files
        return info
    first = time.perf_counter()
    r.forward(x)
    info["first_forward_ms"] = (time.perf_counter() - first) * 1e3
    for _ in range(max(0, warmup - 1)):
        r.forward(x)
    lat = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r.forward(x)
        lat.append((time.perf_counter() - t0) * 1e3)
    med = float(np.percentile(lat, 50))
    info.update({
        "runs": runs, "warmup": warmup,
        "latency_ms": {"median": med, "p10": float(np.percentile(lat, 10)), "p90": float(np.percentile(lat, 90)),
                       "mean": float(np.mean(lat)), "min": float(np.min(lat)), "max": float(np.max(lat))},
        "per_image_ms": med / batch, "throughput_ips": batch * 1000.0 / med,
        "peak_rss_mib": _peak_rss_mib(), "rss_before_load_mib": rss0, "loadavg_1m_after": os.getloadavg()[0],
    })
    return info


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv != ["installed"]:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    v = versions()
    bad = 0
    for e in ENGINES:
        m = missing(e)
        if m:
            bad += 1
            print(f"{LABEL[e]}: {m}")
        else:
            extra = f", pnnx {v['pnnx']} ({pnnx_binary()})" if e == "ncnn" else ""
            print(f"{LABEL[e]}: {v[e]}{extra}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())

