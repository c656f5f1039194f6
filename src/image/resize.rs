//! Plain (aspect-changing) bilinear resize: mirrors `resize_image` in Darknet's `src/image.c`.
//!
//! Two separable passes in f32, with the C operation order so results are bit-identical (Darknet's CPU
//! build has no FMA, so every product and sum is rounded separately):
//! 1. horizontal, into an intermediate `w x im.h` image: `sx = c*w_scale`, `ix = (int)sx`, `dx = sx - ix`,
//!    `part = (1-dx)*in[ix] + dx*in[ix+1]`; the last output column (or every column when `im.w == 1`) copies
//!    the last input column;
//! 2. vertical: `out = (1-dy)*part[iy]`, then, except on the last output row or when `im.h == 1`,
//!    `out += dy*part[iy+1]`.
//!
//! with align-corners scales `w_scale = (float)(im.w-1)/(w-1)`, `h_scale = (float)(im.h-1)/(h-1)`.
//!
//! Deliberate differences (cases where Darknet misbehaves): a target of 1 row uses `sy = 0` (Darknet computes
//! `0*inf = NaN` and reads out of bounds); a zero-sized target gives an empty image; `ix+1` / `iy+1` are
//! clamped to the last column/row (only reachable if `sx` rounds up onto the last column, where `dx = 0`).

use super::Image;

/// `resize_image(im, w, h)`: a copy when the size is unchanged, else the two-pass bilinear stretch.
pub fn resize_image(im: &Image, w: usize, h: usize) -> Image {
    if im.w == w && im.h == h {
        return im.clone();
    }
    if w == 0 || h == 0 || im.w == 0 || im.h == 0 {
        return Image::new(w, h, im.c);
    }
    let part = horizontal_pass(im, w);
    vertical_pass(&part, im.h, h)
}

/// First pass of `resize_image`: resample each row to `w` columns.
fn horizontal_pass(im: &Image, w: usize) -> Image {
    let mut part = Image::new(w, im.h, im.c);
    // `(float)(im.w - 1) / (w - 1)`: float division (inf for w == 1, never used then).
    let w_scale = (im.w - 1) as f32 / (w - 1) as f32;
    let last = im.w - 1;
    for k in 0..im.c {
        for r in 0..im.h {
            let src = &im.data[(k * im.h + r) * im.w..(k * im.h + r + 1) * im.w];
            let dst = &mut part.data[(k * im.h + r) * w..(k * im.h + r + 1) * w];
            for (c, d) in dst.iter_mut().enumerate() {
                *d = if c == w - 1 || im.w == 1 {
                    src[last]
                } else {
                    let sx = c as f32 * w_scale;
                    let ix = sx as usize;
                    let dx = sx - ix as f32;
                    (1.0 - dx) * src[ix.min(last)] + dx * src[(ix + 1).min(last)]
                };
            }
        }
    }
    part
}

/// Second pass of `resize_image`: resample each column of `part` (`in_h` rows) to `h` rows.
fn vertical_pass(part: &Image, in_h: usize, h: usize) -> Image {
    let w = part.w;
    let mut out = Image::new(w, h, part.c);
    let h_scale = (in_h - 1) as f32 / (h - 1) as f32;
    let last = in_h - 1;
    for k in 0..part.c {
        let plane = &part.data[k * in_h * w..(k + 1) * in_h * w];
        for r in 0..h {
            let sy = if h == 1 { 0.0 } else { r as f32 * h_scale };
            let iy = (sy as usize).min(last);
            let dy = sy - iy as f32;
            let dst = &mut out.data[(k * h + r) * w..(k * h + r + 1) * w];
            let row0 = &plane[iy * w..(iy + 1) * w];
            for (d, &v) in dst.iter_mut().zip(row0) {
                *d = (1.0 - dy) * v;
            }
            if r == h - 1 || in_h == 1 {
                continue;
            }
            let iy1 = (iy + 1).min(last);
            let row1 = &plane[iy1 * w..(iy1 + 1) * w];
            for (d, &v) in dst.iter_mut().zip(row1) {
                *d += dy * v;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(w: usize, h: usize, c: usize) -> Image {
        let data = (0..w * h * c).map(|i| (i % 97) as f32 / 97.0).collect();
        Image::from_data(w, h, c, data).unwrap()
    }

    #[test]
    fn same_size_is_a_copy() {
        let im = ramp(5, 4, 3);
        assert_eq!(resize_image(&im, 5, 4), im);
    }

    #[test]
    fn corners_are_preserved_and_interior_is_bilinear() {
        let im = ramp(7, 5, 2);
        let out = resize_image(&im, 13, 9);
        for k in 0..2 {
            assert_eq!(out.get(0, 0, k), im.get(0, 0, k));
            assert_eq!(out.get(12, 0, k), im.get(6, 0, k));
            assert_eq!(out.get(0, 8, k), im.get(0, 4, k));
            assert_eq!(out.get(12, 8, k), im.get(6, 4, k));
        }
        // Output (1,1) samples input (0.5, 0.5): the mean of the four neighbours, up to rounding.
        let expect = (im.get(0, 0, 0) + im.get(1, 0, 0) + im.get(0, 1, 0) + im.get(1, 1, 0)) / 4.0;
        assert!((out.get(1, 1, 0) - expect).abs() < 1e-6);
    }

    #[test]
    fn degenerate_sizes_do_not_panic() {
        let im = ramp(4, 3, 3);
        let one = resize_image(&im, 1, 1);
        assert_eq!((one.w, one.h), (1, 1));
        // Single output column copies the last input column; single row uses the first input row.
        assert_eq!(one.get(0, 0, 1), im.get(3, 0, 1));
        assert_eq!(resize_image(&im, 0, 5).data.len(), 0);
        let tall = resize_image(&ramp(1, 1, 3), 3, 4);
        assert!(tall
            .data
            .iter()
            .all(|&v| v == tall.data[0] || v == tall.data[12] || v == tall.data[24]));
    }
}
