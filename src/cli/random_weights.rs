//! `candle-darknet random-weights <cfg> -o <out.weights> [--seed S]`: a `.weights` (or `.safetensors`) file with
//! Darknet's initialisation from a fixed seed, for checking full-size cfgs against OpenCV DNN.

use std::path::PathBuf;

use anyhow::{bail, Result};

use candle_darknet::cfg::NetworkConfig;
use candle_darknet::weights::{darknet, safetensors, NetWeights};

#[derive(clap::Args)]
pub struct RandomWeightsArgs {
    pub cfg: PathBuf,
    #[arg(short, long)]
    pub output: PathBuf,
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(a: RandomWeightsArgs) -> Result<()> {
    let cfg = NetworkConfig::from_file(&a.cfg)?;
    let w = NetWeights::random(&cfg, a.seed);
    match a.output.extension().and_then(|e| e.to_str()) {
        Some("weights") => darknet::write(&cfg, &w, &a.output)?,
        Some("safetensors") => {
            safetensors::write(&cfg, &w, &std::fs::read_to_string(&a.cfg)?, &a.output)?
        }
        _ => bail!(
            "{}: output must end in .weights or .safetensors",
            a.output.display()
        ),
    }
    println!(
        "wrote {} ({} parameters, seed {})",
        a.output.display(),
        w.num_params(),
        a.seed
    );
    Ok(())
}
