//! Box overlap measures and the IoU-loss gradient, as `box_iou`, `box_giou`, `box_diou`, `box_ciou`,
//! `box_iou_kind` and `dx_box_iou` in src/box.c.
//!
//! Darknet stores these in `float` but calls `atan`, `pow` and `M_PI` in double precision; the same promotions
//! are made here (f64 where C promotes, f32 where C stores), so results agree to float rounding.

use std::f64::consts::PI;

use crate::cfg::IouLoss;

/// Darknet's `box` and the overlap measures of src/box.c that inference shares (one implementation, in
/// `crate::detect::nms`); this module adds GIoU, CIoU and the IoU-loss gradient.
pub use crate::detect::nms::{box_diou, box_intersection, box_iou, box_union};
pub use crate::detect::BoxF as Bbox;

/// The derivative of the IoU-type score w.r.t. the predicted box's x, y, w, h (`dxrep`; Darknet keeps them in
/// the fields `dt, db, dl, dr`, which `dx_box_iou` fills with dx, dy, dw, dh).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BoxGrad {
    pub dx: f32,
    pub dy: f32,
    pub dw: f32,
    pub dh: f32,
}

/// Edges of the smallest box enclosing both (`box_c`).
struct Edges {
    top: f32,
    bot: f32,
    left: f32,
    right: f32,
}

fn enclosing(a: Bbox, b: Bbox) -> Edges {
    Edges {
        top: (a.y - a.h / 2.0).min(b.y - b.h / 2.0),
        bot: (a.y + a.h / 2.0).max(b.y + b.h / 2.0),
        left: (a.x - a.w / 2.0).min(b.x - b.w / 2.0),
        right: (a.x + a.w / 2.0).max(b.x + b.w / 2.0),
    }
}

fn edges(a: Bbox) -> Edges {
    Edges {
        top: a.y - a.h / 2.0,
        bot: a.y + a.h / 2.0,
        left: a.x - a.w / 2.0,
        right: a.x + a.w / 2.0,
    }
}

/// `box_giou`: IoU − (C − U)/C with C the enclosing box's area.
pub fn box_giou(a: Bbox, b: Bbox) -> f32 {
    let e = enclosing(a, b);
    let c = (e.right - e.left) * (e.bot - e.top);
    let iou = box_iou(a, b);
    if c == 0.0 {
        return iou;
    }
    iou - (c - box_union(a, b)) / c
}

/// Aspect-ratio term of CIoU, `4/π² (atan(w_gt/h_gt) − atan(w/h))²`, in double as Darknet computes it.
fn ar_loss(pred: Bbox, truth: Bbox) -> f64 {
    let diff = ((truth.w / truth.h) as f64).atan() - ((pred.w / pred.h) as f64).atan();
    4.0 / (PI * PI) * diff * diff
}

/// `box_ciou`: IoU − (d²/c² + α v), α = v / (1 − IoU + v + 1e-6).
pub fn box_ciou(a: Bbox, b: Bbox) -> f32 {
    let e = enclosing(a, b);
    let (w, h) = (e.right - e.left, e.bot - e.top);
    let c = w * w + h * h;
    let iou = box_iou(a, b);
    if c == 0.0 {
        return iou;
    }
    let u = (a.x - b.x) * (a.x - b.x) + (a.y - b.y) * (a.y - b.y);
    let d = u / c;
    let v = ar_loss(a, b) as f32;
    let alpha = (v as f64 / (1.0 - iou as f64 + v as f64 + 0.000001)) as f32;
    iou - (d + alpha * v)
}

/// `box_iou_kind`: the measure named by `iou_thresh_kind`; MSE (not in Darknet's switch) falls back to IoU.
pub fn box_iou_kind(a: Bbox, b: Bbox, kind: IouLoss) -> f32 {
    match kind {
        IouLoss::Giou => box_giou(a, b),
        IouLoss::Diou => box_diou(a, b),
        IouLoss::Ciou => box_ciou(a, b),
        IouLoss::Iou | IouLoss::Mse => box_iou(a, b),
    }
}

/// The overlap of the prediction and the truth that every term of `dx_box_iou` reads: the prediction's edges
/// sorted (`pred_t ≤ pred_b`, `pred_l ≤ pred_r`), the truth's edges, intersection and union.
struct Overlap {
    pred_t: f32,
    pred_b: f32,
    pred_l: f32,
    pred_r: f32,
    t: Edges,
    /// Intersection height, width and area (`ih`, `iw`, `I`), union area (`U`).
    ih: f32,
    iw: f32,
    i: f32,
    u: f32,
}

/// The sorted prediction edges, intersection and union of `dx_box_iou`.
fn overlap(p: &Edges, truth: Bbox) -> Overlap {
    let pred_t = p.top.min(p.bot);
    let pred_b = p.top.max(p.bot);
    let pred_l = p.left.min(p.right);
    let pred_r = p.left.max(p.right);
    let t = edges(truth);

    let x_area = (pred_b - pred_t) * (pred_r - pred_l);
    let xhat_area = (t.bot - t.top) * (t.right - t.left);
    let ih = pred_b.min(t.bot) - pred_t.max(t.top);
    let iw = pred_r.min(t.right) - pred_l.max(t.left);
    let i = iw * ih;
    let u = x_area + xhat_area - i;
    Overlap {
        pred_t,
        pred_b,
        pred_l,
        pred_r,
        t,
        ih,
        iw,
        i,
        u,
    }
}

/// The IoU gradient w.r.t. the prediction's top, bottom, left, right edges (`p_dt, p_db, p_dl, p_dr`), plus
/// GIoU's enclosing-area term when `kind` is GIoU. `p` are the unsorted prediction edges.
fn edge_grads(p: &Edges, o: &Overlap, kind: IouLoss) -> [f32; 4] {
    let (pred_t, pred_b, pred_l, pred_r, t) = (o.pred_t, o.pred_b, o.pred_l, o.pred_r, &o.t);
    let (iw, ih, i, u) = (o.iw, o.ih, o.i, o.u);
    let giou_cw = pred_r.max(t.right) - pred_l.min(t.left);
    let giou_ch = pred_b.max(t.bot) - pred_t.min(t.top);
    let giou_c = giou_cw * giou_ch;

    let dx_wrt_t = -(pred_r - pred_l);
    let dx_wrt_b = pred_r - pred_l;
    let dx_wrt_l = -(pred_b - pred_t);
    let dx_wrt_r = pred_b - pred_t;

    let di_wrt_t = if pred_t > t.top { -iw } else { 0.0 };
    let di_wrt_b = if pred_b < t.bot { iw } else { 0.0 };
    let di_wrt_l = if pred_l > t.left { -ih } else { 0.0 };
    let di_wrt_r = if pred_r < t.right { ih } else { 0.0 };

    let du_wrt_t = dx_wrt_t - di_wrt_t;
    let du_wrt_b = dx_wrt_b - di_wrt_b;
    let du_wrt_l = dx_wrt_l - di_wrt_l;
    let du_wrt_r = dx_wrt_r - di_wrt_r;

    let dc_wrt_t = if pred_t < t.top { -giou_cw } else { 0.0 };
    let dc_wrt_b = if pred_b > t.bot { giou_cw } else { 0.0 };
    let dc_wrt_l = if pred_l < t.left { -giou_ch } else { 0.0 };
    let dc_wrt_r = if pred_r > t.right { giou_ch } else { 0.0 };

    let (mut p_dt, mut p_db, mut p_dl, mut p_dr) = (0.0f32, 0.0f32, 0.0f32, 0.0f32);
    if u > 0.0 {
        p_dt = ((u * di_wrt_t) - (i * du_wrt_t)) / (u * u);
        p_db = ((u * di_wrt_b) - (i * du_wrt_b)) / (u * u);
        p_dl = ((u * di_wrt_l) - (i * du_wrt_l)) / (u * u);
        p_dr = ((u * di_wrt_r) - (i * du_wrt_r)) / (u * u);
    }
    // Darknet reassigns sequentially, so with flipped edges the second line reads the already-updated value.
    p_dt = if p.top < p.bot { p_dt } else { p_db };
    p_db = if p.top < p.bot { p_db } else { p_dt };
    p_dl = if p.left < p.right { p_dl } else { p_dr };
    p_dr = if p.left < p.right { p_dr } else { p_dl };

    if kind == IouLoss::Giou {
        let c2 = giou_c * giou_c;
        let gt = ((giou_c * du_wrt_t) - (u * dc_wrt_t)) / c2;
        let gb = ((giou_c * du_wrt_b) - (u * dc_wrt_b)) / c2;
        let gl = ((giou_c * du_wrt_l) - (u * dc_wrt_l)) / c2;
        let gr = ((giou_c * du_wrt_r) - (u * dc_wrt_r)) / c2;
        if giou_c > 0.0 {
            p_dt += gt;
            p_db += gb;
            p_dl += gl;
            p_dr += gr;
        }
        if iw <= 0.0 || ih <= 0.0 {
            p_dt = gt;
            p_db = gb;
            p_dl = gl;
            p_dr = gr;
        }
    }
    [p_dt, p_db, p_dl, p_dr]
}

/// The DIoU centre-distance gradient (plus CIoU's aspect-ratio term when `kind` is CIoU) w.r.t. x, y, w, h,
/// and `c`, the squared diagonal of the enclosing box (the gradient only applies when `c > 0`).
fn distance_grads(pred: Bbox, truth: Bbox, o: &Overlap, kind: IouLoss) -> ([f32; 4], f32) {
    let (pred_t, pred_b, pred_l, pred_r, t) = (o.pred_t, o.pred_b, o.pred_l, o.pred_r, &o.t);
    let s = (pred.x - truth.x) * (pred.x - truth.x) + (pred.y - truth.y) * (pred.y - truth.y);
    let ct = (pred.y - pred.h / 2.0).min(truth.y - truth.h / 2.0);
    let cb = (pred.y + pred.h / 2.0).max(truth.y + truth.h / 2.0);
    let cl = (pred.x - pred.w / 2.0).min(truth.x - truth.w / 2.0);
    let cr = (pred.x + pred.w / 2.0).max(truth.x + truth.w / 2.0);
    let cw = cr - cl;
    let ch = cb - ct;
    let c = cw * cw + ch * ch;

    let top_out = pred_t < t.top;
    let bot_out = pred_b > t.bot;
    let left_out = pred_l < t.left;
    let right_out = pred_r > t.right;
    let one = |b: bool| if b { 1.0f32 } else { 0.0 };
    let half = |b: bool| if b { 0.5f32 } else { 0.0 };
    // dC{w,h}/d{x,y,w,h}: only these four are non-zero (Darknet's dCw_dy, dCh_dx are identically 0).
    let dcw_dx = one(right_out) - one(left_out);
    let dcw_dw = half(right_out) + half(left_out);
    let dch_dy = one(bot_out) - one(top_out);
    let dch_dh = half(bot_out) + half(top_out);

    let (ar_dw, ar_dh) = if kind == IouLoss::Ciou {
        let v = ar_loss(pred, truth) as f32;
        let alpha = (v as f64 / (1.0 - (o.i / o.u) as f64 + v as f64 + 0.000001)) as f32;
        let diff = ((truth.w / truth.h) as f64).atan() - ((pred.w / pred.h) as f64).atan();
        let ar_dw = (8.0 / (PI * PI) * diff * pred.h as f64) as f32;
        let ar_dh = (-8.0 / (PI * PI) * diff * pred.w as f64) as f32;
        (alpha * ar_dw, alpha * ar_dh)
    } else {
        (0.0, 0.0)
    };
    let c2 = c * c;
    let gx = (2.0 * (truth.x - pred.x) * c - (2.0 * cw * dcw_dx) * s) / c2;
    let gy = (2.0 * (truth.y - pred.y) * c - (2.0 * ch * dch_dy) * s) / c2;
    let gw = (2.0 * cw * dcw_dw) * s / c2 + ar_dw;
    let gh = (2.0 * ch * dch_dh) * s / c2 + ar_dh;
    ([gx, gy, gw, gh], c)
}

/// `dx_box_iou`: gradient of IoU (plus the GIoU / DIoU / CIoU penalty terms, per `kind`) w.r.t. the predicted
/// box's x, y, w, h, with Darknet's own simplifications kept (w, h derivatives not halved, the DIoU/CIoU
/// distance gradient replacing the IoU gradient when the boxes do not overlap, α treated as a constant).
pub fn dx_box_iou(pred: Bbox, truth: Bbox, kind: IouLoss) -> BoxGrad {
    let p = edges(pred);
    let o = overlap(&p, truth);
    let [p_dt, p_db, p_dl, p_dr] = edge_grads(&p, &o, kind);

    let mut p_dx = p_dl + p_dr;
    let mut p_dy = p_dt + p_db;
    let mut p_dw = p_dr - p_dl;
    let mut p_dh = p_db - p_dt;

    if kind == IouLoss::Diou || kind == IouLoss::Ciou {
        let ([gx, gy, gw, gh], c) = distance_grads(pred, truth, &o, kind);
        if c > 0.0 {
            p_dx += gx;
            p_dy += gy;
            p_dw += gw;
            p_dh += gh;
        }
        if o.iw <= 0.0 || o.ih <= 0.0 {
            p_dx = gx;
            p_dy = gy;
            p_dw = gw;
            p_dh = gh;
        }
    }

    BoxGrad {
        dx: p_dx,
        dy: p_dy,
        dw: p_dw,
        dh: p_dh,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_hand_computed_boxes() {
        // [0,2]x[0,2] and [1,3]x[1,3]: I = 1, U = 7.
        let a = Bbox::new(1.0, 1.0, 2.0, 2.0);
        let b = Bbox::new(2.0, 2.0, 2.0, 2.0);
        assert!((box_iou(a, b) - 1.0 / 7.0).abs() < 1e-7);
        // Enclosing box [0,3]^2: C = 9, GIoU = 1/7 - 2/9.
        assert!((box_giou(a, b) - (1.0 / 7.0 - 2.0 / 9.0)).abs() < 1e-7);
        // d² = 2, c² = 18: DIoU = 1/7 - (1/9)^0.6.
        let diou = 1.0 / 7.0 - (1.0f64 / 9.0).powf(0.6);
        assert!((box_diou(a, b) as f64 - diou).abs() < 1e-6);
        // Same aspect ratio: the CIoU term is d²/c² only.
        assert!((box_ciou(a, b) - (1.0 / 7.0 - 1.0 / 9.0)).abs() < 1e-6);
        assert_eq!(box_iou(a, Bbox::new(10.0, 10.0, 1.0, 1.0)), 0.0);
    }

    #[test]
    fn iou_gradient_matches_finite_difference_when_overlapping() {
        // For plain IoU with dx = dl + dr and dw = dr - dl (not halved), Darknet's dw is twice d IoU / d w.
        let truth = Bbox::new(0.5, 0.5, 0.3, 0.4);
        let pred = Bbox::new(0.52, 0.47, 0.25, 0.35);
        let g = dx_box_iou(pred, truth, IouLoss::Iou);
        let eps = 1e-3f32;
        let fd = |f: &dyn Fn(f32) -> Bbox| {
            (box_iou(f(eps), truth) - box_iou(f(-eps), truth)) / (2.0 * eps)
        };
        let gx = fd(&|e| Bbox {
            x: pred.x + e,
            ..pred
        });
        let gy = fd(&|e| Bbox {
            y: pred.y + e,
            ..pred
        });
        let gw = fd(&|e| Bbox {
            w: pred.w + e,
            ..pred
        });
        let gh = fd(&|e| Bbox {
            h: pred.h + e,
            ..pred
        });
        assert!((g.dx - gx).abs() < 2e-3, "{} {}", g.dx, gx);
        assert!((g.dy - gy).abs() < 2e-3, "{} {}", g.dy, gy);
        assert!((g.dw - 2.0 * gw).abs() < 4e-3, "{} {}", g.dw, gw);
        assert!((g.dh - 2.0 * gh).abs() < 4e-3, "{} {}", g.dh, gh);
    }
}
