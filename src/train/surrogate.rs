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

use super::loss::{yolo_activate, yolo_deltas, YoloGeometry, YoloLossResult};
use crate::cfg::YoloConfig;

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

/// One yolo head in training mode on a raw `(batch, anchors·(5+classes), h, w)` tensor (the layer INPUT):
/// `yolo_activate` → `yolo_deltas` (on the host) → `yolo_surrogate_loss`. Returns the surrogate scalar (add the
/// heads' surrogates and call `backward()`) and Darknet's deltas / cost. `truth` is `state.truth`:
/// `batch × cfg.max_boxes × 6` floats (see [`pack_truth`](super::loss::pack_truth)).
pub fn yolo_train_head(
    raw_input: &Tensor,
    cfg: &YoloConfig,
    net_w: usize,
    net_h: usize,
    truth: &[f32],
) -> Result<(Tensor, YoloLossResult)> {
    let (batch, _, h, w) = raw_input.dims4()?;
    let g = YoloGeometry {
        batch,
        w,
        h,
        net_w,
        net_h,
    };
    let raw: Vec<f32> = raw_input
        .detach()
        .to_dtype(candle_core::DType::F32)?
        .flatten_all()?
        .to_vec1()?;
    let output = yolo_activate(cfg, &raw, g)?;
    let res = yolo_deltas(cfg, &output, g, truth)?;
    let delta = delta_tensor(&res, g, raw_input.device())?;
    Ok((yolo_surrogate_loss(raw_input, &delta)?, res))
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

    #[test]
    fn train_head_gradient_is_minus_darknet_delta() {
        let text = "[net]\nwidth=32\nheight=32\nchannels=3\n[convolutional]\nfilters=14\nsize=1\nstride=1\n\
                    activation=linear\n[yolo]\nmask=0,1\nanchors=4,4, 16,8, 20,20\nclasses=2\nnum=3\nmax=4\n\
                    iou_loss=ciou\niou_normalizer=0.07\nscale_x_y=1.05\niou_thresh=0.2\n";
        let net = crate::cfg::NetworkConfig::parse(text, std::path::Path::new("t.cfg")).unwrap();
        let crate::cfg::LayerConfig::Yolo(cfg) = &net.layers[1].config else {
            unreachable!()
        };
        let dev = Device::Cpu;
        let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (2, 14, 4, 4), &dev).unwrap()).unwrap();
        let truth = crate::train::loss::pack_truth(
            &[
                vec![[0.3, 0.4, 0.5, 0.3, 1.0], [0.8, 0.7, 0.1, 0.2, 0.0]],
                vec![[0.5, 0.5, 0.6, 0.6, 0.0]],
            ],
            cfg.max_boxes,
        )
        .unwrap();
        let (loss, res) = yolo_train_head(x.as_tensor(), cfg, 32, 32, &truth).unwrap();
        assert!(res.count >= 3);
        let g = loss.backward().unwrap();
        let grad: Vec<f32> = g
            .get(x.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for (a, d) in grad.iter().zip(&res.delta) {
            assert!((a + d).abs() <= 1e-6);
        }
    }
}
