//! `[empty]` and `[silence]`: Darknet's `EMPTY` layer (`string_to_layer_type` in src/parser.c), which passes its
//! input through.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::{io_shapes, DarknetLayer, Inputs, LayerType, LoadOptions};
use crate::cfg::error::CfgResult;
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};
use crate::export::{OnnxCtx, OnnxGraph, OnnxResult};

/// `[empty]`/`[silence]`: no keys.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EmptyConfig;

impl LayerType for EmptyConfig {
    fn parse(_s: &Section, _index: usize) -> CfgResult<Self> {
        Ok(EmptyConfig)
    }

    fn type_name(&self) -> &'static str {
        "empty"
    }

    fn output_shape(&self, i: Shape, _prev: &[LayerSpec]) -> std::result::Result<Shape, String> {
        Ok(i)
    }

    fn info(&self, l: &LayerSpec) -> String {
        format!("empty                         {}", io_shapes(l))
    }
}

/// The built `[empty]` layer: the identity.
#[derive(Debug, Clone)]
pub struct Empty;

impl DarknetLayer for Empty {
    type Config = EmptyConfig;

    fn load(_: &EmptyConfig, _: &LayerSpec, _: &VarBuilder, _: &LoadOptions) -> Result<Self> {
        Ok(Empty)
    }

    fn forward(&self, x: &Tensor, _inputs: &Inputs) -> Result<Tensor> {
        Ok(x.clone())
    }

    /// The identity: the next layer reads this layer's input.
    fn to_onnx(&self, _g: &mut OnnxGraph, x: &str, _ctx: &OnnxCtx) -> OnnxResult {
        Ok(x.to_string())
    }
}
