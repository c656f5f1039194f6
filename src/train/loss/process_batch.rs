//! `process_batch` of `forward_yolo_layer` (src/yolo_layer.c): the per-image loop that writes the deltas of
//! one image, in Darknet's three passes (every prediction, every truth, multi-anchor averaging).

use super::delta::{
    averages_yolo_deltas, compare_yolo_class, delta_yolo_box, delta_yolo_class, get_yolo_box,
};
use super::{Layer, YoloLossResult};
use crate::train::box_iou::{box_iou, box_iou_kind, Bbox};

/// Bookkeeping shared by the best-anchor and the `iou_thresh` assignments of `process_batch`.
#[allow(clippy::too_many_arguments)]
fn assign_truth(
    l: &Layer,
    output: &[f32],
    delta: &mut [f32],
    res: &mut YoloLossResult,
    b: usize,
    truth: Bbox,
    class_id: usize,
    track_id: f32,
    anchor_n: usize,
    mask_n: usize,
    i: usize,
    j: usize,
    set_labels: bool,
) {
    let cell = j * l.g.w + i;
    let box_index = l.entry_index(b, mask_n * l.stride + cell, 0);
    let class_multiplier = l.class_multiplier(class_id);
    let ious = delta_yolo_box(
        l,
        truth,
        output,
        l.anchor(anchor_n),
        box_index,
        i,
        j,
        delta,
        2.0 - truth.w * truth.h,
        l.cfg.iou_normalizer * class_multiplier,
        res,
    );
    res.total_bbox += 1;
    if set_labels {
        let o = b * l.n * l.stride + mask_n * l.stride + cell;
        res.labels[o] = track_id as i32;
        res.class_ids[o] = class_id as i32;
    }
    res.tot_iou += ious.iou;
    res.tot_iou_loss += 1.0 - ious.iou;
    res.tot_giou_loss += 1.0 - ious.giou;
    res.tot_diou_loss += 1.0 - ious.diou;
    res.tot_ciou_loss += 1.0 - ious.ciou;

    let obj_index = l.entry_index(b, mask_n * l.stride + cell, 4);
    res.sum_obj += output[obj_index];
    let delta_obj = class_multiplier * l.cfg.obj_normalizer * (1.0 - output[obj_index]);
    if l.cfg.objectness_smooth {
        if delta[obj_index] == 0.0 {
            delta[obj_index] = delta_obj;
        }
    } else {
        delta[obj_index] = delta_obj;
    }
    let class_index = l.entry_index(b, mask_n * l.stride + cell, 5);
    let mut cat = 0.0;
    delta_yolo_class(l, output, delta, class_index, class_id, Some(&mut cat));
    res.sum_cat += cat;
    res.count += 1;
    res.class_count += 1;
    if ious.iou > 0.5 {
        res.recall50 += 1;
    }
    if ious.iou > 0.75 {
        res.recall75 += 1;
    }
}

/// Darknet's class id: the float truncated toward zero (`int class_id = state.truth[...]`).
fn class_of(raw: f32, classes: usize) -> Option<usize> {
    let c = raw as i64;
    (c >= 0 && (c as usize) < classes).then_some(c as usize)
}

/// The best truth of one predicted box (the truth loop of `process_batch`'s first pass).
struct BestTruth {
    /// Best IoU among truths whose class the box already predicts (`compare_yolo_class` at .25).
    match_iou: f32,
    /// Best IoU among all truths with a valid class, and that truth's index.
    iou: f32,
    t: usize,
}

/// The truth loop for one predicted box: its best IoU overall and among class-matching truths. Like Darknet it
/// zeroes a non-finite objectness on the way (once a truth with a valid class is seen).
#[allow(clippy::too_many_arguments)]
fn best_truth_for_prediction(
    l: &Layer,
    output: &mut [f32],
    truth: &[f32],
    b: usize,
    n_truth: usize,
    pred: Bbox,
    class_index: usize,
    obj_index: usize,
) -> BestTruth {
    let mut best = BestTruth {
        match_iou: 0.0,
        iou: 0.0,
        t: 0,
    };
    for t in 0..n_truth {
        let (tb, raw_class, _) = l.truth_box(truth, b, t);
        if class_of(raw_class, l.classes).is_none() {
            continue;
        }
        if !output[obj_index].is_finite() {
            output[obj_index] = 0.0;
        }
        let class_match = compare_yolo_class(l, output, class_index, 0.25);
        let iou = box_iou(pred, tb);
        if iou > best.match_iou && class_match {
            best.match_iou = iou;
        }
        if iou > best.iou {
            best.iou = iou;
            best.t = t;
        }
    }
    best
}

/// The `best_iou > truth_thresh` branch of the first pass: the predicted box is trained towards its best truth
/// (objectness, class and box deltas).
#[allow(clippy::too_many_arguments)]
fn truth_thresh_deltas(
    l: &Layer,
    output: &[f32],
    delta: &mut [f32],
    truth: &[f32],
    b: usize,
    best: &BestTruth,
    (n, i, j): (usize, usize, usize),
    (class_index, obj_index, box_index): (usize, usize, usize),
    res: &mut YoloLossResult,
) {
    let cfg = l.cfg;
    let iou_multiplier = best.iou * best.iou;
    delta[obj_index] = if cfg.objectness_smooth {
        cfg.obj_normalizer * (iou_multiplier - output[obj_index])
    } else {
        cfg.obj_normalizer * (1.0 - output[obj_index])
    };
    let (tb, raw_class, _) = l.truth_box(truth, b, best.t);
    // best.t only ever points at a truth with a valid class.
    let class_id = class_of(raw_class, l.classes).unwrap_or(0);
    delta_yolo_class(l, output, delta, class_index, class_id, None);
    let class_multiplier = l.class_multiplier(class_id);
    if cfg.objectness_smooth {
        let ci = class_index + l.stride * class_id;
        delta[ci] = class_multiplier * (iou_multiplier - output[ci]);
    }
    delta_yolo_box(
        l,
        tb,
        output,
        l.anchor(cfg.mask[n]),
        box_index,
        i,
        j,
        delta,
        2.0 - tb.w * tb.h,
        cfg.iou_normalizer * class_multiplier,
        res,
    );
    res.total_bbox += 1;
}

/// First pass of `process_batch`: every predicted box gets its objectness target from its best-matching truth
/// (`ignore_thresh` / `truth_thresh`).
fn prediction_deltas(
    l: &Layer,
    output: &mut [f32],
    delta: &mut [f32],
    truth: &[f32],
    b: usize,
    n_truth: usize,
    res: &mut YoloLossResult,
) {
    let cfg = l.cfg;
    let (lw, lh) = (l.g.w, l.g.h);
    for j in 0..lh {
        for i in 0..lw {
            for n in 0..l.n {
                let loc = n * l.stride + j * lw + i;
                let class_index = l.entry_index(b, loc, 5);
                let obj_index = l.entry_index(b, loc, 4);
                let box_index = l.entry_index(b, loc, 0);
                let pred = get_yolo_box(output, l.anchor(cfg.mask[n]), box_index, i, j, l);
                let best = best_truth_for_prediction(
                    l,
                    output,
                    truth,
                    b,
                    n_truth,
                    pred,
                    class_index,
                    obj_index,
                );
                res.sum_anyobj += output[obj_index];
                delta[obj_index] = cfg.obj_normalizer * (0.0 - output[obj_index]);
                if best.match_iou > cfg.ignore_thresh {
                    if cfg.objectness_smooth {
                        let d = cfg.obj_normalizer * (best.match_iou - output[obj_index]);
                        if d > delta[obj_index] {
                            delta[obj_index] = d;
                        }
                    } else {
                        delta[obj_index] = 0.0;
                    }
                }
                if best.iou > cfg.truth_thresh {
                    truth_thresh_deltas(
                        l,
                        output,
                        delta,
                        truth,
                        b,
                        &best,
                        (n, i, j),
                        (class_index, obj_index, box_index),
                        res,
                    );
                }
            }
        }
    }
}

/// The anchor (an index into all anchors) whose shape best matches `shift` (a truth moved to the origin), first
/// one on ties.
fn best_anchor(l: &Layer, shift: Bbox) -> usize {
    let (mut best_iou, mut best_n) = (0.0f32, 0usize);
    for n in 0..l.cfg.total {
        let iou = box_iou(anchor_box(l, n), shift);
        if iou > best_iou {
            best_iou = iou;
            best_n = n;
        }
    }
    best_n
}

/// Anchor `n` as a box at the origin, in units of the network input.
fn anchor_box(l: &Layer, n: usize) -> Bbox {
    let (aw, ah) = l.anchor(n);
    Bbox::new(0.0, 0.0, aw / l.g.net_w as f32, ah / l.g.net_h as f32)
}

/// Second pass of `process_batch` for truth `t`: the anchor of best shape IoU (if it belongs to this layer)
/// and, with `iou_thresh` < 1, every other anchor of this layer whose shape IoU exceeds `iou_thresh`.
fn truth_deltas(
    l: &Layer,
    output: &[f32],
    delta: &mut [f32],
    truth: &[f32],
    b: usize,
    t: usize,
    res: &mut YoloLossResult,
) {
    let cfg = l.cfg;
    let (lw, lh) = (l.g.w, l.g.h);
    let (tb, raw_class, track_id) = l.truth_box(truth, b, t);
    let Some(class_id) = class_of(raw_class, l.classes) else {
        res.skipped_truths += 1;
        return;
    };
    let i = ((tb.x * lw as f32) as usize).min(lw - 1);
    let j = ((tb.y * lh as f32) as usize).min(lh - 1);
    let shift = Bbox::new(0.0, 0.0, tb.w, tb.h);
    let best_n = best_anchor(l, shift);
    let mask_index = |n: usize| cfg.mask.iter().position(|&m| m == n);
    if let Some(mask_n) = mask_index(best_n) {
        assign_truth(
            l, output, delta, res, b, tb, class_id, track_id, best_n, mask_n, i, j, true,
        );
    }
    if cfg.iou_thresh < 1.0 {
        for n in 0..cfg.total {
            let Some(mask_n) = mask_index(n) else {
                continue;
            };
            if n == best_n {
                continue;
            }
            let iou = box_iou_kind(anchor_box(l, n), shift, cfg.iou_thresh_kind);
            if iou > cfg.iou_thresh {
                assign_truth(
                    l, output, delta, res, b, tb, class_id, track_id, n, mask_n, i, j, false,
                );
            }
        }
    }
}

/// Third pass of `process_batch` (only with `iou_thresh` < 1, several anchors per truth): average the accumulated
/// box deltas over the classes they carry.
fn average_box_deltas(l: &Layer, delta: &mut [f32], b: usize) {
    let (lw, lh) = (l.g.w, l.g.h);
    for j in 0..lh {
        for i in 0..lw {
            for n in 0..l.n {
                let loc = n * l.stride + j * lw + i;
                if delta[l.entry_index(b, loc, 4)] != 0.0 {
                    averages_yolo_deltas(
                        l,
                        l.entry_index(b, loc, 5),
                        l.entry_index(b, loc, 0),
                        delta,
                    );
                }
            }
        }
    }
}

/// `process_batch` for image `b`: the three passes over predictions, truths and multi-anchor averaging.
pub(super) fn process_image(
    l: &Layer,
    output: &mut [f32],
    delta: &mut [f32],
    truth: &[f32],
    b: usize,
    res: &mut YoloLossResult,
) {
    let n_truth = (0..l.cfg.max_boxes)
        .take_while(|&t| l.truth_box(truth, b, t).0.x != 0.0)
        .count();
    prediction_deltas(l, output, delta, truth, b, n_truth, res);
    for t in 0..n_truth {
        truth_deltas(l, output, delta, truth, b, t, res);
    }
    if l.cfg.iou_thresh < 1.0 {
        average_box_deltas(l, delta, b);
    }
}
