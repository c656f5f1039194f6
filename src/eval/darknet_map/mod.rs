//! Darknet's mAP: a re-implementation of `validate_detector_map` in `src/detector.c` (AlexeyAB/darknet
//! 59596d7), from the point where the network's boxes are known, with `box_iou` of `src/box.c`.
//!
//! Rules mirrored (line by line in the C):
//! - a detection enters when its class probability is `> thresh` (0.005; `get_yolo_detections` zeroes
//!   probabilities `<= thresh` and the loop takes `prob > 0`); boxes are relative `(cx, cy, w, h)` as
//!   `get_network_boxes(&net, 1, 1, ...)` returns them without letterbox, IoU in `f32`;
//! - per detection: the truth of the same class with the largest IoU, only if IoU `> iou_thresh`
//!   (strict, `truth_index`); otherwise, if it overlaps a *difficult* truth of its class by `> iou_thresh`, the
//!   detection is dropped (neither TP nor FP in the AP);
//! - thresholded counts (`prob > thresh_calc_avg_iou`, 0.25): TP when it has a truth that no *earlier
//!   detection of the same image in input order* has as its best truth, else FP — a dropped "difficult"
//!   detection still counts as FP here, as in the C; average IoU = Σ IoU(TP) / (TP + FP);
//! - all detections of all images are sorted by probability, descending (`qsort` + `detections_comparator`).
//!   Ties: glibc's `qsort` is a merge sort (stable) whenever it can allocate its buffer, which is the case
//!   for these sizes, so ties keep input order (image, then box, then class); other C libraries may order
//!   ties differently, so Darknet's own tie order is platform dependent. We use a stable sort;
//! - walking the ranks, a detection whose truth is not yet taken is TP (and takes it), otherwise FP; per class
//!   precision = TP/(TP+FP) (0 when no detection yet), recall = TP/(number of truths of the class) (0 when
//!   the class has no truth);
//! - AP: `points == 0` area under the interpolated curve over every unique recall (VOC2010+/ImageNet),
//!   `points == N` the N-point interpolated mean (11 = VOC2007, 101 = COCO style) with recall points
//!   `p/(N-1)`; mAP = mean over *all* classes (classes without truths contribute 0).
//!
//! Deliberate differences: no detections at all gives mAP 0 (the C reads `pr[i][-1]`); `points == 1` is
//! rejected (the C divides by zero); the thresholded precision/recall/F1/average IoU are computed in `f64`
//! (the C uses `float`) and undefined ratios (0/0) are `None` instead of NaN. The N-point search for the
//! best precision at recall >= r uses a suffix maximum; this equals the C's full scan because recall never
//! decreases with rank.

use anyhow::{bail, Result};
use serde::{Deserialize, Serialize};

mod ap;
mod matching;

use ap::{class_aps, overall_curve};
use matching::{match_detections, rank_true_positives, Matched};

/// Parameters of `validate_detector_map` (command-line `-thresh`, `-iou_thresh`, `-points` and the fixed
/// `thresh = .005`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MapParams {
    /// Minimum class probability (exclusive) for a detection to count at all (`const float thresh = .005`).
    pub thresh: f32,
    /// IoU a detection must exceed to match a truth (`-iou_thresh`, default 0.5).
    pub iou_thresh: f32,
    /// 0 = area under curve, 11 = VOC2007, 101 = COCO style (`-points`).
    pub points: u32,
    /// Confidence above which TP/FP/precision/recall/F1/average IoU are counted (`-thresh`, default 0.25).
    pub thresh_calc_avg_iou: f32,
}

impl Default for MapParams {
    fn default() -> Self {
        MapParams {
            thresh: 0.005,
            iou_thresh: 0.5,
            points: 0,
            thresh_calc_avg_iou: 0.25,
        }
    }
}

/// A ground-truth box: class index and relative `(cx, cy, w, h)` as in a Darknet label line.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapTruth {
    pub class: usize,
    pub bbox: [f32; 4],
}

/// A detection of one class: probability (objectness × class probability) and relative `(cx, cy, w, h)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MapDet {
    pub class: usize,
    pub prob: f32,
    pub bbox: [f32; 4],
}

/// One validation image: its truths, its difficult truths (from the `difficult=` list), its detections in
/// Darknet's order (box by box, class by class within a box).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MapImage {
    pub truths: Vec<MapTruth>,
    pub difficult: Vec<MapTruth>,
    pub dets: Vec<MapDet>,
}

/// Per-class line of Darknet's output (`class_id = ..., name = ..., ap = ...% (TP = ..., FP = ...)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassAp {
    pub class_id: usize,
    pub name: String,
    /// Fraction, not percent.
    pub ap: f64,
    /// At `thresh_calc_avg_iou`.
    pub tp: u64,
    pub fp: u64,
    /// Number of (non-difficult) truths of the class.
    pub truths: u64,
    /// Σ IoU(TP) / (TP + FP) of this class at `thresh_calc_avg_iou`, `None` when TP + FP = 0.
    pub avg_iou: Option<f64>,
}

/// Everything `validate_detector_map` prints, as fractions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DarknetMapReport {
    pub map: f64,
    pub iou_thresh: f64,
    pub points: u32,
    pub thresh_calc_avg_iou: f64,
    pub per_class: Vec<ClassAp>,
    pub precision: Option<f64>,
    pub recall: Option<f64>,
    pub f1: Option<f64>,
    pub tp: u64,
    pub fp: u64,
    #[serde(rename = "fn")]
    pub fn_: u64,
    pub average_iou: Option<f64>,
    pub detections_count: u64,
    pub unique_truth_count: u64,
}

/// One point of a precision/recall curve (at a rank of the class's detections).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PrPoint {
    pub recall: f64,
    pub precision: f64,
    pub prob: f64,
}

/// The report plus the curves (per class, at that class's ranks; and pooled over all classes) for plots.
#[derive(Debug, Clone)]
pub struct MapOutcome {
    pub report: DarknetMapReport,
    pub class_curves: Vec<Vec<PrPoint>>,
    pub overall_curve: Vec<PrPoint>,
}

/// `box_iou` of `src/box.c` on `[x, y, w, h]` relative boxes (the one implementation in [`crate::detect`]).
pub fn box_iou(a: [f32; 4], b: [f32; 4]) -> f32 {
    let bx = |v: [f32; 4]| crate::detect::BoxF {
        x: v[0],
        y: v[1],
        w: v[2],
        h: v[3],
    };
    crate::detect::box_iou(bx(a), bx(b))
}

/// `box_prob` of detector.c.
#[derive(Clone, Copy)]
struct BoxProb {
    p: f32,
    class_id: usize,
    /// `unique_truth_index` when `truth_flag == 1`.
    truth: Option<usize>,
}

fn check_inputs(images: &[MapImage], classes: usize, params: &MapParams) -> Result<()> {
    if params.points == 1 {
        bail!("points must be 0 (area under curve) or >= 2 (e.g. 11, 101), got 1");
    }
    for (i, im) in images.iter().enumerate() {
        for (what, list) in [("truth", &im.truths), ("difficult truth", &im.difficult)] {
            if let Some(t) = list.iter().find(|t| t.class >= classes) {
                bail!(
                    "image {i}: {what} class {} out of range (classes = {classes})",
                    t.class
                );
            }
        }
        if let Some(d) = im.dets.iter().find(|d| d.class >= classes) {
            bail!(
                "image {i}: detection class {} out of range (classes = {classes})",
                d.class
            );
        }
        if let Some(d) = im
            .dets
            .iter()
            .find(|d| !d.prob.is_finite() || d.bbox.iter().any(|v| !v.is_finite()))
        {
            bail!("image {i}: non-finite detection {d:?}");
        }
    }
    Ok(())
}

/// Runs Darknet's mAP computation on `images` with class names `names` (their count is `classes`).
pub fn validate_detector_map(
    images: &[MapImage],
    names: &[String],
    params: &MapParams,
) -> Result<MapOutcome> {
    let classes = names.len();
    check_inputs(images, classes, params)?;
    let mut m = match_detections(images, classes, params);

    // Stable descending sort by probability: glibc qsort's merge sort with `detections_comparator`.
    m.detections
        .sort_by(|a, b| b.p.partial_cmp(&a.p).unwrap_or(std::cmp::Ordering::Equal));

    // Global rank walk: TP/FP per rank (for the detection's own class).
    let is_tp = rank_true_positives(&m.detections, m.unique_truth_count);
    let (per_class, class_curves, map) = class_aps(&m, &is_tp, names, params);
    let report = report(&m, per_class, map, params);
    let overall_curve = overall_curve(&m.detections, &is_tp, m.unique_truth_count);
    Ok(MapOutcome {
        report,
        class_curves,
        overall_curve,
    })
}

/// The summary `validate_detector_map` prints: mAP, the thresholded precision/recall/F1/average IoU, counts.
fn report(m: &Matched, per_class: Vec<ClassAp>, map: f64, params: &MapParams) -> DarknetMapReport {
    let (tp_for_thresh, fp_for_thresh) = (m.thresh.tp, m.thresh.fp);
    let unique_truth_count = m.unique_truth_count;
    let ratio = |a: f64, b: f64| if b != 0.0 { Some(a / b) } else { None };
    let tp = tp_for_thresh as f64;
    let precision = ratio(tp, tp + fp_for_thresh as f64);
    let recall = ratio(tp, unique_truth_count as f64);
    let f1 = match (precision, recall) {
        (Some(p), Some(r)) => ratio(2.0 * p * r, p + r),
        _ => None,
    };
    DarknetMapReport {
        map,
        iou_thresh: f32_as_decimal(params.iou_thresh),
        points: params.points,
        thresh_calc_avg_iou: f32_as_decimal(params.thresh_calc_avg_iou),
        per_class,
        precision,
        recall,
        f1,
        tp: tp_for_thresh,
        fp: fp_for_thresh,
        fn_: unique_truth_count as u64 - tp_for_thresh.min(unique_truth_count as u64),
        average_iou: ratio(m.thresh.avg_iou, (tp_for_thresh + fp_for_thresh) as f64),
        detections_count: m.detections.len() as u64,
        unique_truth_count: unique_truth_count as u64,
    }
}

/// The `f64` nearest to the shortest decimal form of an `f32` (0.45f32 reports as 0.45, not 0.449999988).
fn f32_as_decimal(v: f32) -> f64 {
    v.to_string().parse().unwrap_or(v as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("c{i}")).collect()
    }
    fn truth(class: usize, x: f32) -> MapTruth {
        MapTruth {
            class,
            bbox: [x, 0.5, 0.1, 0.1],
        }
    }
    fn det(class: usize, prob: f32, x: f32) -> MapDet {
        MapDet {
            class,
            prob,
            bbox: [x, 0.5, 0.1, 0.1],
        }
    }
    fn run(images: &[MapImage], classes: usize, points: u32) -> DarknetMapReport {
        let p = MapParams {
            points,
            ..MapParams::default()
        };
        validate_detector_map(images, &names(classes), &p)
            .unwrap()
            .report
    }

    #[test]
    fn box_iou_matches_hand_values() {
        // Two 0.2x0.2 boxes shifted by 0.1 in x: I = 0.1*0.2, U = 0.04+0.04-0.02.
        let iou = box_iou([0.5, 0.5, 0.2, 0.2], [0.6, 0.5, 0.2, 0.2]);
        assert!((iou - 0.02 / 0.06).abs() < 1e-6, "{iou}");
        assert_eq!(box_iou([0.1, 0.1, 0.1, 0.1], [0.9, 0.9, 0.1, 0.1]), 0.0);
    }

    /// One class, 3 truths (A at 0.1, B at 0.3, C at 0.7) in two images; detections after the global sort:
    /// 0.9 hits A (TP), 0.8 miss (FP), 0.7 hits B (TP), 0.6 duplicate on A (FP), 0.4 miss (FP).
    /// C is never found. Ranks: P = 1, 1/2, 2/3, 2/4, 2/5; R = 1/3, 1/3, 2/3, 2/3, 2/3.
    fn case_one() -> Vec<MapImage> {
        vec![
            MapImage {
                truths: vec![truth(0, 0.1), truth(0, 0.3)],
                difficult: vec![],
                // Input order is not probability order: the sort is global.
                dets: vec![
                    det(0, 0.6, 0.1),
                    det(0, 0.9, 0.1),
                    det(0, 0.7, 0.3),
                    det(0, 0.003, 0.3),
                ],
            },
            MapImage {
                truths: vec![truth(0, 0.7)],
                difficult: vec![],
                dets: vec![det(0, 0.8, 0.9), det(0, 0.4, 0.5)],
            },
        ]
    }

    #[test]
    fn all_point_ap_by_hand() {
        let r = run(&case_one(), 1, 0);
        // Envelope: p=1 for r<=1/3, p=2/3 for 1/3<r<=2/3 → AP = 1/3*1 + 1/3*2/3.
        let want = 1.0 / 3.0 + (1.0 / 3.0) * (2.0 / 3.0);
        assert!((r.map - want).abs() < 1e-12, "{} vs {want}", r.map);
        assert_eq!(
            r.detections_count, 5,
            "the 0.003 detection is below thresh 0.005"
        );
        assert_eq!(r.unique_truth_count, 3);
    }

    #[test]
    fn eleven_point_ap_by_hand() {
        let r = run(&case_one(), 1, 11);
        // Recall points 0, .1, .2, .3 → max precision at recall >= point = 1 (rank 0, r=1/3 > .3);
        // .4 .5 .6 → 2/3 (rank 2, r=2/3); .7 .. 1.0 → nothing reaches: 0.
        let want = (4.0 * 1.0 + 3.0 * (2.0 / 3.0)) / 11.0;
        assert!((r.map - want).abs() < 1e-12, "{} vs {want}", r.map);
    }

    #[test]
    fn hundred_one_point_ap_by_hand() {
        let r = run(&case_one(), 1, 101);
        // points p/100 <= 1/3: p = 0..=33 (34 points) → 1; 1/3 < p/100 <= 2/3: p = 34..=66 (33 points) → 2/3.
        let want = (34.0 * 1.0 + 33.0 * (2.0 / 3.0)) / 101.0;
        assert!((r.map - want).abs() < 1e-12, "{} vs {want}", r.map);
    }

    #[test]
    fn thresholded_counts_by_hand() {
        let r = run(&case_one(), 1, 0);
        // prob > 0.25, per image in input order: image 0: 0.6 → A (TP), 0.9 → A again (FP: an earlier detection
        // of this image already has A), 0.7 → B (TP); image 1: 0.8 FP, 0.4 FP. TP 2, FP 3, FN 1.
        assert_eq!((r.tp, r.fp, r.fn_), (2, 3, 1));
        assert_eq!(r.per_class[0].tp, 2);
        assert_eq!(r.per_class[0].fp, 3);
        let p = 2.0 / 5.0;
        let rc = 2.0 / 3.0;
        assert!((r.precision.unwrap() - p).abs() < 1e-12);
        assert!((r.recall.unwrap() - rc).abs() < 1e-12);
        assert!((r.f1.unwrap() - 2.0 * p * rc / (p + rc)).abs() < 1e-12);
        // Both TPs have IoU 1; average IoU divides by TP + FP.
        assert!((r.average_iou.unwrap() - 2.0 / 5.0).abs() < 1e-6);
    }

    #[test]
    fn difficult_detection_is_neither_tp_nor_fp_in_ap() {
        // Truth at 0.1; difficult truth at 0.5. Detections: 0.9 on difficult, 0.8 on truth.
        let im = MapImage {
            truths: vec![truth(0, 0.1)],
            difficult: vec![truth(0, 0.5)],
            dets: vec![det(0, 0.9, 0.5), det(0, 0.8, 0.1)],
        };
        let r = run(std::slice::from_ref(&im), 1, 0);
        // Without the difficult drop the curve would start with an FP (AP 0.5); with it AP = 1.
        assert_eq!(r.map, 1.0);
        assert_eq!(r.detections_count, 1);
        // Darknet still counts the dropped detection as FP at the 0.25 threshold.
        assert_eq!((r.tp, r.fp), (1, 1));
        // Same image without the difficult list: FP then TP → P = 0, 1/2; R = 0, 1 → AP = 1 * 1/2.
        let r2 = run(
            &[MapImage {
                difficult: vec![],
                ..im
            }],
            1,
            0,
        );
        assert!((r2.map - 0.5).abs() < 1e-12);
    }

    #[test]
    fn difficult_does_not_drop_a_detection_matching_a_real_truth() {
        let im = MapImage {
            truths: vec![truth(0, 0.5)],
            difficult: vec![truth(0, 0.5)],
            dets: vec![det(0, 0.9, 0.5)],
        };
        let r = run(&[im], 1, 0);
        assert_eq!((r.detections_count, r.map), (1, 1.0));
    }

    #[test]
    fn class_mismatch_is_fp_and_map_averages_all_classes() {
        // Class 0 truth found by a class-0 detection; a class-1 detection on the same place is FP; class 2 has
        // neither truths nor detections and still counts in the mean (AP 0).
        let im = MapImage {
            truths: vec![truth(0, 0.5)],
            difficult: vec![],
            dets: vec![det(1, 0.95, 0.5), det(0, 0.9, 0.5)],
        };
        let r = run(&[im], 3, 0);
        assert_eq!(r.per_class[0].ap, 1.0);
        assert_eq!(r.per_class[1].ap, 0.0);
        assert_eq!(r.per_class[2].ap, 0.0);
        assert!((r.map - 1.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn best_iou_truth_is_taken_even_if_already_matched() {
        // Two truths: T1 at 0.50, T2 at 0.53. The 0.9 detection at 0.51 → best is T1; the 0.8 detection at 0.505
        // also has best T1 (not T2, although T2 is free): FP. T2 is never found.
        let im = MapImage {
            truths: vec![truth(0, 0.50), truth(0, 0.53)],
            difficult: vec![],
            dets: vec![det(0, 0.9, 0.51), det(0, 0.8, 0.505)],
        };
        let r = run(&[im], 1, 0);
        // P = 1, 1/2; R = 1/2, 1/2 → AP = 1/2.
        assert!((r.map - 0.5).abs() < 1e-12, "{}", r.map);
    }

    #[test]
    fn iou_threshold_is_strict() {
        // IoU exactly 0.5 in f32 would not match: shift so I/U = 0.5 is hard to hit exactly, so test with a
        // threshold equal to a computed IoU.
        let a = [0.5, 0.5, 0.2, 0.2];
        let b = [0.6, 0.5, 0.2, 0.2];
        let iou = box_iou(a, b);
        let im = MapImage {
            truths: vec![MapTruth { class: 0, bbox: a }],
            difficult: vec![],
            dets: vec![MapDet {
                class: 0,
                prob: 0.9,
                bbox: b,
            }],
        };
        let p = MapParams {
            iou_thresh: iou,
            ..MapParams::default()
        };
        let r = validate_detector_map(std::slice::from_ref(&im), &names(1), &p)
            .unwrap()
            .report;
        assert_eq!(r.map, 0.0);
        let p = MapParams {
            iou_thresh: iou - 1e-4,
            ..MapParams::default()
        };
        let r = validate_detector_map(&[im], &names(1), &p).unwrap().report;
        assert_eq!(r.map, 1.0);
    }

    #[test]
    fn ties_keep_input_order() {
        // Equal probabilities: the FP (first in input order) ranks first → P = 0, 1/2; AP = 1/2. Reversed input
        // order gives TP first → AP = 1.
        let t = vec![truth(0, 0.1)];
        let im = MapImage {
            truths: t.clone(),
            difficult: vec![],
            dets: vec![det(0, 0.5, 0.9), det(0, 0.5, 0.1)],
        };
        assert!((run(&[im], 1, 0).map - 0.5).abs() < 1e-12);
        let im = MapImage {
            truths: t,
            difficult: vec![],
            dets: vec![det(0, 0.5, 0.1), det(0, 0.5, 0.9)],
        };
        assert_eq!(run(&[im], 1, 0).map, 1.0);
    }

    #[test]
    fn bad_inputs_are_errors() {
        let im = MapImage {
            truths: vec![truth(3, 0.1)],
            difficult: vec![],
            dets: vec![],
        };
        assert!(validate_detector_map(&[im], &names(2), &MapParams::default()).is_err());
        let p = MapParams {
            points: 1,
            ..MapParams::default()
        };
        assert!(validate_detector_map(&[], &names(2), &p).is_err());
        assert_eq!(run(&[], 2, 0).map, 0.0);
    }
}
