//! `image_data_augmentation` (crop with mean fill, 8-bit resize, flip, HSV jitter) and `mat_to_image` in
//! one pass over the output rows, producing only the output pixels that are used (a mosaic piece is seen
//! only through its quadrant) and writing them straight into the batch's float CHW planes.
//!
//! Every output byte is computed by the same integer/float operations as the step-by-step path
//! ([`super::image_data_augmentation`]): the crop is read in place (a row outside the image, or the part of a
//! row outside it, is the mean colour), the horizontal resize taps are taken in mirrored order when flipped
//! (`flip(resize(c))[x] = resize(c)[w-1-x]`), the two horizontally resized source rows live in a two-row
//! ring as in OpenCV's `resizeGeneric_`, and the HSV jitter runs on each finished row (it is per pixel; a
//! pixel's vector/scalar path depends only on its column, as in `cvtColor`). The two special cases of
//! `cv::resize` (same size, exact 2x down) go through the step-by-step path. Unit tests compare both paths on
//! random crops, sizes and jitters; the Darknet reference cases cover the rest.
//!
//! The row kernels are compiled twice: for the baseline target and, chosen at run time, with AVX2+FMA so
//! that the vertical mix and the float HSV->RGB step are vectorised (`mul_add` is the same fused operation in
//! both builds, so the results are identical).

use super::crop::crop_mean_fill;
use super::hsv::hsv_to_rgb_u8_scalar;
use super::resize::{resize_linear_u8, taps_into, vmix};
use super::{flip, hsv, ImageDraws, PixelCrop};
use crate::data::decode::RgbImage;
use crate::data::detection::{lap, StageTimes};
use std::time::Instant;

/// A rectangle of the augmented piece (piece coordinates, `x0..x1`, `y0..y1`) and where its top-left
/// pixel goes in the output planes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Region {
    pub x0: usize,
    pub y0: usize,
    pub x1: usize,
    pub y1: usize,
    pub dst_x: usize,
    pub dst_y: usize,
}

impl Region {
    /// The whole `w`x`h` piece at the origin.
    pub fn whole(w: usize, h: usize) -> Self {
        Self {
            x0: 0,
            y0: 0,
            x1: w,
            y1: h,
            dst_x: 0,
            dst_y: 0,
        }
    }
}

/// Buffers reused from one image to the next (one per loader worker): no allocation per sample once
/// they have grown to the largest size seen.
#[derive(Default)]
pub struct Scratch {
    xt: (Vec<i32>, Vec<i32>, Vec<i32>),
    yt: (Vec<i32>, Vec<i32>, Vec<i32>),
    /// Per used output column: byte offsets of the two source pixels in a crop row, and the weights.
    cols: Vec<(u32, u32, i32, i32)>,
    mean_row: Vec<u8>,
    ring: [Vec<i32>; 2],
    ring_key: [i64; 2],
    crop_row: Vec<u8>,
    out_row: Vec<u8>,
}

/// Per-image HSV jitter (`H + shift` saturated, `S*dsat`, `V*dexp` rounded half-even and saturated) and
/// the column from which a row takes OpenCV's scalar HSV->RGB tail.
struct Jitter {
    shift: i32,
    dsat: f32,
    dexp: f32,
    simd_px: usize,
}

impl Jitter {
    fn new(dhue: f32, dsat: f32, dexp: f32, w: usize) -> Self {
        Jitter {
            shift: ((179.0f32 * dhue) as f64).round_ties_even() as i32,
            dsat,
            dexp,
            simd_px: w / hsv::HSV2RGB_SIMD_PIXELS * hsv::HSV2RGB_SIMD_PIXELS,
        }
    }
}

/// The source of the resize: the crop rectangle of the decoded image, read in place.
struct CropView<'a> {
    img: &'a RgbImage,
    /// A crop row of the mean colour (the padding).
    mean_row: &'a [u8],
    left: i32,
    top: i32,
    w: usize,
    h: usize,
}

impl CropView<'_> {
    /// Row `r` of the crop (`w*3` bytes): a slice of the image when the row lies inside it, else built in
    /// `buf` (mean colour plus the part inside).
    fn row<'b>(&'b self, r: usize, buf: &'b mut Vec<u8>) -> &'b [u8] {
        let iy = self.top + r as i32;
        let (iw, ih) = (self.img.w as i32, self.img.h as i32);
        let inside_y = (0..ih).contains(&iy);
        if inside_y && self.left >= 0 && self.left + self.w as i32 <= iw {
            let s = (iy as usize * self.img.w + self.left as usize) * 3;
            return &self.img.data[s..s + self.w * 3];
        }
        let x0 = self.left.max(0);
        let x1 = (self.left + self.w as i32).min(iw);
        if !inside_y || x1 <= x0 {
            return self.mean_row;
        }
        buf.clear();
        buf.extend_from_slice(self.mean_row);
        {
            let s = (iy as usize * self.img.w + x0 as usize) * 3;
            let d = (x0 - self.left) as usize * 3;
            let n = (x1 - x0) as usize * 3;
            buf[d..d + n].copy_from_slice(&self.img.data[s..s + n]);
        }
        buf
    }
}

/// Augments `img` (mean colour `mean`) like [`super::image_data_augmentation`] at `size`, and writes the
/// pixels of `region` as `u8*(1/255.f)` into the CHW planes `dst` (3 x `size.1` x `size.0`) at the region's
/// destination. Time goes to `times.crop_resize`, `.hsv` and `.to_float`.
#[allow(clippy::too_many_arguments)]
pub fn augment_into(
    img: &RgbImage,
    mean: [u8; 3],
    size: (usize, usize),
    crop: &PixelCrop,
    draws: &ImageDraws,
    region: &Region,
    dst: &mut [f32],
    scratch: &mut Scratch,
    times: &mut StageTimes,
) {
    let (w, h) = size;
    assert!(region.x1 <= w && region.y1 <= h && region.x0 <= region.x1 && region.y0 <= region.y1);
    assert!(
        region.dst_x + (region.x1 - region.x0) <= w && region.dst_y + (region.y1 - region.y0) <= h
    );
    let (sw, sh) = (crop.width.max(0) as usize, crop.height.max(0) as usize);
    if (sw == w && sh == h) || (sw == 2 * w && sh == 2 * h) || sw == 0 || sh == 0 {
        return stepwise_into(img, size, crop, draws, region, dst, times);
    }
    // SAFETY: `multiversion!` runs the AVX-512/AVX2 copies only on a CPU that has them (checked at run time).
    unsafe { augment_rows_isa(img, mean, size, crop, draws, region, dst, scratch, times) };
}

/// The resize special cases: the step-by-step path, then the region copied out.
fn stepwise_into(
    img: &RgbImage,
    size: (usize, usize),
    crop: &PixelCrop,
    draws: &ImageDraws,
    region: &Region,
    dst: &mut [f32],
    times: &mut StageTimes,
) {
    let mut t = Instant::now();
    let cropped;
    let src = if crop.left == 0
        && crop.top == 0
        && crop.width as usize == img.w
        && crop.height as usize == img.h
    {
        img
    } else {
        cropped = crop_mean_fill(img, crop.left, crop.top, crop.width, crop.height);
        &cropped
    };
    let mut sized = resize_linear_u8(src, size.0, size.1);
    if draws.flip {
        sized = flip::flip_horizontal(&sized);
    }
    times.crop_resize += lap(&mut t);
    if draws.dsat != 1.0 || draws.dexp != 1.0 || draws.dhue != 0.0 {
        hsv::hsv_jitter(&mut sized, draws.dhue, draws.dsat, draws.dexp);
    }
    times.hsv += lap(&mut t);
    let row_len = size.0 * 3;
    for y in region.y0..region.y1 {
        let row = &sized.data[y * row_len + region.x0 * 3..y * row_len + region.x1 * 3];
        write_row(row, region.dst_y + y - region.y0, region.dst_x, size, dst);
    }
    times.to_float += lap(&mut t);
}

/// `mat_to_image` for one row of pixels landing at (`x`, `y`) of the `size` planes.
#[inline(always)]
fn write_row(row: &[u8], y: usize, x: usize, size: (usize, usize), dst: &mut [f32]) {
    let plane = size.0 * size.1;
    let n = row.len() / 3;
    let o = y * size.0 + x;
    let k = 1.0f32 / 255.0;
    let (r, rest) = dst.split_at_mut(plane);
    let (g, b) = rest.split_at_mut(plane);
    let (r, g, b) = (&mut r[o..o + n], &mut g[o..o + n], &mut b[o..o + n]);
    for (i, px) in row.chunks_exact(3).enumerate() {
        r[i] = px[0] as f32 * k;
        g[i] = px[1] as f32 * k;
        b[i] = px[2] as f32 * k;
    }
}

crate::cpu::multiversion! {
    /// [`augment_rows`] compiled for the best instruction set of this CPU (the copies perform the same
    /// operations, so the bytes written are the same).
    unsafe fn augment_rows_isa(
        img: &RgbImage,
        mean: [u8; 3],
        size: (usize, usize),
        crop: &PixelCrop,
        draws: &ImageDraws,
        region: &Region,
        dst: &mut [f32],
        scratch: &mut Scratch,
        times: &mut StageTimes,
    ) = augment_rows
}

/// The general case: per output row, the two horizontally resized crop rows (ring), the vertical mix,
/// the HSV jitter and the float conversion.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn augment_rows(
    img: &RgbImage,
    mean: [u8; 3],
    size: (usize, usize),
    crop: &PixelCrop,
    draws: &ImageDraws,
    region: &Region,
    dst: &mut [f32],
    scratch: &mut Scratch,
    times: &mut StageTimes,
) {
    let mut t = Instant::now();
    let (w, h) = size;
    let Scratch {
        xt,
        yt,
        cols,
        mean_row,
        ring,
        ring_key,
        crop_row,
        out_row,
    } = scratch;
    mean_row.clear();
    for _ in 0..crop.width {
        mean_row.extend_from_slice(&mean);
    }
    let view = CropView {
        img,
        mean_row,
        left: crop.left,
        top: crop.top,
        w: crop.width as usize,
        h: crop.height as usize,
    };
    taps_into(view.w, w, true, xt);
    taps_into(view.h, h, false, yt);
    // Output column x of the (flipped) piece is resized column w-1-x.
    cols.clear();
    for x in region.x0..region.x1 {
        let c = if draws.flip { w - 1 - x } else { x };
        let s = xt.0[c] as usize;
        let s1 = (s + 1).min(view.w - 1);
        cols.push(((s * 3) as u32, (s1 * 3) as u32, xt.1[c], xt.2[c]));
    }
    let n = (region.x1 - region.x0) * 3;
    for r in ring.iter_mut() {
        r.clear();
        r.resize(n, 0);
    }
    *ring_key = [-1, -1];
    out_row.clear();
    out_row.resize(n, 0);
    let jitter = (draws.dsat != 1.0 || draws.dexp != 1.0 || draws.dhue != 0.0)
        .then(|| Jitter::new(draws.dhue, draws.dsat, draws.dexp, w));
    let last = view.h as i32 - 1;
    times.crop_resize += lap(&mut t);
    for y in region.y0..region.y1 {
        let sy = yt.0[y];
        let rows = [sy.clamp(0, last) as i64, (sy + 1).clamp(0, last) as i64];
        let mut slot = [0usize; 2];
        for (k, &r) in rows.iter().enumerate() {
            slot[k] = match ring_key.iter().position(|&key| key == r) {
                Some(p) => p,
                None => {
                    // Replace the slot that does not hold the other row needed now.
                    let other = rows[1 - k];
                    let p = if ring_key[0] == other { 1 } else { 0 };
                    let src = view.row(r as usize, crop_row);
                    hresize(src, cols, &mut ring[p]);
                    ring_key[p] = r;
                    p
                }
            };
        }
        let (b0, b1) = (yt.1[y], yt.2[y]);
        let (r0, r1) = (&ring[slot[0]], &ring[slot[1]]);
        for ((o, &a), &b) in out_row.iter_mut().zip(r0.iter()).zip(r1.iter()) {
            *o = vmix(a, b, b0, b1);
        }
        times.crop_resize += lap(&mut t);
        if let Some(j) = &jitter {
            hsv_row(out_row, region.x0, j);
            times.hsv += lap(&mut t);
        }
        write_row(
            out_row,
            region.dst_y + y - region.y0,
            region.dst_x,
            size,
            dst,
        );
        times.to_float += lap(&mut t);
    }
}

/// Horizontal pass over the used columns: `S[s]*a0 + S[s+1]*a1` per channel.
#[inline(always)]
fn hresize(src: &[u8], cols: &[(u32, u32, i32, i32)], out: &mut [i32]) {
    for (o, &(s0, s1, a0, a1)) in out.chunks_exact_mut(3).zip(cols.iter()) {
        let (s0, s1) = (s0 as usize, s1 as usize);
        let p = &src[s0..s0 + 3];
        let q = &src[s1..s1 + 3];
        o[0] = p[0] as i32 * a0 + q[0] as i32 * a1;
        o[1] = p[1] as i32 * a0 + q[1] as i32 * a1;
        o[2] = p[2] as i32 * a0 + q[2] as i32 * a1;
    }
}

/// Pixels per block of the HSV row kernel (structure of arrays, so that it vectorises).
const BLOCK: usize = 32;

/// The HSV jitter of one row whose first pixel is column `x0` of the piece: OpenCV's `RGB2HSV_b`, the
/// jitter, and `HSV2RGB_b`'s vector formula for columns below `simd_px`, its scalar one after.
#[inline(always)]
fn hsv_row(row: &mut [u8], x0: usize, j: &Jitter) {
    let mut rgb = [[0i32; BLOCK]; 3];
    for (k, chunk) in row.chunks_mut(3 * BLOCK).enumerate() {
        for (i, px) in chunk.chunks_exact(3).enumerate() {
            rgb[0][i] = px[0] as i32;
            rgb[1][i] = px[1] as i32;
            rgb[2][i] = px[2] as i32;
        }
        let hsv = jittered_hsv_block(&rgb, j);
        let out = hsv_to_rgb_block(&hsv);
        let first = x0 + k * BLOCK;
        for (i, px) in chunk.chunks_exact_mut(3).enumerate() {
            if first + i < j.simd_px {
                px.copy_from_slice(&[out[0][i], out[1][i], out[2][i]]);
            } else {
                let q = |c: usize| hsv[c][i] as u8;
                px.copy_from_slice(&hsv_to_rgb_u8_scalar(q(0), q(1), q(2)));
            }
        }
    }
}

/// `RGB2HSV_b` (as [`hsv::rgb_to_hsv_u8`]) then the jitter, without table lookups: OpenCV's tables
/// `sdiv[v] = round((255<<12)/v)` and `hdiv[d] = round((180<<12)/(6d))` are computed by a float32 division
/// (the quotients are never within float32 error of a half: test `division_equals_tables` checks all 255).
#[inline(always)]
fn jittered_hsv_block(rgb: &[[i32; BLOCK]; 3], j: &Jitter) -> [[i32; BLOCK]; 3] {
    let mut out = [[0i32; BLOCK]; 3];
    for i in 0..BLOCK {
        let (r, g, b) = (rgb[0][i], rgb[1][i], rgb[2][i]);
        let v = r.max(g).max(b);
        let diff = v - r.min(g).min(b);
        let s = (diff * sdiv(v) + (1 << 11)) >> 12;
        let h = if v == r {
            g - b
        } else if v == g {
            b - r + 2 * diff
        } else {
            r - g + 4 * diff
        };
        let mut h = (h * hdiv(diff) + (1 << 11)) >> 12;
        if h < 0 {
            h += 180;
        }
        out[0][i] = (h.clamp(0, 255) + j.shift).clamp(0, 255);
        out[1][i] = scale_i32(s, j.dsat);
        out[2][i] = scale_i32(v, j.dexp);
    }
    out
}

/// OpenCV's `sdiv[v]` (0 for v = 0).
#[inline(always)]
fn sdiv(v: i32) -> i32 {
    let q = small_int(((255 << 12) as f32 / v.max(1) as f32).round_ties_even());
    if v == 0 {
        0
    } else {
        q
    }
}

/// OpenCV's `hdiv[d]` (0 for d = 0).
#[inline(always)]
fn hdiv(d: i32) -> i32 {
    let q = small_int(((180 << 12) as f32 / (6 * d.max(1)) as f32).round_ties_even());
    if d == 0 {
        0
    } else {
        q
    }
}

/// [`scale_u8`] on an i32 in 0..=255.
#[inline(always)]
fn scale_i32(x: i32, k: f32) -> i32 {
    small_int((x as f32 * k).round_ties_even().clamp(0.0, 255.0))
}

/// `x as i32` for an integral `x` in 0..2^23, through the float's bits (adding 2^23 puts the integer in
/// the low mantissa bits): unlike the saturating `as`, this vectorises.
#[inline(always)]
fn small_int(x: f32) -> i32 {
    ((x + 8_388_608.0).to_bits() & 0x7F_FFFF) as i32
}

/// [`hsv::hsv_to_rgb_u8`] on a block of pixels, without branches or table lookups so that it vectorises:
/// the sector's table entries are chosen by comparisons.
#[inline(always)]
fn hsv_to_rgb_block(hsv: &[[i32; BLOCK]; 3]) -> [[u8; BLOCK]; 3] {
    let mut out = [[0u8; BLOCK]; 3];
    let hscale = 6.0f32 / 180.0;
    let k = 1.0f32 / 255.0;
    for i in 0..BLOCK {
        let hh = hsv[0][i] as f32 * hscale;
        let sf = hsv[1][i] as f32 * k;
        let vf = hsv[2][i] as f32 * k;
        let pre = hh.trunc();
        let frac = hh - pre;
        let sector = pre - (pre * (1.0f32 / 6.0)).trunc() * 6.0;
        let t0 = vf;
        let t1 = vf * (1.0 - sf);
        let t2 = vf * (-sf).mul_add(frac, 1.0);
        let t3 = vf * (-sf).mul_add(1.0 - frac, 1.0);
        // hsv::SECTOR, (b, g, r) per sector: (t1,t3,t0) (t1,t0,t2) (t3,t0,t1) (t0,t2,t1) (t0,t1,t3) (t2,t1,t0).
        let is = |k: f32| sector == k;
        let b = if sector < 1.5 {
            t1
        } else if is(2.0) {
            t3
        } else if sector < 4.5 {
            t0
        } else {
            t2
        };
        let g = if is(0.0) {
            t3
        } else if sector < 2.5 {
            t0
        } else if is(3.0) {
            t2
        } else {
            t1
        };
        let r = if is(0.0) || is(5.0) {
            t0
        } else if is(1.0) {
            t2
        } else if is(4.0) {
            t3
        } else {
            t1
        };
        out[0][i] = trunc_u8(r);
        out[1][i] = trunc_u8(g);
        out[2][i] = trunc_u8(b);
    }
    out
}

/// `trunc(c*255)` saturated to 0..255 (`c` is never NaN).
#[inline(always)]
fn trunc_u8(c: f32) -> u8 {
    small_int((c * 255.0).trunc().clamp(0.0, 255.0)) as u8
}

#[cfg(test)]
mod tests {
    use super::super::image_data_augmentation;
    use super::*;
    use crate::data::augment::crop::mean_u8;
    use crate::data::augment::hsv::scale_u8;

    /// A pseudo-random image (xorshift), so that every branch of RGB->HSV is taken.
    fn noise_image(w: usize, h: usize, seed: u64) -> RgbImage {
        let mut s = seed | 1;
        let data = (0..w * h * 3)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 24) as u8
            })
            .collect();
        RgbImage { w, h, data }
    }

    fn stepwise(
        img: &RgbImage,
        size: (usize, usize),
        crop: &PixelCrop,
        d: &ImageDraws,
    ) -> Vec<f32> {
        let ai = image_data_augmentation(img, size, crop, d, &mut StageTimes::default());
        let mut x = vec![0f32; 3 * size.0 * size.1];
        super::super::to_chw_f32(&ai, &mut x);
        x
    }

    fn fused(
        img: &RgbImage,
        size: (usize, usize),
        crop: &PixelCrop,
        d: &ImageDraws,
        scratch: &mut Scratch,
    ) -> Vec<f32> {
        let mut x = vec![0f32; 3 * size.0 * size.1];
        let r = Region::whole(size.0, size.1);
        let mean = mean_u8(img);
        let mut t = StageTimes::default();
        augment_into(img, mean, size, crop, d, &r, &mut x, scratch, &mut t);
        // The baseline build of the row kernel (augment_into takes the AVX-512/AVX2 one where it can) agrees.
        let special = (crop.width as usize, crop.height as usize) == size
            || (crop.width as usize, crop.height as usize) == (2 * size.0, 2 * size.1);
        if !special {
            let mut y = vec![0f32; x.len()];
            augment_rows(img, mean, size, crop, d, &r, &mut y, scratch, &mut t);
            assert!(x.iter().zip(&y).all(|(a, b)| a.to_bits() == b.to_bits()));
        }
        x
    }

    /// The fused path equals the step-by-step one bit for bit: crops inside, overlapping every edge and
    /// outside, up- and downscaling, the resize special cases, flip, jitter on and off, widths that are not
    /// multiples of 32 (OpenCV's scalar HSV tail). One scratch is reused across all cases.
    #[test]
    fn fused_equals_stepwise() {
        let img = noise_image(97, 61, 7);
        let mut scratch = Scratch::default();
        let crops = [
            (0, 0, 97, 61),
            (-20, -15, 140, 90),
            (10, 5, 50, 40),
            (-5, 30, 60, 50),
            (60, -10, 70, 30),
            (-30, -30, 20, 20),
            (0, 0, 96, 60),
            (3, 2, 80, 60),
        ];
        let draws = [
            (false, 0.0, 1.0, 1.0),
            (true, 0.07, 1.3, 0.8),
            (false, -0.1, 0.7, 1.5),
            (true, 0.1, 1.5, 1.4),
        ];
        let sizes = [(48, 30), (64, 64), (40, 30), (80, 60), (97, 61), (33, 130)];
        for &(l, t, cw, ch) in &crops {
            let crop = PixelCrop {
                left: l,
                top: t,
                width: cw,
                height: ch,
            };
            for &(flip, dhue, dsat, dexp) in &draws {
                let d = ImageDraws {
                    resize_r1: 0.0,
                    resize_r2: 0.0,
                    r: [0.0; 4],
                    flip,
                    dhue,
                    dsat,
                    dexp,
                };
                for &size in &sizes {
                    let a = stepwise(&img, size, &crop, &d);
                    let b = fused(&img, size, &crop, &d, &mut scratch);
                    let diff = a.iter().zip(&b).filter(|(x, y)| x.to_bits() != y.to_bits());
                    assert_eq!(diff.count(), 0, "crop {crop:?} size {size:?} draws {d:?}");
                }
            }
        }
    }

    /// The float32 divisions give OpenCV's tables exactly, for every index.
    #[test]
    fn division_equals_tables() {
        for i in 0..256 {
            let (s, h) = if i == 0 {
                (0, 0)
            } else {
                (
                    ((255 << 12) as f64 / i as f64).round_ties_even() as i32,
                    ((180 << 12) as f64 / (6.0 * i as f64)).round_ties_even() as i32,
                )
            };
            assert_eq!(sdiv(i), s, "sdiv[{i}]");
            assert_eq!(hdiv(i), h, "hdiv[{i}]");
        }
    }

    /// The block kernels equal the per-pixel functions on every (r, g, b) of a coarse grid and every
    /// hue shift sign, vector formula and truncation included.
    #[test]
    fn blocks_equal_per_pixel_functions() {
        use crate::data::augment::hsv::{hsv_to_rgb_u8, rgb_to_hsv_u8};
        let jitters = [(0.1f32, 1.5f32, 0.7f32), (-0.1, 0.6, 1.5), (0.0, 1.0, 1.0)];
        let vals: Vec<i32> = (0..256).step_by(5).chain([1, 2, 254, 255]).collect();
        for &(dhue, dsat, dexp) in &jitters {
            let j = Jitter::new(dhue, dsat, dexp, 64);
            let mut rgb = [[0i32; BLOCK]; 3];
            let mut n = 0;
            let check = |rgb: &[[i32; BLOCK]; 3], n: usize| {
                let hsv = jittered_hsv_block(rgb, &j);
                let out = hsv_to_rgb_block(&hsv);
                for i in 0..n {
                    let p = |c: usize| rgb[c][i] as u8;
                    let [h, s, v] = rgb_to_hsv_u8(p(0), p(1), p(2));
                    let h = (h as i32 + j.shift).clamp(0, 255) as u8;
                    let s = scale_u8(s, dsat);
                    let v = scale_u8(v, dexp);
                    assert_eq!(
                        [hsv[0][i], hsv[1][i], hsv[2][i]],
                        [h as i32, s as i32, v as i32]
                    );
                    assert_eq!([out[0][i], out[1][i], out[2][i]], hsv_to_rgb_u8(h, s, v));
                }
            };
            for &r in &vals {
                for &g in &vals {
                    for &b in &vals {
                        rgb[0][n] = r;
                        rgb[1][n] = g;
                        rgb[2][n] = b;
                        n += 1;
                        if n == BLOCK {
                            check(&rgb, n);
                            n = 0;
                        }
                    }
                }
            }
            check(&rgb, n);
        }
    }

    /// A region writes exactly the pixels of that rectangle, at its destination, and nothing else.
    #[test]
    fn region_lands_at_its_destination() {
        let img = noise_image(50, 40, 3);
        let size = (64, 48);
        let crop = PixelCrop {
            left: -4,
            top: 3,
            width: 45,
            height: 40,
        };
        let d = ImageDraws {
            resize_r1: 0.0,
            resize_r2: 0.0,
            r: [0.0; 4],
            flip: true,
            dhue: 0.05,
            dsat: 1.2,
            dexp: 0.9,
        };
        let full = stepwise(&img, size, &crop, &d);
        let r = Region {
            x0: 10,
            y0: 5,
            x1: 40,
            y1: 30,
            dst_x: 30,
            dst_y: 20,
        };
        let mut x = vec![-1f32; 3 * 64 * 48];
        let mut t = StageTimes::default();
        augment_into(
            &img,
            mean_u8(&img),
            size,
            &crop,
            &d,
            &r,
            &mut x,
            &mut Scratch::default(),
            &mut t,
        );
        let plane = 64 * 48;
        for c in 0..3 {
            for y in 0..48 {
                for xx in 0..64 {
                    let got = x[c * plane + y * 64 + xx];
                    let inside = (30..60).contains(&xx) && (20..45).contains(&y);
                    if inside {
                        let src = full[c * plane + (y - 20 + 5) * 64 + (xx - 30 + 10)];
                        assert_eq!(got.to_bits(), src.to_bits(), "c{c} ({xx},{y})");
                    } else {
                        assert_eq!(got, -1.0, "c{c} ({xx},{y}) written");
                    }
                }
            }
        }
    }
}
