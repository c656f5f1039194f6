//! `[avgpool]`: mirrors `forward_avgpool_layer` (src/avgpool_layer.c): the mean of each channel over h·w.

use candle_core::{Result, Tensor};

pub fn forward(x: &Tensor) -> Result<Tensor> {
    x.mean_keepdim(3)?.mean_keepdim(2)
}
