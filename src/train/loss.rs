//! The YOLO layer's training branch: `forward_yolo_layer` with `state.train = 1` and its helpers
//! (`process_batch`, `delta_yolo_box`, `delta_yolo_class`, `compare_yolo_class`, `averages_yolo_deltas`,
//! `get_yolo_box`) in src/yolo_layer.c.
//!
//! Darknet does not compute a loss to differentiate: it writes `l.delta` = "target − output", the NEGATIVE
//! gradient w.r.t. the layer's INPUT (the logistic derivative is deliberately not applied), and reports a cost
//! for logging. [`yolo_deltas`] reproduces both from the layer's activated output (`l.output`) and the truth array.
//!
//! Deliberate differences / not mirrored:
//! * `net.adversarial` (adversarial-attack training) and the net-level bad-label rejection / equidistant-point
//!   options (`badlabels_rejection_percentage`, `num_sigmas_reject_badlabels`, `equidistant_point`, all off by
//!   default) are not reproduced; nor is `l.map` (class remapping for `map=` files).
//! * A truth box with `x == 1` (or `y == 1`) makes Darknet index one cell past the grid (`i = x * l.w`), which is
//!   undefined behaviour in C; here the cell index is clamped to the last cell.
//! * Darknet's "Wrong label" message for out-of-range boxes is not printed; boxes with a class outside
//!   `0..classes` are skipped as in Darknet (and counted in [`YoloLossResult::skipped_truths`]).

use anyhow::{bail, Result};

use super::box_iou::{
    box_ciou, box_diou, box_giou, box_iou, box_iou_kind, dx_box_iou, Bbox, BoxGrad,
};
use crate::cfg::{IouLoss, YoloConfig};

/// `l.truth_size` of this fork: x, y, w, h, class id, track id.
pub const TRUTH_SIZE: usize = 6;

/// Geometry of one yolo layer call.
#[derive(Debug, Clone, Copy)]
pub struct YoloGeometry {
    pub batch: usize,
    /// Grid width / height (`l.w`, `l.h`).
    pub w: usize,
    pub h: usize,
    /// Network input size (`state.net.w`, `state.net.h`), the unit of the anchors.
    pub net_w: usize,
    pub net_h: usize,
}

/// Everything `forward_yolo_layer` produces in training mode.
#[derive(Debug, Clone, Default)]
pub struct YoloLossResult {
    /// `l.delta`, same layout as the output: batch, anchor, entry (x, y, w, h, obj, classes…), row, column.
    pub delta: Vec<f32>,
    /// `l.cost[0]`.
    pub cost: f32,
    /// The log's `class_loss × batch`: `obj_normalizer · ‖delta with the box entries zeroed‖²`.
    pub classification_loss: f32,
    /// The log's `iou_loss × batch`: `‖delta‖² − classification_loss`.
    pub iou_loss: f32,
    /// `tot_iou / count` (the log's "Avg (IOU: …)").
    pub avg_iou: f32,
    /// Sum of the IoU of every assignment.
    pub tot_iou: f32,
    /// Sum over assigned boxes of `1 − IoU`, `1 − GIoU`, `1 − DIoU`, `1 − CIoU`.
    pub tot_iou_loss: f32,
    pub tot_giou_loss: f32,
    pub tot_diou_loss: f32,
    pub tot_ciou_loss: f32,
    /// Number of (truth, anchor) assignments (`count`, before Darknet's `if (count == 0) count = 1`).
    pub count: usize,
    pub class_count: usize,
    /// Assignments with IoU > .5 and > .75 (Darknet computes but no longer prints these).
    pub recall50: usize,
    pub recall75: usize,
    /// Sums of the assigned class probability, the assigned objectness and every objectness.
    pub sum_cat: f32,
    pub sum_obj: f32,
    pub sum_anyobj: f32,
    /// `state.net.rewritten_bbox` / `state.net.total_bbox` increments.
    pub rewritten_bbox: usize,
    pub total_bbox: usize,
    /// `l.labels` (track ids) and `l.class_ids` per (batch, anchor, cell); −1 where no truth was assigned.
    pub labels: Vec<i32>,
    pub class_ids: Vec<i32>,
    /// Truth boxes skipped for a class id outside `0..classes` (Darknet prints a warning).
    pub skipped_truths: usize,
}

/// Per-image constants of the layer, gathered once.
struct Layer<'a> {
    cfg: &'a YoloConfig,
    g: YoloGeometry,
    n: usize,
    classes: usize,
    stride: usize,
    outputs: usize,
    truths: usize,
}

impl Layer<'_> {
    /// `entry_index`: `location` = anchor·w·h + cell.
    fn entry_index(&self, b: usize, location: usize, entry: usize) -> usize {
        let n = location / self.stride;
        let loc = location % self.stride;
        b * self.outputs + n * self.stride * (4 + self.classes + 1) + entry * self.stride + loc
    }

    fn anchor(&self, n: usize) -> (f32, f32) {
        self.cfg.anchors[n]
    }

    fn truth_box(&self, truth: &[f32], b: usize, t: usize) -> (Bbox, f32, f32) {
        let o = b * self.truths + t * TRUTH_SIZE;
        (
            Bbox::new(truth[o], truth[o + 1], truth[o + 2], truth[o + 3]),
            truth[o + 4],
            truth[o + 5],
        )
    }

    fn class_multiplier(&self, class_id: usize) -> f32 {
        self.cfg
            .classes_multipliers
            .as_ref()
            .map_or(1.0, |m| m[class_id])
    }
}

/// `get_yolo_box`: the predicted box of anchor `n` (an index into all anchors) at cell (i, j).
fn get_yolo_box(
    x: &[f32],
    anchor: (f32, f32),
    index: usize,
    i: usize,
    j: usize,
    l: &Layer,
) -> Bbox {
    let s = l.stride;
    let (lw, lh) = (l.g.w as f32, l.g.h as f32);
    let bx = (i as f32 + x[index]) / lw;
    let by = (j as f32 + x[index + s]) / lh;
    let (tw, th) = (x[index + 2 * s], x[index + 3 * s]);
    let (bw, bh) = if l.cfg.new_coords {
        (
            tw * tw * 4.0 * anchor.0 / l.g.net_w as f32,
            th * th * 4.0 * anchor.1 / l.g.net_h as f32,
        )
    } else {
        (
            ((tw as f64).exp() * anchor.0 as f64 / l.g.net_w as f64) as f32,
            ((th as f64).exp() * anchor.1 as f64 / l.g.net_h as f64) as f32,
        )
    };
    Bbox::new(bx, by, bw, bh)
}

fn fix_nan_inf(v: f32) -> f32 {
    if v.is_finite() {
        v
    } else {
        0.0
    }
}

/// The four IoU-type scores of one assignment (`ious`).
#[derive(Default, Clone, Copy)]
struct Ious {
    iou: f32,
    giou: f32,
    diou: f32,
    ciou: f32,
}

/// `delta_yolo_box` with `accumulate = 1` (every caller in `forward_yolo_layer` passes 1). `scale` (2 − w·h) only
/// enters the MSE branch; the IoU branches use `iou_normalizer` and `max_delta` clipping instead.
#[allow(clippy::too_many_arguments)]
fn delta_yolo_box(
    l: &Layer,
    truth: Bbox,
    x: &[f32],
    anchor: (f32, f32),
    index: usize,
    i: usize,
    j: usize,
    delta: &mut [f32],
    scale: f32,
    iou_normalizer: f32,
    res: &mut YoloLossResult,
) -> Ious {
    let s = l.stride;
    if (0..4).any(|k| delta[index + k * s] != 0.0) {
        res.rewritten_bbox += 1;
    }
    let mut pred = get_yolo_box(x, anchor, index, i, j, l);
    let ious = Ious {
        iou: box_iou(pred, truth),
        giou: box_giou(pred, truth),
        diou: box_diou(pred, truth),
        ciou: box_ciou(pred, truth),
    };
    // Darknet: "avoid nan in dx_box_iou".
    if pred.w == 0.0 {
        pred.w = 1.0;
    }
    if pred.h == 0.0 {
        pred.h = 1.0;
    }
    let (net_w, net_h) = (l.g.net_w as f32, l.g.net_h as f32);
    if l.cfg.iou_loss == IouLoss::Mse {
        let tx = truth.x * l.g.w as f32 - i as f32;
        let ty = truth.y * l.g.h as f32 - j as f32;
        let (tw, th) = if l.cfg.new_coords {
            (
                ((truth.w * net_w / (4.0 * anchor.0)) as f64).sqrt() as f32,
                ((truth.h * net_h / (4.0 * anchor.1)) as f64).sqrt() as f32,
            )
        } else {
            (
                ((truth.w * net_w / anchor.0) as f64).ln() as f32,
                ((truth.h * net_h / anchor.1) as f64).ln() as f32,
            )
        };
        for (k, target) in [tx, ty, tw, th].into_iter().enumerate() {
            delta[index + k * s] += scale * (target - x[index + k * s]) * iou_normalizer;
        }
    } else {
        let BoxGrad {
            dx,
            dy,
            mut dw,
            mut dh,
        } = dx_box_iou(pred, truth, l.cfg.iou_loss);
        // Chain rule through exp() for w, h only: x, y get no logistic derivative (Darknet's choice).
        if !l.cfg.new_coords {
            dw = (dw as f64 * (x[index + 2 * s] as f64).exp()) as f32;
            dh = (dh as f64 * (x[index + 3 * s] as f64).exp()) as f32;
        }
        let mut d = [dx, dy, dw, dh].map(|v| fix_nan_inf(v * iou_normalizer));
        if l.cfg.max_delta != f32::MAX {
            let m = l.cfg.max_delta;
            d = d.map(|v| v.clamp(-m, m));
        }
        for (k, v) in d.into_iter().enumerate() {
            delta[index + k * s] += v;
        }
    }
    ious
}

/// `averages_yolo_deltas`: divide the box deltas by the number of classes with a positive delta.
fn averages_yolo_deltas(l: &Layer, class_index: usize, box_index: usize, delta: &mut [f32]) {
    let s = l.stride;
    let classes_in_box = (0..l.classes)
        .filter(|&c| delta[class_index + s * c] > 0.0)
        .count();
    if classes_in_box > 0 {
        for k in 0..4 {
            delta[box_index + k * s] /= classes_in_box as f32;
        }
    }
}

/// `delta_yolo_class`. `avg_cat` is `None` where Darknet passes 0 (the truth_thresh branch).
fn delta_yolo_class(
    l: &Layer,
    output: &[f32],
    delta: &mut [f32],
    index: usize,
    class_id: usize,
    avg_cat: Option<&mut f32>,
) {
    let s = l.stride;
    let cfg = l.cfg;
    let eps = cfg.label_smooth_eps;
    let smooth = |y: f32| {
        if eps != 0.0 {
            (y as f64 * (1.0 - eps as f64) + 0.5 * eps as f64) as f32
        } else {
            y
        }
    };
    let ti = index + s * class_id;
    // A class already given a delta in this cell (another truth): only refresh that class.
    if delta[ti] != 0.0 {
        let r = smooth(1.0) - output[ti];
        if r.is_finite() {
            delta[ti] = r;
        }
        if let Some(m) = &cfg.classes_multipliers {
            delta[ti] *= m[class_id];
        }
        if let Some(a) = avg_cat {
            *a += output[ti];
        }
        return;
    }
    if cfg.focal_loss {
        let alpha = 0.5f32;
        let pt = output[ti] + 0.000000000000001f32;
        let grad = -(1.0 - pt) * (2.0 * pt * pt.ln() + pt - 1.0);
        for n in 0..l.classes {
            let y = if n == class_id { 1.0 } else { 0.0 };
            delta[index + s * n] = (y - output[index + s * n]) * (alpha * grad);
        }
    } else {
        for n in 0..l.classes {
            let y = smooth(if n == class_id { 1.0 } else { 0.0 });
            let r = y - output[index + s * n];
            if r.is_finite() {
                delta[index + s * n] = r;
            }
            // cls_normalizer only enters together with counters_per_class, exactly as in Darknet.
            if let (Some(m), true) = (&cfg.classes_multipliers, n == class_id) {
                delta[ti] *= m[class_id] * cfg.cls_normalizer;
            }
        }
    }
    if let Some(a) = avg_cat {
        *a += output[ti];
    }
}

/// `compare_yolo_class`: does any class probability (not multiplied by objectness) exceed `conf_thresh`?
fn compare_yolo_class(l: &Layer, output: &[f32], class_index: usize, conf_thresh: f32) -> bool {
    (0..l.classes).any(|j| output[class_index + l.stride * j] > conf_thresh)
}

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

/// `process_batch` for image `b`.
fn process_image(
    l: &Layer,
    output: &mut [f32],
    delta: &mut [f32],
    truth: &[f32],
    b: usize,
    res: &mut YoloLossResult,
) {
    let cfg = l.cfg;
    let s = l.stride;
    let (lw, lh) = (l.g.w, l.g.h);
    let n_truth = (0..cfg.max_boxes)
        .take_while(|&t| l.truth_box(truth, b, t).0.x != 0.0)
        .count();

    // 1. Every predicted box: objectness target from its best-matching truth (ignore_thresh / truth_thresh).
    for j in 0..lh {
        for i in 0..lw {
            for n in 0..l.n {
                let loc = n * s + j * lw + i;
                let class_index = l.entry_index(b, loc, 5);
                let obj_index = l.entry_index(b, loc, 4);
                let box_index = l.entry_index(b, loc, 0);
                let pred = get_yolo_box(output, l.anchor(cfg.mask[n]), box_index, i, j, l);
                let (mut best_match_iou, mut best_iou, mut best_t) = (0.0f32, 0.0f32, 0usize);
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
                    if iou > best_match_iou && class_match {
                        best_match_iou = iou;
                    }
                    if iou > best_iou {
                        best_iou = iou;
                        best_t = t;
                    }
                }
                res.sum_anyobj += output[obj_index];
                delta[obj_index] = cfg.obj_normalizer * (0.0 - output[obj_index]);
                if best_match_iou > cfg.ignore_thresh {
                    if cfg.objectness_smooth {
                        let d = cfg.obj_normalizer * (best_match_iou - output[obj_index]);
                        if d > delta[obj_index] {
                            delta[obj_index] = d;
                        }
                    } else {
                        delta[obj_index] = 0.0;
                    }
                }
                if best_iou > cfg.truth_thresh {
                    let iou_multiplier = best_iou * best_iou;
                    delta[obj_index] = if cfg.objectness_smooth {
                        cfg.obj_normalizer * (iou_multiplier - output[obj_index])
                    } else {
                        cfg.obj_normalizer * (1.0 - output[obj_index])
                    };
                    let (tb, raw_class, _) = l.truth_box(truth, b, best_t);
                    // best_t only ever points at a truth with a valid class.
                    let class_id = class_of(raw_class, l.classes).unwrap_or(0);
                    delta_yolo_class(l, output, delta, class_index, class_id, None);
                    let class_multiplier = l.class_multiplier(class_id);
                    if cfg.objectness_smooth {
                        let ci = class_index + s * class_id;
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
            }
        }
    }

    // 2. Every truth: the anchor of best shape IoU (if it belongs to this layer) and, with iou_thresh < 1,
    //    every other anchor of this layer whose shape IoU exceeds iou_thresh.
    for t in 0..n_truth {
        let (tb, raw_class, track_id) = l.truth_box(truth, b, t);
        let Some(class_id) = class_of(raw_class, l.classes) else {
            res.skipped_truths += 1;
            continue;
        };
        let i = ((tb.x * lw as f32) as usize).min(lw - 1);
        let j = ((tb.y * lh as f32) as usize).min(lh - 1);
        let shift = Bbox::new(0.0, 0.0, tb.w, tb.h);
        let anchor_box = |n: usize| {
            let (aw, ah) = l.anchor(n);
            Bbox::new(0.0, 0.0, aw / l.g.net_w as f32, ah / l.g.net_h as f32)
        };
        let (mut best_iou, mut best_n) = (0.0f32, 0usize);
        for n in 0..cfg.total {
            let iou = box_iou(anchor_box(n), shift);
            if iou > best_iou {
                best_iou = iou;
                best_n = n;
            }
        }
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
                let iou = box_iou_kind(anchor_box(n), shift, cfg.iou_thresh_kind);
                if iou > cfg.iou_thresh {
                    assign_truth(
                        l, output, delta, res, b, tb, class_id, track_id, n, mask_n, i, j, false,
                    );
                }
            }
        }
    }

    // 3. With several anchors per truth, average the accumulated box deltas over the classes they carry.
    if cfg.iou_thresh < 1.0 {
        for j in 0..lh {
            for i in 0..lw {
                for n in 0..l.n {
                    let loc = n * s + j * lw + i;
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
}

/// The in-layer activation of `forward_yolo_layer` (CPU path) on the raw layer input: per anchor, logistic on
/// x, y, objectness and classes (`activate_array(..., LOGISTIC)`, `1/(1 + expf(−t))`), then
/// `x, y ← x·scale_x_y − 0.5·(scale_x_y − 1)` (`scal_add_cpu`); w, h stay raw. With `new_coords` nothing is
/// activated, only the x, y scaling is applied. Gives the `output` that [`yolo_deltas`] expects.
pub fn yolo_activate(cfg: &YoloConfig, raw: &[f32], g: YoloGeometry) -> Result<Vec<f32>> {
    let stride = g.w * g.h;
    let n = cfg.mask.len();
    let per_anchor = (5 + cfg.classes) * stride;
    if cfg.gaussian || raw.len() != g.batch * n * per_anchor {
        bail!(
            "yolo_activate: {} floats, expected batch {} × {} anchors × {} entries × {}×{}{}",
            raw.len(),
            g.batch,
            n,
            5 + cfg.classes,
            g.h,
            g.w,
            if cfg.gaussian {
                " ([Gaussian_yolo] unsupported)"
            } else {
                ""
            }
        );
    }
    let logistic = |t: f32| 1.0 / (1.0 + (-t).exp());
    let beta = (-0.5 * (cfg.scale_x_y as f64 - 1.0)) as f32;
    let mut out = raw.to_vec();
    for anchor in out.chunks_exact_mut(per_anchor) {
        if !cfg.new_coords {
            for v in anchor[..2 * stride].iter_mut() {
                *v = logistic(*v);
            }
            for v in anchor[4 * stride..].iter_mut() {
                *v = logistic(*v);
            }
        }
        for v in anchor[..2 * stride].iter_mut() {
            *v = *v * cfg.scale_x_y + beta;
        }
    }
    Ok(out)
}

/// Builds Darknet's `state.truth` array: per image `max_boxes` slots of `[x, y, w, h, class, track_id = 0]`,
/// unused slots zero (`fill_truth_detection` layout). Boxes are relative centre/size; a box with `x == 0` would end
/// Darknet's list early, so it is refused, as are more boxes than `max_boxes`.
pub fn pack_truth(images: &[Vec<[f32; 5]>], max_boxes: usize) -> Result<Vec<f32>> {
    let mut out = vec![0.0f32; images.len() * max_boxes * TRUTH_SIZE];
    for (b, boxes) in images.iter().enumerate() {
        if boxes.len() > max_boxes {
            bail!(
                "pack_truth: image {b} has {} boxes, max_boxes is {max_boxes}",
                boxes.len()
            );
        }
        for (t, bx) in boxes.iter().enumerate() {
            if bx[0] == 0.0 {
                bail!("pack_truth: image {b} box {t} has x == 0, which ends Darknet's truth list");
            }
            let o = (b * max_boxes + t) * TRUTH_SIZE;
            out[o..o + 5].copy_from_slice(bx);
        }
    }
    Ok(out)
}

/// Squared L2 norm (`pow(mag_array(a, n), 2)`), accumulated in double.
fn sum_sq(a: &[f32]) -> f64 {
    a.iter().map(|&v| (v as f64) * (v as f64)).sum()
}

/// `forward_yolo_layer` in training mode, after the activation: the deltas and the cost of one yolo layer.
///
/// * `output`: `l.output` (x, y = `logistic(t)·scale_x_y − (scale_x_y−1)/2`, w, h raw, objectness and classes
///   logistic), `batch × n × (5 + classes) × h × w` floats.
/// * `truth`: `state.truth`, `batch × cfg.max_boxes × 6` floats (x, y, w, h, class, track id; the list of an
///   image ends at the first box with x == 0).
pub fn yolo_deltas(
    cfg: &YoloConfig,
    output: &[f32],
    g: YoloGeometry,
    truth: &[f32],
) -> Result<YoloLossResult> {
    if cfg.gaussian {
        bail!("yolo_deltas: [Gaussian_yolo] is not supported");
    }
    if cfg.mask.iter().any(|&m| m >= cfg.anchors.len()) {
        bail!(
            "yolo_deltas: mask {:?} refers past the {} anchors",
            cfg.mask,
            cfg.anchors.len()
        );
    }
    if g.w == 0 || g.h == 0 || g.batch == 0 || g.net_w == 0 || g.net_h == 0 {
        bail!("yolo_deltas: empty geometry {g:?}");
    }
    let n = cfg.mask.len();
    let stride = g.w * g.h;
    let outputs = n * (5 + cfg.classes) * stride;
    if output.len() != g.batch * outputs {
        bail!(
            "yolo_deltas: output has {} floats, expected batch {} × {} anchors × {} entries × {}×{} = {}",
            output.len(),
            g.batch,
            n,
            5 + cfg.classes,
            g.h,
            g.w,
            g.batch * outputs
        );
    }
    let truths = cfg.max_boxes * TRUTH_SIZE;
    if truth.len() != g.batch * truths {
        bail!(
            "yolo_deltas: truth has {} floats, expected batch {} × max_boxes {} × {TRUTH_SIZE} = {}",
            truth.len(),
            g.batch,
            cfg.max_boxes,
            g.batch * truths
        );
    }
    let l = Layer {
        cfg,
        g,
        n,
        classes: cfg.classes,
        stride,
        outputs,
        truths,
    };
    let mut out = output.to_vec();
    let mut res = YoloLossResult {
        delta: vec![0.0; output.len()],
        labels: vec![-1; g.batch * n * stride],
        class_ids: vec![-1; g.batch * n * stride],
        ..Default::default()
    };
    let mut delta = std::mem::take(&mut res.delta);
    for b in 0..g.batch {
        process_image(&l, &mut out, &mut delta, truth, b, &mut res);
    }
    res.delta = delta;
    finish_cost(cfg, &l, &mut res);
    Ok(res)
}

/// The cost and log figures at the end of `forward_yolo_layer`.
fn finish_cost(cfg: &YoloConfig, l: &Layer, res: &mut YoloLossResult) {
    let count = res.count.max(1) as f32;
    res.avg_iou = res.tot_iou / count;
    let loss = sum_sq(&res.delta);
    let mut no_box = res.delta.clone();
    for b in 0..l.g.batch {
        for n in 0..l.n {
            for k in 0..4 {
                let start = l.entry_index(b, n * l.stride, k);
                no_box[start..start + l.stride].fill(0.0);
            }
        }
    }
    let classification = cfg.obj_normalizer as f64 * sum_sq(&no_box);
    res.classification_loss = classification as f32;
    res.iou_loss = (loss - classification) as f32;
    res.cost = if !cfg.show_details || cfg.iou_loss == IouLoss::Mse {
        loss as f32
    } else {
        // Note: with iou_loss = diou / ciou Darknet still averages 1 − IoU here, not 1 − CIoU.
        let tot = if cfg.iou_loss == IouLoss::Giou {
            res.tot_giou_loss
        } else {
            res.tot_iou_loss
        };
        cfg.iou_normalizer * (tot / count) + classification as f32
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cfg::NetworkConfig;

    fn one_layer_cfg(extra: &str) -> YoloConfig {
        let text = format!(
            "[net]\nwidth=64\nheight=64\nchannels=3\n[convolutional]\nfilters=14\nsize=1\nstride=1\n\
             activation=linear\n[yolo]\nmask=0,1\nanchors=8,8, 32,16, 40,40\nclasses=2\nnum=3\n{extra}\n"
        );
        let net = NetworkConfig::parse(&text, std::path::Path::new("t.cfg")).unwrap();
        match &net.layers[1].config {
            crate::cfg::LayerConfig::Yolo(y) => y.clone(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn mse_single_truth_hand_computed() {
        // 2x2 grid, 2 anchors (8,8), (32,16) of 64x64; one truth at cell (1,0) with the shape of anchor 1.
        let cfg = one_layer_cfg("iou_loss=mse\nignore_thresh=0.7\ntruth_thresh=1");
        let (w, h, stride) = (2usize, 2usize, 4usize);
        let entries = 7;
        let mut output = vec![0.5f32; 2 * entries * stride];
        for a in 0..2 {
            for k in 2..4 {
                for c in 0..stride {
                    output[a * entries * stride + k * stride + c] = 0.0;
                }
            }
        }
        let mut truth = vec![0.0f32; cfg.max_boxes * TRUTH_SIZE];
        truth[..6].copy_from_slice(&[0.75, 0.25, 0.5, 0.25, 1.0, 0.0]);
        let g = YoloGeometry {
            batch: 1,
            w,
            h,
            net_w: 64,
            net_h: 64,
        };
        let r = yolo_deltas(&cfg, &output, g, &truth).unwrap();
        assert_eq!(r.count, 1);
        let cell = 1; // j = 0, i = 1
        let base = entries * stride; // anchor 1
                                     // tx = 0.75*2 - 1 = 0.5, x = 0.5 -> 0; ty = 0.5 - 0.5 = 0; tw = ln(0.5*64/32) = 0; th = ln(0.25*64/16) = 0.
        for k in 0..4 {
            assert!(r.delta[base + k * stride + cell].abs() < 1e-7);
        }
        assert_eq!(r.delta[base + 4 * stride + cell], 0.5);
        assert_eq!(r.delta[base + 5 * stride + cell], -0.5);
        assert_eq!(r.delta[base + 6 * stride + cell], 0.5);
        // Every other objectness: 0 - 0.5; class entries untouched.
        assert_eq!(r.delta[4 * stride], -0.5);
        assert_eq!(r.delta[5 * stride], 0.0);
        // cost = ||delta||^2 for mse: 7 objectness at 0.25, one at 0.25 (+0.5 target), two class deltas.
        assert!(
            (r.cost - (8.0 * 0.25 + 2.0 * 0.25)).abs() < 1e-6,
            "{}",
            r.cost
        );
        assert_eq!(r.class_ids[stride + cell], 1);
    }

    #[test]
    fn bad_lengths_are_errors() {
        let cfg = one_layer_cfg("");
        let g = YoloGeometry {
            batch: 1,
            w: 2,
            h: 2,
            net_w: 64,
            net_h: 64,
        };
        assert!(yolo_deltas(&cfg, &[0.0; 3], g, &vec![0.0; cfg.max_boxes * 6]).is_err());
        assert!(yolo_deltas(&cfg, &[0.0; 56], g, &[0.0; 5]).is_err());
    }
}
