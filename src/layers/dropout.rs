//! `[dropout]`: mirrors `parse_dropout` (src/parser.c) and `forward_dropout_layer` (src/dropout_layer.c) at
//! inference, where it passes its input through. Deliberate difference: training does not drop either (no
//! detector cfg trains with dropout).

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::{io_shapes, DarknetLayer, Inputs, LayerType, LoadOptions};
use crate::cfg::error::CfgResult;
use crate::cfg::options::read_inert;
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};
use crate::export::{OnnxCtx, OnnxGraph, OnnxResult};

/// `[dropout]` (`parse_dropout`): identity at inference.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DropoutConfig {
    pub probability: f32,
    pub dropblock: bool,
}

/// `parse_dropout`, each key with its Darknet default.
pub fn parse_dropout(s: &Section) -> CfgResult<DropoutConfig> {
    let probability = s.float_or("probability", 0.2)?;
    let dropblock = s.int_or("dropblock", 0)? != 0;
    read_inert(s, &["dropblock_size_rel", "dropblock_size_abs"]);
    Ok(DropoutConfig {
        probability,
        dropblock,
    })
}

impl LayerType for DropoutConfig {
    fn parse(s: &Section, _index: usize) -> CfgResult<Self> {
        parse_dropout(s)
    }

    fn type_name(&self) -> &'static str {
        "dropout"
    }

    fn output_shape(&self, i: Shape, _prev: &[LayerSpec]) -> std::result::Result<Shape, String> {
        Ok(i)
    }

    fn info(&self, l: &LayerSpec) -> String {
        format!(
            "dropout     p = {:.2}           {}",
            self.probability,
            io_shapes(l)
        )
    }
}

/// The built `[dropout]` layer: the identity.
#[derive(Debug, Clone)]
pub struct Dropout;

impl DarknetLayer for Dropout {
    type Config = DropoutConfig;

    fn load(_: &DropoutConfig, _: &LayerSpec, _: &VarBuilder, _: &LoadOptions) -> Result<Self> {
        Ok(Dropout)
    }

    fn forward(&self, x: &Tensor, _inputs: &Inputs) -> Result<Tensor> {
        Ok(x.clone())
    }

    /// The identity: the next layer reads this layer's input.
    fn to_onnx(&self, _g: &mut OnnxGraph, x: &str, _ctx: &OnnxCtx) -> OnnxResult {
        Ok(x.to_string())
    }
}
