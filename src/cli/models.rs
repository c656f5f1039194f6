//! `candle-darknet models`: the built-in registry and what is present locally. See docs/models.md.

use anyhow::Result;
use candle_darknet::models::{self, LocalFile, Origin, ResolveOptions, REGISTRY};

#[derive(clap::Args)]
pub struct ModelsArgs {
    /// Resolve (and download if needed) this model, then print its paths.
    #[arg(long)]
    fetch: Option<String>,
    /// Never use the network (also set by HF_HUB_OFFLINE=1).
    #[arg(long)]
    offline: bool,
}

fn describe(f: Option<LocalFile>) -> String {
    match f {
        None => "missing".to_string(),
        Some(f) => {
            let v = match f.verified {
                Some(true) => "verified",
                Some(false) => "MISMATCH",
                None => "unverified",
            };
            let o = match f.origin {
                Origin::HfCache => " [hf cache]",
                _ => "",
            };
            format!(
                "{} ({:.1} MB, {v}){o}",
                f.path.display(),
                f.size as f64 / 1e6
            )
        }
    }
}

pub fn run(args: ModelsArgs) -> Result<()> {
    let mut opts = ResolveOptions::from_env();
    opts.offline |= args.offline;
    if let Some(name) = &args.fetch {
        let r = models::resolve(name, &opts)?;
        println!("cfg:         {}", r.cfg.display());
        println!("weights:     {}", r.weights.display());
        let v = match r.verified {
            Some(true) => "sha256 verified",
            Some(false) => "MISMATCH",
            None => "no published hash",
        };
        println!("verified:    {v}");
        println!("safetensors: {}", r.safetensors_cache_path().display());
        return Ok(());
    }
    println!("models directory: {}", opts.models_dir.display());
    if let Some(h) = &opts.hf_cache {
        println!("hugging face cache: {}", h.display());
    }
    for m in REGISTRY {
        println!(
            "\n{} ({}x{}, {} classes)",
            m.name,
            m.input.0,
            m.input.1,
            m.names.to_vec().len()
        );
        println!(
            "  cfg:     {}",
            describe(models::local_file(&m.cfg, &opts)?)
        );
        println!(
            "  weights: {}",
            describe(models::local_file(&m.weights, &opts)?)
        );
        if let Some(url) = m.weights.urls.first() {
            println!("  source:  {url}");
        }
    }
    Ok(())
}
