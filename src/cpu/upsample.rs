//! CPU `[upsample]` forward by an integer factor: mirrors `upsample_cpu` (src/blas.c) with `forward = 1`,
//! `out[(b, c, j, i)] = scale · in[(b, c, j/stride, i/stride)]`, one pass per plane with the planes split over
//! the cores (candle's broadcast-and-reshape form copied element by element on one core: 0.16 ms of a
//! yolov4-tiny forward for a 128×13×13 map).

use candle_core::{Device, Result, Tensor};
use rayon::prelude::*;

use super::planes::with_planes;
use crate::cfg::Shape;

/// Nearest-neighbour upsampling of `input`-shaped planes by `stride`, times `scale`.
#[derive(Debug, Clone, Copy)]
pub struct Upsample {
    pub stride: usize,
    pub scale: f32,
    pub input: Shape,
}

impl Upsample {
    /// Runs on a CPU f32 tensor `[batch, c, h, w]` (no gradient).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (c, h, w, s) = (self.input.c, self.input.h, self.input.w, self.stride);
        let (oh, ow) = (h * s, w * s);
        let (y, batch) = with_planes(
            "darknet-upsample-cpu",
            std::slice::from_ref(x),
            self.input,
            |x, batch| {
                let mut y = vec![0f32; batch * c * oh * ow];
                if oh * ow > 0 {
                    y.par_chunks_mut(oh * ow).enumerate().for_each(|(i, yp)| {
                        let xp = x.plane(i / c, i % c);
                        for (oy, out) in yp.chunks_exact_mut(ow).enumerate() {
                            let row = &xp[(oy / s) * w..(oy / s + 1) * w];
                            for (o, v) in out.chunks_exact_mut(s).zip(row) {
                                o.fill(self.scale * v);
                            }
                        }
                    });
                }
                Ok((y, batch))
            },
        )?;
        Tensor::from_vec(y, (batch, c, oh, ow), &Device::Cpu)
    }
}
