//! `<cfg> <weights>` or a model name: every command that takes a cfg and weights also accepts a registry name
//! (`yolov4-tiny`), resolved by `candle_darknet::models::resolve` (local path, models dir, HF cache, download). A
//! safetensors copy of a named model's weights is made on first use and reused.

use std::path::{Path, PathBuf};

use anyhow::Result;

use candle_darknet::cfg::NetworkConfig;
use candle_darknet::models::{self, ResolveOptions};
use candle_darknet::weights::{self, safetensors};

/// What the positional arguments resolved to.
pub struct ModelFiles {
    pub cfg: PathBuf,
    pub weights: PathBuf,
    /// Class names of a named model.
    pub names: Option<Vec<String>>,
}

/// Splits `first rest…` into model files and the remaining positionals: an existing file `first` is a cfg and
/// `rest[0]` its weights; otherwise `first` is a model name.
pub fn resolve(first: &str, rest: Vec<PathBuf>) -> Result<(ModelFiles, Vec<PathBuf>)> {
    if Path::new(first).is_file() || first.ends_with(".cfg") {
        let mut rest = rest.into_iter();
        let Some(weights) = rest.next() else {
            anyhow::bail!("{first}: a cfg needs its weights file as the next argument");
        };
        return Ok((
            ModelFiles {
                cfg: PathBuf::from(first),
                weights,
                names: None,
            },
            rest.collect(),
        ));
    }
    let r = models::resolve(first, &ResolveOptions::from_env())?;
    let st = r.safetensors_cache_path();
    let weights = if st.is_file() {
        st
    } else {
        let cfg = NetworkConfig::from_file(&r.cfg)?;
        let w = weights::load_any(&cfg, &r.weights)?;
        let text = std::fs::read_to_string(&r.cfg)?;
        match safetensors::write(&cfg, &w, &text, &st) {
            Ok(()) => {
                eprintln!("cached {} as {}", r.weights.display(), st.display());
                st
            }
            // A read-only models dir is no reason to fail: use the .weights directly.
            Err(_) => r.weights.clone(),
        }
    };
    Ok((
        ModelFiles {
            cfg: r.cfg,
            weights,
            names: r.names,
        },
        rest,
    ))
}
