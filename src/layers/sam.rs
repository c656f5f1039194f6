//! `[sam]`: mirrors `parse_sam` (src/parser.c), `make_sam_layer` and `forward_sam_layer` (src/sam_layer.c): the
//! output of layer `from` multiplied element-wise by this layer's input, then the activation.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::{io_shapes, scale_channels, DarknetLayer, Inputs, LayerType, LoadOptions};
use crate::cfg::error::CfgResult;
use crate::cfg::options::{resolve_index, Activation};
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};
use crate::export::{OnnxCtx, OnnxGraph, OnnxResult};

/// `[sam]` (`parse_sam`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct SamConfig {
    pub from: usize,
    pub activation: Activation,
}

/// `parse_sam`, each key with its Darknet default.
pub fn parse_sam(s: &Section, index: usize) -> CfgResult<SamConfig> {
    let Some(raw) = s.int_list("from")?.and_then(|v| v.first().copied()) else {
        return Err(s.invalid("must specify from="));
    };
    Ok(SamConfig {
        from: resolve_index(raw, index, s, "from")?,
        activation: Activation::parse(&s.str_or("activation", "linear"), s)?,
    })
}

impl LayerType for SamConfig {
    fn parse(s: &Section, index: usize) -> CfgResult<Self> {
        parse_sam(s, index)
    }

    fn type_name(&self) -> &'static str {
        "sam"
    }

    /// `make_sam_layer`: the shape of layer `from`, which must equal the input's.
    fn output_shape(&self, i: Shape, prev: &[LayerSpec]) -> std::result::Result<Shape, String> {
        let from = prev[self.from].output;
        if from != i {
            return Err(format!(
                "input {i} and layer {} output {from} differ",
                self.from
            ));
        }
        Ok(from)
    }

    fn extra_inputs(&self) -> Vec<usize> {
        vec![self.from]
    }

    fn info(&self, l: &LayerSpec) -> String {
        format!("scale Layer: {:4} (sam)       {}", self.from, io_shapes(l))
    }
}

/// The built `[sam]` layer (no parameters).
#[derive(Debug, Clone)]
pub struct Sam {
    pub cfg: SamConfig,
}

impl DarknetLayer for Sam {
    type Config = SamConfig;

    fn load(cfg: &SamConfig, _: &LayerSpec, _: &VarBuilder, _: &LoadOptions) -> Result<Self> {
        Ok(Sam { cfg: cfg.clone() })
    }

    /// `forward_sam_layer`: `from[i] · x[i]`, the same product as [`scale_channels::forward`].
    fn forward(&self, x: &Tensor, inputs: &Inputs) -> Result<Tensor> {
        scale_channels::forward(x, inputs.output(self.cfg.from)?, self.cfg.activation)
    }

    /// `Mul(from, x)`, then the activation ([`scale_channels::to_onnx`]).
    fn to_onnx(&self, g: &mut OnnxGraph, x: &str, ctx: &OnnxCtx) -> OnnxResult {
        Ok(scale_channels::to_onnx(
            g,
            x,
            ctx.output(self.cfg.from),
            self.cfg.activation,
        ))
    }
}
