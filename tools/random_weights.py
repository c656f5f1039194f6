#!/usr/bin/env python3
"""Write a random Darknet .weights file for a cfg (for testing the tools on cfgs without trained weights).

    tools/random_weights.py --cfg X.cfg --out X.weights [--seed 1] [--size WxH] [--calibrate]

File layout (Darknet save_weights / load_weights_upto, AlexeyAB 59596d7): header int32 major=0, minor=2,
revision=5, uint64 seen=0; then for every [convolutional] layer in order (layers with share_index carry none):
biases[n], and if batch_normalize: scales[n], rolling_mean[n], rolling_variance[n]; then weights
[n][c/groups][size][size]. No other layer type in the detector cfgs of darknet/cfg carries weights except [crnn]
(three convolutional blocks) and [shortcut] with weights_type, which darknet_cfg rejects.

Values: weights = sqrt(2/(size*size*c/groups)) * U(-1,1) (Darknet's make_convolutional_layer init, He-uniform),
biases U(-0.2,0.2), BN scales U(0.5,1.5), rolling_mean U(-0.1,0.1), rolling_variance U(0.5,1.5) (> 0).
With --calibrate (needs OpenCV to load the cfg), each BN layer's rolling statistics are set, layer by layer, from
the actual per-channel statistics of its conv output on a random input (mean + U(-0.1,0.1)*std, var*U(0.7,1.4)+1e-3,
the recipe of shared/reference/mini-yolov4), so activations stay O(1) even in deep nets with shortcuts.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import darknet_cfg as dc  # noqa: E402


def random_blocks(nw: dc.Network, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    blocks = []
    for b in nw.weight_blocks:
        fan_in = b.size * b.size * b.c_per_group
        d = {"biases": rng.uniform(-0.2, 0.2, b.n).astype(np.float32)}
        if b.batch_normalize:
            d["scales"] = rng.uniform(0.5, 1.5, b.n).astype(np.float32)
            d["rolling_mean"] = rng.uniform(-0.1, 0.1, b.n).astype(np.float32)
            d["rolling_variance"] = rng.uniform(0.5, 1.5, b.n).astype(np.float32)
        d["weights"] = (np.sqrt(2.0 / fan_in) * rng.uniform(-1, 1, b.nweights)).astype(np.float32)
        blocks.append(d)
    return blocks


def weights_bytes(nw: dc.Network, blocks: list[dict], upto_layer: int | None = None) -> bytes:
    """The .weights file content, optionally only the blocks of layers <= upto_layer."""
    parts = [dc.HEADER.pack(0, 2, 5, 0)]
    for b, d in zip(nw.weight_blocks, blocks):
        if upto_layer is not None and b.layer > upto_layer:
            break
        keys = ["biases"] + (["scales", "rolling_mean", "rolling_variance"] if b.batch_normalize else []) + ["weights"]
        parts += [np.asarray(d[k], np.float32).tobytes() for k in keys]
    return b"".join(parts)


def truncated_cfg(cfg: str, nw_sections_lines: list[int], upto_layer: int) -> bytes:
    """The cfg text up to and including layer `upto_layer` (cut before the next section header)."""
    with open(cfg, "rb") as f:
        lines = f.read().split(b"\n")
    nxt = upto_layer + 2  # section 0 is [net]
    if nxt < len(nw_sections_lines):
        lines = lines[: nw_sections_lines[nxt] - 1]
    return b"\n".join(lines) + b"\n"


def calibrate(nw: dc.Network, cfg: str, blocks: list[dict], seed: int, batch: int = 2) -> float:
    """Sequentially refit every BN layer's rolling stats to the real statistics of its pre-BN conv output.

    Layer by layer in network order: OpenCV loads the cfg truncated after that layer (with the already calibrated
    weights, from memory, BN eps 1e-6 as OpenCV has it: the 9e-6 difference is irrelevant here) and returns the
    unfused conv output. Returns the largest |pre-BN output| seen."""
    import cv2

    rng = np.random.default_rng(seed + 1)
    x = rng.random((batch, nw.channels, nw.height, nw.width), dtype=np.float32)
    lines = [sec.line for sec in dc.read_cfg(cfg)]
    worst = 0.0
    for i, b in enumerate(nw.weight_blocks):
        if not b.batch_normalize:
            continue
        cfg_buf = np.frombuffer(truncated_cfg(cfg, lines, b.layer), np.uint8)
        w_buf = np.frombuffer(weights_bytes(nw, blocks, b.layer), np.uint8)
        net = cv2.dnn.readNetFromDarknet(cfg_buf, w_buf)
        net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
        net.enableFusion(False)
        net.setInput(x)
        y = net.forward(f"conv_{b.layer}").astype(np.float64)  # BN conv has no bias term: pre-BN value
        mean, var = y.mean(axis=(0, 2, 3)), y.var(axis=(0, 2, 3))
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(var))):
            raise RuntimeError(f"layer {b.layer}: non-finite conv output during calibration")
        worst = max(worst, float(np.abs(y).max()))
        blocks[i]["rolling_mean"] = (mean + rng.uniform(-0.1, 0.1, b.n) * np.sqrt(var)).astype(np.float32)
        blocks[i]["rolling_variance"] = (var * rng.uniform(0.7, 1.4, b.n) + 1e-3).astype(np.float32)
    return worst


def main(argv=None) -> int:
    from opencv_reference import parse_size

    p = argparse.ArgumentParser(description="random Darknet .weights for a cfg")
    p.add_argument("--cfg", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--size", type=parse_size, help="WxH used for shape inference / calibration")
    p.add_argument("--calibrate", action="store_true",
                   help="refit BN rolling statistics layer by layer with OpenCV forward passes")
    args = p.parse_args(argv)
    w, h = args.size if args.size else (None, None)
    try:
        nw = dc.build_network(args.cfg, w, h)
    except (dc.CfgError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    blocks = random_blocks(nw, args.seed)
    if args.calibrate:
        try:
            worst = calibrate(nw, args.cfg, blocks, args.seed)
            print(f"calibrated: max |pre-BN conv output| {worst:.3g}")
        except Exception as e:  # OpenCV cannot load/run this cfg: keep the uncalibrated values
            print(f"warning: calibration skipped: {str(e).strip().splitlines()[-1]}", file=sys.stderr)
    dc.write_weights(nw, args.out, blocks)
    n = sum(b.nfloats for b in nw.weight_blocks)
    print(f"wrote {args.out}: {len(nw.weight_blocks)} conv blocks, {n} floats, {20 + 4 * n} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
