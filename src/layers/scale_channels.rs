//! `[scale_channels]` and `[sam]`: mirror `forward_scale_channels_layer` (src/scale_channels_layer.c) and
//! `forward_sam_layer` (src/sam_layer.c): the output of layer `from` multiplied by this layer's input —
//! per channel (input `C×1×1`), per pixel (`scale_wh=1`, input `1×H×W`), or element-wise (sam) — then the
//! activation.

use candle_core::{Result, Tensor};

use super::activation::activate;
use crate::cfg::Activation;

pub fn forward(x: &Tensor, from: &Tensor, activation: Activation) -> Result<Tensor> {
    activate(&from.broadcast_mul(x)?, activation)
}
