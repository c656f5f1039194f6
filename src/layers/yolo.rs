//! `[yolo]` and `[Gaussian_yolo]` at inference: mirror the activation part of `forward_yolo_layer`
//! (src/yolo_layer.c) and `forward_gaussian_yolo_layer` (src/gaussian_yolo_layer.c). The layer output keeps
//! Darknet's layout: for each anchor `a`, planes `x, y, w, h, obj, cls…` of `h × w`.
//!
//! yolo: `x, y ← logistic(t)·scale_x_y − (scale_x_y − 1)/2`; `obj, cls ← logistic(t)`; `w, h` stay raw. With
//! `new_coords=1` nothing is activated (the conv before is already logistic) but `x, y` are still scaled.
//! Gaussian_yolo (8 box entries: μx σx μy σy μw σw μh σh): logistic on μx σx μy σy σw σh obj cls, scale on μx μy.

use candle_core::{DType, Result, Tensor};

use super::activation::logistic;
use crate::cfg::YoloConfig;
use crate::cpu::yolo::EntryOp;

#[derive(Debug, Clone)]
pub struct Yolo {
    pub cfg: YoloConfig,
}

/// What happens to one entry of an anchor's block.
type Op = EntryOp;

impl Yolo {
    fn ops(&self) -> Vec<Op> {
        let c = &self.cfg;
        let mut ops = vec![Op::Logistic; c.entries()];
        if c.gaussian {
            ops[0] = Op::LogisticScaled;
            ops[2] = Op::LogisticScaled;
            ops[4] = Op::Raw;
            ops[6] = Op::Raw;
        } else if c.new_coords {
            ops.iter_mut().for_each(|o| *o = Op::Raw);
            ops[0] = Op::Scaled;
            ops[1] = Op::Scaled;
        } else {
            ops[0] = Op::LogisticScaled;
            ops[1] = Op::LogisticScaled;
            ops[2] = Op::Raw;
            ops[3] = Op::Raw;
        }
        ops
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let (b, c, h, w) = x.dims4()?;
        let n = self.cfg.mask.len();
        let e = self.cfg.entries();
        let x5 = x.reshape((b, n, e, h, w))?;
        let s = self.cfg.scale_x_y as f64;
        let shift = -0.5 * (s - 1.0);
        let ops = self.ops();
        if x.device().is_cpu() && x.dtype() == DType::F32 && !x.track_op() && crate::cpu::enabled() {
            // One pass on the CPU (src/cpu/yolo.rs).
            return crate::cpu::yolo::forward(&x.contiguous()?, &ops, s as f32, shift as f32);
        }
        // Apply each op to its run of consecutive entries.
        let mut parts = Vec::new();
        let mut start = 0;
        while start < e {
            let op = ops[start];
            let mut end = start + 1;
            while end < e && ops[end] == op {
                end += 1;
            }
            let t = x5.narrow(2, start, end - start)?;
            parts.push(match op {
                Op::Raw => t,
                Op::Logistic => logistic(&t)?,
                // scal_add_cpu(x, scale, bias): x*scale + bias, in f32.
                Op::LogisticScaled => logistic(&t)?.affine(s, shift)?,
                Op::Scaled => t.affine(s, shift)?,
            });
            start = end;
        }
        Tensor::cat(&parts, 2)?.reshape((b, c, h, w))
    }
}
