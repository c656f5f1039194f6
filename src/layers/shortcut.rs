//! `[shortcut]`: mirrors `parse_shortcut` (src/parser.c), `make_shortcut_layer` and `forward_shortcut_layer`
//! (src/shortcut_layer.c): `out = in + from`, then the activation.
//!
//! With inputs of another size Darknet uses `shortcut_multilayer_cpu`, which adds element `i` of each `from`
//! output to element `i` of the input as long as `i` is inside that output (flat index, per batch item); we do
//! the same. Weighted shortcuts (`weights_type`) are used by no detector cfg and are refused at load.

use candle_core::{Result, Tensor};
use candle_nn::VarBuilder;

use super::activation::{activate, activate_onnx};
use super::{io_shapes, DarknetLayer, Inputs, LayerType, LoadOptions};
use crate::cfg::error::CfgResult;
use crate::cfg::options::{resolve_index, Activation};
use crate::cfg::reader::Section;
use crate::cfg::{LayerSpec, Shape};
use crate::export::{OnnxCtx, OnnxGraph, OnnxResult};

/// Weights of a weighted `[shortcut]` (`weights_type` in `parse_shortcut`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShortcutWeights {
    None,
    PerFeature,
    PerChannel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightsNormalization {
    None,
    Relu,
    Softmax,
}

/// `[shortcut]` (`parse_shortcut`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct ShortcutConfig {
    /// Absolute indices of the added layers (`from`).
    pub from: Vec<usize>,
    pub activation: Activation,
    pub weights_type: ShortcutWeights,
    pub weights_normalization: WeightsNormalization,
}

/// `parse_shortcut`, each key with its Darknet default.
pub fn parse_shortcut(s: &Section, index: usize) -> CfgResult<ShortcutConfig> {
    let activation = Activation::parse(&s.str_or("activation", "linear"), s)?;
    let weights_type = match s.str_or("weights_type", "none").as_str() {
        "none" => ShortcutWeights::None,
        "per_feature" | "per_layer" => ShortcutWeights::PerFeature,
        "per_channel" => ShortcutWeights::PerChannel,
        other => return Err(s.invalid(format!("unknown weights_type '{other}'"))),
    };
    let weights_normalization = match s.str_or("weights_normalization", "none").as_str() {
        "relu" | "avg_relu" => WeightsNormalization::Relu,
        "softmax" => WeightsNormalization::Softmax,
        "none" => WeightsNormalization::None,
        other => {
            return Err(s.invalid(format!("unknown weights_normalization '{other}'")));
        }
    };
    let Some(raw) = s.int_list("from")? else {
        return Err(s.invalid("must specify from="));
    };
    let from = raw
        .iter()
        .map(|&r| resolve_index(r, index, s, "from"))
        .collect::<CfgResult<Vec<_>>>()?;
    if from.is_empty() {
        return Err(s.invalid("from= is empty"));
    }
    Ok(ShortcutConfig {
        from,
        activation,
        weights_type,
        weights_normalization,
    })
}

impl LayerType for ShortcutConfig {
    fn parse(s: &Section, index: usize) -> CfgResult<Self> {
        parse_shortcut(s, index)
    }

    fn type_name(&self) -> &'static str {
        "shortcut"
    }

    /// `make_shortcut_layer`: the input's shape; several `from` layers must all match it.
    fn output_shape(&self, i: Shape, prev: &[LayerSpec]) -> std::result::Result<Shape, String> {
        for &f in &self.from {
            let o = prev[f].output;
            if (o.h, o.w) != (i.h, i.w) && self.from.len() > 1 {
                return Err(format!(
                    "multi-input shortcut needs equal sizes: input {i}, layer {f} is {o}"
                ));
            }
        }
        Ok(i)
    }

    fn extra_inputs(&self) -> Vec<usize> {
        self.from.clone()
    }

    fn info(&self, l: &LayerSpec) -> String {
        let ls: Vec<String> = self.from.iter().map(|x| x.to_string()).collect();
        format!(
            "Shortcut Layer: {}, wt = {:?}, wn = {:?}, outputs: {}",
            ls.join(", "),
            self.weights_type,
            self.weights_normalization,
            io_shapes(l)
        )
    }
}

#[derive(Debug, Clone)]
pub struct Shortcut {
    pub cfg: ShortcutConfig,
    /// Run f32 CPU inputs that track no gradient through [`crate::cpu::shortcut`] (`LoadOptions::cpu`).
    pub cpu_kernel: bool,
}

impl Shortcut {
    pub fn new(cfg: &ShortcutConfig) -> Result<Self> {
        if cfg.weights_type != ShortcutWeights::None {
            candle_core::bail!(
                "weighted [shortcut] (weights_type={:?}) is not supported",
                cfg.weights_type
            );
        }
        Ok(Self {
            cfg: cfg.clone(),
            cpu_kernel: false,
        })
    }

    pub fn forward(&self, x: &Tensor, from: &[&Tensor]) -> Result<Tensor> {
        if self.cpu_kernel
            && x.device().is_cpu()
            && x.dtype() == candle_core::DType::F32
            && !x.track_op()
            && !from.iter().any(|f| f.track_op())
        {
            if let Some(y) = crate::cpu::shortcut::forward(x, from, self.cfg.activation)? {
                return Ok(y);
            }
        }
        let mut out = x.clone();
        for f in from {
            out = if f.dims() == x.dims() {
                (out + *f)?
            } else {
                add_flat_prefix(&out, f)?
            };
        }
        activate(&out, self.cfg.activation)
    }
}

/// `out[b][i] += add[b][i]` for `i < min(len(out[b]), len(add[b]))`, as `shortcut_multilayer_cpu` indexes.
fn add_flat_prefix(out: &Tensor, add: &Tensor) -> Result<Tensor> {
    let b = out.dim(0)?;
    let n = out.elem_count() / b;
    let m = add.elem_count() / b;
    let flat = out.reshape((b, n))?;
    let add = add.reshape((b, m))?;
    let add = if m >= n {
        add.narrow(1, 0, n)?
    } else {
        add.pad_with_zeros(1, 0, n - m)?
    };
    (flat + add)?.reshape(out.shape())
}

impl DarknetLayer for Shortcut {
    type Config = ShortcutConfig;

    fn load(
        cfg: &ShortcutConfig,
        _: &LayerSpec,
        _: &VarBuilder,
        opts: &LoadOptions,
    ) -> Result<Self> {
        Ok(Shortcut {
            cpu_kernel: opts.cpu.enabled,
            ..Shortcut::new(cfg)?
        })
    }

    fn kernel(&self) -> &'static str {
        if self.cpu_kernel {
            "cpu-shortcut"
        } else {
            "candle"
        }
    }

    fn forward(&self, x: &Tensor, inputs: &Inputs) -> Result<Tensor> {
        Shortcut::forward(self, x, &inputs.outputs(&self.cfg.from)?)
    }

    /// `Add` per `from` layer of the same shape; a layer of another shape is added on the flat index as
    /// `shortcut_multilayer_cpu` does (both flattened per image, the other one cut or zero-padded to this one's
    /// length). Then the activation.
    fn to_onnx(&self, g: &mut OnnxGraph, x: &str, ctx: &OnnxCtx) -> OnnxResult {
        let me = ctx.spec.input;
        let mut out = x.to_string();
        for &j in &self.cfg.from {
            let other = ctx.specs[j].output;
            let from = ctx.output(j);
            out = if other == me {
                g.node("Add", &[&out, from], vec![])
            } else {
                let (n, m) = (me.numel() as i64, other.numel() as i64);
                let flat = g.reshape(&out, &[0, n]);
                let add = g.reshape(from, &[0, m]);
                let add = if m >= n {
                    g.slice(&add, 1, 0, n)
                } else {
                    let pads = g.const_i64(&[0, 0, 0, n - m]);
                    g.node("Pad", &[&add, &pads], vec![])
                };
                let sum = g.node("Add", &[&flat, &add], vec![]);
                g.reshape(&sum, &[0, me.c as i64, me.h as i64, me.w as i64])
            };
        }
        Ok(activate_onnx(g, &out, self.cfg.activation))
    }
}
