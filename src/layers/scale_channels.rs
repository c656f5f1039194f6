//! `[scale_channels]`: mirrors `parse_scale_channels` (src/parser.c), `make_scale_channels_layer` and
//! `forward_scale_channels_layer` (src/scale_channels_layer.c): the output of layer `from` multiplied by this
//! layer's input — per channel (input `C×1×1`) or per pixel (`scale_wh=1`, input `1×H×W`) — then the activation.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::activation::activate;
use super::{io_shapes, DarknetLayer, Inputs, LayerType, LoadOptions};
use crate::cfg::error::CfgResult;
use crate::cfg::options::{resolve_index, Activation};
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};
use crate::export::{OnnxCtx, OnnxGraph, OnnxResult};

/// `[scale_channels]` (`parse_scale_channels`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScaleChannelsConfig {
    pub from: usize,
    pub scale_wh: bool,
    pub activation: Activation,
}

/// `parse_scale_channels`, each key with its Darknet default.
pub fn parse_scale_channels(s: &Section, index: usize) -> CfgResult<ScaleChannelsConfig> {
    let Some(raw) = s.int_list("from")?.and_then(|v| v.first().copied()) else {
        return Err(s.invalid("must specify from="));
    };
    Ok(ScaleChannelsConfig {
        from: resolve_index(raw, index, s, "from")?,
        scale_wh: s.int_or("scale_wh", 0)? != 0,
        activation: Activation::parse(&s.str_or("activation", "linear"), s)?,
    })
}

impl LayerType for ScaleChannelsConfig {
    fn parse(s: &Section, index: usize) -> CfgResult<Self> {
        parse_scale_channels(s, index)
    }

    fn type_name(&self) -> &'static str {
        "scale_channels"
    }

    /// `make_scale_channels_layer`: the shape of layer `from`; the input is `C×1×1` (or `1×H×W`).
    fn output_shape(&self, i: Shape, prev: &[LayerSpec]) -> std::result::Result<Shape, String> {
        let from = prev[self.from].output;
        let ok = if self.scale_wh {
            i.h == from.h && i.w == from.w && i.c == 1
        } else {
            i.c == from.c && i.h == 1 && i.w == 1
        };
        if !ok {
            return Err(format!(
                "input {i} cannot scale layer {} output {from}",
                self.from
            ));
        }
        Ok(from)
    }

    fn extra_inputs(&self) -> Vec<usize> {
        vec![self.from]
    }

    fn info(&self, l: &LayerSpec) -> String {
        format!("scale Layer: {:4}             {}", self.from, io_shapes(l))
    }
}

/// `from · x` (broadcast), then the activation: shared by `[scale_channels]` and `[sam]`.
pub fn forward(x: &Tensor, from: &Tensor, activation: Activation) -> Result<Tensor> {
    activate(&from.broadcast_mul(x)?, activation)
}

/// The ONNX form of [`forward`], shared by `[scale_channels]` and `[sam]`.
pub fn to_onnx(g: &mut OnnxGraph, x: &str, from: &str, activation: Activation) -> String {
    let y = g.node("Mul", &[from, x], vec![]);
    super::activation::activate_onnx(g, &y, activation)
}

/// The built `[scale_channels]` layer (no parameters).
#[derive(Debug, Clone)]
pub struct ScaleChannels {
    pub cfg: ScaleChannelsConfig,
}

impl DarknetLayer for ScaleChannels {
    type Config = ScaleChannelsConfig;

    fn load(
        cfg: &ScaleChannelsConfig,
        _: &LayerSpec,
        _: &VarBuilder,
        _: &LoadOptions,
    ) -> Result<Self> {
        Ok(ScaleChannels { cfg: cfg.clone() })
    }

    fn forward(&self, x: &Tensor, inputs: &Inputs) -> Result<Tensor> {
        forward(x, inputs.output(self.cfg.from)?, self.cfg.activation)
    }

    /// `Mul(from, x)` with ONNX broadcasting (`x` is `C×1×1`, or `1×H×W` with `scale_wh`), then the activation.
    fn to_onnx(&self, g: &mut OnnxGraph, x: &str, ctx: &OnnxCtx) -> OnnxResult {
        Ok(to_onnx(
            g,
            x,
            ctx.output(self.cfg.from),
            self.cfg.activation,
        ))
    }
}
