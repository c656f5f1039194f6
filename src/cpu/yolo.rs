//! The activation step of `forward_yolo_layer` / `forward_gaussian_yolo_layer` (src/yolo_layer.c,
//! src/gaussian_yolo_layer.c) on the CPU in one pass: `activate_array(..., LOGISTIC)` on the entries Darknet
//! activates, then `scal_add_cpu(x, scale_x_y, -0.5·(scale_x_y - 1))` on x and y. The candle form of the same
//! layer ([`crate::layers::yolo`]) narrows, activates and concatenates each run of entries: five passes over
//! the head (measured 0.46 ms of yolov4-tiny's 26×26 head against ~0.05 ms here).
//!
//! `logistic` is [`super::activation::logistic`] (`1/(1 + expf(-x))` with a vectorisable `expf`, about 1e-7
//! relative from glibc's).

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::activation::logistic;

/// What the layer does to one entry (one `h × w` plane) of each anchor's block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryOp {
    /// Left as the convolution wrote it (w, h; the Gaussian means of w and h).
    Raw,
    /// `logistic(t)` (objectness, classes, Gaussian sigmas).
    Logistic,
    /// `logistic(t)·s + shift` (x and y).
    LogisticScaled,
    /// `t·s + shift` (x and y with `new_coords=1`).
    Scaled,
}

/// The layer's activation on a CPU f32 tensor `[batch, anchors·entries, h, w]` (`ops` has one op per entry).
pub fn forward(x: &Tensor, ops: &[EntryOp], scale: f32, shift: f32) -> Result<Tensor> {
    x.apply_op1_no_bwd(&YoloOp {
        ops: ops.to_vec(),
        scale,
        shift,
    })
}

struct YoloOp {
    ops: Vec<EntryOp>,
    scale: f32,
    shift: f32,
}

/// One plane: `out = op(x)`.
fn plane(x: &[f32], out: &mut [f32], op: EntryOp, s: f32, shift: f32) {
    out.copy_from_slice(x);
    apply_in_place(out, op, s, shift);
}

/// `v = op(v)` on (part of) one entry's plane: also what a convolution's epilogue does when this layer is
/// folded into it ([`crate::cpu::conv::Post::Yolo`]), with the same operations.
pub fn apply_in_place(v: &mut [f32], op: EntryOp, s: f32, shift: f32) {
    match op {
        EntryOp::Raw => {}
        // scal_add_cpu: x*scale + bias, in f32.
        EntryOp::Scaled => v.iter_mut().for_each(|o| *o = *o * s + shift),
        EntryOp::Logistic | EntryOp::LogisticScaled => {
            // SAFETY: `multiversion!` runs the AVX-512/AVX2 copies only on a CPU that has them.
            unsafe { logistic_isa(v) };
            if op == EntryOp::LogisticScaled {
                v.iter_mut().for_each(|o| *o = *o * s + shift);
            }
        }
    }
}

crate::cpu::multiversion! {
    unsafe fn logistic_isa(v: &mut [f32]) = logistic_rows
}

#[inline(always)]
fn logistic_rows(v: &mut [f32]) {
    for o in v.iter_mut() {
        *o = logistic(*o);
    }
}

impl CustomOp1 for YoloOp {
    fn name(&self) -> &'static str {
        "darknet-yolo-cpu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = match (storage, layout.contiguous_offsets()) {
            (CpuStorage::F32(v), Some((a, z))) => &v[a..z],
            _ => candle_core::bail!("darknet-yolo-cpu: contiguous f32 input required"),
        };
        let dims = layout.dims();
        let e = self.ops.len();
        if dims.len() != 4 || e == 0 || !dims[1].is_multiple_of(e) {
            candle_core::bail!(
                "darknet-yolo-cpu: input {dims:?} is not [batch, anchors·{e}, h, w]"
            );
        }
        let hw = dims[2] * dims[3];
        let mut out = vec![0f32; x.len()];
        if hw > 0 {
            // Planes are independent: split them over the threads.
            out.par_chunks_mut(hw)
                .zip(x.par_chunks(hw))
                .enumerate()
                .for_each(|(i, (o, xi))| plane(xi, o, self.ops[i % e], self.scale, self.shift));
        }
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// Against Darknet's formulas in f64 (logistic via libm's exp).
    #[test]
    fn matches_darknet_formulas() {
        let ops = [
            EntryOp::LogisticScaled,
            EntryOp::Scaled,
            EntryOp::Raw,
            EntryOp::Logistic,
        ];
        let (b, n, h, w) = (2, 3, 5, 7);
        let len = b * n * ops.len() * h * w;
        let v: Vec<f32> = (0..len)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.37)
            .collect();
        let x = Tensor::from_vec(v.clone(), (b, n * ops.len(), h, w), &Device::Cpu).unwrap();
        let (s, shift) = (1.05f32, -0.025f32);
        let got = forward(&x, &ops, s, shift)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (i, (g, t)) in got.iter().zip(&v).enumerate() {
            let l = 1.0 / (1.0 + (-(*t as f64)).exp());
            let want = match ops[(i / (h * w)) % ops.len()] {
                EntryOp::Raw => *t as f64,
                EntryOp::Logistic => l,
                EntryOp::LogisticScaled => l * s as f64 + shift as f64,
                EntryOp::Scaled => *t as f64 * s as f64 + shift as f64,
            };
            assert!(
                (*g as f64 - want).abs() <= 1e-6 * want.abs().max(1.0),
                "{i}: {g} vs {want}"
            );
        }
    }
}
