//! Core parity tests (issue #2/#3): every layer against Darknet's dumps, bit-exact weight round trips, full-size
//! cfgs against OpenCV DNN, every detector cfg in Darknet's cfg/ either runs or is refused with its line, bad
//! inputs give clear errors, and end-to-end detections equal Darknet's.

mod common;
use common::{official, python, reference, root, shared_dir as shared};

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_core::Device;
use candle_darknet::cfg::NetworkConfig;
use candle_darknet::compare::{compare, read_f32_file, Tolerance};
use candle_darknet::image::{load_image, network_input};
use candle_darknet::inference::{DetectOptions, Detector};
use candle_darknet::weights::{darknet, safetensors, NetWeights};

fn mini() -> (NetworkConfig, NetWeights) {
    let dir = reference("mini-yolov4");
    let cfg = NetworkConfig::from_file(dir.join("mini-yolov4.cfg")).unwrap();
    let w = darknet::read(&cfg, &dir.join("mini-yolov4.weights")).unwrap();
    (cfg, w)
}

fn tiny() -> (NetworkConfig, NetWeights) {
    let cfg = NetworkConfig::from_file(official("yolov4-tiny.cfg")).unwrap();
    let w = darknet::read(&cfg, &official("yolov4-tiny.weights")).unwrap();
    (cfg, w)
}

fn assert_passes(cfg: &NetworkConfig, w: &NetWeights, dir: &Path, our_input: Option<&[f32]>) {
    let report = compare(cfg, w, dir, &Device::Cpu, Tolerance::default(), our_input).unwrap();
    println!("{}", report.table());
    assert!(
        report.passed,
        "first divergence at layer {:?}",
        report.first_failure
    );
    assert_eq!(
        report.layers.iter().filter(|r| r.stats.is_some()).count(),
        cfg.layers.len(),
        "every layer compared"
    );
}

#[test]
fn mini_yolov4_fused_matches_darknet_every_layer() {
    let (cfg, w) = mini();
    assert_passes(&cfg, &w, &reference("mini-yolov4/infer_fused"), None);
}

#[test]
fn mini_yolov4_unfused_matches_darknet_every_layer() {
    let (cfg, w) = mini();
    assert_passes(&cfg, &w, &reference("mini-yolov4/infer_unfused"), None);
}

#[test]
fn yolov4_tiny_official_matches_darknet_every_layer_and_input() {
    let (cfg, w) = tiny();
    let im = load_image(&official("bus.jpg"), 3).unwrap();
    let input = network_input(&im, 416, 416, false);
    assert_passes(
        &cfg,
        &w,
        &reference("yolov4-tiny-bus416"),
        Some(&input.data),
    );
}

/// `.weights` → safetensors → `.weights` reproduces the original file byte for byte.
fn round_trip(cfg: &NetworkConfig, path: &Path) {
    let original = std::fs::read(path).unwrap();
    let w = darknet::from_bytes(cfg, &original, path).unwrap();
    let st = safetensors::to_bytes(cfg, &w, "cfg text").unwrap();
    let back = safetensors::from_bytes(cfg, &st, Path::new("mem.safetensors")).unwrap();
    assert_eq!(back, w);
    let again = darknet::to_bytes(cfg, &back).unwrap();
    assert!(again == original, "{}: round trip differs", path.display());
    assert_eq!(safetensors::embedded_cfg(&st).as_deref(), Some("cfg text"));
}

#[test]
fn weights_round_trip_is_byte_identical() {
    let (cfg, _) = tiny();
    round_trip(&cfg, &official("yolov4-tiny.weights"));
    let dir = reference("mini-yolov4");
    let cfg = NetworkConfig::from_file(dir.join("mini-yolov4.cfg")).unwrap();
    round_trip(&cfg, &dir.join("mini-yolov4.weights"));
}

/// Detections through our whole pipeline (decode, resize, network, decode, NMS) equal Darknet's `detector test`.
fn assert_detections(det: &Detector, image: &Path, reference_json: &Path) {
    let r: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(reference_json).unwrap()).unwrap();
    let im = load_image(image, 3).unwrap();
    assert_eq!(
        (im.w as u64, im.h as u64),
        (
            r["image_w"].as_u64().unwrap(),
            r["image_h"].as_u64().unwrap()
        )
    );
    let dets = det
        .detect(&[im], &DetectOptions::default())
        .unwrap()
        .remove(0);
    let want = r["after_nms"].as_array().unwrap();
    // get_network_boxes keeps every box whose objectness passes; NMS zeroes probabilities but removes nothing.
    assert_eq!(
        dets.len() as u64,
        r["num_boxes_from_get_network_boxes"].as_u64().unwrap(),
        "boxes from get_network_boxes"
    );
    let kept: Vec<_> = dets
        .iter()
        .filter(|d| d.prob.iter().any(|&p| p > 0.25))
        .collect();
    assert_eq!(kept.len(), want.len(), "boxes after NMS");
    // Darknet's final order is its last per-class qsort; two boxes whose sort keys differ by less than our
    // numerical tolerance (mini-yolov4 has a pair 3e-7 apart) may legitimately trade places, nothing else may.
    let probs_of = |w: &serde_json::Value, classes: usize| -> Vec<f32> {
        let probs = w["probs"].as_object().unwrap();
        (0..classes)
            .map(|c| {
                probs
                    .get(&c.to_string())
                    .and_then(|v| v.as_f64())
                    .unwrap_or(0.0) as f32
            })
            .collect()
    };
    let mut worst = (0f32, 0f32);
    let mut swapped = 0;
    for (i, d) in kept.iter().enumerate() {
        let classes = d.prob.len();
        let errors = |w: &serde_json::Value| -> (f32, f32) {
            let b = w["bbox_rel_cxcywh"].as_array().unwrap();
            let box_err = [d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h]
                .iter()
                .enumerate()
                .map(|(k, v)| {
                    let r = b[k].as_f64().unwrap() as f32;
                    (v - r).abs() / r.abs().max(1e-3)
                })
                .fold(0f32, f32::max);
            let want_p = probs_of(w, classes);
            let prob_err = d
                .prob
                .iter()
                .zip(&want_p)
                .filter(|(p, q)| **p > 0.25 || **q > 0.0)
                .map(|(p, q)| (p - q).abs())
                .fold(0f32, f32::max);
            (prob_err, box_err)
        };
        let ok = |e: (f32, f32)| e.0 <= 1e-4 && e.1 <= 1e-4;
        let j = if ok(errors(&want[i])) {
            i
        } else {
            let near = i.saturating_sub(3)..(i + 4).min(want.len());
            let j = near.clone().find(|&j| ok(errors(&want[j])));
            let j = j.unwrap_or_else(|| {
                panic!(
                    "box {i}: no Darknet box within tolerance at positions {near:?}: ours {:?}",
                    d
                )
            });
            // The last qsort of do_nms_sort/diounms_sort is on the last class's probability.
            let key = |w: &serde_json::Value| probs_of(w, classes)[classes - 1];
            let key_gap = (key(&want[i]) - key(&want[j])).abs();
            assert!(
                key_gap < 1e-5,
                "box {i} is Darknet's box {j}, but their sort keys differ by {key_gap}"
            );
            swapped += 1;
            j
        };
        let (pe, be) = errors(&want[j]);
        worst = (worst.0.max(pe), worst.1.max(be));
    }
    assert!(swapped <= 4, "{swapped} near-tied boxes changed places");
    println!(
        "{}: {} boxes ({swapped} near-tied neighbours swapped), worst prob error {:.2e}, worst relative box error {:.2e}",
        image.display(),
        kept.len(),
        worst.0,
        worst.1
    );
}

#[test]
fn yolov4_tiny_detections_on_bus_equal_darknet() {
    let (cfg, w) = tiny();
    let det = Detector::from_parts(cfg, &w, None, &Device::Cpu).unwrap();
    assert_detections(
        &det,
        &official("bus.jpg"),
        &reference("yolov4-tiny-bus416/detections.json"),
    );
}

#[test]
fn mini_yolov4_730_detections_equal_darknet_in_order() {
    let (cfg, w) = mini();
    let det = Detector::from_parts(cfg, &w, None, &Device::Cpu).unwrap();
    let dog = shared().join("darknet/data/dog.jpg");
    // Our preprocessing of dog.jpg is the reference input, bit for bit.
    let im = load_image(&dog, 3).unwrap();
    assert_eq!(
        network_input(&im, 128, 128, false).data,
        read_f32_file(&reference("mini-yolov4/infer_fused/input.bin")).unwrap()
    );
    assert_detections(
        &det,
        &dog,
        &reference("mini-yolov4/infer_fused/detections.json"),
    );
}

/// Full-size cfgs with our random weights agree layer by layer with OpenCV DNN (an independent implementation), at
/// the peer tolerance of OpenCV's kernels ([`common::OPENCV_DNN`]).
#[test]
fn full_size_cfgs_agree_with_opencv_dnn() {
    common::require_opencv();
    let tmp = tempfile::tempdir().unwrap();
    for name in ["yolov3-tiny", "yolov3", "yolov4"] {
        let cfg_path = shared().join("darknet/cfg").join(format!("{name}.cfg"));
        let cfg = NetworkConfig::from_file(&cfg_path).unwrap();
        let w = NetWeights::random(&cfg, 7);
        let wpath = tmp.path().join(format!("{name}.weights"));
        darknet::write(&cfg, &w, &wpath).unwrap();
        let out = tmp.path().join(format!("ref_{name}"));
        // --no-fusion: with fusion OpenCV writes some conv outputs straight into the following concat's buffer
        // and the per-layer blob reads back as zeros.
        let st = Command::new(python())
            .arg(root().join("tools/opencv_reference.py"))
            .args([
                "--cfg",
                cfg_path.to_str().unwrap(),
                "--weights",
                wpath.to_str().unwrap(),
            ])
            .args([
                "--out",
                out.to_str().unwrap(),
                "--size",
                "160x160",
                "--random-input",
                "3",
                "--no-fusion",
            ])
            .status()
            .unwrap();
        assert!(st.success(), "opencv_reference.py failed for {name}");
        let report = compare(&cfg, &w, &out, &Device::Cpu, common::OPENCV_DNN, None).unwrap();
        let compared = report.layers.iter().filter(|r| r.stats.is_some()).count();
        println!(
            "{name}: {compared} layers compared with OpenCV, worst {:?}",
            report.worst()
        );
        assert!(
            report.passed,
            "{name}: first divergence from OpenCV at layer {:?}\n{}",
            report.first_failure,
            report.table()
        );
        assert!(
            compared + 3 >= cfg.layers.len(),
            "only the yolo heads may be missing from OpenCV's dump"
        );
    }
}

/// A cfg with `tree=` (yolo9000) is run from a copy laid out as Darknet's checkout (`cfg/` beside `data/`), with
/// the tree of tests/data/yolo9000: ../shared/darknet has no data/9k.tree.
fn with_tree_files(f: &Path, text: &str, tmp: &Path) -> PathBuf {
    if !text.lines().any(|l| l.trim_start().starts_with("tree")) {
        return f.to_path_buf();
    }
    std::fs::create_dir_all(tmp.join("cfg")).unwrap();
    std::fs::create_dir_all(tmp.join("data")).unwrap();
    std::fs::copy(
        root().join("tests/data/yolo9000/9k.tree"),
        tmp.join("data/9k.tree"),
    )
    .unwrap();
    let copy = tmp.join("cfg").join(f.file_name().unwrap());
    std::fs::copy(f, &copy).unwrap();
    copy
}

/// Every detector cfg of Darknet's cfg/ either runs a forward pass with random weights and decodes detections
/// (`Detector`: get_network_boxes + NMS) or is refused with an error naming the cfg file and line.
#[test]
fn every_detector_cfg_runs_or_is_refused_with_its_line() {
    let dir = shared().join("darknet/cfg");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let tmp = tempfile::tempdir().unwrap();
    let (mut ran, mut refused) = (Vec::new(), Vec::new());
    for f in files
        .into_iter()
        .filter(|f| f.extension().is_some_and(|e| e == "cfg"))
    {
        let text = std::fs::read_to_string(&f).unwrap();
        if !text
            .lines()
            .any(|l| matches!(l.trim(), "[yolo]" | "[region]" | "[Gaussian_yolo]"))
        {
            continue;
        }
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        let f = with_tree_files(&f, &text, tmp.path());
        let result = (|| -> anyhow::Result<usize> {
            let cfg = NetworkConfig::from_file(&f)?;
            // Small inputs keep the run short; the p6/p7 cfgs need a multiple of 128.
            let size = if name.contains("p6") || name.contains("p7") {
                256
            } else {
                128
            };
            let cfg = cfg.with_size(size, size)?;
            let w = NetWeights::random(&cfg, 1);
            let det = Detector::from_parts(cfg, &w, None, &Device::Cpu)?;
            let n = &det.cfg().net;
            let im = candle_darknet::image::Image {
                w: 200,
                h: 150,
                c: n.channels,
                data: (0..n.channels * 200 * 150)
                    .map(|i| (i % 251) as f32 / 251.0)
                    .collect(),
            };
            let opts = DetectOptions::default();
            let outs = det.forward(&[det.preprocess(&im, &opts)])?;
            anyhow::ensure!(!outs[0].is_empty(), "no head output");
            Ok(det.boxes(&outs[0], im.w, im.h, &opts)?.len())
        })();
        match result {
            Ok(_) => ran.push(name),
            Err(e) => {
                let msg = format!("{e:#}");
                assert!(
                    msg.contains(&format!("{name}:")),
                    "{name}: refusal must name the file and line: {msg}"
                );
                refused.push(format!("{name}: {msg}"));
            }
        }
    }
    println!(
        "{} detector cfgs run and decode, {} refused:",
        ran.len(),
        refused.len()
    );
    for r in &refused {
        println!("  {r}");
    }
    // What is refused, and why, is a documented list (docs/cfg-support.md): cspx-p7's mask beyond num (undefined behaviour in Darknet), and cspx-p7-mish_hp's odd anchor count (a missing
    // comma shifts every later anchor; docs/limits.md).
    let allowed = ["mask value", "not (width, height) pairs"];
    for r in &refused {
        assert!(
            allowed.iter().any(|a| r.contains(a)),
            "unexpected refusal: {r}"
        );
    }
    assert_eq!(ran.len() + refused.len(), 54, "the 54 detector cfgs");
    assert!(ran.len() >= 52, "only {} detector cfgs ran", ran.len());
    assert!(
        ran.iter()
            .any(|r| r.contains("yolov3-tiny_occlusion_track")),
        "the [crnn] cfg did not run"
    );
    assert!(
        ran.iter().any(|r| r.contains("yolov4-tiny_contrastive")),
        "the [contrastive] cfg did not run"
    );
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_candle-darknet"))
        .args(args)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stderr.contains("panicked"), "the CLI panicked: {stderr}");
    (out.status.success(), stderr)
}

#[test]
fn bad_inputs_give_clear_errors_not_panics() {
    let tmp = tempfile::tempdir().unwrap();
    let t = |name: &str| tmp.path().join(name).to_string_lossy().into_owned();
    let dir = reference("mini-yolov4");
    let cfg = dir.join("mini-yolov4.cfg").to_string_lossy().into_owned();
    let weights = std::fs::read(dir.join("mini-yolov4.weights")).unwrap();
    let out = t("out.safetensors");

    // Truncated weights: names the layer and the byte offset.
    std::fs::write(t("trunc.weights"), &weights[..weights.len() - 1000]).unwrap();
    let (ok, err) = cli(&["convert", &cfg, &t("trunc.weights"), "-o", &out]);
    assert!(
        !ok && err.contains("truncated") && err.contains("layer 38") && err.contains("byte offset"),
        "{err}"
    );
    assert!(!Path::new(&out).exists(), "no output file after a failure");

    // Extra bytes.
    let mut extra = weights.clone();
    extra.extend_from_slice(&[0u8; 12]);
    std::fs::write(t("extra.weights"), &extra).unwrap();
    let (ok, err) = cli(&["convert", &cfg, &t("extra.weights"), "-o", &out]);
    assert!(!ok && err.contains("12 trailing bytes"), "{err}");

    // Weights of another network.
    let tiny_cfg = reference("yolov4-tiny-bus416")
        .join("yolov4-tiny.cfg")
        .to_string_lossy()
        .into_owned();
    let (ok, err) = cli(&[
        "convert",
        &tiny_cfg,
        &dir.join("mini-yolov4.weights").to_string_lossy(),
        "-o",
        &out,
    ]);
    assert!(!ok && err.contains("truncated"), "{err}");

    // Bad header.
    std::fs::write(t("hdr.weights"), [0xffu8; 10]).unwrap();
    let (ok, err) = cli(&["convert", &cfg, &t("hdr.weights"), "-o", &out]);
    assert!(!ok && err.contains("header"), "{err}");

    // Malformed cfg line and unknown layer type, with file:line.
    std::fs::write(
        t("bad.cfg"),
        "[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters\n",
    )
    .unwrap();
    let (ok, err) = cli(&["info", &t("bad.cfg")]);
    assert!(!ok && err.contains("bad.cfg:6"), "{err}");
    std::fs::write(
        t("unk.cfg"),
        "[net]\nwidth=32\nheight=32\nchannels=3\n\n[bogus_layer]\nx=1\n",
    )
    .unwrap();
    let (ok, err) = cli(&["info", &t("unk.cfg")]);
    assert!(
        !ok && err.contains("unk.cfg:6") && err.contains("bogus_layer"),
        "{err}"
    );
    // A value that is not a number.
    std::fs::write(
        t("val.cfg"),
        "[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=abc\n",
    )
    .unwrap();
    let (ok, err) = cli(&["info", &t("val.cfg")]);
    assert!(!ok && err.contains("val.cfg:6"), "{err}");

    // Missing files.
    let (ok, err) = cli(&["info", &t("missing.cfg")]);
    assert!(!ok && err.contains("missing.cfg"), "{err}");
    let (ok, err) = cli(&["convert", &cfg, &t("missing.weights"), "-o", &out]);
    assert!(!ok && err.contains("missing.weights"), "{err}");
}

/// The inference forward that `detect` runs ([`Network::forward_heads`]) reads `[route]` concatenations in
/// place (candle_darknet::cpu::planes) and runs `[shortcut]`/`[yolo]` layers inside the previous convolution's
/// epilogue, where `forward_all` (used by `compare`) makes every output: its heads must still match Darknet's
/// dumps, and equal `forward_all`'s bit for bit. Both networks have such routes and folded layers (asserted,
/// so the test covers those paths; mini-yolov4 has a folded shortcut).
#[test]
fn forward_heads_with_in_place_routes_and_folded_layers_match_darknet() {
    use candle_darknet::compare::{diff_stats, Manifest};
    use candle_darknet::network::{LoadOptions, Network};
    for (name, (cfg, w), dir) in [
        ("yolov4-tiny", tiny(), reference("yolov4-tiny-bus416")),
        ("mini-yolov4", mini(), reference("mini-yolov4/infer_fused")),
    ] {
        let net = Network::from_weights(&cfg, &w, &Device::Cpu, &LoadOptions::default()).unwrap();
        let in_place: Vec<usize> = (0..cfg.layers.len())
            .filter(|&i| net.reads_in_place(i))
            .collect();
        assert!(!in_place.is_empty(), "{name}: no route read in place");
        let folded: Vec<usize> = (0..cfg.layers.len())
            .filter(|&i| net.folded_into_previous(i))
            .collect();
        assert!(
            folded
                .iter()
                .any(|&i| cfg.layers[i].config.type_name() == "yolo"),
            "{name}: no yolo folded ({folded:?})"
        );
        if name == "mini-yolov4" {
            assert!(
                folded
                    .iter()
                    .any(|&i| cfg.layers[i].config.type_name() == "shortcut"),
                "{name}: no shortcut folded ({folded:?})"
            );
        }
        let s = cfg.input_shape();
        let input = read_f32_file(&dir.join("input.bin")).unwrap();
        let x = candle_core::Tensor::from_vec(input, (1, s.c, s.h, s.w), &Device::Cpu).unwrap();
        let manifest = Manifest::read(&dir).unwrap();
        let all = net.forward_all(&x).unwrap();
        for (i, head) in net.forward_heads(&x).unwrap() {
            let unfolded = all[i].flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(
                head.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                unfolded,
                "{name} head {i}: in place/folded differs from forward_all"
            );
            let file = manifest.layers[i].file.as_ref().expect("head dumped");
            let want = read_f32_file(&dir.join(file)).unwrap();
            let got = head.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            assert_eq!(got.len(), want.len(), "{name} layer {i}");
            let st = diff_stats(&got, &want, Tolerance::default());
            assert_eq!(
                st.failing, 0,
                "{name} head {i} (routes in place: {in_place:?}): {st:?}"
            );
        }
    }
}
