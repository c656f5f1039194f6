//! `candle-darknet compare <cfg> <weights> --reference <dir>`: per-layer comparison with a reference dump; exit
//! status 0 only if every compared layer passes.

use std::path::PathBuf;

use anyhow::{bail, Result};

use candle_darknet::cfg::NetworkConfig;
use candle_darknet::compare::{compare_with, CompareOptions, Manifest, Tolerance};
use candle_darknet::weights;

#[derive(clap::Args)]
pub struct CompareArgs {
    /// A model name, or a Darknet .cfg followed by its weights (.weights or .safetensors).
    pub model: String,
    pub weights: Option<PathBuf>,
    /// Reference directory (manifest.json, input.bin, layer_XXX_*.bin).
    #[arg(long)]
    pub reference: PathBuf,
    #[arg(long, default_value_t = 1e-4, value_parser = super::bounds::tolerance)]
    pub atol: f32,
    #[arg(long, default_value_t = 1e-4, value_parser = super::bounds::tolerance)]
    pub rtol: f32,
    /// Also allow this many units of f32 roundoff (2^-24) of each layer's largest reference value: the peer
    /// tolerance for a dump made by another runtime (docs/export.md "Peer tolerance"). 0: abs + rel only.
    #[arg(long, default_value_t = 0.0, value_parser = super::bounds::tolerance)]
    pub range_ulps: f32,
    /// Also preprocess this image ourselves and compare it with the reference input.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// Write the table as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[command(flatten)]
    pub cpu: super::cpu_args::CpuArgs,
}

pub fn run(a: CompareArgs) -> Result<()> {
    let (m, _) = super::model_arg::resolve(&a.model, a.weights.iter().cloned().collect())?;
    let cfg = NetworkConfig::from_file(&m.cfg)?;
    let w = weights::load_any(&cfg, &m.weights)?;
    let device = candle_darknet::util::device(&a.device)?;
    let our_input = match &a.image {
        None => None,
        Some(p) => {
            let m = Manifest::read(&a.reference)?;
            let im = candle_darknet::image::load_image(p, 3)?;
            Some(
                candle_darknet::image::network_input(&im, m.net_w, m.net_h, cfg.net.letter_box)
                    .data,
            )
        }
    };
    let tol = Tolerance {
        atol: a.atol,
        rtol: a.rtol,
        range_ulps: a.range_ulps,
    };
    let opts = CompareOptions {
        tol,
        cpu: a.cpu.options(),
    };
    let report = compare_with(&cfg, &w, &a.reference, &device, our_input.as_deref(), &opts)?;
    print!("{}", report.table());
    if let Some(j) = &a.json {
        candle_darknet::util::write_atomic(j, serde_json::to_string_pretty(&report)?.as_bytes())?;
    }
    if !report.passed {
        bail!("comparison failed");
    }
    Ok(())
}
