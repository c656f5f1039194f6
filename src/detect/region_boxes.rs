//! `[region]` (YOLOv2) head outputs → boxes, as `darknet detector test` decodes them: `fill_network_boxes`
//! calls `custom_get_region_detections` (src/network.c), which runs the old `get_region_boxes` /
//! `get_region_box` (src/region_layer.c) with w = h = 1 and maps the boxes with `correct_yolo_boxes`
//! (src/yolo_layer.c). (`get_region_detections` + `correct_region_boxes` in region_layer.c are dead code in
//! this fork: they index the planar layout that the CPU forward no longer has, and nothing calls them.)
//!
//! The input is the region layer's `l.output` after the forward (batch 1): location-major, for each cell then
//! each anchor `[x, y, w, h, obj, cls0..]` with obj logistic and the classes softmaxed (or `softmax_tree`d);
//! x, y, w, h raw. Every (cell, anchor) gives a detection, most with all-zero probabilities, with
//! `objectness = 1` (so `do_nms_obj` keeps nothing apart and `do_nms_sort` sorts by class probability only).
//!
//! `hier_thresh` does not appear: this path never reads it. With a tree (yolo9000) and no `map` (what
//! `detector test` passes), `get_region_boxes` keeps, per (cell, anchor), only the deepest node whose path
//! probability is above a fixed .5 and reports that path probability, not multiplied by objectness.

use anyhow::{bail, Result};

use super::yolo_boxes::{correct_yolo_boxes, BoxMapping};
use super::{BoxF, Detection};
use crate::layers::softmax_tree::Tree;

/// One region layer's output and the parameters `get_region_boxes` reads from the layer.
#[derive(Clone, Copy, Debug)]
pub struct RegionOutput<'a> {
    /// `l.output`: `w * h * num * (5 + classes)` values, location-major.
    pub output: &'a [f32],
    pub w: usize,
    pub h: usize,
    /// Anchors per cell (`l.n`).
    pub num: usize,
    pub classes: usize,
    /// `anchors=` as (w, h) pairs in grid cells (`l.biases`), `num` of them.
    pub anchors: &'a [f32],
    /// `classfix=`.
    pub classfix: i64,
    pub tree: Option<&'a Tree>,
}

impl RegionOutput<'_> {
    pub fn validate(&self) -> Result<()> {
        let expected = self.w * self.h * self.num * (5 + self.classes);
        if self.output.len() != expected {
            bail!(
                "region output has {} values, expected {}x{} cells x {} anchors x (5 + {} classes) = {expected}",
                self.output.len(),
                self.w,
                self.h,
                self.num,
                self.classes
            );
        }
        if self.anchors.len() < 2 * self.num {
            bail!(
                "region has {} anchor values for num={}",
                self.anchors.len(),
                self.num
            );
        }
        Ok(())
    }
}

/// `logistic_activate`: `1.f/(1.f + expf(-x))`, all float.
fn logistic(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// `get_region_box(x, biases, n, index, i, j, w, h)` with `DOABS`: the box relative to the network input.
fn get_region_box(
    x: &[f32],
    biases: &[f32],
    n: usize,
    i: usize,
    j: usize,
    lw: usize,
    lh: usize,
) -> BoxF {
    // `(i + logistic(x)) / w`: int + float, then float / int.
    let bx = (i as f32 + logistic(x[0])) / lw as f32;
    let by = (j as f32 + logistic(x[1])) / lh as f32;
    // `exp(x) * biases[2n] / w`: C's double exp, the product and quotient in double, stored as float.
    let bw = (f64::from(x[2]).exp() * f64::from(biases[2 * n]) / lw as f64) as f32;
    let bh = (f64::from(x[3]).exp() * f64::from(biases[2 * n + 1]) / lh as f64) as f32;
    BoxF::new(bx, by, bw, bh)
}

/// `custom_get_region_detections(l, im_w, im_h, net_w, net_h, thresh, map = 0, hier, relative, dets, letter)`:
/// one detection per (cell, anchor), cell-major then anchor, boxes mapped by [`correct_yolo_boxes`].
pub fn get_region_detections(
    l: &RegionOutput,
    map: &BoxMapping,
    thresh: f32,
) -> Result<Vec<Detection>> {
    l.validate()?;
    let size = l.classes + 5;
    let mut dets = Vec::with_capacity(l.w * l.h * l.num);
    // get_region_boxes rewrites the class probabilities of a tree in place; work on a copy.
    let mut classes = vec![0f32; l.classes];
    for cell in 0..l.w * l.h {
        let (row, col) = (cell / l.w, cell % l.w);
        for n in 0..l.num {
            let index = cell * l.num + n;
            let e = &l.output[index * size..(index + 1) * size];
            let mut scale = e[4];
            if l.classfix == -1 && scale < 0.5 {
                scale = 0.0;
            }
            // get_region_boxes(l, 1, 1, ...): the `*= w` with w = 1 changes nothing.
            let bbox = get_region_box(e, l.anchors, n, col, row, l.w, l.h);
            classes.copy_from_slice(&e[5..]);
            let prob = match l.tree {
                Some(tree) => tree_probs(tree, &mut classes, scale, thresh),
                None => classes
                    .iter()
                    .map(|&c| {
                        let p = scale * c;
                        if p > thresh {
                            p
                        } else {
                            0.0
                        }
                    })
                    .collect(),
            };
            dets.push(Detection {
                bbox,
                objectness: 1.0,
                prob,
                classes: l.classes,
            });
        }
    }
    correct_yolo_boxes(&mut dets, map);
    Ok(dets)
}

/// The `softmax_tree` branch of `get_region_boxes` without a map: `hierarchy_predictions`, then from the last
/// class down the first one above .5 is kept and every other is zeroed; reported only when `scale > thresh`.
fn tree_probs(tree: &Tree, p: &mut [f32], scale: f32, thresh: f32) -> Vec<f32> {
    tree.hierarchy_predictions(p);
    let mut found = false;
    for v in p.iter_mut().rev() {
        if !found && *v > 0.5 {
            found = true;
        } else {
            *v = 0.0;
        }
    }
    p.iter()
        .map(|&v| if scale > thresh { v } else { 0.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn one_cell_two_anchors() {
        // 1x1 grid, 2 anchors, 2 classes: rows [x y w h obj c0 c1].
        let out = [
            0.0,
            0.0,
            0.0,
            0.0,
            0.9,
            0.6,
            0.4,
            1.0,
            -1.0,
            0.5f32.ln(),
            0.0,
            0.2,
            0.5,
            0.5,
        ];
        let anchors = [2.0, 3.0, 1.0, 1.0];
        let l = RegionOutput {
            output: &out,
            w: 1,
            h: 1,
            num: 2,
            classes: 2,
            anchors: &anchors,
            classfix: 0,
            tree: None,
        };
        let d = get_region_detections(&l, &BoxMapping::relative((10, 10), (32, 32), false), 0.25)
            .unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].bbox, BoxF::new(0.5, 0.5, 2.0, 3.0));
        assert_eq!(d[0].prob, vec![0.9 * 0.6, 0.9 * 0.4]);
        assert_eq!(d[0].objectness, 1.0);
        assert!((d[1].bbox.w - 0.5).abs() < 1e-7);
        assert_eq!(d[1].prob, vec![0.0, 0.0]);
    }

    #[test]
    fn tree_keeps_the_deepest_node_above_half() {
        let tree = Tree::parse("a -1\nb -1\nc 0\nd 0\n", Path::new("t")).unwrap();
        let mut p = vec![0.8, 0.2, 0.7, 0.3];
        assert_eq!(
            tree_probs(&tree, &mut p, 0.9, 0.25),
            vec![0.0, 0.0, 0.8f32 * 0.7, 0.0]
        );
        let mut p = vec![0.8, 0.2, 0.5, 0.5];
        assert_eq!(
            tree_probs(&tree, &mut p, 0.9, 0.25),
            vec![0.8, 0.0, 0.0, 0.0]
        );
        let mut p = vec![0.8, 0.2, 0.7, 0.3];
        assert_eq!(tree_probs(&tree, &mut p, 0.2, 0.25), vec![0.0; 4]);
    }
}
