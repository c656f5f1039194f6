//! `eval` end to end (issue #4): yolov4-tiny over a small hand-labelled Darknet-format set (five of Darknet's
//! sample images, labels in tests/data/handlabels). Results must not depend on the batch size, and our COCO
//! numbers must equal pycocotools' on the very same ground truth and detections.

mod common;
use common::{official, root, shared_dir as shared};

use std::path::PathBuf;
use std::process::Command;

use candle_core::Device;
use candle_darknet::eval::{self, dataset::Dataset, MapParams};
use candle_darknet::inference::{DetectOptions, Detector};

/// A Darknet-format set in a temp dir: images copied next to their label files, a valid list and a .data file.
fn make_set(dir: &std::path::Path) -> PathBuf {
    let names = ["dog", "person", "horses", "eagle", "giraffe"];
    let mut list = String::new();
    for n in names {
        std::fs::copy(
            shared().join(format!("darknet/data/{n}.jpg")),
            dir.join(format!("{n}.jpg")),
        )
        .unwrap();
        std::fs::copy(
            root().join(format!("tests/data/handlabels/{n}.txt")),
            dir.join(format!("{n}.txt")),
        )
        .unwrap();
        list.push_str(&format!("{}\n", dir.join(format!("{n}.jpg")).display()));
    }
    std::fs::write(dir.join("valid.txt"), list).unwrap();
    let data = dir.join("hand.data");
    std::fs::write(
        &data,
        format!(
            "classes = 80\nvalid = {}\nnames = {}\n",
            dir.join("valid.txt").display(),
            official("coco.names").display()
        ),
    )
    .unwrap();
    data
}

#[test]
fn eval_on_hand_labelled_set_is_batch_independent_and_matches_pycocotools() {
    let tmp = tempfile::tempdir().unwrap();
    let data = make_set(tmp.path());
    let det = Detector::load(
        &official("yolov4-tiny.cfg"),
        &official("yolov4-tiny.weights"),
        None,
        &Device::Cpu,
    )
    .unwrap();
    let ds = Dataset::open(&data, None, Some(&det.names)).unwrap();
    assert_eq!(ds.images.len(), 5);
    let opts = DetectOptions {
        thresh: 0.001,
        nms: 0.45,
        letterbox: false,
    };
    let (d1, t1) = eval::model::detect_dataset(&det, &ds, &opts, 1, false).unwrap();
    let (d3, _) = eval::model::detect_dataset(&det, &ds, &opts, 3, false).unwrap();
    assert_eq!(d1, d3, "detections depend on the batch size");
    println!(
        "{:.2} images/s, {:.0}% outside the network",
        t1.images_per_s(),
        100.0 * t1.outside_network()
    );

    let outcome = eval::evaluate(&ds, &d1, &MapParams::default()).unwrap();
    print!("{}", outcome.report.to_text());
    let map = outcome.report.darknet.map;
    // Darknet divides by all 80 classes, so the mAP of a 5-image set is small; over the classes that have ground
    // truth (a plausibility bound, not a pinned value) the published model finds these large, clear objects.
    let present: std::collections::BTreeSet<usize> = ds
        .images
        .iter()
        .flat_map(|im| im.boxes.iter().map(|b| b.class))
        .collect();
    let aps: Vec<f64> = outcome
        .report
        .darknet
        .per_class
        .iter()
        .filter(|c| present.contains(&c.class_id))
        .map(|c| c.ap)
        .collect();
    let mean_present = aps.iter().sum::<f64>() / aps.len() as f64;
    assert!(
        (map - aps.iter().sum::<f64>() / 80.0).abs() < 1e-9,
        "Darknet's mAP averages over every class"
    );
    assert!(
        mean_present > 0.5,
        "AP@0.5 over the present classes = {mean_present}"
    );

    // pycocotools on the same ground truth and detections.
    let gt = tmp.path().join("gt.json");
    eval::coco_gt(&ds).write(&gt).unwrap();
    let res = tmp.path().join("res.json");
    eval::coco::write_results(&res, &eval::coco_detections_for(&ds, &d1).unwrap()).unwrap();
    let out = Command::new("python3")
        .arg(root().join("tools/cocoeval_ref.py"))
        .args([
            "--gt",
            gt.to_str().unwrap(),
            "--results",
            res.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pycocotools failed (run `make pydeps`): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let theirs: Vec<f64> = v["stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    let ours = outcome.report.coco.stats;
    for (i, (a, b)) in ours.iter().zip(&theirs).enumerate() {
        assert!((a - b).abs() <= 1e-6, "stat {i}: ours {a}, pycocotools {b}");
    }
    println!(
        "COCO AP {:.4} AP50 {:.4} (= pycocotools), Darknet mAP@0.5 {:.4} (present classes {:.4})",
        ours[0], ours[1], map, mean_present
    );
}

/// A truncated image in the set: without `strict` it is skipped (named, no detections, its boxes out of the
/// metrics) and the other images' detections are those of the intact set; with `strict` it is an error
/// naming it.
#[test]
fn undecodable_eval_image_is_skipped_unless_strict() {
    let tmp = tempfile::tempdir().unwrap();
    let data = make_set(tmp.path());
    let det = Detector::load(
        &official("yolov4-tiny.cfg"),
        &official("yolov4-tiny.weights"),
        None,
        &Device::Cpu,
    )
    .unwrap();
    let opts = DetectOptions {
        thresh: 0.001,
        nms: 0.45,
        letterbox: false,
    };
    let intact = Dataset::open(&data, None, Some(&det.names)).unwrap();
    let (clean, _) = eval::model::detect_dataset(&det, &intact, &opts, 2, false).unwrap();
    let dog = tmp.path().join("dog.jpg");
    let bytes = std::fs::read(&dog).unwrap();
    std::fs::write(&dog, &bytes[..bytes.len() / 3]).unwrap();
    let mut ds = Dataset::open(&data, None, Some(&det.names)).unwrap();
    let (dets, _, skipped) =
        eval::model::detect_dataset_skipping(&det, &mut ds, &opts, 2, false, false).unwrap();
    println!("{skipped:?}");
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].0, dog);
    let i = ds.images.iter().position(|e| e.path == dog).unwrap();
    assert!(ds.images[i].boxes.is_empty() && !intact.images[i].boxes.is_empty());
    assert!(dets[i].dets.is_empty() && !clean[i].dets.is_empty());
    for (k, (a, b)) in dets.iter().zip(&clean).enumerate() {
        if k != i {
            assert_eq!(a, b, "image {k}");
        }
    }
    let mut ds = Dataset::open(&data, None, Some(&det.names)).unwrap();
    let err = eval::model::detect_dataset_skipping(&det, &mut ds, &opts, 2, false, true)
        .map(|_| ())
        .unwrap_err();
    assert!(format!("{err:#}").contains("dog.jpg"), "{err:#}");
}
