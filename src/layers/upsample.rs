//! `[upsample]`: mirrors `forward_upsample_layer` (src/upsample_layer.c) / `upsample_cpu`: nearest neighbour by
//! `stride`, times `scale`. A negative stride (Darknet's `reverse`) downsamples by summing each `stride × stride`
//! block, times `scale`.

use candle_core::{Result, Tensor};

use crate::cfg::{Shape, UpsampleConfig};

#[derive(Debug, Clone)]
pub struct Upsample {
    pub cfg: UpsampleConfig,
    pub output: Shape,
}

impl Upsample {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let s = self.cfg.stride.unsigned_abs() as usize;
        let y = if self.cfg.stride > 0 {
            // Nearest neighbour by an integer factor, as upsample_cpu's `in[(j/stride)...]` indexing.
            let (b, c, h, w) = x.dims4()?;
            x.reshape((b, c, h, 1, w, 1))?
                .broadcast_as((b, c, h, s, w, s))?
                .reshape((b, c, h * s, w * s))?
        } else {
            let y = x
                .narrow(2, 0, self.output.h * s)?
                .narrow(3, 0, self.output.w * s)?;
            (y.avg_pool2d(s)? * (s * s) as f64)?
        };
        if self.cfg.scale == 1.0 {
            Ok(y)
        } else {
            y * self.cfg.scale as f64
        }
    }
}
