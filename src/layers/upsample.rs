//! `[upsample]`: mirrors `parse_upsample` (src/parser.c), `make_upsample_layer` and `forward_upsample_layer`
//! (src/upsample_layer.c) / `upsample_cpu`: nearest neighbour by `stride`, times `scale`. A negative stride
//! (Darknet's `reverse`) downsamples by summing each `stride × stride` block, times `scale`.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::{io_shapes, DarknetLayer, Inputs, LayerType, LoadOptions};
use crate::cfg::error::CfgResult;
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};

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

impl DarknetLayer for Upsample {
    type Config = UpsampleConfig;

    fn load(
        cfg: &UpsampleConfig,
        spec: &LayerSpec,
        _: &VarBuilder,
        _: &LoadOptions,
    ) -> Result<Self> {
        Ok(Upsample {
            cfg: cfg.clone(),
            output: spec.output,
        })
    }

    fn forward(&self, x: &Tensor, _inputs: &Inputs) -> Result<Tensor> {
        Upsample::forward(self, x)
    }
}
