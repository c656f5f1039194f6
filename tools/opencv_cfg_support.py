#!/usr/bin/env python3
"""Which Darknet detector cfgs can OpenCV DNN load and run? (random weights, small input)

    tools/opencv_cfg_support.py [--cfg-dir ../shared/darknet/cfg] [--size 128] [--markdown out.md] [--json out.json]

For every cfg with a [yolo], [region] or [Gaussian_yolo] section: parse it with tools/darknet_cfg.py (shape
inference at --size, bumped to 256/512 if a head would be smaller than 2x2 or a route's inputs disagree), write random
weights (tools/random_weights.py, uncalibrated), then in a subprocess (OpenCV may abort):
cv2.dnn.readNetFromDarknet, one forward of every Darknet layer's last OpenCV layer (tools/opencv_reference.py
mapping), and check each output's shape against Darknet's shape and that it is finite.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import darknet_cfg as dc  # noqa: E402


def is_detector(path: str) -> bool:
    with open(path, errors="replace") as f:
        return any(re.match(r"\s*\[(yolo|region|Gaussian_yolo)\]", line) for line in f)


# cfg options that change Darknet's forward pass but that OpenCV 4.14's darknet importer never reads (the key strings
# it does read are visible in cv2's binary; these are absent), value that is harmless, and why it matters.
IGNORED_BY_OPENCV = {
    "xnor": ("0", "binarised weights/inputs (XNOR-net) in Darknet, plain float conv in OpenCV"),
    "binary": ("0", "binarised weights in Darknet"),
    "dilation": ("1", "dilated conv in Darknet"),
    "stride_x": (None, "anisotropic stride"),
    "stride_y": (None, "anisotropic stride"),
    "share_index": (None, "weight sharing: Darknet reads no weights for the layer, OpenCV does (file misaligned)"),
    "antialiasing": ("0", "blur-pool after the conv in Darknet"),
    "maxpool_depth": ("0", "max over channels in Darknet"),
    "reverse": ("0", "reverse reorg"),
    "weights_type": ("none", "weighted shortcut (carries weights)"),
    "scale_wh": ("0", "scale over w,h"),
    "coordconv": ("0", "coordinate channels"),
}


def ignored_features(cfg: str) -> list[str]:
    """`key(Nx)` for every IGNORED_BY_OPENCV option set to a non-harmless value somewhere in the cfg."""
    found: dict[str, int] = {}
    for sec in dc.read_cfg(cfg):
        for k, (harmless, _why) in IGNORED_BY_OPENCV.items():
            v = sec.options.get(k)
            if v is None:
                continue
            if harmless is not None and (v == harmless or (harmless.isdigit() and dc.atoi(v) == int(harmless))):
                continue
            if k in ("stride_x", "stride_y") and dc.atoi(v) == dc.atoi(sec.options.get("stride", "1")):
                continue
            found[k] = found.get(k, 0) + 1
    return [f"{k}({n}x)" for k, n in found.items()]


def pick_size(cfg: str, size: int):
    """(size, Network) for the first size >= `size` where Darknet's shape inference is consistent."""
    err = None
    for s in sorted({size, 256, 512}):
        if s < size:
            continue
        try:
            nw = dc.build_network(cfg, s, s)
        except dc.CfgError as e:
            err = e
            if "unknown layer type" in str(e) or "not supported" in str(e):
                raise
            continue
        heads = [L for L in nw.layers if L["type"] in ("yolo", "region", "Gaussian_yolo")]
        if all(L["h"] >= 2 and L["w"] >= 2 for L in heads):
            return s, nw
    raise err or dc.CfgError(f"{cfg}: no usable input size")


def check_one(cfg: str, weights: str, size: int) -> dict:
    """Runs in a subprocess: load + forward with OpenCV, compare shapes. Returns a result dict."""
    import cv2

    import opencv_reference as ocv

    r = {"loads": False, "runs": False}
    nw = dc.build_network(cfg, size, size)
    try:
        net = cv2.dnn.readNetFromDarknet(cfg, weights)
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    except cv2.error as e:
        r["error"] = "load: " + _cv_msg(e)
        return r
    r["loads"] = True
    names = list(net.getLayerNames())
    mapping = ocv.opencv_to_darknet_index(names)
    missing = [L["index"] for L in nw.layers if L["index"] not in mapping]
    x = np.random.default_rng(0).random((1, nw.channels, size, size), dtype=np.float32)
    try:
        net.setInput(x)
        order = [mapping[L["index"]] for L in nw.layers if L["index"] in mapping]
        outs = net.forward(order)
    except cv2.error as e:
        r["error"] = "forward: " + _cv_msg(e)
        return r
    r["runs"] = True
    bad_shape, nonfinite = [], []
    for L, out in zip([L for L in nw.layers if L["index"] in mapping], outs):
        if L["type"] in ("yolo", "region", "Gaussian_yolo"):
            continue
        if tuple(out.shape) != (1, L["c"], L["h"], L["w"]):
            bad_shape.append(f"{L['index']}:{L['type']} {tuple(out.shape[1:])}!={(L['c'], L['h'], L['w'])}")
        if not np.all(np.isfinite(out)):
            nonfinite.append(L["index"])
    r["unmapped_layers"] = missing
    r["shape_mismatch"] = bad_shape
    r["nonfinite_layers"] = nonfinite[:5]
    r["shapes_match"] = not bad_shape and not missing
    return r


def _cv_msg(e) -> str:
    s = [x for x in str(e).strip().splitlines() if x.strip()]
    s = s[-1].strip() if s else repr(e)
    # "OpenCV(4.14.0) /io/opencv/modules/dnn/src/darknet/darknet_io.cpp:963: error: (-212:Parsing error) X in function"
    m = re.search(r"modules/dnn/src/(\S+): error: \([^)]*\) (.*?)(?: in function '(\w+)')?$", s)
    return f"{m.group(2)} ({m.group(1)})" if m else s


def survey(cfg_dir: str, size: int, timeout: int = 600) -> list[dict]:
    import random_weights as rw

    rows = []
    cfgs = sorted(p for p in glob.glob(os.path.join(cfg_dir, "*.cfg")) if is_detector(p))
    for cfg in cfgs:
        row = {"cfg": os.path.basename(cfg), "loads": False, "runs": False}
        try:
            s, nw = pick_size(cfg, size)
        except dc.CfgError as e:
            row["error"] = f"darknet_cfg: {e}".replace(cfg + ":", "")
            row["our_parser"] = False
            rows.append(row)
            print(row, flush=True)
            continue
        row.update(our_parser=True, size=s, layers=len(nw.layers), opencv_ignores=ignored_features(cfg))
        with tempfile.TemporaryDirectory(prefix="cfgsurvey.") as tmp:
            wpath = os.path.join(tmp, "w.weights")
            dc.write_weights(nw, wpath, rw.random_blocks(nw, 1))
            cmd = [sys.executable, __file__, "--one", cfg, "--weights", wpath, "--size", str(s)]
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
                last = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
                if p.returncode == 0 and last.startswith("{"):
                    row.update(json.loads(last))
                else:
                    err = (p.stderr.strip().splitlines() or ["?"])[-1]
                    row["error"] = f"subprocess exit {p.returncode}: {err}"
            except subprocess.TimeoutExpired:
                row["error"] = f"timeout {timeout}s"
        rows.append(row)
        print(row, flush=True)
    return rows


def markdown(rows: list[dict], size: int) -> str:
    import cv2

    out = [f"OpenCV {cv2.__version__} (opencv-python-headless), DNN_BACKEND_OPENCV / CPU / FP32, random weights, "
           f"input {size}x{size} unless noted; generated by `tools/opencv_cfg_support.py`.", "",
           "| cfg | layers | size | OpenCV loads | runs | layer shapes = Darknet's | finite | Darknet features OpenCV ignores "
           "| error / note |",
           "|---|---|---|---|---|---|---|---|---|"]
    yn = {True: "yes", False: "**no**", None: "-"}
    for r in rows:
        note = r.get("error", "")
        if r.get("shape_mismatch"):
            note = (note + " shape mismatch: " + "; ".join(r["shape_mismatch"][:3])).strip()
        if r.get("unmapped_layers"):
            note = (note + f" unmapped Darknet layers: {r['unmapped_layers'][:5]}").strip()
        if r.get("nonfinite_layers"):
            why = ("OpenCV reads weights for share_index layers, Darknet stores none: the rest of the file is "
                   "misaligned" if any(f.startswith("share_index") for f in r.get("opencv_ignores", []))
                   else "uncalibrated random BN statistics")
            note = (note + f" non-finite from layer {r['nonfinite_layers'][0]} ({why})").strip()
        if r.get("runs") and r.get("opencv_ignores"):
            note = (note + " runs, but NOT Darknet's computation (ignored options)").strip()
        fin = None if not r.get("runs") else not r.get("nonfinite_layers")
        note = note.replace("|", "\\|")
        out.append(f"| {r['cfg']} | {r.get('layers', '-')} | {r.get('size', '-')} | {yn[r.get('loads')]} | "
                   f"{yn[r.get('runs')]} | {yn[r.get('shapes_match') if r.get('runs') else None]} | {yn[fin]} | "
                   f"{', '.join(r.get('opencv_ignores') or []) or '-'} | {note} |")
    return "\n".join(out) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cfg-dir", default=None)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--markdown")
    p.add_argument("--json")
    p.add_argument("--render", metavar="JSON", help="only re-render the markdown table from a previous --json")
    p.add_argument("--one", help=argparse.SUPPRESS)
    p.add_argument("--weights", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        print(json.dumps(check_one(args.one, args.weights, args.size)))
        return 0
    if args.render:
        with open(args.render) as f:
            md = markdown(json.load(f), args.size)
        print(md)
        if args.markdown:
            with open(args.markdown, "w") as f:
                f.write(md)
        return 0
    cfg_dir = args.cfg_dir
    if cfg_dir is None:
        # $CANDLE_DARKNET_SHARED when set, else ../shared beside the checkout (as the tests).
        shared = os.environ.get("CANDLE_DARKNET_SHARED") or os.path.join(HERE, "..", "..", "shared")
        cfg_dir = os.path.join(shared, "darknet", "cfg")
    if not cfg_dir or not os.path.isdir(cfg_dir):
        p.error("--cfg-dir not found")
    rows = survey(cfg_dir, args.size)
    md = markdown(rows, args.size)
    print(md)
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(md)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
