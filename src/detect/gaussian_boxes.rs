//! `[Gaussian_yolo]` head outputs → boxes: mirrors `gaussian_yolo_num_detections`,
//! `get_gaussian_yolo_detections`, `get_gaussian_yolo_box` and `correct_gaussian_yolo_boxes`
//! (src/gaussian_yolo_layer.c), which `fill_network_boxes` (src/network.c) calls for this layer type.
//!
//! The input is the layer's `l.output` after `forward_gaussian_yolo_layer` (batch 1): for each anchor of the
//! mask, planes `[μx, σx, μy, σy, μw, σw, μh, σh, obj, cls0..]` of `h*w` values, with μx μy logistic and
//! scaled by `scale_x_y`, the σs, obj and classes logistic, μw μh raw. A class probability is
//! `obj * cls * (1 - mean(σx, σy, σw, σh))`: the box uncertainty lowers the score (Choi et al., Gaussian
//! YOLOv3). NMS is then the layer's `nms_kind` as for `[yolo]` (`test_detector` reads it from the last head).

use anyhow::{bail, Result};

use super::yolo_boxes::BoxMapping;
use super::{BoxF, Detection};
use crate::layers::yolo::YoloPoint;

/// One Gaussian_yolo layer's output and what `get_gaussian_yolo_detections` reads from the layer.
#[derive(Clone, Copy, Debug)]
pub struct GaussianYoloOutput<'a> {
    /// `l.output`: `mask.len() * (9 + classes) * h * w` values.
    pub output: &'a [f32],
    pub w: usize,
    pub h: usize,
    pub classes: usize,
    /// All anchors as flat (w, h) pairs in network pixels (`l.biases`).
    pub anchors: &'a [f32],
    pub mask: &'a [usize],
    pub yolo_point: YoloPoint,
}

impl GaussianYoloOutput<'_> {
    pub fn validate(&self) -> Result<()> {
        let expected = self.mask.len() * (9 + self.classes) * self.h * self.w;
        if self.output.len() != expected {
            bail!(
                "Gaussian_yolo output has {} values, expected {} anchors x (9 + {} classes) x {}x{} = {expected}",
                self.output.len(),
                self.mask.len(),
                self.classes,
                self.h,
                self.w
            );
        }
        let pairs = self.anchors.len() / 2;
        if let Some(&bad) = self.mask.iter().find(|&&m| m >= pairs) {
            bail!("Gaussian_yolo mask index {bad} is out of range: only {pairs} anchor pairs");
        }
        Ok(())
    }

    /// `entry_gaussian_index(l, 0, n*l.w*l.h + loc, entry)`.
    fn at(&self, n: usize, loc: usize, entry: usize) -> f32 {
        let plane = self.w * self.h;
        self.output[n * plane * (9 + self.classes) + entry * plane + loc]
    }
}

/// `get_gaussian_yolo_box`: the box of mask entry `n` (anchor `anchor`) at column `i`, row `j`.
#[allow(clippy::too_many_arguments)]
fn get_gaussian_yolo_box(
    l: &GaussianYoloOutput,
    n: usize,
    anchor: usize,
    loc: usize,
    i: usize,
    j: usize,
    net_w: usize,
    net_h: usize,
) -> BoxF {
    // `exp(x) * biases / w`: double exp, product and quotient, stored as float.
    let w =
        (f64::from(l.at(n, loc, 4)).exp() * f64::from(l.anchors[2 * anchor]) / net_w as f64) as f32;
    let h = (f64::from(l.at(n, loc, 6)).exp() * f64::from(l.anchors[2 * anchor + 1]) / net_h as f64)
        as f32;
    let cx = (i as f32 + l.at(n, loc, 0)) / l.w as f32;
    let cy = (j as f32 + l.at(n, loc, 2)) / l.h as f32;
    let (x, y) = match l.yolo_point {
        YoloPoint::Center => (cx, cy),
        YoloPoint::LeftTop => (cx + w / 2.0, cy + h / 2.0),
        YoloPoint::RightBottom => (cx - w / 2.0, cy - h / 2.0),
    };
    BoxF::new(x, y, w, h)
}

/// `gaussian_yolo_num_detections`: (cell, anchor) pairs with objectness above `thresh`.
pub fn gaussian_yolo_num_detections(l: &GaussianYoloOutput, thresh: f32) -> usize {
    (0..l.mask.len())
        .map(|n| (0..l.w * l.h).filter(|&i| l.at(n, i, 8) > thresh).count())
        .sum()
}

/// `get_gaussian_yolo_detections`: every (cell, anchor) with objectness above `thresh`, cells row-major and
/// anchors inside each cell, boxes mapped by [`correct_gaussian_yolo_boxes`].
pub fn get_gaussian_yolo_detections(
    l: &GaussianYoloOutput,
    map: &BoxMapping,
    thresh: f32,
) -> Result<Vec<Detection>> {
    l.validate()?;
    let mut dets = Vec::new();
    for loc in 0..l.w * l.h {
        let (row, col) = (loc / l.w, loc % l.w);
        for (n, &anchor) in l.mask.iter().enumerate() {
            let objectness = l.at(n, loc, 8);
            // `if (objectness <= thresh) continue;` then `if (objectness > thresh)`: NaN passes neither.
            if objectness <= thresh || objectness.is_nan() {
                continue;
            }
            let bbox = get_gaussian_yolo_box(l, n, anchor, loc, col, row, map.net_w, map.net_h);
            let uc = [
                l.at(n, loc, 1),
                l.at(n, loc, 3),
                l.at(n, loc, 5),
                l.at(n, loc, 7),
            ];
            // `(uc0 + uc1 + uc2 + uc3) / 4.0`: a float sum, divided in double, stored as float.
            let uc_aver = (f64::from(uc[0] + uc[1] + uc[2] + uc[3]) / 4.0) as f32;
            let prob = (0..l.classes)
                .map(|j| {
                    // `objectness*cls * (1.0 - uc_aver)`: float product, then double, stored as float.
                    let p = (f64::from(objectness * l.at(n, loc, 9 + j))
                        * (1.0 - f64::from(uc_aver))) as f32;
                    if p > thresh {
                        p
                    } else {
                        0.0
                    }
                })
                .collect();
            dets.push(Detection {
                bbox,
                objectness,
                prob,
                classes: l.classes,
            });
        }
    }
    correct_gaussian_yolo_boxes(&mut dets, map);
    Ok(dets)
}

/// `correct_gaussian_yolo_boxes`: like `correct_yolo_boxes` but scales w, h by `(float)netw/new_w` instead of
/// `1/ratiow`.
pub fn correct_gaussian_yolo_boxes(dets: &mut [Detection], map: &BoxMapping) {
    let BoxMapping {
        im_w,
        im_h,
        net_w,
        net_h,
        relative,
        letter: _,
    } = *map;
    let (new_w, new_h) = map.letterbox_size();
    for d in dets.iter_mut() {
        let mut b = d.bbox;
        // `(b.x - (netw - new_w)/2./netw) / ((float)new_w/netw)`: double, the ratio a float.
        let rw = new_w as f32 / net_w as f32;
        let rh = new_h as f32 / net_h as f32;
        b.x = ((f64::from(b.x) - (net_w as f64 - new_w as f64) / 2.0 / net_w as f64)
            / f64::from(rw)) as f32;
        b.y = ((f64::from(b.y) - (net_h as f64 - new_h as f64) / 2.0 / net_h as f64)
            / f64::from(rh)) as f32;
        b.w *= net_w as f32 / new_w as f32;
        b.h *= net_h as f32 / new_h as f32;
        if !relative {
            b.x *= im_w as f32;
            b.w *= im_w as f32;
            b.y *= im_h as f32;
            b.h *= im_h as f32;
        }
        d.bbox = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uncertainty_lowers_the_score() {
        // 1 anchor, 1 class, 1x1 grid: [μx σx μy σy μw σw μh σh obj c0].
        let out = [0.5, 0.2, 0.5, 0.2, 0.0, 0.2, 0.0, 0.2, 0.8, 0.5];
        let anchors = [16.0, 8.0];
        let l = GaussianYoloOutput {
            output: &out,
            w: 1,
            h: 1,
            classes: 1,
            anchors: &anchors,
            mask: &[0],
            yolo_point: YoloPoint::Center,
        };
        let d = get_gaussian_yolo_detections(
            &l,
            &BoxMapping::relative((10, 10), (32, 32), false),
            0.25,
        )
        .unwrap();
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].bbox, BoxF::new(0.5, 0.5, 0.5, 0.25));
        assert!(
            (d[0].prob[0] - 0.8 * 0.5 * 0.8).abs() < 1e-7,
            "{:?}",
            d[0].prob
        );
        assert_eq!(gaussian_yolo_num_detections(&l, 0.8), 0);
    }
}
