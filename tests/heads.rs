//! `[region]` (plain and with yolo9000's softmax tree), `[Gaussian_yolo]`, `xnor=1` convolutions and `[crnn]` against Darknet itself: every layer
//! of small random-weight networks at abs 1e-4 + rel 1e-4, and the detections of `detector test` (before and
//! after NMS, at thresh .25 and .05): same detections in the same order, same classes, probabilities and
//! coordinates within 1e-4; and the lines `darknet detector test -ext_output` printed are ours. The references are tests/data/heads/ (tools/heads_ref/make_ref.sh, README there).

mod common;
use common::root;

use std::path::{Path, PathBuf};

use candle_core::Device;
use candle_darknet::cfg::NetworkConfig;
use candle_darknet::compare::{compare, read_f32_file, Status, Tolerance};
use candle_darknet::detect::{format_detections_v3, Detection};
use candle_darknet::image::load_image;
use candle_darknet::inference::{DetectOptions, Detector};
use candle_darknet::weights::darknet;
use serde_json::Value;

fn data(rel: &str) -> PathBuf {
    root().join("tests/data/heads").join(rel)
}

/// The cfg of a case, its weights and the reference directory.
fn case(name: &str, cfg: &str) -> (NetworkConfig, PathBuf) {
    let cfg = NetworkConfig::from_file(data(&format!("cfg/{cfg}"))).unwrap();
    (cfg, data(name))
}

fn layers_agree(name: &str, cfg_file: &str) {
    let (cfg, dir) = case(name, cfg_file);
    let w = darknet::read(&cfg, &dir.join("net.weights")).unwrap();
    let im = load_image(&data("dog.jpg"), 3).unwrap();
    let ours = candle_darknet::image::network_input(&im, cfg.net.width, cfg.net.height, false);
    let report = compare(
        &cfg,
        &w,
        &dir,
        &Device::Cpu,
        Tolerance::default(),
        Some(&ours.data),
    )
    .unwrap();
    println!("{}", report.table());
    assert!(report.passed, "{name}: layers differ from Darknet");
    assert!(
        report.layers.iter().all(|r| r.status == Status::Pass),
        "{name}: a layer was not compared"
    );
    assert_eq!(
        report.input.unwrap().failing,
        0,
        "{name}: our preprocessing differs"
    );
}

/// Compares the detections with a prob above `thresh`, in array order, with a Darknet stage list.
fn same_detections(ctx: &str, dets: &[Detection], want: &[Value], thresh: f32) {
    let ours: Vec<(usize, &Detection)> = dets
        .iter()
        .enumerate()
        .filter(|(_, d)| d.prob.iter().any(|&p| p > thresh))
        .collect();
    assert_eq!(ours.len(), want.len(), "{ctx}: number of detections");
    assert!(
        !want.is_empty(),
        "{ctx}: the reference has no detections to compare"
    );
    let close = |a: f32, b: f64| (f64::from(a) - b).abs() <= 1e-4;
    for ((i, d), e) in ours.iter().zip(want) {
        let c = format!("{ctx} det_index {}", e["det_index"]);
        assert_eq!(*i as u64, e["det_index"].as_u64().unwrap(), "{c}: order");
        let eb: Vec<f64> = e["bbox_rel_cxcywh"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        for (o, t) in [d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h].iter().zip(&eb) {
            assert!(close(*o, *t), "{c}: box {:?} vs {eb:?}", d.bbox);
        }
        assert!(
            close(d.objectness, e["objectness"].as_f64().unwrap()),
            "{c}: objectness"
        );
        let probs = e["probs"].as_object().unwrap();
        let classes: Vec<usize> = d
            .prob
            .iter()
            .enumerate()
            .filter(|(_, &p)| p > thresh)
            .map(|(j, _)| j)
            .collect();
        let want_classes: Vec<usize> = probs.keys().map(|k| k.parse().unwrap()).collect();
        assert_eq!(classes, want_classes, "{c}: classes");
        for (k, v) in probs {
            let j: usize = k.parse().unwrap();
            assert!(
                close(d.prob[j], v.as_f64().unwrap()),
                "{c}: prob of class {j}: {} vs {v}",
                d.prob[j]
            );
        }
    }
}

fn detections_agree(name: &str, cfg_file: &str) {
    detections_agree_at(name, cfg_file, &["0.25", "0.05"]);
}

fn detections_agree_at(name: &str, cfg_file: &str, threshs: &[&str]) {
    let dir = data(name);
    let det = Detector::load(
        &data(&format!("cfg/{cfg_file}")),
        &dir.join("net.weights"),
        None,
        &Device::Cpu,
    )
    .unwrap();
    let im = load_image(&data("dog.jpg"), 3).unwrap();
    for &t in threshs {
        let dump: Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join(format!("detections_{t}.json"))).unwrap(),
        )
        .unwrap();
        let opts = DetectOptions {
            thresh: t.parse().unwrap(),
            ..Default::default()
        };
        let outs = det.forward(&[det.preprocess(&im, &opts)]).unwrap();
        let before = det.boxes(&outs[0], im.w, im.h, &opts).unwrap();
        assert_eq!(
            before.len() as u64,
            dump["num_boxes_from_get_network_boxes"].as_u64().unwrap(),
            "{name} {t}: get_network_boxes count"
        );
        let ctx = format!("{name} thresh {t}");
        same_detections(
            &format!("{ctx} before NMS"),
            &before,
            dump["before_nms"].as_array().unwrap(),
            opts.thresh,
        );
        let after = det.postprocess(&outs[0], im.w, im.h, &opts).unwrap();
        same_detections(
            &format!("{ctx} after NMS"),
            &after,
            dump["after_nms"].as_array().unwrap(),
            opts.thresh,
        );
        // What `darknet detector test -ext_output` itself printed on these weights (names c0, c1, ...).
        let names: Vec<String> = (0..after[0].classes).map(|i| format!("c{i}")).collect();
        let printed = format_detections_v3(&after, im.w, im.h, opts.thresh, &names, true);
        let want: Vec<String> = std::fs::read_to_string(dir.join(format!("detector_test_{t}.txt")))
            .unwrap()
            .lines()
            .map(str::to_string)
            .collect();
        assert!(!want.is_empty(), "{ctx}: detector test printed nothing");
        assert_eq!(
            printed, want,
            "{ctx}: printed lines differ from darknet detector test"
        );
    }
}

#[test]
fn region_layers_agree_with_darknet() {
    layers_agree("region", "region.cfg");
}

#[test]
fn region_detections_agree_with_darknet() {
    detections_agree("region", "region.cfg");
}

#[test]
fn region_tree_layers_agree_with_darknet() {
    layers_agree("region_tree", "region_tree.cfg");
}

#[test]
fn region_tree_detections_agree_with_darknet() {
    detections_agree("region_tree", "region_tree.cfg");
}

#[test]
fn gaussian_yolo_layers_agree_with_darknet() {
    layers_agree("gaussian", "gaussian.cfg");
}

#[test]
fn gaussian_yolo_detections_agree_with_darknet() {
    detections_agree("gaussian", "gaussian.cfg");
}

#[test]
fn xnor_layers_agree_with_darknet() {
    layers_agree("xnor", "xnor.cfg");
}

/// The xnor network's [yolo] boxes through `detector test` (one threshold).
#[test]
fn xnor_detections_agree_with_darknet() {
    detections_agree_at("xnor", "xnor.cfg", &["0.25"]);
}

/// `[crnn]` (one batch-normalised, one plain with `shortcut=1`): every layer, with the weights Darknet wrote in
/// its own order (input, self, output convolutions).
#[test]
fn crnn_layers_agree_with_darknet() {
    layers_agree("crnn", "crnn.cfg");
}

/// The `[crnn]` weights Darknet wrote (three convolutions per layer) read and written back byte for byte, and
/// through the named tensors (`layers.1.input.bn.weight`, ...).
#[test]
fn crnn_weights_round_trip() {
    let (cfg, dir) = case("crnn", "crnn.cfg");
    let path = dir.join("net.weights");
    let w = darknet::read(&cfg, &path).unwrap();
    assert_eq!(w.convs.len(), 1 + 3 + 3 + 1);
    assert_eq!(
        darknet::to_bytes(&cfg, &w).unwrap(),
        std::fs::read(&path).unwrap()
    );
    let t = w.to_tensors(&cfg, &Device::Cpu).unwrap();
    assert_eq!(t["layers.1.self.conv.weight"].dims(), &[8, 8, 3, 3]);
    assert_eq!(t["layers.3.output.conv.bias"].dims(), &[8]);
    let back = candle_darknet::weights::NetWeights::from_tensors(&cfg, w.header, &t).unwrap();
    assert_eq!(back, w);
}

/// The crnn network's [yolo] boxes through `detector test` (one threshold).
#[test]
fn crnn_detections_agree_with_darknet() {
    detections_agree_at("crnn", "crnn.cfg", &["0.25"]);
}

/// The reference input is the tensor Darknet fed (not a copy of ours): a sanity check of the files.
#[test]
fn references_are_complete() {
    for c in ["region", "region_tree", "gaussian", "xnor"] {
        let input = read_f32_file(&data(&format!("{c}/input.bin"))).unwrap();
        assert_eq!(input.len(), 3 * 96 * 96, "{c}");
        assert!(Path::new(&data(&format!("{c}/net.weights"))).exists());
    }
    for c in ["crnn", "contrastive"] {
        let input = read_f32_file(&data(&format!("{c}/input.bin"))).unwrap();
        assert_eq!(input.len(), 3 * 64 * 64, "{c}");
    }
}

/// `[contrastive]` after a `[yolo]` head with `embedding_layer` (as yolov4-tiny_contrastive.cfg ends): every
/// layer, the contrastive layer's output being Darknet's untouched zeros at inference.
#[test]
fn contrastive_layers_agree_with_darknet() {
    layers_agree("contrastive", "contrastive.cfg");
}

/// The same network's [yolo] boxes through `detector test`: the `[contrastive]` layer does not change them.
#[test]
fn contrastive_detections_agree_with_darknet() {
    detections_agree_at("contrastive", "contrastive.cfg", &["0.25"]);
}
