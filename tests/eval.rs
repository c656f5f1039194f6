//! Differential tests of the COCO metrics against pycocotools (tools/cocoeval_ref.py), through the library
//! (`coco::evaluate`), the dataset path (`eval::evaluate` + `to_coco_results`) and the `eval` CLI.
//! Tolerance: 1e-6 absolute on each of the 12 `summarize()` statistics.
//! python3 with numpy and pycocotools is required: without them these tests FAIL (run `make pydeps`).

use std::path::{Path, PathBuf};
use std::process::Command;

use candle_darknet::eval::{self, coco, Dataset, Det, ImageDetections, MapParams};

const TOL: f64 = 1e-6;
const SEEDS: [u64; 8] = [0, 1, 2, 3, 4, 5, 6, 7];

fn manifest() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Runs tools/cocoeval_ref.py with `args`; returns pycocotools' 12 stats. Panics (test failure) with a clear
/// message when python3 or pycocotools is missing.
fn pycocotools(args: &[&str]) -> [f64; 12] {
    let script = manifest().join("tools/cocoeval_ref.py");
    let out = Command::new("python3").arg(&script).args(args).output().unwrap_or_else(|e| {
        panic!("cannot run python3 ({e}): the pycocotools differential test needs python3 with pycocotools; run `make pydeps`")
    });
    if !out.status.success() {
        panic!(
            "tools/cocoeval_ref.py {args:?} failed ({}): {}\nthe differential test needs python3 with numpy and pycocotools; run `make pydeps`",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cocoeval_ref.py printed no JSON");
    let s: Vec<f64> = v["stats"]
        .as_array()
        .expect("stats")
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    s.try_into().expect("12 stats")
}

fn assert_stats_eq(ours: &[f64; 12], theirs: &[f64; 12], what: &str) {
    for (i, (a, b)) in ours.iter().zip(theirs).enumerate() {
        assert!(
            (a - b).abs() <= TOL,
            "{what}: stat {i} ours {a} vs pycocotools {b}\nours {ours:?}\nref  {theirs:?}"
        );
    }
}

fn generate(seed: u64, dir: &Path) -> ([f64; 12], PathBuf, PathBuf) {
    let d = dir.join(format!("seed{seed}"));
    let stats = pycocotools(&[
        "--seed",
        &seed.to_string(),
        "--out-dir",
        d.to_str().unwrap(),
    ]);
    (stats, d.join("gt.json"), d.join("results.json"))
}

#[test]
fn cocoeval_matches_pycocotools_on_random_cases() {
    let dir = tempfile::tempdir().unwrap();
    let mut nonzero = 0;
    for seed in SEEDS {
        let (want, gt_path, res_path) = generate(seed, dir.path());
        let gt = coco::CocoGt::read(&gt_path).unwrap();
        let dets = coco::read_results(&res_path).unwrap();
        let got = coco::evaluate(&gt, &dets, &coco::CocoParams::default()).unwrap();
        assert_stats_eq(&got.stats, &want, &format!("seed {seed}"));
        println!(
            "seed {seed}: AP {:.6} AP50 {:.6} AR100 {:.6} (pycocotools {:.6} {:.6} {:.6})",
            got.stats[0], got.stats[1], got.stats[8], want[0], want[1], want[8]
        );
        nonzero += want.iter().filter(|&&v| v > 0.0 && v < 1.0).count();
    }
    // The generated cases must exercise the metric (not all 0, -1 or 1).
    assert!(
        nonzero > SEEDS.len() * 6,
        "degenerate cases: only {nonzero} non-trivial stats"
    );
}

/// The model-side path: a Dataset from the gt json, detections as relative boxes in class indices; our COCO
/// stats must equal pycocotools on the gt json and the results file we write (`to_coco_results`).
#[test]
fn dataset_path_and_results_writer_match_pycocotools() {
    let dir = tempfile::tempdir().unwrap();
    for seed in [10u64, 11, 12, 13] {
        let (_, gt_path, res_path) = generate(seed, dir.path());
        let ds = if seed == 13 {
            // A model whose class order is not the json's, with a class the json lacks: matched by name.
            let names: Vec<String> = ["cat22", "extra", "cat10", "cat7", "cat3", "cat1"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            let ds = Dataset::from_coco_json(&gt_path, None, Some(&names)).unwrap();
            assert_eq!(
                ds.category_ids,
                vec![Some(22), None, Some(10), Some(7), Some(3), Some(1)]
            );
            ds
        } else {
            Dataset::from_coco_json(&gt_path, None, None).unwrap()
        };
        let raw = coco::read_results(&res_path).unwrap();
        let mut per_image: Vec<ImageDetections> = (0..ds.images.len())
            .map(|i| ImageDetections {
                image_index: i,
                dets: vec![],
            })
            .collect();
        for d in &raw {
            let i = ds.images.iter().position(|im| im.id == d.image_id).unwrap();
            let Some(class) = ds
                .category_ids
                .iter()
                .position(|&c| c == Some(d.category_id))
            else {
                continue;
            };
            let im = &ds.images[i];
            let rel = eval::dataset::pixel_to_relative(d.bbox, im.width, im.height);
            per_image[i].dets.push(Det {
                class,
                prob: d.score as f32,
                objectness: 1.0,
                bbox_rel_cxcywh: rel,
            });
        }
        let out = eval::evaluate(&ds, &per_image, &MapParams::default()).unwrap();
        let saved = dir.path().join(format!("saved{seed}.json"));
        coco::write_results(&saved, &eval::to_coco_results(&ds, &per_image).unwrap()).unwrap();
        let want = pycocotools(&[
            "--gt",
            gt_path.to_str().unwrap(),
            "--results",
            saved.to_str().unwrap(),
        ]);
        assert_stats_eq(
            &out.report.coco.stats,
            &want,
            &format!("dataset path, seed {seed}"),
        );
        assert!(out.report.darknet.detections_count > 0);
    }
}

#[test]
fn cli_scores_results_files() {
    let dir = tempfile::tempdir().unwrap();
    let (want, gt_path, res_path) = generate(20, dir.path());
    let json = dir.path().join("report.json");
    let plots = dir.path().join("plots");
    let out = Command::new(env!("CARGO_BIN_EXE_candle-darknet"))
        .args([
            "eval",
            "--results",
            res_path.to_str().unwrap(),
            "--gt",
            gt_path.to_str().unwrap(),
        ])
        .args([
            "--json",
            json.to_str().unwrap(),
            "--plots",
            plots.to_str().unwrap(),
            "--points",
            "101",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}\n{}",
        stdout,
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]"),
        "{stdout}"
    );
    assert!(
        stdout.contains("mean average precision (mAP@0.50)"),
        "{stdout}"
    );
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let stats: Vec<f64> = v["coco"]["stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_stats_eq(&stats.try_into().unwrap(), &want, "CLI report");
    let d = &v["darknet"];
    assert_eq!(d["points"], 101);
    for key in [
        "map",
        "iou_thresh",
        "precision",
        "recall",
        "f1",
        "tp",
        "fp",
        "fn",
        "average_iou",
    ] {
        assert!(!d[key].is_null(), "darknet.{key} missing: {d}");
    }
    let pc = d["per_class"].as_array().unwrap();
    assert_eq!(pc.len(), 5);
    for key in ["class_id", "name", "ap", "tp", "fp"] {
        assert!(!pc[0][key].is_null(), "per_class.{key} missing");
    }
    assert!(plots.join("pr_overall.png").exists());
    assert_eq!(std::fs::read_dir(&plots).unwrap().count(), 6);

    // Bad input: a clear error, not a panic.
    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, "[{\"image_id\": 1,\n \"bbox\": 3}]").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_candle-darknet"))
        .args([
            "eval",
            "--results",
            bad.to_str().unwrap(),
            "--gt",
            gt_path.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("bad.json") && err.contains("line 2"),
        "{err}"
    );
}
