//! Ground-truth boxes of a training image: `read_boxes`, `randomize_boxes`, `correct_boxes` and
//! `fill_truth_detection` of Darknet's src/data.c, in float32 with the operation order of the `-Ofast`
//! build that produced the reference (see docs/augmentation/truth.md).

use super::rand::{random_gen, DarknetRand};
use crate::dataset::{parse_labels, read_labels, DatasetError, LabelBox};
use std::path::Path;

/// Floats per truth row: x, y, w, h (relative, box centre), class id, track id (`truth_size` = 6).
pub const TRUTH_SIZE: usize = 6;

/// Darknet's `box_label` (data.h): one label line plus its derived edges.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxLabel {
    pub id: i32,
    pub track_id: i32,
    pub x: f32,
    pub y: f32,
    pub w: f32,
    pub h: f32,
    pub left: f32,
    pub right: f32,
    pub top: f32,
    pub bottom: f32,
}

/// Darknet's `custom_hash` (utils.c 1090): djb2 over the bytes (as signed `char`) in unsigned 64-bit.
pub fn custom_hash(s: &str) -> u64 {
    s.bytes().fold(5381u64, |h, c| {
        h.wrapping_mul(33).wrapping_add(c as i8 as i64 as u64)
    })
}

/// The first track id of a label file: `(custom_hash(label_path) % 4000) * 4000` (`read_boxes`, data.c 211).
pub fn track_id_base(label_path: &str) -> i32 {
    ((custom_hash(label_path) % 4000) * 4000) as i32
}

/// Darknet's `replace_image_to_label` (utils.c 275), from the dataset module.
pub use crate::dataset::replace_image_to_label;

/// Darknet's `box_label`s of label lines: `track_id = index + base`, edges from centre and size.
pub fn box_labels(labels: &[LabelBox], base: i32) -> Vec<BoxLabel> {
    labels
        .iter()
        .enumerate()
        .map(|(k, l)| {
            let [x, y, w, h] = l.bbox;
            BoxLabel {
                id: l.class as i32,
                track_id: k as i32 + base,
                x,
                y,
                w,
                h,
                left: x - w / 2.0,
                right: x + w / 2.0,
                top: y - h / 2.0,
                bottom: y + h / 2.0,
            }
        })
        .collect()
}

/// The `box_label`s of label text (read by [`crate::dataset`]'s rules, class ids below `classes`).
pub fn parse_boxes(
    text: &str,
    base: i32,
    origin: &Path,
    classes: usize,
) -> Result<Vec<BoxLabel>, DatasetError> {
    Ok(box_labels(
        &parse_labels(text, origin, Some(classes))?,
        base,
    ))
}

/// Darknet's `read_boxes` (data.c 195) for the label file `label_path` (the string used for the track-id
/// hash) found at `file`. A missing file gives no boxes, as in Darknet; the dataset reader reports those
/// files ([`crate::dataset::ImageList::missing_labels`]), so nothing is printed here.
pub fn read_boxes(
    label_path: &str,
    file: &Path,
    classes: usize,
) -> Result<Vec<BoxLabel>, DatasetError> {
    let labels = read_labels(file, Some(classes))?.unwrap_or_default();
    Ok(box_labels(&labels, track_id_base(label_path)))
}

/// Darknet's `randomize_boxes` (data.c 237): for each j, swap box j with box `random_gen() % n`.
pub fn randomize_boxes<R: DarknetRand + ?Sized>(rng: &mut R, boxes: &mut [BoxLabel]) {
    let n = boxes.len();
    rng.label(format_args!("randomize_boxes"));
    for j in 0..n {
        let k = (random_gen(rng) % n as u32) as usize;
        boxes.swap(j, k);
    }
}

const INVALID: f32 = 999_999.0;

/// Darknet's `correct_boxes` (data.c 248) with `s = 1/sx`, `t = 1/sy`: boxes at (0,0) or entirely outside
/// \[0,1\] get x = y = w = h = 999999; others: edges `e*s - dx` (`e*t - dy`); with flip the compiled form
/// `left' = (1+dx) - right*s`, `right' = (1+dx) - left*s`; clamp edges to \[0,1\]; centre/size from edges.
pub fn correct_boxes(boxes: &mut [BoxLabel], dx: f32, dy: f32, s: f32, t: f32, flip: bool) {
    for b in boxes.iter_mut() {
        if (b.x == 0.0 && b.y == 0.0)
            || b.x + b.w / 2.0 < 0.0
            || b.y + b.h / 2.0 < 0.0
            || b.x - b.w / 2.0 > 1.0
            || b.y - b.h / 2.0 > 1.0
        {
            b.x = INVALID;
            b.y = INVALID;
            b.w = INVALID;
            b.h = INVALID;
            continue;
        }
        if flip {
            let one_dx = 1.0 + dx;
            let (l, r) = (b.left, b.right);
            b.left = one_dx - r * s;
            b.right = one_dx - l * s;
        } else {
            b.left = b.left * s - dx;
            b.right = b.right * s - dx;
        }
        b.top = b.top * t - dy;
        b.bottom = b.bottom * t - dy;
        b.left = b.left.clamp(0.0, 1.0);
        b.right = b.right.clamp(0.0, 1.0);
        b.top = b.top.clamp(0.0, 1.0);
        b.bottom = b.bottom.clamp(0.0, 1.0);
        b.x = (b.left + b.right) / 2.0;
        b.y = (b.top + b.bottom) / 2.0;
        b.w = (b.right - b.left).clamp(0.0, 1.0);
        b.h = (b.bottom - b.top).clamp(0.0, 1.0);
    }
}

/// The crop/flip a sample went through, as `correct_boxes` takes it: offsets `dx`, `dy` and inverse scales
/// `s = 1/sx`, `t = 1/sy` (relative to the original image), and the horizontal flip.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BoxCorrection {
    pub dx: f32,
    pub dy: f32,
    pub s: f32,
    pub t: f32,
    pub flip: bool,
}

impl BoxCorrection {
    /// No crop, no flip.
    pub const IDENTITY: BoxCorrection = BoxCorrection {
        dx: 0.0,
        dy: 0.0,
        s: 1.0,
        t: 1.0,
        flip: false,
    };
}

/// What `fill_truth_detection` keeps: at most `max_boxes` boxes of class below `classes`, none smaller than
/// one pixel of the `net_w`×`net_h` network input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TruthLimits {
    pub max_boxes: usize,
    pub classes: usize,
    pub net_w: usize,
    pub net_h: usize,
}

/// One row of the truth array: x, y, w, h, class id, track id.
pub type TruthRow = [f32; TRUTH_SIZE];

/// Darknet's `fill_truth_detection` (data.c 371) after the label file is read: shuffle (one draw per box),
/// correct, truncate to `max_boxes` (after the shuffle), drop boxes with id >= classes, smaller than one
/// network pixel, marked invalid, or with centre outside (0,1]; w, h capped at 1; x or y == 0 nudged by
/// one pixel. Returns the kept rows in order.
pub fn fill_truth_detection<R: DarknetRand + ?Sized>(
    rng: &mut R,
    mut boxes: Vec<BoxLabel>,
    limits: &TruthLimits,
    c: &BoxCorrection,
) -> Vec<TruthRow> {
    let TruthLimits {
        max_boxes,
        classes,
        net_w,
        net_h,
    } = *limits;
    let lowest_w = 1.0f32 / net_w as f32;
    let lowest_h = 1.0f32 / net_h as f32;
    randomize_boxes(rng, &mut boxes);
    correct_boxes(&mut boxes, c.dx, c.dy, c.s, c.t, c.flip);
    boxes.truncate(max_boxes);
    let mut rows = Vec::with_capacity(boxes.len());
    for b in &boxes {
        let (mut x, mut y, mut w, mut h) = (b.x, b.y, b.w, b.h);
        // Darknet prints "Wrong annotation" here; the dataset reader already rejects such ids.
        if b.id >= classes as i32 {
            continue;
        }
        if w < lowest_w || h < lowest_h || x == INVALID || y == INVALID {
            continue;
        }
        if x <= 0.0 || x > 1.0 || y <= 0.0 || y > 1.0 {
            continue;
        }
        w = w.min(1.0);
        h = h.min(1.0);
        if x == 0.0 {
            x += lowest_w;
        }
        if y == 0.0 {
            y += lowest_h;
        }
        rows.push([x, y, w, h, b.id as f32, b.track_id as f32]);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::rand::GlibcRand;

    #[test]
    fn label_path_and_track_base_match_manifest() {
        assert_eq!(replace_image_to_label("pub/dog.jpg"), "pub/dog.txt");
        assert_eq!(
            replace_image_to_label("d/JPEGImages/a.JPEG"),
            "d/labels/a.txt"
        );
        // manifest.json of the augment reference: track_id_base_for_each_label.
        assert_eq!(track_id_base("pub/dog.txt"), 3468000);
        assert_eq!(track_id_base("pub/bus.txt"), 1356000);
        assert_eq!(track_id_base("pub/scream.txt"), 10768000);
    }

    #[test]
    fn parse_reports_line_of_bad_field() {
        let l = Path::new("l.txt");
        let e = parse_boxes("0 0.5 0.5 0.1 0.1\n1 0.5 x 0.1 0.1\n", 0, l, 80).unwrap_err();
        assert!(format!("{e:#}").contains("l.txt:2"), "{e:#}");
        let b = parse_boxes("3 0.5 0.25 0.1 0.2\n", 7, l, 80).unwrap();
        assert_eq!(
            (b[0].id, b[0].track_id, b[0].left, b[0].bottom),
            (3, 7, 0.45, 0.35)
        );
    }

    #[test]
    fn identity_correction_keeps_box_and_drops_tiny_and_invalid() {
        let boxes = parse_boxes(
            "1 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.001 0.001\n3 0 0 0.1 0.1\n",
            0,
            Path::new("t"),
            80,
        )
        .unwrap();
        let mut rng = GlibcRand::new(1);
        let limits = TruthLimits {
            max_boxes: 10,
            classes: 80,
            net_w: 416,
            net_h: 416,
        };
        let rows = fill_truth_detection(&mut rng, boxes, &limits, &BoxCorrection::IDENTITY);
        assert_eq!(rows.len(), 1);
        // w = right - left in float32: (0.5+0.1) - (0.5-0.1).
        let w = (0.5f32 + 0.1) - (0.5f32 - 0.1);
        assert_eq!(rows[0][..5], [0.5, 0.5, w, w, 1.0]);
    }

    #[test]
    fn flip_mirrors_x() {
        let mut b = parse_boxes("0 0.25 0.5 0.1 0.2\n", 0, Path::new("t"), 80).unwrap();
        correct_boxes(&mut b, 0.0, 0.0, 1.0, 1.0, true);
        assert!((b[0].x - 0.75).abs() < 1e-6 && (b[0].w - 0.1).abs() < 1e-6);
    }
}
