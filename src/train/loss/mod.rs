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

use super::box_iou::Bbox;
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

mod delta;
mod process_batch;

use process_batch::process_image;

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
