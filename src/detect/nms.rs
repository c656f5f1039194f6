//! Non-maximum suppression: mirrors `do_nms_sort`, `do_nms_obj`, `diounms_sort`, `box_iou`, `box_diou`,
//! `box_diounms` (`src/box.c`) and the dispatch of `test_detector` (`src/detector.c`): `nms_kind=default`
//! runs `do_nms_sort` (IoU), every other kind runs `diounms_sort`, where `greedynms` suppresses on DIoU with
//! the fixed exponent 0.6, `diounms` on DIoU with exponent `beta_nms`, and `cornersnms` on plain IoU.
//!
//! Order matters: the C sorts the detection array in place with `qsort` once per class, and that order is
//! what `detector test` prints and draws. glibc's `qsort` (2.36, the reference build) is a stable top-down
//! merge sort (`msort_with_tmp`: left half `n/2`, right half the rest, ties take the left element), so
//! [`glibc_qsort`] reproduces that algorithm exactly — including its result for the ties and NaNs where the
//! comparator is not a total order.

// Index loops mirror the C loops (`for (j = i+1; j < total; ++j)`) on purpose.
#![allow(clippy::needless_range_loop)]

use super::{BoxF, Detection};

/// Darknet's `NMS_KIND`; the cfg parser (`crate::cfg::parse_yolo`) decides which names select which kind.
pub use crate::cfg::NmsKind;

/// `overlap`: the 1-D overlap of two centred segments (negative when disjoint).
fn overlap(x1: f32, w1: f32, x2: f32, w2: f32) -> f32 {
    let l1 = x1 - w1 / 2.0;
    let l2 = x2 - w2 / 2.0;
    let left = if l1 > l2 { l1 } else { l2 };
    let r1 = x1 + w1 / 2.0;
    let r2 = x2 + w2 / 2.0;
    let right = if r1 < r2 { r1 } else { r2 };
    right - left
}

/// `box_intersection`.
pub fn box_intersection(a: BoxF, b: BoxF) -> f32 {
    let w = overlap(a.x, a.w, b.x, b.w);
    let h = overlap(a.y, a.h, b.y, b.h);
    if w < 0.0 || h < 0.0 {
        return 0.0;
    }
    w * h
}

/// `box_union`.
pub fn box_union(a: BoxF, b: BoxF) -> f32 {
    let i = box_intersection(a, b);
    a.w * a.h + b.w * b.h - i
}

/// `box_iou`: 0 when the intersection or union is 0.
pub fn box_iou(a: BoxF, b: BoxF) -> f32 {
    let i = box_intersection(a, b);
    let u = box_union(a, b);
    if i == 0.0 || u == 0.0 {
        return 0.0;
    }
    i / u
}

/// `box_diounms`'s body with exponent `beta`: `iou - pow(d/c, beta)`, `d` the squared centre distance and
/// `c` the squared diagonal of the enclosing box (`box_c`); `pow` in double as in C.
fn diou_with_exponent(a: BoxF, b: BoxF, beta: f64) -> f32 {
    let top = (a.y - a.h / 2.0).min(b.y - b.h / 2.0);
    let bot = (a.y + a.h / 2.0).max(b.y + b.h / 2.0);
    let left = (a.x - a.w / 2.0).min(b.x - b.w / 2.0);
    let right = (a.x + a.w / 2.0).max(b.x + b.w / 2.0);
    let w = right - left;
    let h = bot - top;
    let c = w * w + h * h;
    let iou = box_iou(a, b);
    if c == 0.0 {
        return iou;
    }
    let d = (a.x - b.x) * (a.x - b.x) + (a.y - b.y) * (a.y - b.y);
    let u = f64::from(d / c).powf(beta) as f32;
    iou - u
}

/// `box_diou`: DIoU with Darknet's fixed exponent 0.6 (used by `greedynms`).
pub fn box_diou(a: BoxF, b: BoxF) -> f32 {
    diou_with_exponent(a, b, 0.6)
}

/// `box_diounms(a, b, beta1)`.
pub fn box_diounms(a: BoxF, b: BoxF, beta1: f32) -> f32 {
    diou_with_exponent(a, b, f64::from(beta1))
}

/// glibc `qsort` as built on the reference machine: a stable top-down merge sort. `cmp` returns like a C
/// comparator (negative: `a` first); on ties (`<= 0`) the left element is taken.
pub fn glibc_qsort<T>(v: &mut Vec<T>, mut cmp: impl FnMut(&T, &T) -> i32) {
    let n = v.len();
    let mut idx: Vec<usize> = (0..n).collect();
    let mut tmp = vec![0usize; n];
    msort(&mut idx, &mut tmp, &mut |a, b| cmp(&v[a], &v[b]));
    let mut old: Vec<Option<T>> = v.drain(..).map(Some).collect();
    v.extend(idx.iter().filter_map(|&i| old[i].take()));
}

/// `msort_with_tmp` on an index array.
fn msort(b: &mut [usize], tmp: &mut [usize], cmp: &mut impl FnMut(usize, usize) -> i32) {
    let n = b.len();
    if n <= 1 {
        return;
    }
    let n1 = n / 2;
    let n2 = n - n1;
    {
        let (b1, b2) = b.split_at_mut(n1);
        msort(b1, tmp, cmp);
        msort(b2, tmp, cmp);
    }
    let (mut i, mut j, mut k) = (0, 0, 0);
    while i < n1 && j < n2 {
        if cmp(b[i], b[n1 + j]) <= 0 {
            tmp[k] = b[i];
            i += 1;
        } else {
            tmp[k] = b[n1 + j];
            j += 1;
        }
        k += 1;
    }
    while i < n1 {
        tmp[k] = b[i];
        i += 1;
        k += 1;
    }
    // What remains of the right half is already in place.
    b[..k].copy_from_slice(&tmp[..k]);
}

/// `nms_comparator_v3`: descending by `prob[sort_class]`, or by objectness when `sort_class` is `None`
/// (Darknet's `-1`), computed as the sign of the float difference as in C.
fn nms_comparator_v3(a: &Detection, b: &Detection, sort_class: Option<usize>) -> i32 {
    let diff = match sort_class {
        Some(k) => a.prob[k] - b.prob[k],
        None => a.objectness - b.objectness,
    };
    if diff < 0.0 {
        1
    } else if diff > 0.0 {
        -1
    } else {
        0
    }
}

/// The prologue shared by all NMS functions: detections with objectness exactly 0 are swapped to the end
/// (`swap(dets[i], dets[k]); --k; --i;`), returning how many remain in front.
fn move_zero_objectness_to_end(dets: &mut [Detection]) -> usize {
    let mut k = dets.len() as isize - 1;
    let mut i: isize = 0;
    while i <= k {
        if dets[i as usize].objectness == 0.0 {
            dets.swap(i as usize, k as usize);
            k -= 1;
            i -= 1;
        }
        i += 1;
    }
    (k + 1) as usize
}

/// Sorts the first `total` detections with [`glibc_qsort`] on `nms_comparator_v3`.
fn sort_front(dets: &mut Vec<Detection>, total: usize, sort_class: Option<usize>) {
    let mut front: Vec<Detection> = dets.drain(..total).collect();
    glibc_qsort(&mut front, |a, b| nms_comparator_v3(a, b, sort_class));
    front.append(dets);
    *dets = front;
}

/// Per-class greedy suppression shared by `do_nms_sort` and `diounms_sort`: for each class `k`, sort by
/// `prob[k]`, then every surviving detection zeroes `prob[k]` of each later one that `suppress`es.
fn per_class_nms(dets: &mut Vec<Detection>, classes: usize, suppress: impl Fn(BoxF, BoxF) -> bool) {
    let total = move_zero_objectness_to_end(dets);
    for k in 0..classes {
        sort_front(dets, total, Some(k));
        for i in 0..total {
            if dets[i].prob[k] == 0.0 {
                continue;
            }
            let a = dets[i].bbox;
            for j in i + 1..total {
                if suppress(a, dets[j].bbox) {
                    dets[j].prob[k] = 0.0;
                }
            }
        }
    }
}

/// `do_nms_sort(dets, total, classes, thresh)`: per-class greedy NMS on IoU.
pub fn do_nms_sort(dets: &mut Vec<Detection>, classes: usize, thresh: f32) {
    per_class_nms(dets, classes, |a, b| box_iou(a, b) > thresh);
}

/// `diounms_sort(dets, total, classes, thresh, nms_kind, beta1)`: per-class greedy NMS whose overlap test
/// depends on the kind (`cornersnms`: IoU; `greedynms`: DIoU^0.6; `diounms`: DIoU^beta1; `default`
/// suppresses nothing here, as in the C where no branch matches).
pub fn diounms_sort(
    dets: &mut Vec<Detection>,
    classes: usize,
    thresh: f32,
    kind: NmsKind,
    beta1: f32,
) {
    per_class_nms(dets, classes, |a, b| match kind {
        NmsKind::Corners => box_iou(a, b) > thresh,
        NmsKind::Greedy => box_diou(a, b) > thresh,
        NmsKind::Diou => box_diounms(a, b, beta1) > thresh,
        NmsKind::Default => false,
    });
}

/// `do_nms_obj(dets, total, classes, thresh)`: class-agnostic NMS sorted by objectness; a suppressed
/// detection gets objectness and every class probability set to 0.
pub fn do_nms_obj(dets: &mut Vec<Detection>, classes: usize, thresh: f32) {
    let total = move_zero_objectness_to_end(dets);
    sort_front(dets, total, None);
    for i in 0..total {
        if dets[i].objectness == 0.0 {
            continue;
        }
        let a = dets[i].bbox;
        for j in i + 1..total {
            if dets[j].objectness == 0.0 {
                continue;
            }
            if box_iou(a, dets[j].bbox) > thresh {
                dets[j].objectness = 0.0;
                for p in dets[j].prob.iter_mut().take(classes) {
                    *p = 0.0;
                }
            }
        }
    }
}

/// NMS as `test_detector` applies it (with `l` the last detection layer): nothing when `thresh` is 0,
/// `do_nms_sort` for the default kind, `diounms_sort` otherwise.
pub fn apply_nms(
    dets: &mut Vec<Detection>,
    classes: usize,
    thresh: f32,
    kind: NmsKind,
    beta_nms: f32,
) {
    if thresh == 0.0 {
        return;
    }
    match kind {
        NmsKind::Default => do_nms_sort(dets, classes, thresh),
        _ => diounms_sort(dets, classes, thresh, kind, beta_nms),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f32, y: f32, w: f32, h: f32, obj: f32, prob: &[f32]) -> Detection {
        Detection {
            bbox: BoxF { x, y, w, h },
            objectness: obj,
            prob: prob.to_vec(),
            classes: prob.len(),
        }
    }

    #[test]
    fn msort_is_stable_and_matches_std_stable_sort() {
        let keys: Vec<(i32, usize)> = (0..257).map(|i| (((i * 7919) % 13) as i32, i)).collect();
        let mut a = keys.clone();
        glibc_qsort(&mut a, |x, y| (y.0 - x.0).signum());
        let mut b = keys;
        b.sort_by_key(|x| std::cmp::Reverse(x.0));
        assert_eq!(a, b);
    }

    #[test]
    fn iou_and_diou_values() {
        let a = BoxF {
            x: 0.5,
            y: 0.5,
            w: 0.2,
            h: 0.2,
        };
        let b = BoxF {
            x: 0.6,
            y: 0.5,
            w: 0.2,
            h: 0.2,
        };
        // Intersection 0.1*0.2 = 0.02, union 0.08-0.02 = 0.06.
        assert!((box_iou(a, b) - 1.0 / 3.0).abs() < 1e-6);
        // Enclosing box 0.3x0.2: c = 0.13, d = 0.01.
        let expect = 1.0 / 3.0 - (0.01f64 / 0.13).powf(0.6) as f32;
        assert!((box_diou(a, b) - expect).abs() < 1e-6);
        assert!((box_diounms(a, b, 0.6) - box_diou(a, b)).abs() < 1e-7);
        let far = BoxF {
            x: 0.9,
            y: 0.9,
            w: 0.1,
            h: 0.1,
        };
        assert_eq!(box_iou(a, far), 0.0);
        assert_eq!(box_iou(BoxF::default(), BoxF::default()), 0.0);
    }

    #[test]
    fn nms_sort_suppresses_per_class_and_orders_by_last_class() {
        let mut dets = vec![
            det(0.50, 0.5, 0.2, 0.2, 0.9, &[0.5, 0.0]),
            det(0.52, 0.5, 0.2, 0.2, 0.9, &[0.8, 0.3]),
            det(0.10, 0.1, 0.1, 0.1, 0.0, &[0.0, 0.0]),
            det(0.90, 0.9, 0.1, 0.1, 0.7, &[0.0, 0.6]),
        ];
        do_nms_sort(&mut dets, 2, 0.45);
        // The zero-objectness detection went to the end; the last sort (class 1) ordered the rest.
        let p: Vec<Vec<f32>> = dets.iter().map(|d| d.prob.clone()).collect();
        assert_eq!(
            p,
            vec![
                vec![0.0, 0.6],
                vec![0.8, 0.3],
                vec![0.0, 0.0],
                vec![0.0, 0.0]
            ]
        );
        assert_eq!(dets[3].objectness, 0.0);
        assert_eq!(dets[2].bbox.x, 0.50);
    }

    #[test]
    fn nms_obj_and_kinds() {
        let mut dets = vec![
            det(0.5, 0.5, 0.2, 0.2, 0.6, &[0.6]),
            det(0.51, 0.5, 0.2, 0.2, 0.8, &[0.7]),
        ];
        do_nms_obj(&mut dets, 1, 0.45);
        assert_eq!(dets[0].objectness, 0.8);
        assert_eq!((dets[1].objectness, dets[1].prob[0]), (0.0, 0.0));
        // Overlapping by IoU 0.5 but with distant centres relative to the enclosing box: greedynms and
        // cornersnms both suppress here; default kind in diounms_sort suppresses nothing.
        let make = || {
            vec![
                det(0.5, 0.5, 0.4, 0.2, 0.9, &[0.9]),
                det(0.5, 0.5, 0.2, 0.2, 0.9, &[0.8]),
            ]
        };
        for (kind, survives) in [
            (NmsKind::Greedy, false),
            (NmsKind::Corners, false),
            (NmsKind::Default, true),
        ] {
            let mut d = make();
            diounms_sort(&mut d, 1, 0.45, kind, 0.6);
            assert_eq!(d[1].prob[0] > 0.0, survives, "{kind:?}");
        }
    }
}
