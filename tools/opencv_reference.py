#!/usr/bin/env python3
"""Run a Darknet cfg/weights through OpenCV DNN and dump every layer in the shared/reference format.

A second, independent reference next to the Darknet dumps in shared/reference: same manifest.json schema,
same `layer_XXX_<type>.bin` float32 CHW files, so `tools/compare_refs.py` and our Rust tests can read both.

    tools/opencv_reference.py --cfg X.cfg --weights X.weights --out DIR \
        (--image img.jpg | --input input.bin | --random-input SEED) [--size WxH] [--batch N]
        [--no-fusion] [--opencv-bn-eps] [--winograd] [--threads T]

What OpenCV does differently from Darknet, and what this tool does about it (docs/opencv-reference.md):
  * BatchNorm epsilon: OpenCV's darknet importer builds BatchNorm layers with eps = 1e-6; Darknet's
    normalize_cpu / fuse_conv_batchnorm use .00001 (1e-5). By default this tool feeds OpenCV a temporary copy of the
    weights with `rolling_variance + 9e-6`, so OpenCV evaluates Darknet's sqrt(var + 1e-5). `--opencv-bn-eps`
    keeps OpenCV's own eps (on the mini-yolov4 reference this alone costs ~3e-3 abs error in layer 0).
  * Fusion: OpenCV fuses conv+BN(+activation) by default (`fused_conv_bn: 1`); `--no-fusion` disables it
    (`net.enableFusion(False)`, `fused_conv_bn: 0`).
  * [yolo] layers: OpenCV's Region layer outputs decoded boxes, not Darknet's l.output; its class scores are
    thresholded (obj*cls <= thresh -> 0) and NMS-suppressed, so Darknet's layout cannot be recovered exactly.
    The manifest entry has `file: null` and a `note`; OpenCV's own output is written to
    `layer_XXX_yolo_opencv_region.bin` (`opencv_region_file`, layout described in `opencv_region_layout`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import darknet_cfg as dc  # noqa: E402
import darknet_image as di  # noqa: E402

DARKNET_BN_EPS = 1e-5  # normalize_cpu / fuse_conv_batchnorm in Darknet
OPENCV_BN_EPS = 1e-6  # darknet_io.cpp: BatchNorm "eps" in OpenCV's importer

# OpenCV layer-name prefixes that *start* a Darknet layer (name suffix = Darknet index). Every other numbered name
# (the activation appended by setActivation: leaky_, mish_, swish_, logistic_, ...) is created after the importer has
# already incremented its layer counter, so its suffix is the Darknet index + 1. `bn_N` carries the conv's index.
PRIMARY_PREFIXES = {
    "conv", "bn", "pool", "avgpool", "softmax", "concat", "identity", "slice", "reorg", "permute", "yolo",
    "shortcut", "scale_channels", "upsample", "fullyConnected", "sam", "dropout", "adjust_crop",
}

REGION_LAYOUT = (
    "OpenCV Region layer output for batch item b: rows = h*w*num_anchors, row = (y*w + x)*num_anchors + a "
    "(a = position in mask); columns = [cx, cy, bw, bh, obj, p_0..p_{classes-1}] with "
    "cx = (x + logistic(tx)*scale_x_y - (scale_x_y-1)/2)/w, cy likewise with h, "
    "bw = exp(tw)*anchor_w/net_w, bh = exp(th)*anchor_h/net_h, obj = logistic(to), "
    "p_k = obj*logistic(t_k) if > thresh (cfg thresh, default 0.2) else 0, then per-class NMS (cfg nms_threshold, "
    "default 0.4) zeroes suppressed p_k. For batch N the file holds N such blocks."
)


def parse_size(s: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)(?:[xX](\d+))?", s)
    if not m:
        raise argparse.ArgumentTypeError(f"--size must be W or WxH, got {s!r}")
    w = int(m.group(1))
    h = int(m.group(2)) if m.group(2) else w
    if w <= 0 or h <= 0:
        raise argparse.ArgumentTypeError("--size must be positive")
    return w, h


def opencv_to_darknet_index(names: list[str]) -> dict[int, str]:
    """For each Darknet layer index, the LAST OpenCV layer that belongs to it (its output = Darknet's l.output)."""
    last: dict[int, str] = {}
    current = -1
    for name in names:
        m = re.fullmatch(r"(.+)_(\d+)", name)
        if m:
            prefix, k = m.group(1), int(m.group(2))
            idx = k if prefix in PRIMARY_PREFIXES else k - 1
        else:
            idx = current  # e.g. "detection_out" of a [region] layer follows its permute_N
        current = idx
        last[idx] = name
    return last


def bn_eps_corrected_weights(nw: dc.Network, weights: str, tmpdir: str) -> str:
    """A copy of `weights` with rolling_variance += (1e-5 - 1e-6), so OpenCV's eps=1e-6 BN equals Darknet's."""
    header, blocks = dc.read_weights(nw, weights)
    fixed = []
    for b, d in zip(nw.weight_blocks, blocks):
        d = dict(d)
        if b.batch_normalize:
            d["rolling_variance"] = d["rolling_variance"] + np.float32(DARKNET_BN_EPS - OPENCV_BN_EPS)
        fixed.append(d)
    out = os.path.join(tmpdir, "bn_eps_corrected.weights")
    dc.write_weights(nw, out, fixed, header)
    return out


def load_net(cfg: str, weights: str, *, fusion: bool = True, darknet_bn_eps: bool = True, winograd: bool = False,
             width: int | None = None, height: int | None = None, threads: int | None = None):
    """(cv2.dnn.Net on CPU/FP32, parsed Network). The BN-eps correction is applied unless darknet_bn_eps=False.

    Winograd is off by default: OpenCV's Winograd F(6,3) path for 3x3 stride-1 convolutions is ~7x less accurate
    (yolov4-tiny layer 2: 2.2e-4 vs 3.3e-5 max abs error against Darknet)."""
    import cv2

    if threads:
        cv2.setNumThreads(threads)
    nw = dc.build_network(cfg, width, height)
    with tempfile.TemporaryDirectory(prefix="ocvref.") as tmp:
        wpath = bn_eps_corrected_weights(nw, weights, tmp) if darknet_bn_eps else weights
        net = cv2.dnn.readNetFromDarknet(cfg, wpath)
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    net.enableFusion(fusion)
    net.enableWinograd(winograd)
    return net, nw


def make_input(args, nw: dc.Network) -> tuple[np.ndarray, dict]:
    """(N x C x H x W float32, extra manifest fields)."""
    c, h, w = nw.channels, nw.height, nw.width
    n = args.batch
    extra: dict = {}
    if args.image:
        x, iw, ih = di.darknet_input(args.image, w, h)
        if c != 3:
            raise SystemExit(f"error: --image needs a 3-channel net, {args.cfg} has channels={c}")
        extra.update(image_w=iw, image_h=ih, image=os.path.basename(args.image))
        x = np.broadcast_to(x, (n, c, h, w))
    elif args.input:
        raw = np.fromfile(args.input, np.float32)
        one = c * h * w
        if raw.size == one:
            x = np.broadcast_to(raw.reshape(1, c, h, w), (n, c, h, w))
        elif raw.size == n * one:
            x = raw.reshape(n, c, h, w)
        else:
            raise SystemExit(f"error: {args.input}: {raw.size} floats, expected {one} (= {c}x{h}x{w}) "
                             f"or {n * one} for --batch {n}")
        extra["input_source"] = os.path.basename(args.input)
    else:
        rng = np.random.default_rng(args.random_input)
        x = rng.random((n, c, h, w), dtype=np.float32)
        extra["random_input_seed"] = args.random_input
    return np.ascontiguousarray(x, np.float32), extra


def run(args) -> str:
    import cv2

    w, h = args.size if args.size else (None, None)
    net, nw = load_net(args.cfg, args.weights, fusion=not args.no_fusion, darknet_bn_eps=not args.opencv_bn_eps,
                       winograd=args.winograd, width=w, height=h, threads=args.threads)
    x, extra = make_input(args, nw)
    names = list(net.getLayerNames())
    mapping = opencv_to_darknet_index(names)
    missing = [L["index"] for L in nw.layers if L["index"] not in mapping]
    if missing:
        raise SystemExit(f"error: no OpenCV layer found for Darknet layers {missing}; OpenCV layers: {names}")
    order = [mapping[L["index"]] for L in nw.layers]
    net.setInput(x)
    outs = net.forward(order)

    fused = 0 if args.no_fusion else 1
    manifest = {
        "cfg": os.path.basename(args.cfg),
        "producer": f"OpenCV DNN {cv2.__version__} (readNetFromDarknet, DNN_BACKEND_OPENCV, DNN_TARGET_CPU, FP32)",
        "net_w": nw.width,
        "net_h": nw.height,
        "net_c": nw.channels,
        **({k: extra[k] for k in ("image_w", "image_h") if k in extra}),
        "letterbox": 0,
        "fused_conv_bn": fused,
        "opencv_fusion": bool(fused),
        "opencv_winograd": bool(args.winograd),
        "bn_eps": DARKNET_BN_EPS if not args.opencv_bn_eps else OPENCV_BN_EPS,
        "batch": args.batch,
        "input": {"file": "input.bin", "c": nw.channels, "h": nw.height, "w": nw.width},
        **{k: v for k, v in extra.items() if k not in ("image_w", "image_h")},
        "layers": [],
    }
    parent = os.path.dirname(os.path.abspath(args.out)) or "."
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".tmp.ocvref.", dir=parent)
    try:
        x.tofile(os.path.join(tmp, "input.bin"))
        for L, name, out in zip(nw.layers, order, outs):
            entry = dict(L)
            if fused and entry["type"] == "convolutional":
                entry["batch_normalize"] = 0  # as in the Darknet fused dumps: BN folded into the conv
            entry["opencv_layer"] = name
            base = f"layer_{L['index']:03d}_{L['type']}"
            if L["type"] in ("yolo", "region", "Gaussian_yolo"):
                entry["file"] = None
                entry["note"] = ("OpenCV's Region layer outputs decoded, thresholded, NMS-suppressed boxes, not "
                                 "Darknet's l.output; not comparable element-wise. See opencv_region_file.")
                entry["opencv_region_file"] = base + "_opencv_region.bin"
                entry["opencv_region_shape"] = [int(s) for s in out.shape]
                entry["opencv_region_layout"] = (REGION_LAYOUT if L["type"] == "yolo" else
                                                 "OpenCV Region layer (YOLOv2 [region] decoding, see OpenCV's "
                                                 "region_layer.cpp): rows = h*w*num, [cx, cy, bw, bh, obj, p_0..]")
                np.ascontiguousarray(out, np.float32).tofile(os.path.join(tmp, entry["opencv_region_file"]))
            else:
                expect = (args.batch, L["c"], L["h"], L["w"])
                if tuple(out.shape) != expect:
                    raise SystemExit(f"error: layer {L['index']} ({L['type']}, OpenCV {name}): OpenCV shape "
                                     f"{tuple(out.shape)} != Darknet shape {expect}")
                entry["file"] = base + ".bin"
                np.ascontiguousarray(out, np.float32).tofile(os.path.join(tmp, entry["file"]))
            manifest["layers"].append(entry)
        with open(os.path.join(tmp, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
        old = None
        if os.path.exists(args.out):
            if not os.path.isfile(os.path.join(args.out, "manifest.json")) and os.listdir(args.out):
                raise SystemExit(f"error: {args.out} exists and is not a reference directory; not replacing it")
            old = tempfile.mkdtemp(prefix=".old.ocvref.", dir=parent)
            os.rmdir(old)
            os.replace(args.out, old)
        os.replace(tmp, args.out)
        if old:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return args.out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cfg", required=True)
    p.add_argument("--weights", required=True)
    p.add_argument("--out", required=True, help="output reference directory (replaced atomically)")
    p.add_argument("--size", type=parse_size, help="WxH (or W) network input, overrides [net] width/height")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--image", help="image, preprocessed as darknet detector test (stretch resize, /255, RGB)")
    src.add_argument("--input", help="raw float32 CHW tensor (e.g. a reference input.bin), used verbatim")
    src.add_argument("--random-input", type=int, metavar="SEED", help="uniform [0,1) input from numpy seed")
    p.add_argument("--batch", type=int, default=1, help="batch size; files then hold N*outputs floats")
    p.add_argument("--no-fusion", action="store_true", help="net.enableFusion(False): BN not folded into conv")
    p.add_argument("--opencv-bn-eps", action="store_true",
                   help="keep OpenCV's BatchNorm eps=1e-6 instead of emulating Darknet's 1e-5")
    p.add_argument("--winograd", action="store_true",
                   help="allow OpenCV's Winograd 3x3 convolution (faster, ~1e-4 less accurate); off by default")
    p.add_argument("--threads", type=int, default=None, help="cv2.setNumThreads")
    args = p.parse_args(argv)
    if args.batch < 1:
        p.error("--batch must be >= 1")
    for f in (args.cfg, args.weights) + ((args.image,) if args.image else ()) + ((args.input,) if args.input else ()):
        if not os.path.isfile(f):
            p.error(f"{f}: no such file")
    try:
        out = run(args)
    except dc.CfgError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # cv2.error from the importer or forward
        if type(e).__name__ != "error":
            raise
        print(f"error: OpenCV failed on {args.cfg}: {str(e).strip()}", file=sys.stderr)
        return 3
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
