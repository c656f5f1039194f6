//! `candle-darknet convert <cfg> <in> -o <out>`: `.weights` ⇄ `.safetensors`, by the output's extension.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

use candle_darknet::cfg::NetworkConfig;
use candle_darknet::weights::{self, darknet, safetensors};

#[derive(clap::Args)]
pub struct ConvertArgs {
    /// Darknet .cfg file the weights belong to.
    pub cfg: PathBuf,
    /// Input weights (.weights or .safetensors).
    pub input: PathBuf,
    /// Output file: .safetensors or .weights.
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn run(a: ConvertArgs) -> Result<()> {
    let cfg = NetworkConfig::from_file(&a.cfg)?;
    let w = weights::load_any(&cfg, &a.input)?;
    match a.output.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => {
            let text = std::fs::read_to_string(&a.cfg)
                .with_context(|| format!("reading {}", a.cfg.display()))?;
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
