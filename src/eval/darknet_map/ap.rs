//! The per-class part of `validate_detector_map` (src/detector.c): precision/recall over the ranks, the AP
//! (area under the curve or N-point interpolation) and the curves for the plots.

use super::matching::Matched;
use super::{BoxProb, ClassAp, MapParams, PrPoint};

/// The per-class loop of `validate_detector_map`: each class's AP, thresholded counts and curve, and the mAP
/// (mean over *all* classes).
pub(super) fn class_aps(
    m: &Matched,
    is_tp: &[bool],
    names: &[String],
    params: &MapParams,
) -> (Vec<ClassAp>, Vec<Vec<PrPoint>>, f64) {
    let classes = names.len();
    let detections = &m.detections;
    let n = detections.len();
    let th = &m.thresh;
    let mut per_class = Vec::with_capacity(classes);
    let mut class_curves = Vec::with_capacity(classes);
    let mut map = 0.0f64;
    for (i, name) in names.iter().enumerate() {
        let (recall, precision) =
            class_pr_over_ranks(detections, is_tp, i, m.truth_classes_count[i]);
        let ap = if n == 0 {
            0.0
        } else if params.points == 0 {
            ap_area_under_curve(&recall, &precision)
        } else {
            ap_n_points(&recall, &precision, params.points)
        };
        map += ap;
        class_curves.push(class_curve(detections, &recall, &precision, i));
        let counted = th.tp_per_class[i] + th.fp_per_class[i];
        per_class.push(ClassAp {
            class_id: i,
            name: name.clone(),
            ap,
            tp: th.tp_per_class[i],
            fp: th.fp_per_class[i],
            truths: m.truth_classes_count[i],
            avg_iou: (counted > 0).then(|| th.avg_iou_per_class[i] / counted as f64),
        });
    }
    if classes > 0 {
        map /= classes as f64;
    }
    (per_class, class_curves, map)
}

/// The curve of one class: its own ranks only (for the PR plot).
fn class_curve(dets: &[BoxProb], recall: &[f64], precision: &[f64], class: usize) -> Vec<PrPoint> {
    (0..dets.len())
        .filter(|&r| dets[r].class_id == class)
        .map(|r| PrPoint {
            recall: recall[r],
            precision: precision[r],
            prob: dets[r].p as f64,
        })
        .collect()
}

/// `pr[class][rank]` of the C for one class over *all* ranks: its TP/FP only move at its own ranks.
fn class_pr_over_ranks(
    dets: &[BoxProb],
    is_tp: &[bool],
    class: usize,
    truths: u64,
) -> (Vec<f64>, Vec<f64>) {
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut recall = Vec::with_capacity(dets.len());
    let mut precision = Vec::with_capacity(dets.len());
    for (d, &t) in dets.iter().zip(is_tp) {
        if d.class_id == class {
            if t {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        // fn = truths - tp, so tp + fn = truths.
        precision.push(if tp + fp > 0 {
            tp as f64 / (tp + fp) as f64
        } else {
            0.0
        });
        recall.push(if truths > 0 {
            tp as f64 / truths as f64
        } else {
            0.0
        });
    }
    (recall, precision)
}

/// `map_points == 0`: walk ranks from the last, accumulate Δrecall × (max precision seen so far), then the
/// remaining area down to recall 0.
fn ap_area_under_curve(recall: &[f64], precision: &[f64]) -> f64 {
    let n = recall.len();
    let mut last_recall = recall[n - 1];
    let mut last_precision = precision[n - 1];
    let mut ap = 0.0;
    for rank in (0..n.saturating_sub(1)).rev() {
        let delta = last_recall - recall[rank];
        last_recall = recall[rank];
        if precision[rank] > last_precision {
            last_precision = precision[rank];
        }
        ap += delta * last_precision;
    }
    ap + (last_recall - 0.0) * last_precision
}

/// `map_points == N`: mean over recall points `p/(N-1)` of the best precision at any rank with recall >= it.
fn ap_n_points(recall: &[f64], precision: &[f64], points: u32) -> f64 {
    let n = recall.len();
    let mut suffix_max = vec![0.0f64; n + 1];
    for r in (0..n).rev() {
        suffix_max[r] = suffix_max[r + 1].max(precision[r]);
    }
    let mut ap = 0.0;
    for point in 0..points {
        let cur_recall = point as f64 * 1.0 / (points - 1) as f64;
        let first = recall.partition_point(|&r| r < cur_recall);
        ap += suffix_max[first];
    }
    ap / points as f64
}

/// Pooled curve over all classes (for the overall plot; not a Darknet output).
pub(super) fn overall_curve(dets: &[BoxProb], is_tp: &[bool], truths: usize) -> Vec<PrPoint> {
    let mut tp = 0usize;
    dets.iter()
        .zip(is_tp)
        .enumerate()
        .map(|(rank, (d, &t))| {
            tp += t as usize;
            PrPoint {
                recall: if truths > 0 {
                    tp as f64 / truths as f64
                } else {
                    0.0
                },
                precision: tp as f64 / (rank + 1) as f64,
                prob: d.p as f64,
            }
        })
        .collect()
}
