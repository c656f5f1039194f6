#!/usr/bin/env python3
"""Self-tests of the Python tools against the Darknet dumps in shared/reference.

    python3 tools/test_tools.py        (or: python3 -m unittest discover -s tools -p 'test_tools.py')

A missing shared/reference fails; missing official weights (make weights) is a loud SKIP.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import compare_refs  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "cuda"))
import device_report  # noqa: E402
import devpack  # noqa: E402
import darknet_cfg as dc  # noqa: E402
import opencv_reference  # noqa: E402


def shared_dir() -> str:
    """$CANDLE_DARKNET_SHARED when set, else ../shared beside the checkout (as the Rust tests)."""
    c = os.environ.get("CANDLE_DARKNET_SHARED") or os.path.join(ROOT, "..", "shared")
    if os.path.isdir(os.path.join(c, "reference")):
        return os.path.abspath(c)
    raise AssertionError(f"{c}/reference not found (set CANDLE_DARKNET_SHARED to the shared folder)")


REF = os.path.join(shared_dir(), "reference")
MINI = os.path.join(REF, "mini-yolov4")
TINY = os.path.join(REF, "yolov4-tiny-bus416")
TINY_W = os.path.join(ROOT, "weights", "yolov4-tiny.weights")


def read_bytes(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class CfgTests(unittest.TestCase):
    def check_manifest(self, cfg, manifest):
        nw = dc.build_network(cfg)
        with open(manifest) as f:
            m = json.load(f)
        ref = m["layers"]
        self.assertEqual(len(nw.layers), len(ref))
        for a, b in zip(nw.layers, ref):
            b = {k: v for k, v in b.items() if k != "file"}
            a = {k: v for k, v in a.items() if k in b}
            if m["fused_conv_bn"]:
                a.pop("batch_normalize", None)
                b.pop("batch_normalize", None)
            self.assertEqual(a, b, f"layer {b['index']}")

    def test_shapes_match_darknet_mini(self):
        self.check_manifest(os.path.join(MINI, "mini-yolov4.cfg"), os.path.join(MINI, "infer_unfused", "manifest.json"))

    def test_shapes_match_darknet_tiny(self):
        self.check_manifest(os.path.join(TINY, "yolov4-tiny.cfg"), os.path.join(TINY, "manifest.json"))

    def test_weights_roundtrip_is_byte_identical(self):
        nw = dc.build_network(os.path.join(MINI, "mini-yolov4.cfg"))
        src = os.path.join(MINI, "mini-yolov4.weights")
        header, blocks = dc.read_weights(nw, src)
        with tempfile.TemporaryDirectory() as t:
            out = os.path.join(t, "w.weights")
            dc.write_weights(nw, out, blocks, header)
            self.assertEqual(read_bytes(out), read_bytes(src))

    def test_truncated_weights_error_names_offset(self):
        nw = dc.build_network(os.path.join(MINI, "mini-yolov4.cfg"))
        with tempfile.TemporaryDirectory() as t:
            p = os.path.join(t, "short.weights")
            with open(p, "wb") as f:
                f.write(read_bytes(os.path.join(MINI, "mini-yolov4.weights"))[:1000])
            with self.assertRaisesRegex(dc.CfgError, r"truncated at byte \d+"):
                dc.read_weights(nw, p)

    def test_bad_cfg_error_names_line(self):
        with tempfile.TemporaryDirectory() as t:
            p = os.path.join(t, "bad.cfg")
            with open(p, "w") as f:
                f.write("[net]\nwidth=32\nheight=32\nchannels=3\n\n[bogus]\nx=1\n")
            with self.assertRaisesRegex(dc.CfgError, r"bad.cfg:6: layer 0 \[bogus\]: unknown layer type"):
                dc.build_network(p)


class OpenCVAgainstDarknet(unittest.TestCase):
    """OpenCV (default settings of opencv_reference.py) vs the Darknet dumps, tolerance 1e-4 + 1e-4*|x|."""

    def run_case(self, cfg, weights, ref_dir):
        with tempfile.TemporaryDirectory() as t:
            out = os.path.join(t, "ocv")
            rc = opencv_reference.main(["--cfg", cfg, "--weights", weights, "--input",
                                        os.path.join(ref_dir, "input.bin"), "--out", out])
            self.assertEqual(rc, 0)
            s = compare_refs.compare(out, ref_dir, 1e-4, 1e-4, out=io.StringIO())
        self.assertEqual(s["layers_out_of_tolerance"], [])
        self.assertEqual(s["skipped"], 0)
        self.assertLess(s["worst_abs"]["max_abs"], 1e-4)
        return s

    def test_mini_yolov4_fused(self):
        s = self.run_case(os.path.join(MINI, "mini-yolov4.cfg"), os.path.join(MINI, "mini-yolov4.weights"),
                          os.path.join(MINI, "infer_fused"))
        self.assertEqual(s["compared"], 40)

    def test_yolov4_tiny_official(self):
        if not os.path.isfile(TINY_W):
            self.skipTest(f"!!! SKIP: {TINY_W} missing (run `make weights`) - yolov4-tiny NOT checked !!!")
        s = self.run_case(os.path.join(TINY, "yolov4-tiny.cfg"), TINY_W, TINY)
        self.assertEqual(s["compared"], 38)

    def test_opencv_bn_eps_is_a_real_difference(self):
        # guards the reason for the eps correction: without it OpenCV is far outside tolerance
        with tempfile.TemporaryDirectory() as t:
            out = os.path.join(t, "ocv")
            opencv_reference.main(["--cfg", os.path.join(MINI, "mini-yolov4.cfg"), "--weights",
                                   os.path.join(MINI, "mini-yolov4.weights"), "--input",
                                   os.path.join(MINI, "infer_fused", "input.bin"), "--out", out, "--opencv-bn-eps"])
            s = compare_refs.compare(out, os.path.join(MINI, "infer_fused"), out=io.StringIO())
        self.assertGreater(s["worst_abs"]["max_abs"], 1e-3)


class OnnxAgainstDarknet(unittest.TestCase):
    """`candle-darknet export --all-outputs` (the Rust exporter) + ONNX Runtime vs the Darknet dumps, every layer
    (yolo layers included, exact layout)."""

    def test_mini_yolov4_onnx(self):
        import bench_peers as bp

        m = bp.missing("onnxruntime") or (None if os.path.isfile(bp.BIN) else f"{bp.BIN} (cargo build --release)")
        if m:
            if os.environ.get("CI"):
                self.fail(f"{m} missing (CI builds and installs it: make test)")
            self.skipTest(f"!!! SKIP: {m} missing - ONNX export NOT checked !!!")
        import onnx_run

        cfg = os.path.join(MINI, "mini-yolov4.cfg")
        ref = os.path.join(MINI, "infer_fused")
        with open(os.path.join(ref, "manifest.json")) as f:
            man = json.load(f)
        with tempfile.TemporaryDirectory() as t:
            path = os.path.join(t, "m.onnx")
            r = subprocess.run([bp.BIN, "export", cfg, os.path.join(MINI, "mini-yolov4.weights"), "-o", path,
                                "--all-outputs"], capture_output=True, text=True)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            out = os.path.join(t, "ort")
            self.assertEqual(onnx_run.main(["--engine", "onnxruntime", "--onnx", path, "--input",
                                            os.path.join(ref, "input.bin"), "--out", out]), 0)
            compared, aliases, worst = 0, 0, 0.0
            for L in man["layers"]:
                got_path = os.path.join(out, L["file"]) if L.get("file") else None
                if not got_path or not os.path.isfile(got_path):
                    # left out of --all-outputs only when it is an earlier layer's value
                    self.assertTrue(L["type"] == "route" and len(L["layers"]) == 1 and L["groups"] == 1,
                                    f"no ONNX output for layer {L['index']}")
                    aliases += 1
                    continue
                got = np.fromfile(got_path, np.float32)
                exp = np.fromfile(os.path.join(ref, L["file"]), np.float32)
                self.assertEqual(got.shape, exp.shape, f"layer {L['index']}")
                d = np.abs(got - exp)
                self.assertTrue(np.all(d <= 1e-4 + 1e-4 * np.abs(exp)), f"layer {L['index']}: max abs {d.max():.3e}")
                compared, worst = compared + 1, max(worst, float(d.max()))
        self.assertEqual(compared + aliases, len(man["layers"]))
        self.assertLessEqual(aliases, 4)
        self.assertLess(worst, 1e-4)


class BenchPeersAgainstDarknet(unittest.TestCase):
    """tools/bench_peers.py's check phase (the outputs `make bench` compares with ours before timing) vs the Darknet
    dumps: each peer as it is timed (OpenCV with fusion and Winograd on, OpenVINO f32, ncnn via pnnx fp16=0) on
    mini-yolov4 (every layer type; 3 heads, so ncnn's output order is checked too)."""

    def check_peer(self, engine, atol, range_ulps=0):
        import bench_peers as bp

        m = bp.missing(engine)
        if m:
            if os.environ.get("CI"):
                self.fail(f"{m} (CI installs it: make test -> bench-pydeps)")
            self.skipTest(f"!!! SKIP: {m} - {engine} NOT checked !!!")
        cfg = os.path.join(MINI, "mini-yolov4.cfg")
        ref = os.path.join(MINI, "infer_fused")
        with open(os.path.join(ref, "manifest.json")) as f:
            man = json.load(f)
        size = man["net_w"]
        with tempfile.TemporaryDirectory() as t:
            model = bp.prepare(engine, cfg, os.path.join(MINI, "mini-yolov4.weights"), 1, t, size)
            info = bp.run(engine, model, cfg, os.path.join(ref, "input.bin"), 1, 2, "check", out_dir=t, size=size)
            yolo, feeding = bp.head_layers(cfg, size)
            want = feeding if engine == "opencv" else yolo
            self.assertEqual(sorted(info["files"]), want)
            for i in want:
                L = man["layers"][i]
                got = np.fromfile(os.path.join(t, info["files"][i]["file"]), np.float32)
                exp = np.fromfile(os.path.join(ref, L["file"]), np.float32)
                self.assertEqual(got.shape, exp.shape, f"{engine} layer {i}")
                d = np.abs(got - exp)
                # The peer tolerance (docs/export.md "Peer tolerance"): abs + rel, plus range_ulps units of f32
                # roundoff of the layer's largest value, as tests/export.rs for the same runtimes.
                bound = atol + atol * np.abs(exp) + range_ulps * 2.0 ** -24 * np.abs(exp).max()
                self.assertTrue(np.all(d <= bound), f"{engine} layer {i}: max abs {d.max():.3e}")
        return info

    def test_opencv(self):
        # OpenCV's Winograd F(6,3) (on, as timed) costs ~2e-4 (docs/opencv-reference.md): the bench's 1e-3.
        self.check_peer("opencv", 1e-3)

    def test_onnxruntime(self):
        self.check_peer("onnxruntime", 1e-4, range_ulps=16)

    def test_openvino(self):
        info = self.check_peer("openvino", 1e-4, range_ulps=16)
        self.assertEqual(info["openvino_config"]["NUM_STREAMS"], "1")
        self.assertEqual(info["openvino_config"]["INFERENCE_NUM_THREADS"], "2")

    def test_ncnn(self):
        info = self.check_peer("ncnn", 1e-4, range_ulps=128)
        self.assertFalse(any(v for k, v in info["ncnn_options"].items() if "fp16" in k or "bf16" in k))
        self.assertFalse(info["ncnn_options"]["use_vulkan_compute"])


class BenchLayers(unittest.TestCase):
    """tools/bench_layers.py on mini-yolov4: every convolution of the cfg gets an OpenVINO time (the exported node
    names map back to Darknet layers), and our side reports a kernel for every layer."""

    def test_every_convolution_is_matched(self):
        import bench_layers
        import bench_peers as bp

        m = bp.missing("openvino")
        if m:
            if os.environ.get("CI"):
                self.fail(f"{m} (CI installs it: make test -> bench-pydeps)")
            self.skipTest(f"!!! SKIP: {m} - bench_layers NOT checked !!!")
        self.assertEqual(bench_layers.darknet_layer("input_abcd_acdb_L0_Conv_3_node/WithoutBiases"), 0)
        self.assertEqual(bench_layers.darknet_layer("L12_Mish_40"), 12)
        self.assertIsNone(bench_layers.darknet_layer("input"))
        cfg = os.path.join(MINI, "mini-yolov4.cfg")
        weights = os.path.join(MINI, "mini-yolov4.weights")
        with open(os.path.join(MINI, "infer_fused", "manifest.json")) as f:
            size = json.load(f)["net_w"]
        with tempfile.TemporaryDirectory() as t:
            onnx = bp.onnx_path(cfg, weights, 1, t, size)
            ov = bench_layers.openvino(onnx, 1, 2, 2)
            rows = bench_layers.ours(bp.BIN, cfg, weights, 1, size, 2, 2)
        convs = [r["index"] for r in rows if r["type"] == "convolutional"]
        self.assertTrue(convs)
        self.assertEqual([i for i in convs if ov.get(i, (0.0,))[0] <= 0], [])
        self.assertTrue(all(r["kernel"] for r in rows))


class RandomWeights(unittest.TestCase):
    def test_random_weights_size_matches_official_layout(self):
        import random_weights as rw

        nw = dc.build_network(os.path.join(TINY, "yolov4-tiny.cfg"))
        with tempfile.TemporaryDirectory() as t:
            p = os.path.join(t, "r.weights")
            dc.write_weights(nw, p, rw.random_blocks(nw, 3))
            self.assertEqual(os.path.getsize(p), 24251276)  # = official yolov4-tiny.weights
            _, blocks = dc.read_weights(nw, p)
        for b, d in zip(nw.weight_blocks, blocks):
            if b.batch_normalize:
                self.assertTrue(np.all(d["rolling_variance"] > 0))


class DevicePack(unittest.TestCase):
    """tools/cuda/devpack.py: what travels to the GPU machine unpacks byte for byte to the Darknet reference."""

    def test_derive_compress_unpack_roundtrip(self):
        src = os.path.join(MINI, "infer_fused")
        with tempfile.TemporaryDirectory() as t:
            pack, out = os.path.join(t, "pack"), os.path.join(t, "out")
            os.makedirs(pack)
            devpack.derive(src, os.path.join(pack, "ref"))
            with open(os.path.join(pack, "ref", devpack.DERIVED_INDEX)) as f:
                left_out = {o["file"] for o in json.load(f)["omitted"]}
            types = {l["file"]: l["type"] for l in devpack.manifest_layers(src)}
            # mini-yolov4 has routes, maxpools (2/2, 2/1, SPP) and an upsample: all rebuildable, nothing else.
            self.assertEqual({types[f] for f in left_out}, {"route", "maxpool", "upsample"})
            self.assertFalse(any(os.path.exists(os.path.join(pack, "ref", f)) for f in left_out))
            devpack.compress(pack)
            self.assertEqual(devpack.unpack(pack, out), 0)
            for name in os.listdir(src):
                self.assertEqual(read_bytes(os.path.join(src, name)), read_bytes(os.path.join(out, "ref", name)), name)

    def test_unpack_detects_a_changed_input(self):
        src = os.path.join(MINI, "infer_fused")
        layers = devpack.manifest_layers(src)
        by_index = {l["index"]: l for l in layers}
        route = next(l for l in layers if l["type"] == "route")
        kept = by_index[route["layers"][0]]["file"]
        with tempfile.TemporaryDirectory() as t:
            pack, out = os.path.join(t, "pack"), os.path.join(t, "out")
            devpack.derive(src, os.path.join(pack, "ref"))
            # One input of a route changes (its own index entry agrees): the rebuilt route must not match.
            path = os.path.join(pack, "ref", kept)
            data = bytearray(read_bytes(path))
            data[len(data) // 4] ^= 1  # one byte in each half: a grouped route reads one half
            data[3 * len(data) // 4] ^= 1
            with open(path, "wb") as f:
                f.write(data)
            devpack.compress(pack)
            self.assertEqual(devpack.unpack(pack, out), 1)


class DeviceReport(unittest.TestCase):
    """tools/cuda/device_report.py reads both programs' per-iteration training lines."""

    def test_training_lines(self):
        # Darknet's train_detector printf: "\n %d: %f, %f avg loss, %f rate, %lf seconds, %d images, %f hours left".
        darknet = "".join(f"\n {i}: {5.0 / i:f}, {5.0:f} avg loss, {0.001:f} rate, {0.5:f} seconds, {64 * i} images, "
                          f"{0.1:f} hours left\n" for i in range(1, 11))
        # Ours (src/train/progress.rs): the same fields, then images/s and the ETA.
        ours = "".join(f" {i}: {1.0:.6f}, {1.0:.6f} avg loss, {0.001:.6f} rate, {0.250:.3f} seconds, {64 * i} images, "
                       f"256.00 images/s, ETA 0:01\n" for i in range(1, 11))
        with tempfile.TemporaryDirectory() as t:
            for name, text in (("d.log", darknet), ("o.log", ours)):
                with open(os.path.join(t, name), "w") as f:
                    f.write(text)
            d = device_report.train_speed(os.path.join(t, "d.log"), 64)
            o = device_report.train_speed(os.path.join(t, "o.log"), 64)
        self.assertEqual((d["iterations"], d["timed_iterations"], d["images_per_s"]), (10, 5, 128.0))
        self.assertEqual((o["iterations"], o["timed_iterations"], o["images_per_s"]), (10, 5, 256.0))


if __name__ == "__main__":
    unittest.main(verbosity=2)
