//! `candle-darknet export <model | cfg weights> -o model.onnx [--size WxH] [--batch N | --dynamic-batch]
//! [--heads raw|decoded] [--opset N] [--fp16] [--no-verify]`: ONNX export (library: `candle_darknet::export`),
//! verified layer by layer against the network before the file is written (docs/export.md).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use candle_darknet::cfg::NetworkConfig;
use candle_darknet::cpu::{CpuOptions, WinogradChoice};
use candle_darknet::export::{self, Batch, ExportOptions, Heads};
use candle_darknet::network::{LoadOptions, Network};

#[derive(clap::ValueEnum, Clone, Copy, Debug)]
pub enum HeadsArg {
    /// Each head's output after its in-layer activation (`layer_XXX_yolo`, as Darknet's `l.output`).
    Raw,
    /// `boxes` [batch, N, 4] (x, y, w, h relative to the network input) and `scores` [batch, N, classes].
    Decoded,
}

#[derive(clap::Args)]
pub struct ExportArgs {
    /// A model name, or the Darknet .cfg followed by its weights (.weights or .safetensors).
    pub model: String,
    /// Weights when the first argument is a cfg.
    pub weights: Option<PathBuf>,
    /// Output .onnx file (written through a temporary file and a rename).
    #[arg(short, long)]
    pub output: PathBuf,
    /// Network input size WxH (default: the cfg's width/height).
    #[arg(long)]
    pub size: Option<String>,
    /// Fixed batch size of the graph.
    #[arg(long, default_value_t = 1, conflicts_with = "dynamic_batch")]
    pub batch: usize,
    /// A named (dynamic) batch dimension instead of a fixed one.
    #[arg(long)]
    pub dynamic_batch: bool,
    /// Raw head outputs or decoded boxes and scores.
    #[arg(long, value_enum, default_value = "raw")]
    pub heads: HeadsArg,
    /// ONNX opset (13..=21).
    #[arg(long, default_value_t = export::DEFAULT_OPSET)]
    pub opset: i64,
    /// Store the convolution weights as float16 (half the file; a Cast to float follows, arithmetic stays f32).
    #[arg(long)]
    pub fp16: bool,
    /// Write mish as ONNX's Mish op (needs --opset 18+; for ncnn/pnnx, which lack Where). It differs from Darknet's
    /// thresholded softplus by at most 4.1e-8, for inputs below -20 only. Default: Darknet's formula exactly.
    #[arg(long)]
    pub mish_op: bool,
    /// Every layer's output is also a graph output (`layer_XXX_<type>`), for layer-by-layer checks elsewhere.
    #[arg(long)]
    pub all_outputs: bool,
    /// Skip the layer-by-layer check of the exported graph against the network.
    #[arg(long)]
    pub no_verify: bool,
    /// Winograd tile of the network the graph is verified against (as `detect --winograd`). Default `off`: our
    /// im2col + GEMM form, the arithmetic of the graph's `Conv` and of Darknet's `im2col_cpu` + `gemm`. `auto`
    /// checks against the default inference kernels, whose F(4x4) rounding on large maps can exceed 1e-4
    /// (docs/export.md "Verification").
    #[arg(long, default_value = "off")]
    pub winograd: WinogradChoice,
    /// Also write the verification report as JSON.
    #[arg(long)]
    pub report: Option<PathBuf>,
}

pub fn run(a: ExportArgs) -> Result<()> {
    let (m, _) = super::model_arg::resolve(&a.model, a.weights.iter().cloned().collect())?;
    let mut cfg = NetworkConfig::from_file(&m.cfg)?;
    if let Some(s) = &a.size {
        let (w, h) = candle_darknet::util::parse_size(s)?;
        cfg = cfg.with_size(w, h)?;
    }
    let weights = candle_darknet::weights::load_any(&cfg, &m.weights)?;
    let device = candle_core::Device::Cpu;
    let load = LoadOptions {
        cpu: CpuOptions {
            winograd: a.winograd,
            ..CpuOptions::default()
        },
        ..LoadOptions::default()
    };
    let net = Network::from_weights(&cfg, &weights, &device, &load)?;
    let opts = ExportOptions {
        batch: if a.dynamic_batch {
            Batch::Dynamic
        } else {
            Batch::Fixed(a.batch)
        },
        heads: match a.heads {
            HeadsArg::Raw => Heads::Raw,
            HeadsArg::Decoded => Heads::Decoded,
        },
        opset: a.opset,
        fp16_weights: a.fp16,
        mish_op: a.mish_op,
        all_outputs: a.all_outputs,
    };
    let exported = export::export(&net, &opts)?;
    if !a.no_verify {
        let report = export::verify(&net, &exported).context("verifying the exported graph")?;
        if let Some(p) = &a.report {
            let json = serde_json::to_vec_pretty(&report)?;
            export::write_atomic(p, &json)?;
        }
        let worst = report
            .checks
            .iter()
            .map(|c| c.stats.max_abs)
            .fold(0f32, |a, b| {
                if b.is_nan() || a.is_nan() {
                    f32::NAN
                } else {
                    a.max(b)
                }
            });
        if let Some(c) = report.first_divergence() {
            bail!(
                "verification failed: the exported graph diverges first at {} ({} of {} values outside abs {} + rel {}, max abs diff {}); {} not written",
                c.name,
                c.stats.failing,
                c.stats.count,
                report.tolerance.atol,
                report.tolerance.rtol,
                c.stats.max_abs,
                a.output.display()
            );
        }
        let own: Vec<&str> = report.fallback_ops.iter().map(String::as_str).collect();
        println!(
            "verified: {} outputs (every layer{}) within abs {} + rel {} of the network on a batch-{} input (max abs diff {worst:.2e}); evaluator: candle-onnx{}",
            report.checks.len(),
            if opts.heads == Heads::Decoded { ", boxes, scores" } else { "" },
            report.tolerance.atol,
            report.tolerance.rtol,
            report.batch,
            if own.is_empty() {
                String::new()
            } else {
                format!(", with our kernels for {}", own.join(", "))
            }
        );
    }
    exported.write(&a.output)?;
    let model = &exported.model;
    let g = model.graph.as_ref().expect("graph");
    let outs: Vec<&str> = g.output.iter().map(|o| o.name.as_str()).collect();
    println!(
        "wrote {} (opset {}, {} nodes, {} initializers, outputs: {})",
        a.output.display(),
        opts.opset,
        g.node.len(),
        g.initializer.len(),
        outs.join(", ")
    );
    Ok(())
}
