//! Runs an exported graph in Rust for `export --verify`: node by node, each through candle-onnx's evaluator
//! (`candle_onnx::simple_eval` on a one-node graph) except the few ops or attributes it does not support, which
//! run here with candle ops, written from the ONNX operator specification:
//! - `MaxPool` / `AveragePool` with non-zero `pads` (candle-onnx refuses pads; padded taps ignored, and
//!   `count_include_pad=0` averages over the real taps only);
//! - `Pad` in `constant` mode (candle-onnx has `reflect` only);
//! - `Elu`, `Mish` and `GlobalAveragePool` (absent).
//!
//! The report lists which of these ran, so that a verification says how independent it was.
//!
//! A value is dropped after the last node that reads it (unless it is a graph output): the activations of a large
//! network at a large size — each spelled out in several full-size nodes — do not all stay in memory at once
//! (yolov4-p6 at 1280 was killed at 21 GB when they did).

use std::collections::{BTreeSet, HashMap, HashSet};

use crate::layers::maxpool::pad_dim;
use candle_core::{DType, Result, Tensor};
use candle_onnx::onnx::{self, ModelProto, NodeProto};

/// Evaluates `model` on `inputs`; returns the graph outputs and the ops that ran through our own kernels.
pub fn run(
    model: &ModelProto,
    inputs: HashMap<String, Tensor>,
) -> Result<(HashMap<String, Tensor>, BTreeSet<String>)> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| candle_core::Error::Msg("the model has no graph".into()))?;
    let mut values = inputs;
    for t in &graph.initializer {
        values.insert(t.name.clone(), candle_onnx::eval::get_tensor(t, &t.name)?);
    }
    let kept: HashSet<&str> = graph.output.iter().map(|o| o.name.as_str()).collect();
    let last_read = last_reads(graph);
    let mut own = BTreeSet::new();
    for (i, node) in graph.node.iter().enumerate() {
        let out = if needs_own_kernel(node) {
            own.insert(node.op_type.clone());
            own_kernel(node, &values)?
        } else {
            one_node(node, &values)?
        };
        values.insert(node.output[0].clone(), out);
        for name in &node.input {
            if last_read.get(name.as_str()) == Some(&i) && !kept.contains(name.as_str()) {
                values.remove(name);
            }
        }
    }
    let outputs = graph
        .output
        .iter()
        .map(|o| {
            values
                .get(&o.name)
                .cloned()
                .map(|t| (o.name.clone(), t))
                .ok_or_else(|| candle_core::Error::Msg(format!("no value for output {}", o.name)))
        })
        .collect::<Result<_>>()?;
    Ok((outputs, own))
}

/// The index of the last node that reads each value.
fn last_reads(graph: &onnx::GraphProto) -> HashMap<&str, usize> {
    let mut last = HashMap::new();
    for (i, node) in graph.node.iter().enumerate() {
        for name in &node.input {
            last.insert(name.as_str(), i);
        }
    }
    last
}

/// Whether candle-onnx cannot run `node` (see the module doc).
fn needs_own_kernel(node: &NodeProto) -> bool {
    match node.op_type.as_str() {
        "MaxPool" | "AveragePool" => {
            ints_attr(node, "pads").is_some_and(|p| p.iter().any(|&v| v != 0))
        }
        "Pad" => str_attr(node, "mode").is_none_or(|m| m == "constant"),
        "Elu" | "Mish" | "GlobalAveragePool" => true,
        _ => false,
    }
}

/// `node` alone through `candle_onnx::simple_eval`.
fn one_node(node: &NodeProto, values: &HashMap<String, Tensor>) -> Result<Tensor> {
    let mut inputs = HashMap::new();
    for name in node.input.iter().filter(|n| !n.is_empty()) {
        let v = values
            .get(name)
            .ok_or_else(|| candle_core::Error::Msg(format!("{}: no value {name}", node.name)))?;
        inputs.insert(name.clone(), v.clone());
    }
    let model = ModelProto {
        graph: Some(onnx::GraphProto {
            node: vec![node.clone()],
            output: vec![onnx::ValueInfoProto {
                name: node.output[0].clone(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let mut out = candle_onnx::simple_eval(&model, inputs)
        .map_err(|e| candle_core::Error::Msg(format!("{} ({}): {e}", node.name, node.op_type)))?;
    out.remove(&node.output[0])
        .ok_or_else(|| candle_core::Error::Msg(format!("{}: no output", node.name)))
}

fn ints_attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a [i64]> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .map(|a| a.ints.as_slice())
}

fn int_attr(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}

fn float_attr(node: &NodeProto, name: &str) -> Option<f32> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.f)
}

fn str_attr<'a>(node: &'a NodeProto, name: &str) -> Option<&'a str> {
    node.attribute
        .iter()
        .find(|a| a.name == name)
        .and_then(|a| std::str::from_utf8(&a.s).ok())
}

/// The ops of [`needs_own_kernel`], from the ONNX specification.
fn own_kernel(node: &NodeProto, values: &HashMap<String, Tensor>) -> Result<Tensor> {
    let get = |i: usize| {
        values.get(&node.input[i]).ok_or_else(|| {
            candle_core::Error::Msg(format!("{}: no value {}", node.name, node.input[i]))
        })
    };
    let x = get(0)?;
    match node.op_type.as_str() {
        "Elu" => {
            // x >= 0 ? x : alpha·(exp(x) - 1)
            let alpha = float_attr(node, "alpha").unwrap_or(1.0) as f64;
            let neg = ((x.minimum(0f32)?.exp()? - 1.0)? * alpha)?;
            x.relu()? + neg
        }
        // x·tanh(ln(1 + exp(x))) (an overflowing exp gives ln(inf) = inf and tanh 1: the limit).
        "Mish" => x * (x.exp()? + 1.0)?.log()?.tanh()?,
        "GlobalAveragePool" => x.mean_keepdim(3)?.mean_keepdim(2),
        "Pad" => {
            let pads = get(1)?.to_vec1::<i64>()?;
            let value = if node.input.len() > 2 && !node.input[2].is_empty() {
                get(2)?.flatten_all()?.to_vec1::<f32>()?[0]
            } else {
                0.0
            };
            let rank = x.rank();
            let mut y = x.clone();
            for d in 0..rank {
                let (a, b) = (pads[d], pads[d + rank]);
                if a < 0 || b < 0 {
                    candle_core::bail!("{}: negative pads are not supported", node.name);
                }
                y = pad_dim(&y, d, a as usize, b as usize, value)?;
            }
            Ok(y)
        }
        op => pool(node, op, x),
    }
}

/// 2-D `MaxPool` / `AveragePool` with explicit pads (`[top, left, bottom, right]`, floor output size): max
/// over the real taps (pads filled with the lowest float, never chosen while a window holds a real tap), or
/// the average over the real taps (`count_include_pad=0`) or over the whole window.
fn pool(node: &NodeProto, op: &str, x: &Tensor) -> Result<Tensor> {
    let k = ints_attr(node, "kernel_shape").unwrap_or(&[]);
    let s = ints_attr(node, "strides").unwrap_or(&[1, 1]);
    let p = ints_attr(node, "pads").unwrap_or(&[0, 0, 0, 0]);
    if k.len() != 2 || s.len() != 2 || p.len() != 4 || ceil_mode(node) {
        candle_core::bail!("{}: only 2-D pooling with floor output size", node.name);
    }
    let (kh, kw) = (k[0] as usize, k[1] as usize);
    let (sh, sw) = (s[0] as usize, s[1] as usize);
    let pad = |x: &Tensor, v: f32| -> Result<Tensor> {
        let y = pad_dim(x, 2, p[0] as usize, p[2] as usize, v)?;
        pad_dim(&y, 3, p[1] as usize, p[3] as usize, v)
    };
    if op == "MaxPool" {
        return window(&pad(x, f32::MIN)?, (kh, kw), (sh, sw), |a, b| a.maximum(b));
    }
    let sum = window(&pad(x, 0.0)?, (kh, kw), (sh, sw), |a, b| a + b)?;
    if int_attr(node, "count_include_pad") == Some(1) {
        return sum / (kh * kw) as f64;
    }
    let (_, _, h, w) = x.dims4()?;
    let ones = Tensor::ones((1, 1, h, w), DType::F32, x.device())?;
    let count = window(&pad(&ones, 0.0)?, (kh, kw), (sh, sw), |a, b| a + b)?;
    sum.broadcast_div(&count)
}

fn ceil_mode(node: &NodeProto) -> bool {
    int_attr(node, "ceil_mode").unwrap_or(0) != 0
}

/// Reduces every `k` window taken with stride `s` over the last two dims of `x` with `f`.
fn window(
    x: &Tensor,
    k: (usize, usize),
    s: (usize, usize),
    f: impl Fn(&Tensor, &Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    if h < k.0 || w < k.1 {
        candle_core::bail!("pooling window {k:?} larger than the padded input {h}x{w}");
    }
    let (oh, ow) = ((h - k.0) / s.0 + 1, (w - k.1) / s.1 + 1);
    // Tap (a, b) of every window is the input strided from (a, b).
    let tap = |a: usize, b: usize| -> Result<Tensor> {
        let rows = x.narrow(2, a, (oh - 1) * s.0 + 1)?;
        let t = rows.narrow(3, b, (ow - 1) * s.1 + 1)?.contiguous()?;
        let ri: Vec<u32> = (0..oh).map(|i| (i * s.0) as u32).collect();
        let ci: Vec<u32> = (0..ow).map(|i| (i * s.1) as u32).collect();
        let t = t
            .index_select(&Tensor::new(ri.as_slice(), x.device())?, 2)?
            .contiguous()?;
        t.index_select(&Tensor::new(ci.as_slice(), x.device())?, 3)
    };
    let mut acc = tap(0, 0)?;
    for a in 0..k.0 {
        for b in 0..k.1 {
            if a + b > 0 {
                acc = f(&acc, &tap(a, b)?)?;
            }
        }
    }
    Ok(acc)
}
