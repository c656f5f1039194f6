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
                y.par_chunks_mut(oh * ow)
                    .enumerate()
                    .for_each_init(Vec::new, |tmp, (i, yp)| {
                        self.plane(x.plane(i / c, i % c), yp, tmp)
                    });
            }
            Ok((y, batch))
        })?;
        Tensor::from_vec(y, (batch, c, oh, ow), &Device::Cpu)
    }

    /// One plane: `x` is `h × w`, `y` is `oh × ow`, `tmp` holds `h × ow` row maxima.
    fn plane(&self, x: &[f32], y: &mut [f32], tmp: &mut Vec<f32>) {
        let (h, w) = (self.input.h, self.input.w);
        let (oh, ow) = (self.output.h, self.output.w);
        let (s, k, off) = (self.stride, self.size, self.offset as isize);
        if k == 2 && s == 2 && off == 0 && oh * 2 == h && ow * 2 == w {
            // Every window lies inside the image (yolov4-tiny's maxpools): no bounds to check.
            for oy in 0..oh {
                let (r0, r1) = (
                    &x[2 * oy * w..(2 * oy + 1) * w],
                    &x[(2 * oy + 1) * w..(2 * oy + 2) * w],
                );
                for (ox, o) in y[oy * ow..(oy + 1) * ow].iter_mut().enumerate() {
                    let mut m = f32::MIN;
                    for v in [r0[2 * ox], r0[2 * ox + 1], r1[2 * ox], r1[2 * ox + 1]] {
                        if v > m {
                            m = v;
                        }
                    }
                    *o = m;
                }
            }
            return;
        }
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
                    if v > *m {
                        *m = v;
                    }
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
                    if v > *m {
                        *m = v;
                    }
                }
            }
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
        ] {
            let c = 3;
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
