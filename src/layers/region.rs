//! `[region]` (YOLOv2 head) at inference: mirrors the CPU branch of `forward_region_layer` (src/region_layer.c):
//! the output is first `flatten`ed to location-major order (for each cell, for each anchor: coords, obj,
//! classes), then `obj ← logistic(obj)` and, with `softmax=1`, the classes ← softmax. x, y, w, h stay raw here;
//! `get_region_detections` applies the box transform.

use candle_core::{Result, Tensor, D};

use super::activation::logistic;
use crate::cfg::RegionConfig;

#[derive(Debug, Clone)]
pub struct Region {
    pub cfg: RegionConfig,
}

impl Region {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let size = self.cfg.coords + 1 + self.cfg.classes;
        // flatten(output, h*w, size*n, batch, 1): (c, hw) -> (hw, c); c = n*size stays anchor-major.
        let t =
            x.reshape((b, c, h * w))?
                .transpose(1, 2)?
                .reshape((b, h * w, self.cfg.num, size))?;
        let coords = t.narrow(D::Minus1, 0, self.cfg.coords)?;
        let obj = logistic(&t.narrow(D::Minus1, self.cfg.coords, 1)?)?;
        let cls = t.narrow(D::Minus1, self.cfg.coords + 1, self.cfg.classes)?;
        let cls = if self.cfg.softmax {
            softmax_darknet(&cls)?
        } else {
            cls
        };
        Tensor::cat(&[coords, obj, cls], D::Minus1)?
            .reshape((b, h * w * c))?
            .reshape((b, c, h, w))
    }
}

/// `softmax` in src/blas.c: exp(x - max) / sum, over the last dim.
fn softmax_darknet(x: &Tensor) -> Result<Tensor> {
    let max = x.max_keepdim(D::Minus1)?;
    let e = x.broadcast_sub(&max)?.exp()?;
    e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
}
