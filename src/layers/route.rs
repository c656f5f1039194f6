//! `[route]`: mirrors `parse_route` (src/parser.c), `make_route_layer` and `forward_route_layer`
//! (src/route_layer.c): concatenates, along channels, the `group_id`-th of `groups` equal channel slices of each
//! input layer's output.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::{DarknetLayer, Inputs, LayerType, LoadOptions};
use crate::cfg::error::CfgResult;
use crate::cfg::options::{read_inert, resolve_index, usize_of};
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};
use crate::export::graph::int;
use crate::export::{OnnxCtx, OnnxGraph, OnnxResult};

/// `[route]` (`parse_route`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct RouteConfig {
    /// Absolute indices of the input layers.
    pub layers: Vec<usize>,
    pub groups: usize,
    pub group_id: usize,
}

/// `parse_route`, each key with its Darknet default.
pub fn parse_route(s: &Section, index: usize) -> CfgResult<RouteConfig> {
    let Some(raw) = s.int_list("layers")? else {
        return Err(s.invalid("must specify layers="));
    };
    if raw.is_empty() {
        return Err(s.invalid("layers= is empty"));
    }
    let layers = raw
        .iter()
        .map(|&r| resolve_index(r, index, s, "layers"))
        .collect::<CfgResult<Vec<_>>>()?;
    let groups = usize_of(s.int_or("groups", 1)?, s, "groups", 1)?;
    let group_id = usize_of(s.int_or("group_id", 0)?, s, "group_id", 0)?;
    if group_id >= groups {
        return Err(s.invalid(format!("group_id={group_id} must be below groups={groups}")));
    }
    read_inert(s, &["stream", "wait_stream"]);
    Ok(RouteConfig {
        layers,
        groups,
        group_id,
    })
}

impl LayerType for RouteConfig {
    fn parse(s: &Section, index: usize) -> CfgResult<Self> {
        parse_route(s, index)
    }

    fn type_name(&self) -> &'static str {
        "route"
    }

    /// `make_route_layer`: the routed layers' channels summed, divided by `groups`; all the same size.
    fn output_shape(&self, _i: Shape, prev: &[LayerSpec]) -> std::result::Result<Shape, String> {
        let first = prev[self.layers[0]].output;
        let mut c = 0;
        for &l in &self.layers {
            let s = prev[l].output;
            if (s.h, s.w) != (first.h, first.w) {
                return Err(format!(
                    "routed layers differ in size: layer {} is {}, layer {l} is {s}",
                    self.layers[0], first
                ));
            }
            if !s.c.is_multiple_of(self.groups) {
                return Err(format!(
                    "layer {l} has {} channels, not divisible by groups={}",
                    s.c, self.groups
                ));
            }
            c += s.c;
        }
        Ok(Shape::new(c / self.groups, first.h, first.w))
    }

    fn extra_inputs(&self) -> Vec<usize> {
        self.layers.clone()
    }

    fn info(&self, l: &LayerSpec) -> String {
        let o = l.output;
        let ls: Vec<String> = self.layers.iter().map(|x| x.to_string()).collect();
        let g = if self.groups > 1 {
            format!(" {}/{}", self.group_id, self.groups)
        } else {
            String::new()
        };
        format!(
            "route  {}{g} {:>24} -> {:4} x{:4} x{:4}",
            ls.join(" "),
            "",
            o.w,
            o.h,
            o.c
        )
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    pub cfg: RouteConfig,
}

impl Route {
    /// Whether the output is a plain concatenation of two or more whole outputs (no `groups`), which a reader
    /// that [`takes_parts`](super::DarknetLayer::takes_parts) can read in place.
    pub fn is_concat(&self) -> bool {
        self.cfg.groups == 1 && self.cfg.layers.len() > 1
    }

    /// The parts of a concatenation ([`Self::is_concat`]): the input layers' outputs, in order.
    pub fn parts(&self, inputs: &Inputs) -> Result<Vec<Tensor>> {
        Ok(inputs
            .outputs(&self.cfg.layers)?
            .into_iter()
            .cloned()
            .collect())
    }

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

impl DarknetLayer for Route {
    type Config = RouteConfig;

    fn load(cfg: &RouteConfig, _: &LayerSpec, _: &VarBuilder, _: &LoadOptions) -> Result<Self> {
        Ok(Route { cfg: cfg.clone() })
    }

    fn forward(&self, _x: &Tensor, inputs: &Inputs) -> Result<Tensor> {
        Route::forward(self, &inputs.outputs(&self.cfg.layers)?)
    }

    /// Per input layer a channel `Slice` (`groups`/`group_id`), then `Concat` on channels.
    fn to_onnx(&self, g: &mut OnnxGraph, _x: &str, ctx: &OnnxCtx) -> OnnxResult {
        let c = &self.cfg;
        let mut parts = Vec::new();
        for &j in &c.layers {
            let name = ctx.output(j).to_string();
            if c.groups == 1 {
                parts.push(name);
                continue;
            }
            let part = ctx.specs[j].output.c / c.groups;
            let start = (part * c.group_id) as i64;
            parts.push(g.slice(&name, 1, start, start + part as i64));
        }
        if parts.len() == 1 {
            return Ok(parts.pop().expect("one part"));
        }
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        Ok(g.node("Concat", &refs, vec![int("axis", 1)]))
    }
}
