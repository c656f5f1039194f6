//! `[avgpool]`: mirrors `parse_avgpool` (src/parser.c), `make_avgpool_layer` and `forward_avgpool_layer`
//! (src/avgpool_layer.c): the mean of each channel over h·w.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::{io_shapes, DarknetLayer, Inputs, LayerType, LoadOptions};
use crate::cfg::error::CfgResult;
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};
use crate::export::{OnnxCtx, OnnxGraph, OnnxResult};

/// `[avgpool]` (`parse_avgpool`): no keys.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AvgpoolConfig;

impl LayerType for AvgpoolConfig {
    fn parse(_s: &Section, _index: usize) -> CfgResult<Self> {
        Ok(AvgpoolConfig)
    }

    fn type_name(&self) -> &'static str {
        "avgpool"
    }

    /// `make_avgpool_layer`: one value per channel.
    fn output_shape(&self, i: Shape, _prev: &[LayerSpec]) -> std::result::Result<Shape, String> {
        Ok(Shape::new(i.c, 1, 1))
    }

    fn info(&self, l: &LayerSpec) -> String {
        format!("avg                           {}", io_shapes(l))
    }
}

pub fn forward(x: &Tensor) -> Result<Tensor> {
    x.mean_keepdim(3)?.mean_keepdim(2)
}

/// The built `[avgpool]` layer (no parameters).
#[derive(Debug, Clone)]
pub struct Avgpool;

impl DarknetLayer for Avgpool {
    type Config = AvgpoolConfig;

    fn load(_: &AvgpoolConfig, _: &LayerSpec, _: &VarBuilder, _: &LoadOptions) -> Result<Self> {
        Ok(Avgpool)
    }

    fn forward(&self, x: &Tensor, _inputs: &Inputs) -> Result<Tensor> {
        forward(x)
    }

    /// `GlobalAveragePool`: the mean of each channel, as `forward_avgpool_layer`.
    fn to_onnx(&self, g: &mut OnnxGraph, x: &str, _ctx: &OnnxCtx) -> OnnxResult {
        Ok(g.node("GlobalAveragePool", &[x], vec![]))
    }
}
