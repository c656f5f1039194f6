#!/usr/bin/env python3
"""CPU speed of candle-darknet against OpenCV DNN, ONNX Runtime, OpenVINO and ncnn, measured in the same run
(`make bench`).

    tools/bench.py --bin target/release/candle-darknet [--cfg weights/yolov4-tiny.cfg]
        [--weights weights/yolov4-tiny.weights] [--image weights/bus.jpg] [--yolov4-cfg PATH]
        [--yolov3-tiny-cfg weights/yolov3-tiny.cfg] [--yolov3-tiny-weights weights/yolov3-tiny.weights]
        [--case yolov4-tiny:1 ...] [--peers opencv,onnxruntime,openvino,ncnn] [--runs 20] [--warmup 5]
        [--rounds 3] [--threads 2] [--skip-yolov4] [--no-ort] [--json out.json]

Builds nothing: `--bin` must be an existing (release) binary. Cases (all at 416x416, f32): yolov4-tiny batch 1 and
batch 8 (official weights), yolov4 batch 1 with random weights (`candle-darknet random-weights`, written once to
target/bench/yolov4-random.weights; the speed of a dense network does not depend on the weight values) and
yolov3-tiny batch 1 (official weights, `make weights`). `--case NAME:BATCH` (repeatable) runs only those.

For every case, before anything is timed, each peer runs the case's input (the image preprocessed as `darknet
detector test`, replicated `batch` times) once in its own process and writes its raw head outputs in the
shared/reference layout; `candle-darknet compare` then runs OUR network on the same input and compares: the [yolo]
layers' outputs for the ONNX peers (ONNX Runtime, OpenVINO, ncnn run the graph of `candle-darknet export`), the
convolutions feeding them for OpenCV (whose [yolo] output is decoded boxes). The max abs difference is printed; a peer with any
element outside 1e-3 + 1e-3*|ours| DISAGREES: it is not timed, it is reported, and the exit status is 1.
Then ours (`candle-darknet bench --json`, RAYON_NUM_THREADS=threads) and each agreeing peer are timed, each in its
own fresh process (so each peak RSS is that engine's alone): the median of `runs` forward calls of the whole batch
after `warmup` untimed ones. That is repeated for `rounds` rounds (default 3), the engines interleaved (ours first
in even rounds, last in odd ones), and each engine's time is the median of its round medians: the host's speed
drifts by tens of percent within minutes (measured: the same binary 14.2 and 16.8 ms on yolov3-tiny in two runs ten
minutes apart, the peers unchanged), and one pass measures ours and a peer at different moments. The ratio of every
round is printed too. Engine settings: tools/bench_peers.py. Converted models are cached in target/bench/.

A peer that is not installed is skipped with a message naming what to install; with CI=true (or --require-all)
that is an error. `--peers` chooses the peers (`--no-ort` drops ONNX Runtime).

Printed: the machine (lscpu model name, whether the CPU has AVX-512F, the ISA our binary reports if it reports one),
per case every engine's median, ours/each peer (< 1: we are faster) and ours/fastest peer naming it, GFLOP/s
(Darknet's BFLOP count), peak RSS, the output differences, and the 1-minute load average before and after, since
the machine is shared. Fewer than 20 runs are allowed for development but marked as not quotable.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import queue
import shutil
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import bench_peers as bp  # noqa: E402

CACHE = os.path.join("target", "bench")
SIZE = 416
AGREE_ATOL = 1e-3
AGREE_RTOL = 1e-3


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
    while True:
        try:
            r = q.get(timeout=1.0)
            break
        except queue.Empty:
            if not p.is_alive() and q.empty():
                raise RuntimeError(f"{what}: the process died (exit code {p.exitcode}) without a result")
    p.join()
    if "error" in r:
        raise RuntimeError(f"{what} failed: {r['error']}")
    return r


# Environment that limits a peer to AVX2 (--max-isa avx2): OpenVINO's oneDNN (measured here: yolov4-tiny b1 19.0 ->
# 32.7 ms) and OpenCV's dispatcher (cv2.getCPUFeaturesLine() then marks AVX512-SKX as disabled).
ISA_LIMITS = {"openvino": {"ONEDNN_MAX_CPU_ISA": "AVX2"}, "opencv": {"OPENCV_CPU_DISABLE": "AVX512-SKX"}}


def machine() -> dict:
    """lscpu's model name and the CPU's SIMD flags (from /proc/cpuinfo)."""
    model = None
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name:")), None)
    except OSError:
        pass
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as f:
            lines = f.read().splitlines()
        flags = set(next((ln.split(":", 1)[1].split() for ln in lines if ln.startswith("flags")), []))
        model = model or next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("model name")), None)
    except OSError:
        pass
    return {"cpu": model or platform.processor() or "unknown", "avx512f": "avx512f" in flags,
            "avx2": "avx2" in flags, "fma": "fma" in flags, "nproc": os.cpu_count()}


def ours(binary, cfg, weights, image, batch, runs, warmup, threads) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "bench.json")
        cmd = [binary, "bench", cfg, weights, "--image", image, "--batch", str(batch), "--runs", str(runs),
               "--warmup", str(warmup), "--size", f"{SIZE}x{SIZE}", "--pipeline-runs", "0", "--json", out]
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}):\n{r.stderr}")
        with open(out) as f:
            return json.load(f)


def our_isa(o: dict) -> str | None:
    """The ISA / kernel path our binary reports in its bench JSON, if it reports one."""
    for k in ("isa", "cpu_isa", "kernel_isa", "simd"):
        if o.get(k):
            return str(o[k])
    return None


def random_weights(binary, cfg, path):
    if os.path.isfile(path):
        return
    os.makedirs(os.path.dirname(path), exist_ok=True)
    # The CLI writes atomically itself.
    r = subprocess.run([binary, "random-weights", cfg, "-o", path], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"random-weights {cfg} failed:\n{r.stderr}")


def check_input(cfg: str, image: str, batch: int, case_dir: str) -> str:
    """input.bin: the image as `darknet detector test` feeds it, `batch` times."""
    import numpy as np

    import darknet_image as di

    x, _, _ = di.darknet_input(image, SIZE, SIZE)
    path = os.path.join(case_dir, "input.bin")
    np.ascontiguousarray(np.broadcast_to(x, (batch,) + x.shape), np.float32).tofile(path)
    return path


def write_manifest(cfg: str, batch: int, peer_dir: str, files: dict, producer: str) -> None:
    """A shared/reference manifest whose only files are the peer's head outputs."""
    import darknet_cfg as dc

    nw = dc.build_network(cfg, SIZE, SIZE)
    layers = []
    for L in nw.layers:
        e = dict(L)
        f = files.get(L["index"]) or files.get(str(L["index"]))
        e["file"] = f["file"] if f else None
        layers.append(e)
    man = {"cfg": os.path.basename(cfg), "producer": producer, "net_w": SIZE, "net_h": SIZE, "net_c": nw.channels,
           "letterbox": 0, "fused_conv_bn": 1, "batch": batch,
           "input": {"file": "input.bin", "c": nw.channels, "h": SIZE, "w": SIZE}, "layers": layers}
    with open(os.path.join(peer_dir, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)


def compare_with_ours(binary: str, cfg: str, weights: str, peer_dir: str, threads: int) -> dict:
    """`candle-darknet compare` of our network against the peer's head outputs: worst abs/rel difference."""
    j = os.path.join(peer_dir, "compare.json")
    cmd = [binary, "compare", cfg, weights, "--reference", peer_dir, "--atol", str(AGREE_ATOL), "--rtol",
           str(AGREE_RTOL), "--json", j]
    r = subprocess.run(cmd, env=dict(os.environ, RAYON_NUM_THREADS=str(threads)), capture_output=True, text=True)
    if not os.path.isfile(j):
        raise RuntimeError(f"{' '.join(cmd)} failed ({r.returncode}) without a report:\n{r.stderr}")
    with open(j) as f:
        rep = json.load(f)
    rows = [x for x in rep["layers"] if x["stats"] is not None]
    if not rows:
        raise RuntimeError(f"{peer_dir}: nothing compared")
    max_abs = max(float("nan") if x["stats"]["max_abs"] is None else x["stats"]["max_abs"] for x in rows)
    worst = max(rows, key=lambda x: x["stats"]["max_abs"] if x["stats"]["max_abs"] is not None else float("inf"))
    return {"layers": [x["index"] for x in rows], "max_abs": max_abs,
            "max_rel": max(x["stats"]["max_rel"] for x in rows), "worst_layer": worst["index"],
            "failing": sum(x["stats"]["failing"] for x in rows), "count": sum(x["stats"]["count"] for x in rows),
            "agrees": bool(rep["passed"]) and r.returncode == 0}


def parse_case(s: str) -> tuple[str, int]:
    name, _, b = s.partition(":")
    if name not in ("yolov4-tiny", "yolov4", "yolov3-tiny") or not b.isdigit() or int(b) < 1:
        raise argparse.ArgumentTypeError(f"--case NAME:BATCH with NAME yolov4-tiny, yolov4 or yolov3-tiny, got {s!r}")
    return name, int(b)


def _default_shared_cfg(name: str) -> str:
    """A Darknet cfg from the shared data: $CANDLE_DARKNET_SHARED, else ../shared beside the checkout (as the tests)."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    shared = os.environ.get("CANDLE_DARKNET_SHARED") or os.path.join(root, "..", "shared")
    return os.path.normpath(os.path.join(shared, "darknet", "cfg", f"{name}.cfg"))


def fmt_ms(v) -> str:
    return f"{v:.1f}" if isinstance(v, (int, float)) else str(v)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="candle-darknet vs OpenCV DNN, ONNX Runtime, OpenVINO, ncnn on the CPU")
    p.add_argument("--bin", default="target/release/candle-darknet")
    p.add_argument("--cfg", default="weights/yolov4-tiny.cfg")
    p.add_argument("--weights", default="weights/yolov4-tiny.weights")
    p.add_argument("--image", default="weights/bus.jpg")
    p.add_argument("--yolov4-cfg", default=_default_shared_cfg("yolov4"))
    p.add_argument("--yolov3-tiny-cfg", default="weights/yolov3-tiny.cfg")
    p.add_argument("--yolov3-tiny-weights", default="weights/yolov3-tiny.weights")
    p.add_argument("--case", type=parse_case, action="append", help="NAME:BATCH, repeatable (default: all four)")
    p.add_argument("--peers", default=",".join(bp.ENGINES), help="comma-separated subset of " + ",".join(bp.ENGINES))
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3,
                   help="timing rounds, engines interleaved; each engine's time is the median of its rounds' medians")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-yolov4", action="store_true")
    p.add_argument("--no-ort", action="store_true", help="do not measure ONNX Runtime")
    p.add_argument("--require-all", action="store_true", help="a missing peer is an error (implied by CI=true)")
    p.add_argument("--json", help="also write all results here")
    p.add_argument("--max-isa", choices=["native", "avx2"], default="native",
                   help="avx2: compare as on an AVX2-only machine: --bin must be our AVX2 build (make bench-avx2), "
                        "OpenVINO is limited by ONEDNN_MAX_CPU_ISA=AVX2 and OpenCV by OPENCV_CPU_DISABLE; ONNX "
                        "Runtime and ncnn have no such switch: shown, but not counted in ours/fastest")
    a = p.parse_args(argv)
    if a.runs < 1 or a.warmup < 0 or a.rounds < 1:
        p.error("--runs >= 1, --rounds >= 1 and --warmup >= 0")
    quick = a.runs < 20
    peers = [e.strip() for e in a.peers.split(",") if e.strip()]
    bad = [e for e in peers if e not in bp.ENGINES]
    if bad:
        p.error(f"--peers: unknown {bad}; choose from {','.join(bp.ENGINES)}")
    if a.no_ort:
        peers = [e for e in peers if e != "onnxruntime"]
    for f in (a.bin, a.image):
        if not os.path.isfile(f):
            p.error(f"{f}: no such file (build with `cargo build --release`, fetch weights with `make weights`)")

    wanted = a.case or [("yolov4-tiny", 1), ("yolov4-tiny", 8), ("yolov4", 1), ("yolov3-tiny", 1)]
    if a.skip_yolov4:
        wanted = [c for c in wanted if c[0] != "yolov4"]
    cases = []
    for name, batch in wanted:
        if name == "yolov4-tiny":
            cfg, w, note = a.cfg, a.weights, "official weights"
        elif name == "yolov3-tiny":
            cfg, w, note = a.yolov3_tiny_cfg, a.yolov3_tiny_weights, "official weights"
        else:
            cfg, w, note = a.yolov4_cfg, os.path.join(CACHE, "yolov4-random.weights"), "random weights"
        for f in (cfg,) + ((w,) if name != "yolov4" else ()):
            if not os.path.isfile(f):
                p.error(f"{f}: no such file (`make weights`; for yolov4 ../shared/darknet/cfg, or --skip-yolov4)")
        if name == "yolov4":
            random_weights(a.bin, cfg, w)
        cases.append({"model": name, "batch": batch, "cfg": cfg, "weights": w, "weights_note": note})

    # Peers whose instruction set this run limits (--max-isa avx2); the others are not comparable then.
    limited = set(e for e in ISA_LIMITS if e in peers) if a.max_isa == "avx2" else set(peers)
    if a.max_isa == "avx2":
        for e in limited:
            os.environ.update(ISA_LIMITS[e])
    strict = a.require_all or os.environ.get("CI", "").lower() in ("1", "true", "yes")
    active = []
    for e in peers:
        m = bp.missing(e)
        if m is None:
            active.append(e)
        elif strict:
            print(f"error: {m}", file=sys.stderr)
            return 2
        else:
            print(f"SKIPPED: {m}", flush=True)
    vers = bp.versions()
    mach = machine()
    load0 = os.getloadavg()[0]
    print(f"machine: {mach['cpu']}, {mach['nproc']} CPUs, AVX-512F {'yes' if mach['avx512f'] else 'no'}, "
          f"AVX2 {'yes' if mach['avx2'] else 'no'}, FMA {'yes' if mach['fma'] else 'no'}; load average (1 min) "
          f"{load0:.2f}", flush=True)
    print("peers: " + ", ".join(f"{bp.LABEL[e]} {vers[e]}" + (f" (pnnx {vers['pnnx']})" if e == "ncnn" else "")
                                for e in active), flush=True)
    for e in active:
        if vers[e] and not vers[e].startswith(bp.PINNED[e]):
            print(f"note: {bp.LABEL[e]} {vers[e]} is installed, the pinned version is {bp.PINNED[e]}", flush=True)
    if quick:
        print(f"note: --runs {a.runs} < 20: development numbers, too noisy to quote", flush=True)
    if a.max_isa == "avx2":
        print("note: --max-isa avx2: " + ", ".join(f"{bp.LABEL[e]} limited by {' '.join(f'{k}={v}' for k, v in ISA_LIMITS[e].items())}" for e in sorted(limited))
              + "; " + ", ".join(bp.LABEL[e] for e in active if e not in limited)
              + " cannot be limited (they use this CPU's best ISA): shown, not counted in ours/fastest", flush=True)

    results = []
    disagreements = []
    os.makedirs(CACHE, exist_ok=True)
    for c in cases:
        name, batch, cfg, w = c["model"], c["batch"], c["cfg"], c["weights"]
        label = f"{name} {SIZE} b{batch}"
        case_dir = os.path.join(CACHE, "check", f"{name}-{SIZE}-b{batch}")
        shutil.rmtree(case_dir, ignore_errors=True)
        os.makedirs(case_dir)
        inp = check_input(cfg, a.image, batch, case_dir)
        engines: dict[str, dict] = {}
        # 1. outputs of every peer against ours, before any timing
        for e in active:
            model = bp.prepare(e, cfg, w, batch, CACHE, SIZE, os.path.abspath(a.bin))
            d = os.path.join(case_dir, e)
            os.makedirs(d)
            shutil.copyfile(inp, os.path.join(d, "input.bin"))
            info = _in_fresh_process(f"{bp.LABEL[e]} on {label} (check)", "bench_peers", "run", engine=e,
                                     model=model, cfg=cfg, input_bin=inp, batch=batch, threads=a.threads,
                                     mode="check", out_dir=d, size=SIZE)
            write_manifest(cfg, batch, d, info["files"], f"{bp.LABEL[e]} {info['version']} (tools/bench_peers.py)")
            chk = compare_with_ours(a.bin, cfg, w, d, a.threads)
            engines[e] = {"version": info["version"], "check": chk, "model": model}
            what = "yolo outputs" if e != "opencv" else "head convolutions"
            print(f"{label}: {bp.LABEL[e]} {what} (layers {chk['layers']}) vs ours: max abs diff "
                  f"{chk['max_abs']:.2e} (layer {chk['worst_layer']}), max rel {chk['max_rel']:.2e}"
                  + ("" if chk["agrees"] else f"  DISAGREES: {chk['failing']} of {chk['count']} values outside "
                     f"{AGREE_ATOL:g} + {AGREE_RTOL:g}*|ours|; not timed"), flush=True)
            if not chk["agrees"]:
                disagreements.append(f"{label}: {bp.LABEL[e]}")
        # 2. timing, each engine in its own process, in interleaved rounds
        agreeing = [e for e in active if engines[e]["check"]["agrees"]]
        for e in active:
            if e not in agreeing:
                engines[e]["median_ms"] = None
        ours_rounds: list[dict] = []
        peer_rounds: dict[str, list[dict]] = {e: [] for e in agreeing}
        for rnd in range(a.rounds):
            order = ["ours"] + agreeing if rnd % 2 == 0 else agreeing[::-1] + ["ours"]
            for e in order:
                if e == "ours":
                    o = ours(a.bin, cfg, w, a.image, batch, a.runs, a.warmup, a.threads)
                    if a.max_isa == "avx2" and our_isa(o) != "avx2":
                        print(f"error: --max-isa avx2 needs our AVX2 build, {a.bin} runs {our_isa(o)} kernels "
                              "(make bench-avx2 builds target/avx2/release/candle-darknet)", file=sys.stderr)
                        return 2
                    ours_rounds.append(o)
                    continue
                peer_rounds[e].append(_in_fresh_process(
                    f"{bp.LABEL[e]} on {label}", "bench_peers", "run", engine=e, model=engines[e]["model"],
                    cfg=cfg, input_bin=inp, batch=batch, threads=a.threads, mode="time", runs=a.runs,
                    warmup=a.warmup, size=SIZE))
        o = ours_rounds[0]
        ours_each = [x["forward"]["median_ms"] for x in ours_rounds]
        ours_ms = statistics.median(ours_each)
        bflops = o["bflops_per_image"]
        for e in agreeing:
            t = peer_rounds[e][0]
            each = [x["latency_ms"]["median"] for x in peer_rounds[e]]
            engines[e].update(t)
            engines[e]["round_medians_ms"] = each
            engines[e]["peak_rss_mib"] = max((x.get("peak_rss_mib") or 0) for x in peer_rounds[e]) or None
            engines[e]["median_ms"] = statistics.median(each)
            engines[e]["ratio_ours_over"] = ours_ms / engines[e]["median_ms"]
        timed = {e: v for e, v in engines.items() if v.get("median_ms") and e in limited}
        fastest = min(timed, key=lambda e: timed[e]["median_ms"]) if timed else None
        r = {
            "model": name, "batch": batch, "size": SIZE, "weights": c["weights_note"], "bflops_per_image": bflops,
            "ours_ms": ours_ms, "ours_round_medians_ms": ours_each,
            "ours_gflops": bflops * batch / (ours_ms / 1000.0),
            "ours_peak_rss_mib": max((x.get("peak_rss_mib") or 0) for x in ours_rounds) or None,
            "ours_isa": our_isa(o), "ours": o,
            "peers": {e: {k: v for k, v in engines[e].items() if k != "model"} for e in engines},
            "fastest_peer": fastest, "max_isa": a.max_isa, "isa_limited_peers": sorted(limited & set(engines)),
            "ratio_ours_over_fastest": ours_ms / timed[fastest]["median_ms"] if fastest else None,
        }
        results.append(r)
        parts = [f"ours {ours_ms:.1f} ms"] + [
            f"{bp.LABEL[e]} {fmt_ms(v['median_ms'])} ms (ours/{bp.LABEL[e]} {v['ratio_ours_over']:.2f})"
            if v.get("median_ms") else f"{bp.LABEL[e]} DISAGREES" for e, v in engines.items()]
        if fastest:
            parts.append(f"ours/fastest {r['ratio_ours_over_fastest']:.2f} ({bp.LABEL[fastest]})")
            if a.rounds > 1:
                each = [f"{x / y:.2f}" for x, y in zip(ours_each, timed[fastest]["round_medians_ms"])]
                parts.append(f"per round {' '.join(each)}")
        print(f"{label}: " + ", ".join(parts), flush=True)
    load1 = os.getloadavg()[0]

    print()
    isas = sorted({r["ours_isa"] for r in results if r["ours_isa"]})
    print(f"{mach['cpu']}, AVX-512F {'yes' if mach['avx512f'] else 'no'}; our kernels: "
          f"{', '.join(isas) if isas else 'ISA not reported by the binary'}; median of {a.runs} runs after "
          f"{a.warmup} warm-up, {a.threads} threads each, median of {a.rounds} interleaved rounds; load average (1 min) {load0:.2f} before, {load1:.2f} after"
          + ("  [fewer than 20 runs: not quotable]" if quick else ""))
    cols = [e for e in bp.ENGINES if e in active]
    hdr = f"{'model':<12} {'batch':>5} {'ours ms':>8}"
    for e in cols:
        mark = "" if e in limited else "*"
        hdr += f" {bp.LABEL[e] + mark + ' ms':>15} {'ours/' + bp.LABEL[e] + mark:>18}"
    hdr += f" {'ours/fastest':>22} {'ours GF/s':>9} {'ours RSS MiB':>12}"
    print(hdr)
    for r in results:
        line = f"{r['model']:<12} {r['batch']:>5} {r['ours_ms']:>8.1f}"
        for e in cols:
            v = r["peers"].get(e, {})
            if v.get("median_ms"):
                line += f" {v['median_ms']:>15.1f} {v['ratio_ours_over']:>18.2f}"
            else:
                line += f" {'DISAGREES':>15} {'-':>18}"
        if r["fastest_peer"]:
            line += f" {r['ratio_ours_over_fastest']:>8.2f} ({bp.LABEL[r['fastest_peer']]:>11})"
        else:
            line += f" {'-':>22}"
        rss = r["ours_peak_rss_mib"]
        line += f" {r['ours_gflops']:>9.1f} {(rss if rss is not None else float('nan')):>12.0f}"
        print(line)
    if any(e not in limited for e in cols):
        print("* not limited to AVX2 (no switch for it): not counted in ours/fastest")
    print("output check (max abs difference from ours, head outputs):")
    for r in results:
        print(f"  {r['model']} b{r['batch']}: " + ", ".join(
            f"{bp.LABEL[e]} {v['check']['max_abs']:.2e}" + ("" if v["check"]["agrees"] else " DISAGREES")
            for e, v in r["peers"].items()))
    print("peak RSS MiB (VmHWM of each engine's own process): " + "; ".join(
        f"{r['model']} b{r['batch']}: ours {r['ours_peak_rss_mib'] or float('nan'):.0f}, " + ", ".join(
            f"{bp.LABEL[e]} {v['peak_rss_mib']:.0f}" for e, v in r["peers"].items() if v.get("peak_rss_mib"))
        for r in results))
    if a.json:
        tmp = a.json + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"machine": mach, "versions": vers, "load_before": load0, "load_after": load1,
                       "threads": a.threads, "runs": a.runs, "warmup": a.warmup, "rounds": a.rounds, "quick": quick,
                       "agreement_tolerance": {"atol": AGREE_ATOL, "rtol": AGREE_RTOL}, "results": results}, f,
                      indent=1)
        os.replace(tmp, a.json)
    if disagreements:
        print(f"error: outputs disagree with ours: {'; '.join(disagreements)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
