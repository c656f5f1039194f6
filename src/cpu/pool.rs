//! CPU `[maxpool]` forward: mirrors `forward_maxpool_layer` (src/maxpool_layer.c) — for every output pixel the
//! maximum over the `size × size` window starting at `(i·stride - padding/2, j·stride - padding/2)`, reads
//! outside the image skipped, starting from `-FLT_MAX` — computed separably (row maxima, then column maxima of
//! those: the same maximum, exactly) in one pass per plane, planes split over the cores. Replaces the candle path
//! (pad with -FLT_MAX, then `max_pool2d` or shifted-view maxima), which copies the tensor several times.

use candle_core::{Device, Result, Tensor};
use rayon::prelude::*;

use super::planes::with_planes;
use crate::cfg::Shape;

/// A max-pool with equal strides.
#[derive(Debug, Clone, Copy)]
pub struct MaxPool {
    pub size: usize,
    pub stride: usize,
    /// `padding / 2`: how far the first window starts before the image.
    pub offset: usize,
    pub input: Shape,
    pub output: Shape,
}

impl MaxPool {
    /// Runs on a CPU f32 tensor `[batch, c, h, w]` (no gradient).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.forward_parts(std::slice::from_ref(x))
    }

    /// [`Self::forward`] on the channel-wise concatenation of `parts` (CPU f32 tensors `[batch, c_i, h, w]`),
    /// read in place ([`crate::cpu::planes`]): pooling is per plane, so each output plane reads its own part.
    pub fn forward_parts(&self, parts: &[Tensor]) -> Result<Tensor> {
        let (c, oh, ow) = (self.input.c, self.output.h, self.output.w);
        let (y, batch) = with_planes("darknet-maxpool-cpu", parts, self.input, |x, batch| {
            let mut y = vec![0f32; batch * c * oh * ow];
            if oh * ow > 0 && self.input.h * self.input.w > 0 {
                // Several small planes per task (a 13×13 plane is a few hundred operations: one task each
                // cost more in scheduling than in pooling).
                let per_task = (4096 / (self.input.h * self.input.w)).max(1);
                y.par_chunks_mut(oh * ow * per_task)
                    .enumerate()
                    .for_each_init(Vec::new, |tmp, (t, ys)| {
                        for (j, yp) in ys.chunks_mut(oh * ow).enumerate() {
                            let i = t * per_task + j;
                            self.plane(x.plane(i / c, i % c), yp, tmp)
                        }
                    });
            }
            Ok((y, batch))
        })?;
        Tensor::from_vec(y, (batch, c, oh, ow), &Device::Cpu)
    }

    /// One plane: `x` is `h × w`, `y` is `oh × ow`, `tmp` is scratch.
    fn plane(&self, x: &[f32], y: &mut [f32], tmp: &mut Vec<f32>) {
        // SAFETY: `multiversion!` runs the AVX-512/AVX2 copies only on a CPU that has them.
        unsafe { plane_isa(self, x, y, tmp) }
    }

    #[inline(always)]
    fn plane_generic(&self, x: &[f32], y: &mut [f32], tmp: &mut Vec<f32>) {
        let (h, w) = (self.input.h, self.input.w);
        let (oh, ow) = (self.output.h, self.output.w);
        let (s, k, off) = (self.stride, self.size, self.offset);
        if k == 2 && s == 2 && off == 0 && oh * 2 == h && ow * 2 == w {
            pool_2x2(x, y, w, ow);
        } else if s == 1 && k > 1 {
            self.plane_stride1(x, y, tmp);
        } else {
            self.plane_any(x, y, tmp);
        }
    }

    /// Stride 1 (the SPP blocks' 5×5, 9×9 and 13×13 windows): the image padded with `-FLT_MAX` (what
    /// skipping the reads outside it amounts to, the maximum starting from `-FLT_MAX`), then the window maxima
    /// of each row by doubling — maxima of 2, 4, 8… values, and a window as the maximum of two overlapping
    /// power-of-two windows — then the same down the columns of those: a few vectorised passes instead of
    /// `size` comparisons per output and direction. The same maximum, exactly.
    #[inline(always)]
    fn plane_stride1(&self, x: &[f32], y: &mut [f32], tmp: &mut Vec<f32>) {
        let (h, w) = (self.input.h, self.input.w);
        let (oh, ow) = (self.output.h, self.output.w);
        let (k, off) = (self.size, self.offset);
        // Padded width/height: every window of every output lies inside.
        let (pw, ph) = (ow + k - 1, oh + k - 1);
        tmp.clear();
        tmp.resize(2 * pw + ph * ow + ph * ow, f32::MIN);
        let (row, rest) = tmp.split_at_mut(2 * pw);
        let (rows, cols) = rest.split_at_mut(ph * ow);
        let (row, work) = row.split_at_mut(pw);
        // Row maxima of every padded row: rows outside the image stay -FLT_MAX.
        for py in 0..ph {
            let iy = py as isize - off as isize;
            if iy < 0 || iy >= h as isize {
                continue;
            }
            let src = &x[iy as usize * w..(iy as usize + 1) * w];
            row.fill(f32::MIN);
            // Padded column px holds input column px - off.
            let (a, z) = (off.min(pw), (off + w).min(pw));
            row[a..z].copy_from_slice(&src[..z - a]);
            window_max(row, work, k, &mut rows[py * ow..(py + 1) * ow]);
        }
        // Column maxima of those, a whole row of `ow` at a time.
        sliding_rows_max(rows, cols, ow, ph, k, y);
        debug_assert_eq!(y.len(), oh * ow);
    }

    /// Any size, stride and offset: row maxima over each window's columns inside the image, then column maxima
    /// of those (`forward_maxpool_layer`'s maximum, separably).
    #[inline(always)]
    fn plane_any(&self, x: &[f32], y: &mut [f32], tmp: &mut Vec<f32>) {
        let (h, w) = (self.input.h, self.input.w);
        let (oh, ow) = (self.output.h, self.output.w);
        let (s, k, off) = (self.stride, self.size, self.offset as isize);
        tmp.clear();
        tmp.resize(h * ow, f32::MIN);
        for iy in 0..h {
            let row = &x[iy * w..(iy + 1) * w];
            let t = &mut tmp[iy * ow..(iy + 1) * ow];
            for (ox, m) in t.iter_mut().enumerate() {
                let x0 = (ox * s) as isize - off;
                let a = x0.max(0) as usize;
                let z = ((x0 + k as isize).min(w as isize)).max(0) as usize;
                for &v in row.get(a..z.max(a)).unwrap_or(&[]) {
                    *m = max(*m, v);
                }
            }
        }
        for oy in 0..oh {
            let out = &mut y[oy * ow..(oy + 1) * ow];
            out.fill(f32::MIN);
            let y0 = (oy * s) as isize - off;
            let a = y0.max(0) as usize;
            let z = ((y0 + k as isize).min(h as isize)).max(0) as usize;
            for iy in a..z.max(a) {
                let t = &tmp[iy * ow..(iy + 1) * ow];
                for (m, &v) in out.iter_mut().zip(t) {
                    *m = max(*m, v);
                }
            }
        }
    }
}

crate::cpu::multiversion! {
    unsafe fn plane_isa(p: &MaxPool, x: &[f32], y: &mut [f32], tmp: &mut Vec<f32>) = plane_any_isa
}

#[inline(always)]
fn plane_any_isa(p: &MaxPool, x: &[f32], y: &mut [f32], tmp: &mut Vec<f32>) {
    p.plane_generic(x, y, tmp)
}

/// `forward_maxpool_layer`'s update `max = (val > max) ? val : max`.
#[inline(always)]
fn max(m: f32, v: f32) -> f32 {
    if v > m {
        v
    } else {
        m
    }
}

/// 2×2 windows at stride 2, all inside the image (yolov4-tiny's max-pools): in Darknet's order (row 0 left and
/// right, then row 1), written so that LLVM vectorises it (even/odd lanes).
#[inline(always)]
fn pool_2x2(x: &[f32], y: &mut [f32], w: usize, ow: usize) {
    for (oy, out) in y.chunks_exact_mut(ow).enumerate() {
        let r0 = &x[2 * oy * w..2 * oy * w + 2 * ow];
        let r1 = &x[(2 * oy + 1) * w..(2 * oy + 1) * w + 2 * ow];
        for ((o, a), b) in out
            .iter_mut()
            .zip(r0.chunks_exact(2))
            .zip(r1.chunks_exact(2))
        {
            let m = max(max(max(f32::MIN, a[0]), a[1]), b[0]);
            *o = max(m, b[1]);
        }
    }
}

/// `out[i] = max(v[i..i + k])` for `i < out.len()` (`v.len() >= out.len() + k - 1`), by doubling: `work`
/// (as long as `v`) holds the maxima of 2, 4, 8… consecutive values in turn.
#[inline(always)]
fn window_max(v: &[f32], work: &mut [f32], k: usize, out: &mut [f32]) {
    let n = out.len();
    if k == 1 {
        out.copy_from_slice(&v[..n]);
        return;
    }
    // span = the window length that work[i] covers.
    let mut span = 1;
    work.copy_from_slice(v);
    while span * 2 <= k {
        let len = v.len() + 1 - 2 * span;
        for i in 0..len {
            work[i] = max(work[i], work[i + span]);
        }
        span *= 2;
    }
    // A window of k = two windows of `span` (k/2 < span <= k) overlapping: [i, i+span) and [i+k-span, i+k).
    let d = k - span;
    for (i, o) in out.iter_mut().enumerate() {
        *o = max(work[i], work[i + d]);
    }
}

/// Column form of [`window_max`]: `rows` holds `ph` rows of `ow`; `out` row `oy` = the maximum of rows
/// `oy..oy + k`, each a whole row at a time. `work` holds `ph` rows of scratch.
#[inline(always)]
fn sliding_rows_max(
    rows: &[f32],
    work: &mut [f32],
    ow: usize,
    ph: usize,
    k: usize,
    out: &mut [f32],
) {
    let oh = out.len() / ow;
    work.copy_from_slice(rows);
    let mut span = 1;
    while span * 2 <= k {
        let len = ph + 1 - 2 * span;
        for r in 0..len {
            let (a, b) = work.split_at_mut((r + span) * ow);
            for (m, &v) in a[r * ow..(r + 1) * ow].iter_mut().zip(&b[..ow]) {
                *m = max(*m, v);
            }
        }
        span *= 2;
    }
    let d = k - span;
    for oy in 0..oh {
        let (a, b) = (
            &work[oy * ow..(oy + 1) * ow],
            &work[(oy + d) * ow..(oy + d + 1) * ow],
        );
        for ((o, &u), &v) in out[oy * ow..(oy + 1) * ow].iter_mut().zip(a).zip(b) {
            *o = max(u, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::cfg::{MaxpoolConfig, Shape};
    use crate::layers::maxpool::Maxpool;
    use candle_core::{Device, Tensor};

    /// Against the candle path of the same layer (which mirrors forward_maxpool_layer): exact equality.
    #[test]
    fn matches_candle_maxpool() {
        let dev = Device::Cpu;
        // size, stride, padding, h, w
        for &(size, stride, padding, h, w) in &[
            (2, 2, 1, 12, 12),
            (2, 2, 1, 13, 11),
            (3, 1, 2, 9, 10),
            (3, 2, 2, 11, 9),
            (5, 1, 4, 13, 13),
            (9, 1, 8, 13, 13),
            (13, 1, 12, 13, 13),
            (2, 1, 1, 7, 8),
            (2, 2, 0, 12, 10),
            (2, 2, 1, 14, 8),
            // Stride 1 with other paddings (windows cut at one side only, even sizes) and a window wider than
            // the image.
            (3, 1, 0, 9, 11),
            (4, 1, 3, 10, 7),
            (5, 1, 2, 8, 12),
            (6, 1, 5, 5, 9),
            (7, 1, 6, 4, 3),
        ] {
            // 50 channels: several tasks of several planes each.
            for c in [3, 50] {
                let out = |x: usize| (x + padding - size) / stride + 1;
                let cfg = MaxpoolConfig {
                    size,
                    stride_x: stride,
                    stride_y: stride,
                    padding,
                    maxpool_depth: false,
                    out_channels: 1,
                    avg: false,
                };
                let layer = Maxpool::new(&cfg, Shape::new(c, h, w), Shape::new(c, out(h), out(w)));
                let n = 2 * c * h * w;
                let v: Vec<f32> = (0..n)
                    .map(|i| ((i * 7919 % 1013) as f32 - 500.0) / 37.0)
                    .collect();
                let x = Tensor::from_vec(v, (2, c, h, w), &dev).unwrap();
                let want = layer.forward_candle(&x).unwrap();
                let got = layer.forward(&x).unwrap();
                assert_eq!(
                    got.dims(),
                    want.dims(),
                    "size {size} stride {stride} pad {padding}"
                );
                let g = got.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                let wv = want.flatten_all().unwrap().to_vec1::<f32>().unwrap();
                assert_eq!(
                    g, wv,
                    "size {size} stride {stride} padding {padding} {h}x{w}"
                );
            }
        }
    }
}
