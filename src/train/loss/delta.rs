//! The per-box deltas of `forward_yolo_layer` (src/yolo_layer.c): `get_yolo_box`, `delta_yolo_box`,
//! `delta_yolo_class`, `compare_yolo_class`, `averages_yolo_deltas`.

use super::{Layer, YoloLossResult};
use crate::cfg::IouLoss;
use crate::train::box_iou::{box_ciou, box_diou, box_giou, box_iou, dx_box_iou, Bbox, BoxGrad};

/// `get_yolo_box`: the predicted box of anchor `n` (an index into all anchors) at cell (i, j).
pub(super) fn get_yolo_box(
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
pub(super) struct Ious {
    pub(super) iou: f32,
    pub(super) giou: f32,
    pub(super) diou: f32,
    pub(super) ciou: f32,
}

/// `delta_yolo_box` with `accumulate = 1` (every caller in `forward_yolo_layer` passes 1). `scale` (2 − w·h) only
/// enters the MSE branch; the IoU branches use `iou_normalizer` and `max_delta` clipping instead.
#[allow(clippy::too_many_arguments)]
pub(super) fn delta_yolo_box(
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
pub(super) fn averages_yolo_deltas(
    l: &Layer,
    class_index: usize,
    box_index: usize,
    delta: &mut [f32],
) {
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
pub(super) fn delta_yolo_class(
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
pub(super) fn compare_yolo_class(
    l: &Layer,
    output: &[f32],
    class_index: usize,
    conf_thresh: f32,
) -> bool {
    (0..l.classes).any(|j| output[class_index + l.stride * j] > conf_thresh)
}
