//! YOLO head outputs → boxes: mirrors `get_network_boxes` / `fill_network_boxes` (`src/network.c`) and
//! `yolo_num_detections`, `get_yolo_detections`, `get_yolo_box`, `correct_yolo_boxes` (`src/yolo_layer.c`).
//!
//! The input is a yolo layer's `l.output` after the in-layer activation (batch 1): for each anchor `a` of
//! the layer (a-major), planes `[x, y, w, h, obj, cls0..]` of `h*w` values each, where x,y are already
//! `logistic(t)*scale_x_y - 0.5*(scale_x_y-1)` (or raw for `new_coords=1`), w,h are raw, obj and classes are
//! logistic. Arithmetic follows the C types: float where C uses float, double where C promotes (`exp`, the
//! `2.` literals of `correct_yolo_boxes`), rounded to float where C stores a float.
//!
//! Deliberate differences: layer shapes and anchor masks are checked (errors instead of out-of-bounds
//! reads), and heads with different class counts are an error (Darknet prints a warning and would write
//! past the `prob` arrays sized for the first head).

use anyhow::{bail, Result};

use super::{BoxF, Detection};

/// One yolo layer's output and the parameters `get_yolo_detections` reads from the layer.
#[derive(Clone, Copy, Debug)]
pub struct YoloOutput<'a> {
    /// `l.output`: `mask.len() * (5 + classes) * h * w` values.
    pub output: &'a [f32],
    /// Grid width `l.w`.
    pub w: usize,
    /// Grid height `l.h`.
    pub h: usize,
    /// `l.classes`.
    pub classes: usize,
    /// All `anchors=` of the cfg as (w, h) pairs in network pixels (`l.biases`).
    pub anchors: &'a [f32],
    /// This layer's `mask=`: indices into the anchor pairs (`l.mask`, `l.n = mask.len()`).
    pub mask: &'a [usize],
    /// `new_coords=1` (scaled-YOLOv4 box parametrisation).
    pub new_coords: bool,
}

impl YoloOutput<'_> {
    /// Checks the buffer length and that every mask entry names an anchor pair.
    pub fn validate(&self) -> Result<()> {
        let expected = self.mask.len() * (5 + self.classes) * self.h * self.w;
        if self.output.len() != expected {
            bail!(
                "yolo output has {} values, expected {} anchors x (5 + {} classes) x {}x{} = {}",
                self.output.len(),
                self.mask.len(),
                self.classes,
                self.h,
                self.w,
                expected
            );
        }
        let pairs = self.anchors.len() / 2;
        if let Some(&bad) = self.mask.iter().find(|&&m| m >= pairs) {
            bail!("yolo mask index {bad} is out of range: only {pairs} anchor pairs");
        }
        Ok(())
    }

    /// `entry_index(l, 0, n*l.w*l.h + loc, entry)`.
    #[inline]
    fn entry_index(&self, n: usize, loc: usize, entry: usize) -> usize {
        let plane = self.w * self.h;
        n * plane * (5 + self.classes) + entry * plane + loc
    }
}

/// `yolo_num_detections`: how many (cell, anchor) pairs have objectness above `thresh`.
pub fn yolo_num_detections(l: &YoloOutput, thresh: f32) -> usize {
    let plane = l.w * l.h;
    (0..l.mask.len())
        .map(|n| {
            (0..plane)
                .filter(|&i| l.output[l.entry_index(n, i, 4)] > thresh)
                .count()
        })
        .sum()
}

/// `get_yolo_box`: the box of anchor `n` (index into the anchor pairs) at column `i`, row `j`, relative to
/// the network input.
#[allow(clippy::too_many_arguments)]
fn get_yolo_box(
    l: &YoloOutput,
    n: usize,
    anchor: usize,
    loc: usize,
    i: usize,
    j: usize,
    net_w: usize,
    net_h: usize,
) -> BoxF {
    let t = |entry: usize| l.output[l.entry_index(n, loc, entry)];
    let (bias_w, bias_h) = (l.anchors[2 * anchor], l.anchors[2 * anchor + 1]);
    // `(i + x) / lw`: int + float then float / int.
    let x = (i as f32 + t(0)) / l.w as f32;
    let y = (j as f32 + t(1)) / l.h as f32;
    if l.new_coords {
        // `x*x*4*bias/w`, all float, left to right.
        let tw = t(2);
        let th = t(3);
        BoxF {
            x,
            y,
            w: tw * tw * 4.0 * bias_w / net_w as f32,
            h: th * th * 4.0 * bias_h / net_h as f32,
        }
    } else {
        // `exp(x) * bias / w`: C's double `exp`, the product and quotient in double, stored as float.
        let w = (f64::from(t(2)).exp() * f64::from(bias_w) / net_w as f64) as f32;
        let h = (f64::from(t(3)).exp() * f64::from(bias_h) / net_h as f64) as f32;
        BoxF { x, y, w, h }
    }
}

/// Where boxes are mapped: the original image and network input sizes, whether the input was letterboxed
/// and whether the result stays relative (0..1) or is in pixels of the image; the trailing arguments of
/// Darknet's `get_network_boxes(net, w, h, thresh, hier, map, relative, num, letter)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BoxMapping {
    pub im_w: usize,
    pub im_h: usize,
    pub net_w: usize,
    pub net_h: usize,
    pub relative: bool,
    pub letter: bool,
}

impl BoxMapping {
    /// The size the image has inside the network input: `correct_yolo_boxes`' `new_w`, `new_h` (integer
    /// arithmetic, as the C) when `letter`, else the network size.
    pub fn letterbox_size(&self) -> (usize, usize) {
        let (im_w, im_h, net_w, net_h) = (self.im_w, self.im_h, self.net_w, self.net_h);
        if !self.letter {
            (net_w, net_h)
        } else if (net_w as f32 / im_w as f32) < (net_h as f32 / im_h as f32) {
            (net_w, im_h * net_w / im_w.max(1))
        } else {
            (im_w * net_h / im_h.max(1), net_h)
        }
    }

    /// Relative boxes (what `detector test` asks for) on an `image` = (w, h) from a `network` = (w, h) input.
    pub fn relative(image: (usize, usize), network: (usize, usize), letter: bool) -> Self {
        BoxMapping {
            im_w: image.0,
            im_h: image.1,
            net_w: network.0,
            net_h: network.1,
            relative: true,
            letter,
        }
    }
}

/// `get_yolo_detections`: every (cell, anchor) with objectness above `thresh`, cells in row-major order and
/// anchors inside each cell; `prob[j] = obj*cls_j` if that is above `thresh`, else 0. Boxes are then mapped
/// to the original image with [`correct_yolo_boxes`].
pub fn get_yolo_detections(
    l: &YoloOutput,
    map: &BoxMapping,
    thresh: f32,
) -> Result<Vec<Detection>> {
    l.validate()?;
    let (net_w, net_h) = (map.net_w, map.net_h);
    let mut dets = Vec::new();
    for loc in 0..l.w * l.h {
        let row = loc / l.w;
        let col = loc % l.w;
        for (n, &anchor) in l.mask.iter().enumerate() {
            let objectness = l.output[l.entry_index(n, loc, 4)];
            // The C tests `objectness > thresh`, which rejects NaN.
            if objectness <= thresh || objectness.is_nan() {
                continue;
            }
            let bbox = get_yolo_box(l, n, anchor, loc, col, row, net_w, net_h);
            let prob = (0..l.classes)
                .map(|j| {
                    let p = objectness * l.output[l.entry_index(n, loc, 5 + j)];
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
    correct_yolo_boxes(&mut dets, map);
    Ok(dets)
}

/// `correct_yolo_boxes`: maps boxes relative to the network input back to the original image, undoing the
/// letterbox offset/scale when `letter` (for a plain stretch the ratios are 1 and offsets 0); with
/// `relative = false` the result is in pixels.
pub fn correct_yolo_boxes(dets: &mut [Detection], map: &BoxMapping) {
    let BoxMapping {
        im_w,
        im_h,
        net_w,
        net_h,
        relative,
        letter: _,
    } = *map;
    let (new_w, new_h) = map.letterbox_size();
    let deltaw = net_w as f32 - new_w as f32;
    let deltah = net_h as f32 - new_h as f32;
    let ratiow = new_w as f32 / net_w as f32;
    let ratioh = new_h as f32 / net_h as f32;
    for d in dets.iter_mut() {
        let mut b = d.bbox;
        // `(b.x - deltaw / 2. / netw) / ratiow`: the `2.` literal makes this double arithmetic.
        b.x =
            ((f64::from(b.x) - f64::from(deltaw) / 2.0 / net_w as f64) / f64::from(ratiow)) as f32;
        b.y =
            ((f64::from(b.y) - f64::from(deltah) / 2.0 / net_h as f64) / f64::from(ratioh)) as f32;
        // `b.w *= 1 / ratiow`: float. Darknet's -Ofast AVX build evaluates this reciprocal with RCPPS and one
        // Newton step (gcc's default vectorised-division approximation), giving 0.99999994 for ratiow = 1,
        // so its w,h are one ulp below the exact value; we keep the exact arithmetic of the C source.
        b.w *= 1.0 / ratiow;
        b.h *= 1.0 / ratioh;
        if !relative {
            b.x *= im_w as f32;
            b.w *= im_w as f32;
            b.y *= im_h as f32;
            b.h *= im_h as f32;
        }
        d.bbox = b;
    }
}

/// `get_network_boxes(net, im_w, im_h, thresh, hier, 0, relative, &n, letter)` for a network whose
/// detection layers are all `[yolo]`: the detections of each head, concatenated in network order.
pub fn get_network_boxes(
    heads: &[YoloOutput],
    map: &BoxMapping,
    thresh: f32,
) -> Result<Vec<Detection>> {
    if let Some(first) = heads.first() {
        if let Some((i, other)) = heads
            .iter()
            .enumerate()
            .find(|(_, h)| h.classes != first.classes)
        {
            bail!(
                "yolo head {i} has {} classes but the first head has {}",
                other.classes,
                first.classes
            );
        }
    }
    let mut all = Vec::new();
    for (i, head) in heads.iter().enumerate() {
        let dets = get_yolo_detections(head, map, thresh)
            .map_err(|e| e.context(format!("yolo head {i}")))?;
        all.extend(dets);
    }
    Ok(all)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head_with(obj: f32, cls: [f32; 2], tx: f32, tw: f32) -> Vec<f32> {
        // 1 anchor, 2 classes, 2x1 grid; the interesting cell is column 1.
        let mut out = vec![0.0f32; 7 * 2];
        let set = |out: &mut Vec<f32>, entry: usize, v: f32| out[entry * 2 + 1] = v;
        set(&mut out, 0, tx);
        set(&mut out, 1, 0.5);
        set(&mut out, 2, tw);
        set(&mut out, 3, 0.0);
        set(&mut out, 4, obj);
        set(&mut out, 5, cls[0]);
        set(&mut out, 6, cls[1]);
        out
    }

    #[test]
    fn decodes_one_box_with_the_c_formulas() {
        let out = head_with(0.9, [0.5, 0.2], 0.25, 0.5f32.ln());
        let anchors = [10.0, 14.0, 40.0, 20.0];
        let l = YoloOutput {
            output: &out,
            w: 2,
            h: 1,
            classes: 2,
            anchors: &anchors,
            mask: &[1],
            new_coords: false,
        };
        assert_eq!(yolo_num_detections(&l, 0.25), 1);
        let d = get_yolo_detections(&l, &BoxMapping::relative((100, 50), (80, 40), false), 0.25)
            .unwrap();
        assert_eq!(d.len(), 1);
        let b = d[0].bbox;
        assert!(
            (b.x - 0.625).abs() < 1e-7 && (b.y - 0.5).abs() < 1e-7,
            "{b:?}"
        );
        assert!(
            (b.w - 0.5 * 40.0 / 80.0).abs() < 1e-7 && (b.h - 20.0 / 40.0).abs() < 1e-7,
            "{b:?}"
        );
        assert_eq!(d[0].prob, vec![0.9 * 0.5, 0.0]);
        // Pixel output.
        let p = get_yolo_detections(
            &l,
            &BoxMapping {
                relative: false,
                ..BoxMapping::relative((100, 50), (80, 40), false)
            },
            0.25,
        )
        .unwrap();
        assert!((p[0].bbox.x - 62.5).abs() < 1e-4 && (p[0].bbox.w - 25.0).abs() < 1e-4);
    }

    #[test]
    fn letterbox_correction_undoes_offset_and_scale() {
        // Image 200x100 in a 100x100 letterbox: new 100x50, content rows 25..75.
        let mut d = vec![Detection {
            bbox: BoxF {
                x: 0.5,
                y: 0.25 + 0.5 * 0.5,
                w: 0.2,
                h: 0.1,
            },
            objectness: 1.0,
            prob: vec![1.0],
            classes: 1,
        }];
        correct_yolo_boxes(&mut d, &BoxMapping::relative((200, 100), (100, 100), true));
        let b = d[0].bbox;
        assert!(
            (b.x - 0.5).abs() < 1e-6 && (b.y - 0.5).abs() < 1e-6,
            "{b:?}"
        );
        assert!(
            (b.w - 0.2).abs() < 1e-6 && (b.h - 0.2).abs() < 1e-6,
            "{b:?}"
        );
    }

    #[test]
    fn bad_shapes_are_errors() {
        let out = vec![0.0f32; 13];
        let anchors = [1.0, 1.0];
        let l = YoloOutput {
            output: &out,
            w: 2,
            h: 1,
            classes: 2,
            anchors: &anchors,
            mask: &[0],
            new_coords: false,
        };
        assert!(
            get_yolo_detections(&l, &BoxMapping::relative((1, 1), (1, 1), false), 0.25).is_err()
        );
        let out = vec![0.0f32; 14];
        let l = YoloOutput {
            output: &out,
            w: 2,
            h: 1,
            classes: 2,
            anchors: &anchors,
            mask: &[1],
            new_coords: false,
        };
        assert!(
            get_yolo_detections(&l, &BoxMapping::relative((1, 1), (1, 1), false), 0.25).is_err()
        );
    }
}
