//! `candle-darknet convert <cfg> <in> -o <out>`: `.weights` ⇄ `.safetensors`, by the output's extension.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use candle_darknet::cfg::NetworkConfig;
use candle_darknet::weights::{self, darknet, safetensors};

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// A model name (its weights are the input), or the Darknet .cfg the weights belong to.
    pub model: String,
    /// Input weights (.weights or .safetensors) when the first argument is a cfg.
    pub input: Option<PathBuf>,
    /// Output file: .safetensors or .weights.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Convert weights with NaN/inf parameters instead of refusing them.
    #[arg(long)]
    pub allow_nonfinite: bool,
}

pub fn run(a: ConvertArgs) -> Result<()> {
    let (m, _) = super::model_arg::resolve(&a.model, a.input.iter().cloned().collect())?;
    let cfg = NetworkConfig::from_file(&m.cfg)?;
    let w = weights::load_any_with(&cfg, &m.weights, a.allow_nonfinite)?;
    match a.output.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => {
            let text = std::fs::read_to_string(&m.cfg)
                .with_context(|| format!("reading {}", m.cfg.display()))?;
            safetensors::write(&cfg, &w, &text, &a.output)?;
        }
        Some("weights") => darknet::write(&cfg, &w, &a.output)?,
        _ => bail!(
            "{}: output must end in .safetensors or .weights",
            a.output.display()
        ),
    }
    println!(
        "wrote {} ({} parameter layers, {} parameters, header {}.{}.{} seen {})",
        a.output.display(),
        w.convs.len(),
        w.num_params(),
        w.header.major,
        w.header.minor,
        w.header.revision,
        w.header.seen
    );
    Ok(())
}
