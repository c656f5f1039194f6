//! safetensors files with the tensor names of [`super`] and metadata that ties them to their cfg: the Darknet
//! header (`darknet.major`, `darknet.minor`, `darknet.revision`, `darknet.seen`), `cfg.layers` (layer count),
//! `cfg.types` (comma-separated layer types) and `cfg.text` (the cfg itself), so a file can be checked against
//! the cfg it is loaded with and converted back to a byte-identical `.weights`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};

use super::{Header, NetWeights};
use crate::cfg::NetworkConfig;

pub const FORMAT: &str = "candle-darknet";

pub fn looks_like_safetensors(bytes: &[u8]) -> bool {
    bytes.len() > 9 && {
        let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
        n > 1 && (n as usize) < bytes.len() && bytes[8] == b'{'
    }
}

fn layer_types(cfg: &NetworkConfig) -> String {
    cfg.layers
        .iter()
        .map(|l| l.config.type_name())
        .collect::<Vec<_>>()
        .join(",")
}

/// Serialises weights to safetensors bytes.
pub fn to_bytes(cfg: &NetworkConfig, w: &NetWeights, cfg_text: &str) -> Result<Vec<u8>> {
    let tensors = w.to_tensors(cfg, &Device::Cpu)?;
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let h = &w.header;
    let meta: HashMap<String, String> = [
        ("format", FORMAT.to_string()),
        ("darknet.major", h.major.to_string()),
        ("darknet.minor", h.minor.to_string()),
        ("darknet.revision", h.revision.to_string()),
        ("darknet.seen", h.seen.to_string()),
        ("cfg.layers", cfg.layers.len().to_string()),
        ("cfg.types", layer_types(cfg)),
        ("cfg.text", cfg_text.to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    let data: Vec<(String, Tensor)> = names
        .into_iter()
        .map(|n| (n.clone(), tensors[n].clone()))
        .collect();
    let views = data.iter().map(|(n, t)| (n.as_str(), t));
    Ok(safetensors::serialize(views, Some(meta))?)
}

/// Writes a safetensors file atomically.
pub fn write(cfg: &NetworkConfig, w: &NetWeights, cfg_text: &str, path: &Path) -> Result<()> {
    let bytes = to_bytes(cfg, w, cfg_text)?;
    crate::util::write_atomic(path, &bytes)
}

/// Reads safetensors bytes written by [`to_bytes`] (or any file with the same tensor names) for `cfg`.
pub fn from_bytes(cfg: &NetworkConfig, bytes: &[u8], path: &Path) -> Result<NetWeights> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes)
        .map_err(|e| anyhow::anyhow!("{}: not a valid safetensors file: {e}", path.display()))?;
    let meta = meta.metadata().clone().unwrap_or_default();
    if let Some(n) = meta.get("cfg.layers") {
        if n != &cfg.layers.len().to_string()
            || meta
                .get("cfg.types")
                .is_some_and(|t| t != &layer_types(cfg))
        {
            bail!(
                "{}: these weights were converted for a cfg with {n} layers of other types than {} ({} layers)",
                path.display(),
                cfg.file.display(),
                cfg.layers.len()
            );
        }
    }
    let num = |k: &str, default: i64| -> Result<i64> {
        meta.get(k).map_or(Ok(default), |v| {
            v.parse()
                .with_context(|| format!("{}: bad metadata {k}={v}", path.display()))
        })
    };
    let header = Header {
        major: num("darknet.major", 0)? as i32,
        minor: num("darknet.minor", 2)? as i32,
        revision: num("darknet.revision", 5)? as i32,
        seen: num("darknet.seen", 0)? as u64,
    };
    let tensors = candle_core::safetensors::load_buffer(bytes, &Device::Cpu)
        .map_err(|e| anyhow::anyhow!("{}: reading tensors: {e}", path.display()))?;
    NetWeights::from_tensors(cfg, header, &tensors)
        .with_context(|| format!("loading {}", path.display()))
}

/// The cfg text embedded in a file written by [`to_bytes`], if any.
pub fn embedded_cfg(bytes: &[u8]) -> Option<String> {
    let (_, meta) = safetensors::SafeTensors::read_metadata(bytes).ok()?;
    meta.metadata().as_ref()?.get("cfg.text").cloned()
}
