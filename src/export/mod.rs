//! ONNX export (`candle-darknet export`): one node group per Darknet layer, each layer giving its own ONNX form
//! ([`crate::layers::DarknetLayer::to_onnx`]), with Darknet's exact semantics; a layer or option that has no
//! exact form is refused with its index, type and reason, never approximated.
//!
//! The graph's input is `input` (`[batch, c, h, w]`, RGB in [0, 1], as [`crate::image::network_input`]). Its
//! outputs are either the raw heads (`layer_XXX_yolo`, each yolo layer's `l.output` after its in-layer
//! activation, as the reference dumps hold them) or, with [`Heads::Decoded`], `boxes` `[batch, N, 4]` (x, y, w, h
//! relative to the network input, as `get_yolo_box`) and `scores` `[batch, N, classes]` (objectness × class
//! probability, as `get_yolo_detections`), N running over the yolo layers, then cells row-major, then anchors.
//!
//! [`verify`] evaluates a copy of the graph whose every layer output is also a graph output ([`eval`]:
//! candle-onnx's evaluator, with our own kernels for the few ops it lacks) and compares each layer with
//! [`Network`]'s at abs 1e-4 + rel 1e-4. docs/export.md is the user's page.

pub mod eval;
pub mod graph;

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_onnx::onnx::{
    tensor_proto::DataType, GraphProto, ModelProto, OperatorSetIdProto, ValueInfoProto,
};
use prost::Message;

use crate::compare::{diff_stats, DiffStats, Tolerance};
use crate::detect::yolo_boxes::{get_yolo_detections, BoxMapping, YoloOutput};
use crate::layers::{Layer, LayerConfig};
use crate::network::Network;
pub use graph::{Dim, OnnxCtx, OnnxGraph, OnnxResult};

/// The opsets the exporter writes (the ops' signatures it uses exist from 13 on; ONNX Runtime 1.2x reads ≤ 21).
pub const OPSETS: std::ops::RangeInclusive<i64> = 13..=21;
/// The default opset: 17, the newest that TensorRT 8.6 and OpenVINO 2022+ read.
pub const DEFAULT_OPSET: i64 = 17;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("layer {index} [{layer_type}] (cfg line {line}) cannot be exported to ONNX: {reason}")]
    Refused {
        index: usize,
        layer_type: &'static str,
        line: usize,
        reason: String,
    },
    #[error("{0}")]
    Options(String),
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The graph's batch dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Batch {
    Fixed(usize),
    /// A named dimension `batch`.
    Dynamic,
}

/// What the graph outputs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Heads {
    /// Each head's `l.output` (`layer_XXX_yolo`).
    Raw,
    /// `boxes` and `scores` of every yolo head.
    Decoded,
}

#[derive(Debug, Clone, Copy)]
pub struct ExportOptions {
    pub batch: Batch,
    pub heads: Heads,
    pub opset: i64,
    /// Store the convolution weights as float16 (each followed by a `Cast` to float: the arithmetic stays f32).
    pub fp16_weights: bool,
    /// Write mish as ONNX's `Mish` op (needs opset 18) for runtimes without `Where` (ncnn through pnnx). ONNX's
    /// softplus has no thresholds: the result differs from Darknet's `x·tanh(softplus(x, 20))` only for x < -20,
    /// where both are below 4.1e-8 in magnitude. The default spells out Darknet's thresholds exactly.
    pub mish_op: bool,
    /// Every layer's output is also a graph output, `layer_XXX_<type>` in layer order (for layer-by-layer
    /// comparisons in other runtimes), after `boxes`/`scores` when decoded. A layer whose output is the same
    /// value as an earlier layer's (or the input) is left out.
    pub all_outputs: bool,
}

impl Default for ExportOptions {
    fn default() -> Self {
        ExportOptions {
            batch: Batch::Fixed(1),
            heads: Heads::Raw,
            opset: DEFAULT_OPSET,
            fp16_weights: false,
            mish_op: false,
            all_outputs: false,
        }
    }
}

/// An exported model and the graph name of each layer's output.
#[derive(Debug, Clone)]
pub struct Exported {
    pub model: ModelProto,
    pub layer_outputs: Vec<String>,
    pub options: ExportOptions,
}

impl Exported {
    /// The serialized protobuf.
    pub fn to_bytes(&self) -> Vec<u8> {
        self.model.encode_to_vec()
    }

    /// Writes the model to `path` through a temporary file in the same directory and a rename.
    pub fn write(&self, path: &Path) -> Result<(), ExportError> {
        write_atomic(path, &self.to_bytes())
    }
}

/// Writes `bytes` to `path` via `path.tmp` + rename, so that a reader never sees half a file.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), ExportError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let io = |source| ExportError::Io {
        path: path.to_path_buf(),
        source,
    };
    std::fs::write(&tmp, bytes).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The batch dimension as a shape entry.
fn batch_dim(b: Batch) -> Dim {
    match b {
        Batch::Fixed(n) => Dim::Fixed(n),
        Batch::Dynamic => Dim::Named("batch".into()),
    }
}

/// `[batch, c, h, w]` of a layer's output.
fn nchw(b: Batch, s: crate::cfg::Shape) -> Vec<Dim> {
    vec![
        batch_dim(b),
        Dim::Fixed(s.c),
        Dim::Fixed(s.h),
        Dim::Fixed(s.w),
    ]
}

/// The output name of head `i` in a raw export (the reference dumps' file stem).
pub fn raw_head_name(net: &Network, i: usize) -> String {
    format!("layer_{i:03}_{}", net.cfg.layers[i].config.type_name())
}

/// Exports `net` (built with fused batch norm, as `darknet detector test` runs) to an ONNX model.
pub fn export(net: &Network, opts: &ExportOptions) -> Result<Exported, ExportError> {
    if !OPSETS.contains(&opts.opset) {
        return Err(ExportError::Options(format!(
            "opset {} is not supported: the exporter writes opsets {}..={}",
            opts.opset,
            OPSETS.start(),
            OPSETS.end()
        )));
    }
    if opts.mish_op && opts.opset < 18 {
        return Err(ExportError::Options(format!(
            "the Mish op needs opset 18 or newer, not {}",
            opts.opset
        )));
    }
    if opts.batch == Batch::Fixed(0) {
        return Err(ExportError::Options("batch must be at least 1".into()));
    }
    let mut g = OnnxGraph::new(opts.fp16_weights, opts.opset);
    g.mish_op = opts.mish_op;
    let mut names: Vec<String> = Vec::with_capacity(net.layers.len());
    let mut prev = "input".to_string();
    for (spec, layer) in net.cfg.layers.iter().zip(&net.layers) {
        g.prefix = format!("L{}", spec.index);
        let ctx = OnnxCtx {
            spec,
            specs: &net.cfg.layers,
            outputs: &names,
        };
        let out = layer
            .to_onnx(&mut g, &prev, &ctx)
            .map_err(|reason| ExportError::Refused {
                index: spec.index,
                layer_type: spec.config.type_name(),
                line: spec.line,
                reason,
            })?;
        names.push(out.clone());
        prev = out;
    }
    // A layer whose output is an earlier layer's value (a one-input route without groups, dropout, empty) is
    // not repeated: two outputs of one value make pnnx (ncnn's converter) abort.
    let layers: Vec<usize> = if opts.all_outputs {
        (0..names.len())
            .filter(|&i| !names[..i].contains(&names[i]) && names[i] != "input")
            .collect()
    } else {
        Vec::new()
    };
    let outputs = match opts.heads {
        Heads::Raw if opts.all_outputs => raw_outputs(net, &mut g, &names, &layers, opts.batch),
        Heads::Raw => raw_outputs(net, &mut g, &names, &net.cfg.head_indices(), opts.batch),
        Heads::Decoded => {
            let mut o = decoded_outputs(net, &mut g, &names, opts.batch)?;
            o.extend(raw_outputs(net, &mut g, &names, &layers, opts.batch));
            o
        }
    };
    let input = graph::value_info(
        "input",
        DataType::Float,
        &nchw(opts.batch, net.cfg.input_shape()),
    );
    let graph = GraphProto {
        node: std::mem::take(&mut g.nodes),
        name: net
            .cfg
            .file
            .file_stem()
            .map_or("darknet".into(), |s| s.to_string_lossy().into_owned()),
        initializer: std::mem::take(&mut g.initializers),
        input: vec![input],
        output: outputs,
        ..Default::default()
    };
    let model = ModelProto {
        ir_version: ir_version(opts.opset),
        opset_import: vec![OperatorSetIdProto {
            domain: String::new(),
            version: opts.opset,
        }],
        producer_name: "candle-darknet".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    };
    Ok(Exported {
        model,
        layer_outputs: names,
        options: *opts,
    })
}

/// The IR version that goes with an opset (onnx/helper.py's VERSION_TABLE).
fn ir_version(opset: i64) -> i64 {
    match opset {
        ..=14 => 7,
        15..=18 => 8,
        19..=20 => 9,
        _ => 10,
    }
}

/// One `Identity` per layer of `layers`, named as the reference dumps' files (`layer_XXX_<type>`).
fn raw_outputs(
    net: &Network,
    g: &mut OnnxGraph,
    names: &[String],
    layers: &[usize],
    batch: Batch,
) -> Vec<ValueInfoProto> {
    g.prefix = "out".into();
    layers
        .iter()
        .map(|&i| {
            let name = raw_head_name(net, i);
            g.node_named("Identity", &[&names[i]], vec![], &name);
            graph::value_info(
                &name,
                DataType::Float,
                &nchw(batch, net.cfg.layers[i].output),
            )
        })
        .collect()
}

/// `boxes` and `scores` of every `[yolo]` head ([`decode_yolo`]), concatenated over the heads.
fn decoded_outputs(
    net: &Network,
    g: &mut OnnxGraph,
    names: &[String],
    batch: Batch,
) -> Result<Vec<ValueInfoProto>, ExportError> {
    g.prefix = "decode".into();
    let (mut boxes, mut scores) = (Vec::new(), Vec::new());
    let mut total = 0;
    let mut classes = None;
    for i in net.cfg.head_indices() {
        let spec = &net.cfg.layers[i];
        let refuse = |reason: String| ExportError::Refused {
            index: i,
            layer_type: spec.config.type_name(),
            line: spec.line,
            reason,
        };
        let LayerConfig::Yolo(y) = &spec.config else {
            return Err(refuse(
                "--heads decoded decodes [yolo] heads only; export --heads raw".into(),
            ));
        };
        if y.gaussian {
            return Err(refuse(
                "--heads decoded does not decode [Gaussian_yolo] boxes; export --heads raw".into(),
            ));
        }
        if *classes.get_or_insert(y.classes) != y.classes {
            return Err(refuse(
                "heads with different class counts cannot share a scores output".into(),
            ));
        }
        let (b, s) = decode_yolo(
            g,
            &names[i],
            spec.output,
            y,
            net.cfg.net.width,
            net.cfg.net.height,
        );
        total += spec.output.h * spec.output.w * y.mask.len();
        boxes.push(b);
        scores.push(s);
    }
    let Some(classes) = classes else {
        return Err(ExportError::Options(
            "--heads decoded: the network has no [yolo] head".into(),
        ));
    };
    let cat = |g: &mut OnnxGraph, parts: &[String], out: &str| {
        let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
        let op = if refs.len() == 1 {
            "Identity"
        } else {
            "Concat"
        };
        let attrs = if refs.len() == 1 {
            vec![]
        } else {
            vec![graph::int("axis", 1)]
        };
        g.node_named(op, &refs, attrs, out);
    };
    cat(g, &boxes, "boxes");
    cat(g, &scores, "scores");
    let b = batch_dim(batch);
    Ok(vec![
        graph::value_info(
            "boxes",
            DataType::Float,
            &[b.clone(), Dim::Fixed(total), Dim::Fixed(4)],
        ),
        graph::value_info(
            "scores",
            DataType::Float,
            &[b, Dim::Fixed(total), Dim::Fixed(classes)],
        ),
    ])
}

/// One yolo head's `(boxes, scores)`, `[batch, h·w·n, 4]` and `[batch, h·w·n, classes]`, rows in
/// `get_yolo_detections`' order (cell row-major, then anchor). Boxes as `get_yolo_box`: `(i + x)/l.w`,
/// `(j + y)/l.h`, `exp(tw)·anchor_w/net_w` (`new_coords`: `tw·tw·4·anchor_w/net_w`); scores `obj · cls`.
fn decode_yolo(
    g: &mut OnnxGraph,
    y: &str,
    shape: crate::cfg::Shape,
    cfg: &crate::layers::yolo::YoloConfig,
    net_w: usize,
    net_h: usize,
) -> (String, String) {
    let n = cfg.mask.len();
    let e = 5 + cfg.classes;
    let (h, w) = (shape.h, shape.w);
    let hw = (h * w) as i64;
    let rows = h * w * n;
    let v = g.reshape(y, &[0, n as i64, e as i64, hw]);
    let v = g.node("Transpose", &[&v], vec![graph::ints("perm", &[0, 3, 1, 2])]);
    let v = g.reshape(&v, &[0, rows as i64, e as i64]);
    let xy = g.slice(&v, 2, 0, 2);
    let twh = g.slice(&v, 2, 2, 4);
    let obj = g.slice(&v, 2, 4, 5);
    let cls = g.slice(&v, 2, 5, e as i64);
    let (mut grid, mut anchors) = (Vec::with_capacity(2 * rows), Vec::with_capacity(2 * rows));
    for loc in 0..h * w {
        for &a in &cfg.mask {
            grid.extend([(loc % w) as f32, (loc / w) as f32]);
            anchors.extend([cfg.anchors[a].0, cfg.anchors[a].1]);
        }
    }
    let grid = g.const_f32(&[rows, 2], &grid);
    let lwh = g.const_f32(&[2], &[w as f32, h as f32]);
    let anchors = g.const_f32(&[rows, 2], &anchors);
    let nwh = g.const_f32(&[2], &[net_w as f32, net_h as f32]);
    let cxy = g.node("Add", &[&xy, &grid], vec![]);
    let bxy = g.node("Div", &[&cxy, &lwh], vec![]);
    let scaled = if cfg.new_coords {
        let sq = g.node("Mul", &[&twh, &twh], vec![]);
        let sq4 = g.binary_scalar("Mul", &sq, 4.0);
        g.node("Mul", &[&sq4, &anchors], vec![])
    } else {
        let ex = g.node("Exp", &[&twh], vec![]);
        g.node("Mul", &[&ex, &anchors], vec![])
    };
    let bwh = g.node("Div", &[&scaled, &nwh], vec![]);
    let boxes = g.node("Concat", &[&bxy, &bwh], vec![graph::int("axis", 2)]);
    let scores = g.node("Mul", &[&obj, &cls], vec![]);
    (boxes, scores)
}

/// One compared output of a verification.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Check {
    /// The layer index, or None for `boxes`/`scores`.
    pub index: Option<usize>,
    pub name: String,
    pub stats: DiffStats,
}

/// The result of [`verify`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct VerifyReport {
    pub checks: Vec<Check>,
    /// The ops that [`eval`] ran with its own kernels because candle-onnx's evaluator lacks them.
    pub fallback_ops: BTreeSet<String>,
    pub tolerance: Tolerance,
    pub batch: usize,
}

impl VerifyReport {
    /// The first output outside the tolerance.
    pub fn first_divergence(&self) -> Option<&Check> {
        self.checks.iter().find(|c| c.stats.failing > 0)
    }
}

/// A deterministic input in [0, 1) (a xorshift sequence): image-like values that reach every activation range.
pub fn verify_input(
    batch: usize,
    shape: crate::cfg::Shape,
    dev: &Device,
) -> candle_core::Result<Tensor> {
    let n = batch * shape.numel();
    let mut s: u64 = 0x9E37_79B9_7F4A_7C15;
    let v: Vec<f32> = (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32
        })
        .collect();
    Tensor::from_vec(v, (batch, shape.c, shape.h, shape.w), dev)
}

/// Evaluates a copy of `exported` whose every layer output is also a graph output, on [`verify_input`], and
/// compares each layer (and `boxes`/`scores`) with `net`'s at abs 1e-4 + rel 1e-4. With float16 weights the
/// reference is `net` with its convolution weights rounded to float16 the same way.
pub fn verify(net: &Network, exported: &Exported) -> Result<VerifyReport, ExportError> {
    let batch = match exported.options.batch {
        Batch::Fixed(n) => n,
        Batch::Dynamic => 2,
    };
    let mut model = exported.model.clone();
    let graph = model.graph.as_mut().expect("exported graph");
    let mut wanted = Vec::new();
    for (i, name) in exported.layer_outputs.iter().enumerate() {
        let out = format!("verify_layer_{i:03}");
        graph.node.push(candle_onnx::onnx::NodeProto {
            input: vec![name.clone()],
            output: vec![out.clone()],
            name: format!("{out}_node"),
            op_type: "Identity".into(),
            ..Default::default()
        });
        graph.output.push(ValueInfoProto {
            name: out.clone(),
            ..Default::default()
        });
        wanted.push((Some(i), out));
    }
    if exported.options.heads == Heads::Decoded {
        wanted.push((None, "boxes".into()));
        wanted.push((None, "scores".into()));
    }
    let x = verify_input(batch, net.cfg.input_shape(), &Device::Cpu)?;
    let (got, fallback_ops) = eval::run(&model, HashMap::from([("input".to_string(), x.clone())]))?;
    let reference = if exported.options.fp16_weights {
        round_weights_f16(net)?
    } else {
        None
    };
    let reference = reference.as_ref().unwrap_or(net);
    let ours = reference.forward_all(&x)?;
    let tol = Tolerance::default();
    let decoded = if exported.options.heads == Heads::Decoded {
        Some(reference_decoded(reference, &ours)?)
    } else {
        None
    };
    let mut checks = Vec::new();
    for (index, name) in wanted {
        let theirs = flat(got.get(&name).ok_or_else(|| {
            ExportError::Options(format!("the evaluator returned no output {name}"))
        })?)?;
        let mine = match (index, &decoded) {
            (Some(i), _) => flat(&ours[i])?,
            (None, Some((b, _))) if name == "boxes" => b.clone(),
            (None, Some((_, s))) => s.clone(),
            (None, None) => unreachable!("decoded outputs are only wanted for decoded heads"),
        };
        if mine.len() != theirs.len() {
            return Err(ExportError::Options(format!(
                "{name}: the ONNX output has {} values, the network's {}",
                theirs.len(),
                mine.len()
            )));
        }
        checks.push(Check {
            index,
            name,
            stats: diff_stats(&theirs, &mine, tol),
        });
    }
    Ok(VerifyReport {
        checks,
        fallback_ops,
        tolerance: tol,
        batch,
    })
}

fn flat(t: &Tensor) -> candle_core::Result<Vec<f32>> {
    t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()
}

/// `boxes` and `scores` from our heads through the detector's own `get_yolo_detections` (threshold below every
/// objectness, boxes relative to the network input), per image, in the exported row order.
fn reference_decoded(net: &Network, outs: &[Tensor]) -> Result<(Vec<f32>, Vec<f32>), ExportError> {
    let (nw, nh) = (net.cfg.net.width, net.cfg.net.height);
    let batch = outs[0].dim(0)?;
    let (mut boxes, mut scores) = (Vec::new(), Vec::new());
    for b in 0..batch {
        for i in net.cfg.head_indices() {
            let spec = &net.cfg.layers[i];
            let LayerConfig::Yolo(y) = &spec.config else {
                continue;
            };
            let anchors: Vec<f32> = y.anchors.iter().flat_map(|a| [a.0, a.1]).collect();
            let out = flat(&outs[i].get(b)?)?;
            let l = YoloOutput {
                output: &out,
                w: spec.output.w,
                h: spec.output.h,
                classes: y.classes,
                anchors: &anchors,
                mask: &y.mask,
                new_coords: y.new_coords,
            };
            let map = BoxMapping::relative((nw, nh), (nw, nh), false);
            let dets = get_yolo_detections(&l, &map, f32::MIN)
                .map_err(|e| ExportError::Options(format!("decoding layer {i}: {e}")))?;
            for d in dets {
                boxes.extend([d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h]);
                scores.extend(d.prob);
            }
        }
    }
    Ok((boxes, scores))
}

/// A copy of `net` whose convolution weights and biases went through float16 (as `--fp16` stores them), run
/// by candle's ops. None when no layer has weights.
fn round_weights_f16(net: &Network) -> Result<Option<Network>, ExportError> {
    let round = |t: &Tensor| t.to_dtype(DType::F16)?.to_dtype(DType::F32);
    let mut layers = Vec::with_capacity(net.layers.len());
    for l in &net.layers {
        layers.push(match l {
            Layer::Convolutional(c) => {
                let mut c = c.clone();
                c.weight = round(&c.weight)?;
                c.bias = c.bias.as_ref().map(round).transpose()?;
                c.cpu = None;
                Layer::Convolutional(c)
            }
            other => other.clone(),
        });
    }
    Ok(Some(net.with_layers(layers)))
}
