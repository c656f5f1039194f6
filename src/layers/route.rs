//! `[route]`: mirrors `forward_route_layer` (src/route_layer.c): concatenates, along channels, the
//! `group_id`-th of `groups` equal channel slices of each input layer's output.

use candle_core::{Result, Tensor};

use crate::cfg::RouteConfig;

#[derive(Debug, Clone)]
pub struct Route {
    pub cfg: RouteConfig,
}

impl Route {
    pub fn forward(&self, inputs: &[&Tensor]) -> Result<Tensor> {
        let parts = inputs
            .iter()
            .map(|t| {
                let c = t.dim(1)? / self.cfg.groups;
                t.narrow(1, c * self.cfg.group_id, c)
            })
            .collect::<Result<Vec<_>>>()?;
        if parts.len() == 1 {
            return Ok(parts.into_iter().next().expect("one part"));
        }
        Tensor::cat(&parts, 1)
    }
}
