//! `[upsample]`: mirrors `parse_upsample` (src/parser.c), `make_upsample_layer` and `forward_upsample_layer`
//! (src/upsample_layer.c) / `upsample_cpu`: nearest neighbour by `stride`, times `scale`. A negative stride
//! (Darknet's `reverse`) downsamples by summing each `stride × stride` block, times `scale`.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::{io_shapes, DarknetLayer, Inputs, LayerType, LoadOptions};
use crate::cfg::error::CfgResult;
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};
use crate::export::graph::{ints, string};
use crate::export::{OnnxCtx, OnnxGraph, OnnxResult};

/// `[upsample]` (`parse_upsample`); a negative stride downsamples (`reverse` in make_upsample_layer).
#[derive(Debug, Clone, serde::Serialize)]
pub struct UpsampleConfig {
    pub stride: i64,
    pub scale: f32,
}

/// `parse_upsample`, each key with its Darknet default.
pub fn parse_upsample(s: &Section) -> CfgResult<UpsampleConfig> {
    let stride = s.int_or("stride", 2)?;
    if stride == 0 {
        return Err(s.invalid("stride=0"));
    }
    // A negative stride downsamples; either way its size is bounded like every stride.
    crate::cfg::options::usize_of(stride.abs(), s, "stride", 1)?;
    Ok(UpsampleConfig {
        stride,
        scale: s.float_or("scale", 1.0)?,
    })
}

impl LayerType for UpsampleConfig {
    fn parse(s: &Section, _index: usize) -> CfgResult<Self> {
        parse_upsample(s)
    }

    fn type_name(&self) -> &'static str {
        "upsample"
    }

    /// `make_upsample_layer`: `w·stride` (or `w/stride` when reversed).
    fn output_shape(&self, i: Shape, _prev: &[LayerSpec]) -> std::result::Result<Shape, String> {
        let s = self.stride.unsigned_abs() as usize;
        Ok(if self.stride > 0 {
            Shape::new(i.c, i.h * s, i.w * s)
        } else {
            Shape::new(i.c, i.h / s, i.w / s)
        })
    }

    fn info(&self, l: &LayerSpec) -> String {
        if self.stride < 0 {
            format!("downsample          {:2}x  {}", -self.stride, io_shapes(l))
        } else {
            format!(
                "upsample                {:2}x  {}",
                self.stride,
                io_shapes(l)
            )
        }
    }
}

#[derive(Debug, Clone)]
pub struct Upsample {
    pub cfg: UpsampleConfig,
    pub input: Shape,
    pub output: Shape,
    /// Run f32 CPU inputs that track no gradient through [`crate::cpu::upsample`] (`LoadOptions::cpu`).
    pub cpu_kernel: bool,
}

impl Upsample {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        if self.runs_cpu_kernel()
            && x.device().is_cpu()
            && x.dtype() == candle_core::DType::F32
            && !x.track_op()
        {
            let op = crate::cpu::upsample::Upsample {
                stride: self.cfg.stride as usize,
                scale: self.cfg.scale,
                input: self.input,
            };
            return op.forward(x);
        }
        self.forward_candle(x)
    }

    /// Whether a CPU f32 input without gradient goes through [`crate::cpu::upsample`] (upsampling, not the
    /// reversed form; kernels enabled).
    fn runs_cpu_kernel(&self) -> bool {
        self.cpu_kernel && self.cfg.stride > 0
    }

    /// The candle-ops forward (every device, differentiable).
    pub fn forward_candle(&self, x: &Tensor) -> Result<Tensor> {
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

impl DarknetLayer for Upsample {
    type Config = UpsampleConfig;

    fn load(
        cfg: &UpsampleConfig,
        spec: &LayerSpec,
        _: &VarBuilder,
        opts: &LoadOptions,
    ) -> Result<Self> {
        Ok(Upsample {
            cfg: cfg.clone(),
            input: spec.input,
            output: spec.output,
            cpu_kernel: opts.cpu.enabled,
        })
    }

    fn forward(&self, x: &Tensor, _inputs: &Inputs) -> Result<Tensor> {
        Upsample::forward(self, x)
    }

    fn kernel(&self) -> &'static str {
        if self.runs_cpu_kernel() {
            "cpu-upsample"
        } else {
            "candle"
        }
    }

    /// Upsampling: `Resize` nearest with integer scales (`asymmetric` + `floor`: output pixel `j` reads input
    /// `j/stride`, as `upsample_cpu`). Downsampling (negative stride): crop, `AveragePool` times `stride²` (the
    /// window sum). Then `scale` when it is not 1.
    fn to_onnx(&self, g: &mut OnnxGraph, x: &str, ctx: &OnnxCtx) -> OnnxResult {
        let s = self.cfg.stride.unsigned_abs() as usize;
        let y = if self.cfg.stride > 0 {
            let scales = g.const_f32(&[4], &[1.0, 1.0, s as f32, s as f32]);
            g.node(
                "Resize",
                &[x, "", &scales],
                vec![
                    string("mode", "nearest"),
                    string("coordinate_transformation_mode", "asymmetric"),
                    string("nearest_mode", "floor"),
                ],
            )
        } else {
            let (h, w) = (self.output.h * s, self.output.w * s);
            let i = ctx.spec.input;
            let mut y = x.to_string();
            if i.h != h {
                y = g.slice(&y, 2, 0, h as i64);
            }
            if i.w != w {
                y = g.slice(&y, 3, 0, w as i64);
            }
            let k = s as i64;
            let y = g.node(
                "AveragePool",
                &[&y],
                vec![ints("kernel_shape", &[k, k]), ints("strides", &[k, k])],
            );
            g.binary_scalar("Mul", &y, (s * s) as f32)
        };
        if self.cfg.scale == 1.0 {
            Ok(y)
        } else {
            Ok(g.binary_scalar("Mul", &y, self.cfg.scale))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The CPU kernel against the candle form (upsample_cpu's indexing), exactly, for strides 2 and 3 and a
    /// scale, at batch 2.
    #[test]
    fn cpu_kernel_matches_candle() {
        for (stride, scale) in [(2i64, 1.0f32), (3, 0.5)] {
            let input = Shape::new(3, 5, 4);
            let cfg = UpsampleConfig { stride, scale };
            let s = stride as usize;
            let layer = Upsample {
                cfg,
                input,
                output: Shape::new(3, 5 * s, 4 * s),
                cpu_kernel: true,
            };
            let v: Vec<f32> = (0..2 * 3 * 5 * 4)
                .map(|i| (i as f32 * 0.37).sin())
                .collect();
            let x = Tensor::from_vec(v, (2, 3, 5, 4), &Device::Cpu).unwrap();
            let got = layer
                .forward(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            let want = layer
                .forward_candle(&x)
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1::<f32>()
                .unwrap();
            assert_eq!(got, want, "stride {stride}");
        }
    }
}
