//! Mosaic assembly of `load_data_detection` (data.c 1265-1315) and `blend_truth_mosaic` (data.c 886)
//! with `mosaic_bound = 0`.

use super::fused::Region;
use super::CropRect;
use crate::data::decode::RgbImage;
use crate::data::truth::{TruthRow, TRUTH_SIZE};

/// Where one mosaic piece lands: the cut point of the sample and the shifts that keep the padded border
/// of the augmented piece out of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MosaicShifts {
    pub cut_x: i32,
    pub cut_y: i32,
    pub left_shift: i32,
    pub right_shift: i32,
    pub top_shift: i32,
    pub bot_shift: i32,
}

/// data.c 1280-1287, for the cut point `cut`, the network size `(w, h)`, the original image size `(ow, oh)`
/// and the crop `c`: with flip, pleft and pright are exchanged first; `left_shift = min(cut_x,
/// max(0, (-pleft*w)/ow))`, `top_shift = min(cut_y, max(0, (-ptop*h)/oh))`, `right_shift = min(w-cut_x,
/// max(0, (-pright*w)/ow))`, `bot_shift = min(h-cut_y, max(0, (-pbot*h)/oh))` (C integer division).
pub fn mosaic_shifts(
    (cut_x, cut_y): (i32, i32),
    (w, h): (i32, i32),
    (ow, oh): (i32, i32),
    c: &CropRect,
    flip: bool,
) -> MosaicShifts {
    let (ptop, pbot) = (c.ptop, c.pbot);
    let (pleft, pright) = if flip {
        (c.pright, c.pleft)
    } else {
        (c.pleft, c.pright)
    };
    MosaicShifts {
        cut_x,
        cut_y,
        left_shift: cut_x.min(0.max(-pleft * w / ow)),
        top_shift: cut_y.min(0.max(-ptop * h / oh)),
        right_shift: (w - cut_x).min(0.max(-pright * w / ow)),
        bot_shift: (h - cut_y).min(0.max(-pbot * h / oh)),
    }
}

/// Copies quadrant `pass` (0 top-left, 1 top-right, 2 bottom-left, 3 bottom-right) of the mosaic from the
/// augmented piece `ai` (same size as `dst`): destination x in [0,cut_x) takes source
/// x + w-cut_x-right_shift, x >= cut_x takes x-cut_x+left_shift; y < cut_y takes y + h-cut_y-bot_shift,
/// y >= cut_y takes y-cut_y+top_shift.
pub fn paste_quadrant(dst: &mut RgbImage, ai: &RgbImage, pass: usize, m: &MosaicShifts) {
    let r = quadrant_region(pass, m, dst.w, dst.h);
    let n = (r.x1 - r.x0) * 3;
    for y in r.y0..r.y1 {
        let d = ((y - r.y0 + r.dst_y) * dst.w + r.dst_x) * 3;
        let s = (y * ai.w + r.x0) * 3;
        dst.data[d..d + n].copy_from_slice(&ai.data[s..s + n]);
    }
}

/// The rectangle of the `w`x`h` piece of pass `pass` that [`paste_quadrant`] copies, and where it lands:
/// the only pixels of the piece that are computed in the fused path.
pub fn quadrant_region(pass: usize, m: &MosaicShifts, w: usize, h: usize) -> Region {
    let (w, h) = (w as i32, h as i32);
    let (dst_x, x1, sx0) = if pass % 2 == 0 {
        (0, m.cut_x, w - m.cut_x - m.right_shift)
    } else {
        (m.cut_x, w, m.left_shift)
    };
    let (dst_y, y1, sy0) = if pass < 2 {
        (0, m.cut_y, h - m.cut_y - m.bot_shift)
    } else {
        (m.cut_y, h, m.top_shift)
    };
    let u = |v: i32| v.max(0) as usize;
    Region {
        x0: u(sx0),
        y0: u(sy0),
        x1: u(sx0 + x1 - dst_x),
        y1: u(sy0 + y1 - dst_y),
        dst_x: u(dst_x),
        dst_y: u(dst_y),
    }
}

/// `blend_truth_mosaic` (data.c 886), `mosaic_bound = 0`: appends the piece's boxes after the rows already
/// in `rows` (at most `max_boxes` in total), shifted into the mosaic in float32 in the compiled form
/// (pass 0/2: `x += ((right_shift-w)+cut_x)*(1/w)`, 1/3: `x += (cut_x-left_shift)*(1/w)`; pass 0/1:
/// `y += ((bot_shift-h)+cut_y)*(1/h)`, 2/3: `y += (cut_y-top_shift)*(1/h)`), shrunk at the image border
/// and kept only if inside the image and larger than one pixel. Only x, y, w, h, id are copied (track id 0).
pub fn blend_truth_mosaic(
    rows: &mut Vec<TruthRow>,
    piece: &[TruthRow],
    max_boxes: usize,
    w: i32,
    h: i32,
    pass: usize,
    m: &MosaicShifts,
) {
    let (wf, hf) = (w as f32, h as f32);
    let (iw, ih) = (1.0f32 / wf, 1.0f32 / hf);
    let (lowest_w, lowest_h) = (1.0f32 / wf, 1.0f32 / hf);
    let count_new = rows.len();
    let cut_x = m.cut_x as f32;
    let cut_y = m.cut_y as f32;
    for t in count_new..max_boxes {
        let Some(old) = piece.get(t - count_new) else {
            break;
        };
        if old[0] == 0.0 {
            break;
        }
        let [mut xb, mut yb, mut wb, mut hb] = [old[0], old[1], old[2], old[3]];
        if pass % 2 == 0 {
            xb += ((m.right_shift - w) as f32 + cut_x) * iw;
        } else {
            xb += (cut_x - m.left_shift as f32) * iw;
        }
        if pass < 2 {
            yb += ((m.bot_shift - h) as f32 + cut_y) * ih;
        } else {
            yb += (cut_y - m.top_shift as f32) * ih;
        }
        let edges = |xb: f32, yb: f32, wb: f32, hb: f32| {
            (
                ((xb - wb / 2.0) * wf) as i32,
                ((xb + wb / 2.0) * wf) as i32,
                ((yb - hb / 2.0) * hf) as i32,
                ((yb + hb / 2.0) * hf) as i32,
            )
        };
        let (left, right, top, bot) = edges(xb, yb, wb, hb);
        if left < 0 {
            let d = left as f32 * iw;
            xb -= d / 2.0;
            wb += d;
        }
        if right > w {
            let d = (right - w) as f32 * iw;
            xb -= d / 2.0;
            wb -= d;
        }
        if top < 0 {
            let d = top as f32 * ih;
            yb -= d / 2.0;
            hb += d;
        }
        if bot > h {
            let d = (bot - h) as f32 * ih;
            yb -= d / 2.0;
            hb -= d;
        }
        let (left, right, top, bot) = edges(xb, yb, wb, hb);
        if left >= 0
            && right <= w
            && top >= 0
            && bot <= h
            && wb > 0.0
            && wb < 1.0
            && hb > 0.0
            && hb < 1.0
            && xb > 0.0
            && xb < 1.0
            && yb > 0.0
            && yb < 1.0
            && wb > lowest_w
            && hb > lowest_h
        {
            let mut row = [0f32; TRUTH_SIZE];
            row[..5].copy_from_slice(&[xb, yb, wb, hb, old[4]]);
            rows.push(row);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crop(pleft: i32, pright: i32, ptop: i32, pbot: i32) -> CropRect {
        CropRect {
            pleft,
            pright,
            ptop,
            pbot,
        }
    }

    #[test]
    fn shifts_follow_negative_offsets() {
        let m = mosaic_shifts(
            (100, 200),
            (416, 416),
            (832, 832),
            &crop(-40, 10, 20, -100),
            false,
        );
        assert_eq!(
            (m.left_shift, m.right_shift, m.top_shift, m.bot_shift),
            (20, 0, 0, 50)
        );
        // flip exchanges pleft and pright.
        let m = mosaic_shifts(
            (100, 200),
            (416, 416),
            (832, 832),
            &crop(-40, 10, 20, -100),
            true,
        );
        assert_eq!((m.left_shift, m.right_shift), (0, 20));
    }

    #[test]
    fn centred_box_in_bottom_right_piece_moves_by_cut() {
        let m = mosaic_shifts((208, 208), (416, 416), (416, 416), &crop(0, 0, 0, 0), false);
        let mut rows = Vec::new();
        blend_truth_mosaic(
            &mut rows,
            &[[0.25, 0.25, 0.1, 0.1, 3.0, 9.0]],
            10,
            416,
            416,
            3,
            &m,
        );
        assert_eq!(rows, vec![[0.75, 0.75, 0.1, 0.1, 3.0, 0.0]]);
    }

    #[test]
    fn quadrant_copy_reads_shifted_source() {
        let mut dst = RgbImage::filled(4, 4, [0, 0, 0]);
        let mut ai = RgbImage::filled(4, 4, [0, 0, 0]);
        for (i, p) in ai.data.chunks_exact_mut(3).enumerate() {
            p[0] = i as u8;
        }
        let m = MosaicShifts {
            cut_x: 1,
            cut_y: 1,
            left_shift: 0,
            right_shift: 0,
            top_shift: 0,
            bot_shift: 0,
        };
        paste_quadrant(&mut dst, &ai, 0, &m);
        // dst(0,0) <- ai(0 + 4-1, 0 + 4-1) = index 15.
        assert_eq!(dst.px(0, 0)[0], 15);
        assert_eq!(dst.px(1, 0)[0], 0);
    }
}
