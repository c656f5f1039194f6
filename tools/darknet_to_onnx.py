#!/usr/bin/env python3
"""Darknet cfg + weights -> ONNX (numpy + the `onnx` package only, no PyTorch/GPU stack); ONNX Runtime benchmark.

    tools/darknet_to_onnx.py convert --cfg X.cfg --weights X.weights --out X.onnx [--size WxH] [--batch N]
        [--all-outputs]
    tools/darknet_to_onnx.py dump --onnx X.onnx --cfg X.cfg --input input.bin --out DIR   (needs --all-outputs)
    tools/darknet_to_onnx.py bench --onnx X.onnx --image img.jpg [--batch N] [--runs 20] [--warmup 5]
        [--threads 2] [--json out]

Needs `pip install onnx onnxruntime` (CPU wheels from PyPI; not in tools/requirements.txt, optional).

Graph (opset 18), one node group per Darknet layer, named `L<index>`:
  * [convolutional]: Conv with BN folded the way Darknet's `fuse_conv_batchnorm` does
    (w *= scale/sqrt(var + .00001), b = bias - mean*scale/sqrt(var + .00001)), then the activation:
    leaky -> LeakyRelu(0.1), mish -> Mish, swish -> x*Sigmoid(x), logistic -> Sigmoid, relu -> Relu, linear -> none.
  * [maxpool]: MaxPool with Darknet's offset: pads begin = padding//2, end = padding - padding//2
    (forward_maxpool_layer: `w_offset = -pad/2`, out-of-image taps ignored).
  * [route]: per input the channel slice [group_id*c/groups, (group_id+1)*c/groups), then Concat.
  * [shortcut]: Add (same shapes only) + activation. [upsample]: Resize nearest (integer stride), times `scale`.
  * [yolo]: forward_yolo_layer's in-place activation: x,y -> logistic(t)*scale_x_y - 0.5*(scale_x_y-1),
    obj and classes -> logistic (new_coords=0; with new_coords=1 only the x,y affine part), w,h unchanged.
    So the graph outputs are exactly the `layer_XXX_yolo.bin` tensors of shared/reference.
Unsupported layer types raise an error naming the layer.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import darknet_cfg as dc  # noqa: E402


def build_onnx(cfg: str, weights: str, width=None, height=None, batch: int = 1, all_outputs: bool = False):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nw = dc.build_network(cfg, width, height)
    _, blocks = dc.read_weights(nw, weights)
    wmap = {b.layer: (b, d) for b, d in zip(nw.weight_blocks, blocks)}
    nodes, inits = [], []
    out_name: dict[int, str] = {}

    def const(name, arr):
        inits.append(numpy_helper.from_array(np.asarray(arr), name))
        return name

    def activation(x: str, act: str, p: str) -> str:
        if act == "linear":
            return x
        y = p + "_act"
        if act == "leaky":
            nodes.append(helper.make_node("LeakyRelu", [x], [y], alpha=0.1))
        elif act == "mish":
            nodes.append(helper.make_node("Mish", [x], [y]))
        elif act == "logistic":
            nodes.append(helper.make_node("Sigmoid", [x], [y]))
        elif act == "relu":
            nodes.append(helper.make_node("Relu", [x], [y]))
        elif act in ("swish", "silu"):
            nodes.append(helper.make_node("Sigmoid", [x], [p + "_sig"]))
            nodes.append(helper.make_node("Mul", [x, p + "_sig"], [y]))
        else:
            raise ValueError(f"{cfg}: layer {p}: activation {act!r} not supported by the ONNX converter")
        return y

    prev = "input"
    for L in nw.layers:
        i, t = L["index"], L["type"]
        p = f"L{i}"
        if t == "convolutional":
            b, d = wmap[i]
            w = d["weights"].astype(np.float64)
            bias = d["biases"].astype(np.float64)
            if b.batch_normalize:
                k = d["scales"].astype(np.float64) / np.sqrt(d["rolling_variance"].astype(np.float64) + .00001)
                w = w * k[:, None, None, None]
                bias = bias - d["rolling_mean"] * k
            stride = L["stride"] if isinstance(L["stride"], list) else [L["stride"], L["stride"]]
            nodes.append(helper.make_node(
                "Conv", [prev, const(p + "_w", w.astype(np.float32)), const(p + "_b", bias.astype(np.float32))],
                [p + "_conv"], kernel_shape=[L["size"]] * 2, strides=[stride[1], stride[0]],
                pads=[L["pad"]] * 4, group=L.get("groups", 1)))
            y = activation(p + "_conv", L["activation"], p)
        elif t == "maxpool":
            s = L["stride"] if isinstance(L["stride"], list) else [L["stride"], L["stride"]]
            pad = L["pad"]
            nodes.append(helper.make_node("MaxPool", [prev], [p + "_pool"], kernel_shape=[L["size"]] * 2,
                                          strides=[s[1], s[0]], pads=[pad // 2, pad // 2, pad - pad // 2,
                                                                      pad - pad // 2]))
            y = p + "_pool"
        elif t == "route":
            parts = []
            for j, src in enumerate(L["layers"]):
                x = out_name[src]
                if L["groups"] > 1:
                    c = nw.layers[src]["c"] // L["groups"]
                    s0 = L["group_id"] * c
                    nodes.append(helper.make_node(
                        "Slice", [x, const(f"{p}_s{j}", np.array([s0], np.int64)),
                                  const(f"{p}_e{j}", np.array([s0 + c], np.int64)),
                                  const(f"{p}_a{j}", np.array([1], np.int64))], [f"{p}_slice{j}"]))
                    x = f"{p}_slice{j}"
                parts.append(x)
            if len(parts) == 1:
                nodes.append(helper.make_node("Identity", parts, [p + "_route"]))
            else:
                nodes.append(helper.make_node("Concat", parts, [p + "_route"], axis=1))
            y = p + "_route"
        elif t == "shortcut":
            acc = prev
            for j, src in enumerate(L["from"]):
                if (nw.layers[src]["c"], nw.layers[src]["h"], nw.layers[src]["w"]) != (L["c"], L["h"], L["w"]):
                    raise ValueError(f"{cfg}: layer {i}: shortcut between different shapes not supported")
                nodes.append(helper.make_node("Add", [acc, out_name[src]], [f"{p}_add{j}"]))
                acc = f"{p}_add{j}"
            y = activation(acc, L["activation"], p)
        elif t == "upsample":
            s = L["stride"]
            if s < 1:
                raise ValueError(f"{cfg}: layer {i}: downsampling [upsample] not supported")
            scales = const(p + "_scales", np.array([1, 1, s, s], np.float32))
            nodes.append(helper.make_node("Resize", [prev, "", scales], [p + "_up"], mode="nearest",
                                          coordinate_transformation_mode="asymmetric", nearest_mode="floor"))
            y = p + "_up"
        elif t == "yolo":
            n, k = L["num_anchors_in_layer"], L["classes"]
            per = 5 + k
            a = np.ones(n * per, np.float32)   # out = m*(a*sigmoid(x) + b) + (1-m)*(a*x + b)
            b0 = np.zeros(n * per, np.float32)
            m = np.zeros(n * per, np.float32)
            sxy = np.float32(L["scale_x_y"])
            for an in range(n):
                base = an * per
                a[base: base + 2] = sxy
                b0[base: base + 2] = -0.5 * (sxy - 1)
                if not L["new_coords"]:
                    m[base: base + 2] = 1
                    m[base + 4: base + per] = 1
            shape = (1, n * per, 1, 1)
            nodes += [
                helper.make_node("Sigmoid", [prev], [p + "_sig"]),
                helper.make_node("Sub", [p + "_sig", prev], [p + "_d"]),
                helper.make_node("Mul", [p + "_d", const(p + "_m", m.reshape(shape))], [p + "_md"]),
                helper.make_node("Add", [prev, p + "_md"], [p + "_sel"]),
                helper.make_node("Mul", [p + "_sel", const(p + "_a", a.reshape(shape))], [p + "_sa"]),
                helper.make_node("Add", [p + "_sa", const(p + "_b", b0.reshape(shape))], [p + "_yolo"]),
            ]
            y = p + "_yolo"
        elif t == "dropout":
            y = prev
        else:
            raise ValueError(f"{cfg}: layer {i} [{t}] not supported by the ONNX converter")
        out_name[i] = y
        prev = y

    outputs = [L["index"] for L in nw.layers if L["type"] == "yolo"]
    if all_outputs:
        outputs = [L["index"] for L in nw.layers if L["type"] != "dropout"]
    graph_outputs, final = [], []
    for i in outputs:
        L = nw.layers[i]
        name = f"layer_{i:03d}_{L['type']}"
        nodes.append(helper.make_node("Identity", [out_name[i]], [name]))
        graph_outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, L["c"], L["h"], L["w"]]))
        final.append(name)
    graph = helper.make_graph(nodes, os.path.basename(cfg), [helper.make_tensor_value_info(
        "input", TensorProto.FLOAT, [batch, nw.channels, nw.height, nw.width])], graph_outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], producer_name="candle-darknet tools")
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model, nw


def measure_ort(onnx_path: str, image: str, batch: int = 1, runs: int = 20, warmup: int = 5,
                threads: int = 2) -> dict:
    """ONNX Runtime CPU latency/throughput/peak RSS, same protocol as bench_opencv.measure."""
    import resource

    import onnxruntime as ort

    import darknet_image as di

    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    t = time.perf_counter()
    sess = ort.InferenceSession(onnx_path, so, providers=["CPUExecutionProvider"])
    load_ms = (time.perf_counter() - t) * 1e3
    shp = sess.get_inputs()[0].shape
    if shp[0] != batch:
        raise ValueError(f"{onnx_path} was exported for batch {shp[0]}, not {batch}")
    x, _, _ = di.darknet_input(image, shp[3], shp[2])
    blob = np.ascontiguousarray(np.broadcast_to(x, (batch,) + x.shape), np.float32)

    def once():
        t0 = time.perf_counter()
        sess.run(None, {"input": blob})
        return (time.perf_counter() - t0) * 1e3

    first = once()
    for _ in range(max(0, warmup - 1)):
        once()
    lat = [once() for _ in range(runs)]
    med = float(np.percentile(lat, 50))
    return {
        "engine": "onnxruntime", "onnxruntime_version": ort.__version__, "onnx": os.path.basename(onnx_path),
        "size": [shp[3], shp[2]], "batch": batch, "runs": runs, "warmup": warmup, "threads": threads,
        "latency_ms": {"median": med, "p10": float(np.percentile(lat, 10)), "p90": float(np.percentile(lat, 90)),
                       "mean": float(np.mean(lat)), "min": float(np.min(lat)), "max": float(np.max(lat))},
        "per_image_ms": med / batch, "throughput_ips": batch * 1000 / med, "first_forward_ms": first,
        "load_ms": load_ms, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_load_mb": rss0, "loadavg_1m_after": os.getloadavg()[0],
    }


def dump(onnx_path: str, cfg: str, input_bin: str, out: str) -> None:
    """Run an --all-outputs model on input.bin and write a shared/reference-style directory."""
    import onnxruntime as ort

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    shp = sess.get_inputs()[0].shape
    nw = dc.build_network(cfg, shp[3], shp[2])
    x = np.fromfile(input_bin, np.float32).reshape(1, nw.channels, nw.height, nw.width)
    names = [o.name for o in sess.get_outputs()]
    res = dict(zip(names, sess.run(None, {"input": x})))
    os.makedirs(out, exist_ok=True)
    x.tofile(os.path.join(out, "input.bin"))
    layers = []
    for L in nw.layers:
        e = dict(L)
        name = f"layer_{L['index']:03d}_{L['type']}"
        if name in res:
            e["file"] = name + ".bin"
            res[name].astype(np.float32).tofile(os.path.join(out, e["file"]))
        else:
            e["file"] = None
            e["note"] = "not an output of this ONNX model"
        if e["type"] == "convolutional":
            e["batch_normalize"] = 0
        layers.append(e)
    man = {"cfg": os.path.basename(cfg), "producer": "onnxruntime (tools/darknet_to_onnx.py)", "net_w": nw.width,
           "net_h": nw.height, "net_c": nw.channels, "letterbox": 0, "fused_conv_bn": 1,
           "input": {"file": "input.bin", "c": nw.channels, "h": nw.height, "w": nw.width}, "layers": layers}
    with open(os.path.join(out, "manifest.json"), "w") as f:
        json.dump(man, f, indent=1)


def main(argv=None) -> int:
    from opencv_reference import parse_size

    p = argparse.ArgumentParser(description="Darknet -> ONNX, ONNX Runtime dump/benchmark")
    sub = p.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("convert")
    c.add_argument("--cfg", required=True)
    c.add_argument("--weights", required=True)
    c.add_argument("--out", required=True)
    c.add_argument("--size", type=parse_size)
    c.add_argument("--batch", type=int, default=1)
    c.add_argument("--all-outputs", action="store_true", help="every layer is a graph output (for dump)")
    d = sub.add_parser("dump")
    d.add_argument("--onnx", required=True)
    d.add_argument("--cfg", required=True)
    d.add_argument("--input", required=True)
    d.add_argument("--out", required=True)
    b = sub.add_parser("bench")
    b.add_argument("--onnx", required=True)
    b.add_argument("--image", required=True)
    b.add_argument("--batch", type=int, default=1)
    b.add_argument("--runs", type=int, default=20)
    b.add_argument("--warmup", type=int, default=5)
    b.add_argument("--threads", type=int, default=2)
    b.add_argument("--json")
    a = p.parse_args(argv)
    if a.cmd == "convert":
        w, h = a.size if a.size else (None, None)
        try:
            model, _ = build_onnx(a.cfg, a.weights, w, h, a.batch, a.all_outputs)
        except (dc.CfgError, ValueError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        tmp = a.out + ".tmp"
        with open(tmp, "wb") as f:
            f.write(model.SerializeToString())
        os.replace(tmp, a.out)
        print(f"wrote {a.out}")
    elif a.cmd == "dump":
        dump(a.onnx, a.cfg, a.input, a.out)
        print(f"wrote {a.out}")
    else:
        r = measure_ort(a.onnx, a.image, a.batch, a.runs, a.warmup, a.threads)
        L = r["latency_ms"]
        print(f"onnxruntime {r['onnxruntime_version']} {r['onnx']} batch {r['batch']} threads {r['threads']}: "
              f"median {L['median']:.1f} ms (p10 {L['p10']:.1f}, p90 {L['p90']:.1f}), "
              f"{r['throughput_ips']:.2f} images/s, peak RSS {r['peak_rss_mb']:.0f} MB")
        if a.json:
            with open(a.json + ".tmp", "w") as f:
                json.dump(r, f, indent=1)
            os.replace(a.json + ".tmp", a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
