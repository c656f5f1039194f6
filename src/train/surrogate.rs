//! A scalar whose autograd gradient reproduces `backward_yolo_layer` (src/yolo_layer.c).
//!
//! `backward_yolo_layer` is `axpy_cpu(l.batch*l.inputs, 1, l.delta, 1, state.delta, 1)`: the yolo delta is added
//! unchanged to the delta of the layer INPUT (the raw conv output, before the in-layer logistic / scale_x_y). No
//! logistic derivative is applied: `forward_yolo_layer` already writes its deltas as if w.r.t. the input. Since a
//! Darknet delta is a negative gradient, the surrogate is `L = −Σ stop_grad(delta) · x` with `x` the yolo input:
//! `∂L/∂x = −delta`, exactly what Darknet passes down (with the sign candle expects). The value of `L` has no
//! meaning; report Darknet's cost from [`super::loss::YoloLossResult::cost`] instead.

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};

use super::loss::{YoloGeometry, YoloLossResult};

/// `L = −Σ delta.detach() · raw_input`, a scalar of `raw_input`'s dtype. Both tensors have the yolo layer's shape
/// `(batch, anchors·(5+classes), h, w)`.
pub fn yolo_surrogate_loss(raw_input: &Tensor, delta: &Tensor) -> Result<Tensor> {
    if raw_input.dims() != delta.dims() {
        bail!(
            "yolo_surrogate_loss: input shape {:?} differs from delta shape {:?}",
            raw_input.dims(),
            delta.dims()
        );
    }
    let d = delta
        .detach()
        .to_dtype(raw_input.dtype())?
        .to_device(raw_input.device())?;
    Ok((raw_input * d)?.sum_all()?.neg()?)
}

/// The delta of [`super::loss::yolo_deltas`] as a `(batch, channels, h, w)` f32 tensor on `device`.
pub fn delta_tensor(res: &YoloLossResult, g: YoloGeometry, device: &Device) -> Result<Tensor> {
    let per_image = g.w * g.h;
    if per_image == 0 || g.batch == 0 || !res.delta.len().is_multiple_of(g.batch * per_image) {
        bail!(
            "delta_tensor: {} floats do not fit batch {} × {}×{}",
            res.delta.len(),
            g.batch,
            g.h,
            g.w
        );
    }
    let c = res.delta.len() / (g.batch * per_image);
    Ok(Tensor::from_slice(
        &res.delta,
        (g.batch, c, g.h, g.w),
        device,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{DType, Var};

    #[test]
    fn gradient_is_minus_delta() {
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 14, 3, 4), &dev).unwrap()).unwrap();
        let delta = Tensor::randn(0f32, 1.0, (2, 14, 3, 4), &dev).unwrap();
        let loss = yolo_surrogate_loss(x.as_tensor(), &delta).unwrap();
        let grads = loss.backward().unwrap();
        let g = grads.get(x.as_tensor()).unwrap();
        let diff = (g + &delta)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(diff <= 1e-6, "max |grad + delta| = {diff}");
        // The delta itself receives no gradient (it is a constant target).
        assert_eq!(loss.dtype(), DType::F32);
        assert!(yolo_surrogate_loss(x.as_tensor(), &delta.narrow(0, 0, 1).unwrap()).is_err());
    }
}
