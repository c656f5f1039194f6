//! `cv::resize(src, dst, Size(w, h), 0, 0, INTER_LINEAR)` on 8-bit 3-channel images, reproducing
//! OpenCV's fixed-point path (modules/imgproc/src/resize.cpp: `resizeGeneric_` with `HResizeLinear`
//! and `VResizeLinear` + `VResizeLinearVec_32s8u`), which Darknet's `image_data_augmentation` calls.
//!
//! Coordinates: `scale = 1/(dst/src)` (double), `f = (float)((d+0.5)*scale - 0.5)`, `s = floor(f)`,
//! `f -= s`; weights `round_half_even((1-f)*2048)`, `round_half_even(f*2048)` (11 bits). Columns left of
//! the image use (s=0, f=0), columns at/after the last use (s=w-1, f=0); rows keep their weights and
//! clamp the row index instead. Horizontal pass: `S[s]*a0 + S[s+1]*a1` (int). Vertical pass, in the form
//! of the vectorised `VResizeLinearVec_32s8u`: `((((S0>>4)*b0)>>16) + (((S1>>4)*b1)>>16) + 2) >> 2`,
//! saturated, for every byte (not the scalar `(S0*b0 + S1*b1 + 2^21) >> 22`, which differs by 1 in
//! places: measured against OpenCV 4.14 on widths that are not multiples of 16, the vector form matched
//! all bytes and the scalar tail did not).
//! Exactly 2x downscaling in both directions switches to INTER_AREA's fast path (2x2 mean, `(sum+2)>>2`),
//! as `cv::resize` does.

use crate::data::decode::RgbImage;

const COEF_BITS: i32 = 11;
const COEF_SCALE: f32 = (1 << COEF_BITS) as f32;

/// Per-output-position source index and the two 11-bit weights along one axis.
struct Taps {
    idx: Vec<i32>,
    w0: Vec<i32>,
    w1: Vec<i32>,
}

/// OpenCV's coordinate mapping for one axis; `clamp_edges` applies the x-axis rule (`s<0` -> s=0, f=0;
/// `s >= len-1` -> s=len-1, f=0); the y-axis keeps raw `s` and fractional weights.
fn taps(src_len: usize, dst_len: usize, clamp_edges: bool) -> Taps {
    let mut v = (Vec::new(), Vec::new(), Vec::new());
    taps_into(src_len, dst_len, clamp_edges, &mut v);
    Taps {
        idx: v.0,
        w0: v.1,
        w1: v.2,
    }
}

/// [`taps`] into reused vectors (index, w0, w1).
pub(crate) fn taps_into(
    src_len: usize,
    dst_len: usize,
    clamp_edges: bool,
    t: &mut (Vec<i32>, Vec<i32>, Vec<i32>),
) {
    let inv_scale = dst_len as f64 / src_len as f64;
    let scale = 1.0 / inv_scale;
    t.0.clear();
    t.1.clear();
    t.2.clear();
    for d in 0..dst_len {
        let mut f = ((d as f64 + 0.5) * scale - 0.5) as f32;
        let mut s = f.floor() as i32;
        f -= s as f32;
        if clamp_edges {
            if s < 0 {
                s = 0;
                f = 0.0;
            }
            if s >= src_len as i32 - 1 {
                s = src_len as i32 - 1;
                f = 0.0;
            }
        }
        t.0.push(s);
        t.1.push(((1.0 - f) * COEF_SCALE).round_ties_even() as i32);
        t.2.push((f * COEF_SCALE).round_ties_even() as i32);
    }
}

/// Horizontal pass of one source row into `out` (`dst_w*3` ints): `S[s]*a0 + S[s+1]*a1`.
fn hresize_row(row: &[u8], src_w: usize, xt: &Taps, out: &mut [i32]) {
    for (dx, o) in out.chunks_exact_mut(3).enumerate() {
        let s = xt.idx[dx] as usize;
        let s1 = (s + 1).min(src_w - 1);
        let (a0, a1) = (xt.w0[dx], xt.w1[dx]);
        for c in 0..3 {
            o[c] = row[s * 3 + c] as i32 * a0 + row[s1 * 3 + c] as i32 * a1;
        }
    }
}

/// `VResizeLinearVec_32s8u` lane formula (16-bit multiply-high, rounding shift by 2).
#[inline(always)]
pub(crate) fn vmix(s0: i32, s1: i32, b0: i32, b1: i32) -> u8 {
    let a = ((s0 >> 4) as i16 as i32 * b0) >> 16;
    let b = ((s1 >> 4) as i16 as i32 * b1) >> 16;
    (((a + b) as i16 as i32 + 2) >> 2).clamp(0, 255) as u8
}

/// OpenCV's INTER_AREA fast path for exact 2x downscaling: `(a+b+c+d+2)>>2` per channel.
fn resize_area_2x(src: &RgbImage, w: usize, h: usize) -> RgbImage {
    let mut out = RgbImage {
        w,
        h,
        data: vec![0; w * h * 3],
    };
    for y in 0..h {
        for x in 0..w {
            for c in 0..3 {
                let p = |xx: usize, yy: usize| src.data[(yy * src.w + xx) * 3 + c] as u32;
                let s = p(2 * x, 2 * y)
                    + p(2 * x + 1, 2 * y)
                    + p(2 * x, 2 * y + 1)
                    + p(2 * x + 1, 2 * y + 1);
                out.data[(y * w + x) * 3 + c] = ((s + 2) >> 2) as u8;
            }
        }
    }
    out
}

/// `cv::resize(src, dst, Size(w, h), 0, 0, INTER_LINEAR)` for an 8-bit RGB image (see the module doc).
pub fn resize_linear_u8(src: &RgbImage, w: usize, h: usize) -> RgbImage {
    if src.w == w && src.h == h {
        return src.clone();
    }
    if src.w == 2 * w && src.h == 2 * h {
        return resize_area_2x(src, w, h);
    }
    let xt = taps(src.w, w, true);
    let yt = taps(src.h, h, false);
    let row_len = w * 3;
    let mut out = RgbImage {
        w,
        h,
        data: vec![0; row_len * h],
    };
    // Horizontally resized source rows, computed once each (a row serves up to ~2 output rows).
    let mut hrows: Vec<Option<Vec<i32>>> = vec![None; src.h];
    for dy in 0..h {
        let sy = yt.idx[dy];
        let r = [
            (sy).clamp(0, src.h as i32 - 1) as usize,
            (sy + 1).clamp(0, src.h as i32 - 1) as usize,
        ];
        for &ri in &r {
            if hrows[ri].is_none() {
                let mut buf = vec![0i32; row_len];
                let start = ri * src.w * 3;
                hresize_row(&src.data[start..start + src.w * 3], src.w, &xt, &mut buf);
                hrows[ri] = Some(buf);
            }
        }
        let (r0, r1) = (hrows[r[0]].as_ref().unwrap(), hrows[r[1]].as_ref().unwrap());
        let (b0, b1) = (yt.w0[dy], yt.w1[dy]);
        let dst = &mut out.data[dy * row_len..(dy + 1) * row_len];
        for x in 0..row_len {
            dst[x] = vmix(r0[x], r1[x], b0, b1);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_image_stays_constant() {
        let src = RgbImage::filled(37, 23, [200, 7, 255]);
        let out = resize_linear_u8(&src, 416, 416);
        assert!(out.data.chunks_exact(3).all(|p| p == [200, 7, 255]));
    }

    #[test]
    fn upscale_weights_follow_half_pixel_centres() {
        // 2 -> 4 pixels: f = 0.25*d... positions -0.25, 0.25, 0.75, 1.25.
        let t = taps(2, 4, true);
        assert_eq!(t.idx, vec![0, 0, 0, 1]);
        assert_eq!(t.w1, vec![0, 512, 1536, 0]);
        let ty = taps(2, 4, false);
        assert_eq!(ty.idx, vec![-1, 0, 0, 1]);
        assert_eq!(ty.w1, vec![1536, 512, 1536, 512]);
    }

    #[test]
    fn vertical_mix_uses_multiply_high() {
        // 100*2048 with weights 1536/512: the multiply-high form drops low bits -> 100; exact mean would be 100 too,
        // but (255*2048, 0) with b0 = 2047 gives 254.875 -> 255 after the +2 rounding.
        assert_eq!(vmix(100 * 2048, 100 * 2048, 1536, 512), 100);
        assert_eq!(vmix(255 * 2048, 0, 2047, 1), 255);
        assert_eq!(vmix(3 * 2048, 0, 683, 1365), 1);
    }
}
