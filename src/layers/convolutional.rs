//! `[convolutional]`: mirrors `forward_convolutional_layer` (src/convolutional_layer.c): convolution (im2col +
//! gemm in Darknet; candle's conv2d here), then batch norm with the rolling statistics (`normalize_cpu`,
//! `scale_bias`) or, when fused, nothing, then `add_bias` and the activation.
//!
//! Fusion mirrors `fuse_conv_batchnorm` (src/network.c) in double precision:
//! `b' = b - scale·mean/sqrt(var + .00001)`, `w' = w · scale/sqrt(var + .00001)`, each rounded to f32 once.
//! Output size as `convolutional_out_height`: `(h + 2·pad - size)/stride + 1`, which ignores dilation; with
//! dilation > 1 the input is zero-padded on the bottom/right as far as Darknet's im2col reads past the edge.
//!
//! [`Convolutional::forward`] dispatches: on the CPU, with no gradient tracked, it runs [`crate::cpu::conv`]
//! (weights packed at load, bias/BN/activation fused into the GEMM epilogue); elsewhere (CUDA, autograd) the
//! candle ops of [`Convolutional::forward_candle`].

use std::sync::Arc;

use candle_core::{DType, Result, Tensor};
use candle_nn::VarBuilder;

use super::activation::activate;
use crate::cfg::{ConvConfig, Shape};
use crate::cpu::conv::{BnTensors, PackedConv};

/// Batch-norm tensors of an unfused layer, shaped `[1, C, 1, 1]` for broadcasting.
#[derive(Debug, Clone)]
pub struct BatchNorm {
    pub scale: Tensor,
    pub bias: Tensor,
    pub running_mean: Tensor,
    pub running_var: Tensor,
}

#[derive(Debug, Clone)]
pub struct Convolutional {
    pub cfg: ConvConfig,
    pub input: Shape,
    pub output: Shape,
    /// `[filters, in_c/groups, size, size]`.
    pub weight: Tensor,
    /// Added after the (optional) normalisation: the conv bias, or the fused bias.
    pub bias: Option<Tensor>,
    pub bn: Option<BatchNorm>,
    /// The CPU inference form of this layer, packed at load (None on other devices, for trainable weights, or
    /// when disabled with `CANDLE_DARKNET_CPU_CONV=0`).
    pub cpu: Option<Arc<PackedConv>>,
}

/// Darknet's `normalize_cpu` epsilon (and `fuse_conv_batchnorm`'s).
pub const BN_EPS: f64 = 0.00001;

impl Convolutional {
    /// Loads `conv.weight` and `conv.bias` or `bn.*` from `vb` (the prefix `layers.{i}` of this layer, or of the
    /// layer named by `share_index`).
    pub fn load(
        vb: VarBuilder,
        cfg: &ConvConfig,
        input: Shape,
        output: Shape,
        fuse_bn: bool,
    ) -> Result<Self> {
        let w_shape = (cfg.filters, input.c / cfg.groups, cfg.size, cfg.size);
        let weight = vb.pp("conv").get(w_shape, "weight")?;
        // (weight, bias added after the convolution, unfused batch norm)
        let (weight, bias, bn) = if !cfg.batch_normalize {
            (weight, Some(vb.pp("conv").get(cfg.filters, "bias")?), None)
        } else {
            let bnvb = vb.pp("bn");
            let scale = bnvb.get(cfg.filters, "weight")?;
            let bias = bnvb.get(cfg.filters, "bias")?;
            let mean = bnvb.get(cfg.filters, "running_mean")?;
            let var = bnvb.get(cfg.filters, "running_var")?;
            if fuse_bn {
                let (weight, bias) = fuse(&weight, &bias, &scale, &mean, &var)?;
                (weight, Some(bias), None)
            } else {
                let r = |t: Tensor| t.reshape((1, cfg.filters, 1, 1));
                let bn = BatchNorm {
                    scale: r(scale)?,
                    bias: r(bias)?,
                    running_mean: r(mean)?,
                    running_var: r(var)?,
                };
                (weight, None, Some(bn))
            }
        };
        Self {
            cfg: cfg.clone(),
            input,
            output,
            weight,
            bias,
            bn,
            cpu: None,
        }
        .packed()
    }

    /// Adds the CPU inference form when the weights live on the CPU and are not trainable variables.
    fn packed(mut self) -> Result<Self> {
        if !self.weight.device().is_cpu() || self.weight.is_variable() || !crate::cpu::enabled() {
            return Ok(self);
        }
        let bn = self.bn.as_ref().map(|bn| BnTensors {
            scale: &bn.scale,
            bias: &bn.bias,
            mean: &bn.running_mean,
            var: &bn.running_var,
        });
        let p = PackedConv::new(
            &self.cfg,
            self.input,
            self.output,
            &self.weight,
            self.bias.as_ref(),
            bn,
            BN_EPS,
            &crate::cpu::CpuOptions::from_env(),
        )?;
        self.cpu = p.map(Arc::new);
        Ok(self)
    }

    /// The convolution alone (`gemm` over `im2col_cpu_ext`), without bias or normalisation.
    pub fn convolve(&self, x: &Tensor) -> Result<Tensor> {
        let c = &self.cfg;
        if c.stride_x != c.stride_y {
            candle_core::bail!(
                "convolution with stride_x={} != stride_y={} is not supported",
                c.stride_x,
                c.stride_y
            );
        }
        if c.dilation == 1 {
            return x.conv2d(&self.weight, c.pad, c.stride_x, 1, c.groups);
        }
        // Darknet's output is (h + 2p - size)/s + 1 even with dilation; pad the far side so candle reads the same
        // zeros im2col_cpu_ext reads, then keep Darknet's output size.
        let extra = (c.dilation - 1) * (c.size - 1);
        let x =
            x.pad_with_zeros(2, c.pad, c.pad + extra)?
                .pad_with_zeros(3, c.pad, c.pad + extra)?;
        let y = x.conv2d(&self.weight, 0, c.stride_x, c.dilation, c.groups)?;
        y.narrow(2, 0, self.output.h)?.narrow(3, 0, self.output.w)
    }

    /// Inference forward with the rolling statistics (or fused weights): the CPU kernel when the input is a
    /// CPU f32 tensor that tracks no gradient, else [`Self::forward_candle`]. Both give Darknet's result (the
    /// CPU kernel sums in a different order: differences of a few ulp).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if let Some(p) = &self.cpu {
            if x.device().is_cpu() && x.dtype() == DType::F32 && !x.track_op() {
                let y = p.forward(&x.contiguous()?)?;
                return match p.post_activation {
                    Some(a) => activate(&y, a),
                    None => Ok(y),
                };
            }
        }
        self.forward_candle(x)
    }

    /// The forward with candle ops (every device, differentiable).
    pub fn forward_candle(&self, x: &Tensor) -> Result<Tensor> {
        let y = self.convolve(x)?;
        let y = match (&self.bn, &self.bias) {
            (Some(bn), _) => {
                // normalize_cpu: (x - mean) / sqrt(var + .00001f), then scale_bias, then add_bias.
                let std = (&bn.running_var + BN_EPS)?.sqrt()?;
                let y = y.broadcast_sub(&bn.running_mean)?.broadcast_div(&std)?;
                y.broadcast_mul(&bn.scale)?.broadcast_add(&bn.bias)?
            }
            (None, Some(b)) => y.broadcast_add(&b.reshape((1, self.cfg.filters, 1, 1))?)?,
            (None, None) => y,
        };
        activate(&y, self.cfg.activation)
    }
}

/// `fuse_conv_batchnorm` for one layer, in f64 like the C.
pub fn fuse(
    weight: &Tensor,
    bias: &Tensor,
    scale: &Tensor,
    mean: &Tensor,
    var: &Tensor,
) -> Result<(Tensor, Tensor)> {
    let dev = weight.device().clone();
    let shape = weight.shape().clone();
    let v = |t: &Tensor| {
        t.to_dtype(DType::F32)?
            .to_device(&candle_core::Device::Cpu)?
            .flatten_all()?
            .to_vec1::<f32>()
    };
    let (mut w, mut b, s, m, var) = (v(weight)?, v(bias)?, v(scale)?, v(mean)?, v(var)?);
    let per = w.len() / b.len();
    for f in 0..b.len() {
        let denom = (var[f] as f64 + BN_EPS).sqrt();
        b[f] = (b[f] as f64 - s[f] as f64 * m[f] as f64 / denom) as f32;
        let k = s[f] as f64 / denom;
        for x in &mut w[f * per..(f + 1) * per] {
            *x = (*x as f64 * k) as f32;
        }
    }
    let n = b.len();
    Ok((
        Tensor::from_vec(w, shape, &dev)?,
        Tensor::from_vec(b, n, &dev)?,
    ))
}
