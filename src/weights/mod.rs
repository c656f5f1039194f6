//! Weight files: Darknet `.weights` ([`darknet`]) and safetensors ([`safetensors`]), both mapped onto one
//! in-memory form, [`NetWeights`], that lists each parameterised layer's tensors in Darknet's file order.
//!
//! Tensor names (stable, documented in docs/weights.md; each layer type declares its own in
//! [`crate::layers::LayerType::parameters`]), for convolutional layer `i`:
//! - `layers.i.conv.weight` — `[filters, in_c/groups, size, size]` (Darknet's row-major `l.weights`);
//! - `layers.i.conv.bias` — `[filters]` when the layer has no batch norm;
//! - `layers.i.bn.bias`, `layers.i.bn.weight`, `layers.i.bn.running_mean`, `layers.i.bn.running_var` — `[filters]`
//!   when `batch_normalize=1` (Darknet's `biases`, `scales`, `rolling_mean`, `rolling_variance`).
//!
//! A `[crnn]` layer `i` holds three convolutions, `layers.i.input.*`, `layers.i.self.*` and `layers.i.output.*`
//! (each named as above), one [`ConvParams`] each in [`NetWeights::convs`], in `load_weights`' order.

pub mod darknet;
pub mod error;
pub mod safetensors;

pub use error::{Part, WeightsError, WeightsErrorKind, WeightsResult};

use std::collections::HashMap;

use anyhow::{bail, Result};
use candle_core::{Device, Tensor};

use crate::cfg::{LayerConfig, NetworkConfig};

/// The `.weights` header (`load_weights_upto` in src/parser.c).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Header {
    pub major: i32,
    pub minor: i32,
    pub revision: i32,
    /// Images seen in training; stored as u64 when `major*10 + minor >= 2`, else u32.
    pub seen: u64,
}

impl Header {
    /// The header Darknet's `save_weights` writes today (0.2.5, 64-bit `seen`).
    pub fn current(seen: u64) -> Self {
        Header {
            major: 0,
            minor: 2,
            revision: 5,
            seen,
        }
    }

    pub fn seen_is_u64(&self) -> bool {
        self.major * 10 + self.minor >= 2
    }
}

/// Batch-norm parameters of one convolutional layer.
#[derive(Debug, Clone, PartialEq)]
pub struct BatchNormParams {
    pub scales: Vec<f32>,
    pub rolling_mean: Vec<f32>,
    pub rolling_var: Vec<f32>,
}

/// One convolutional layer's parameters in Darknet's order (biases, [bn], weights), weights in the conv layout
/// `[filters][in_c/groups][size][size]` (already un-transposed for `flipped=1` layers).
#[derive(Debug, Clone, PartialEq)]
pub struct ConvParams {
    pub biases: Vec<f32>,
    pub bn: Option<BatchNormParams>,
    pub weights: Vec<f32>,
}

impl ConvParams {
    /// The arrays in `.weights` file order: biases, [scales, rolling mean, rolling variance], weights.
    pub fn in_file_order(&self) -> Vec<&[f32]> {
        let mut v: Vec<&[f32]> = vec![&self.biases];
        if let Some(bn) = &self.bn {
            v.extend([&bn.scales[..], &bn.rolling_mean, &bn.rolling_var]);
        }
        v.push(&self.weights);
        v
    }

    /// The inverse of [`Self::in_file_order`]: two arrays without batch norm, five with.
    pub fn from_file_order(mut v: Vec<Vec<f32>>) -> Self {
        let weights = v.pop().unwrap_or_default();
        let mut it = v.into_iter();
        let biases = it.next().unwrap_or_default();
        let bn = match (it.next(), it.next(), it.next()) {
            (Some(scales), Some(rolling_mean), Some(rolling_var)) => Some(BatchNormParams {
                scales,
                rolling_mean,
                rolling_var,
            }),
            _ => None,
        };
        ConvParams {
            biases,
            bn,
            weights,
        }
    }
}

/// All parameters of a network, keyed by layer index.
#[derive(Debug, Clone, PartialEq)]
pub struct NetWeights {
    pub header: Header,
    pub convs: Vec<(usize, ConvParams)>,
}

/// The convolutions whose parameters are in the file, in order: (layer index, filters, weights per filter,
/// batch_normalize). A `[crnn]` layer has three (input, self, output), with the same layer index.
pub fn parameter_layers(cfg: &NetworkConfig) -> Vec<(usize, usize, usize, bool)> {
    cfg.layers
        .iter()
        .filter_map(|l| match &l.config {
            LayerConfig::Convolutional(c) if c.share_index.is_none() => Some(vec![(
                l.index,
                c.filters,
                (l.input.c / c.groups) * c.size * c.size,
                c.batch_normalize,
            )]),
            // load_weights: the input, self and output convolutions, one after the other.
            LayerConfig::Crnn(c) => Some(
                c.units(l.input.c)
                    .into_iter()
                    .map(|(n, per)| (l.index, n, per, c.batch_normalize))
                    .collect(),
            ),
            _ => None,
        })
        .flatten()
        .collect()
}

impl NetWeights {
    /// Random weights with Darknet's initialisation (`make_convolutional_layer`: `scale = sqrt(2/(size*size*c/groups))`,
    /// uniform in [-scale, scale]; biases 0, BN scales 1, mean 0, variance 1), from a fixed seed, with small random
    /// perturbations of the BN statistics so fused and unfused paths are exercised.
    pub fn random(cfg: &NetworkConfig, seed: u64) -> Self {
        let mut rng = SplitMix64(seed);
        let convs = parameter_layers(cfg)
            .into_iter()
            .map(|(index, n, per, bn)| {
                let scale = (2.0f32 / per as f32).sqrt();
                let weights = (0..n * per)
                    .map(|_| scale * rng.uniform(-1.0, 1.0))
                    .collect();
                let biases = (0..n).map(|_| rng.uniform(-0.1, 0.1)).collect();
                let bn = bn.then(|| BatchNormParams {
                    scales: (0..n).map(|_| rng.uniform(0.5, 1.5)).collect(),
                    rolling_mean: (0..n).map(|_| rng.uniform(-0.1, 0.1)).collect(),
                    rolling_var: (0..n).map(|_| rng.uniform(0.5, 1.5)).collect(),
                });
                (
                    index,
                    ConvParams {
                        biases,
                        bn,
                        weights,
                    },
                )
            })
            .collect();
        NetWeights {
            header: Header::current(0),
            convs,
        }
    }

    /// Named tensors (see the module docs), on `device`: each layer's arrays in file order under the names and
    /// shapes its [`crate::layers::LayerType::parameters`] gives.
    pub fn to_tensors(
        &self,
        cfg: &NetworkConfig,
        device: &Device,
    ) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        for (index, units) in self.by_layer() {
            let spec = &cfg.layers[index];
            let params = spec.config.as_layer_type().parameters(spec);
            // A layer with several convolutions ([crnn]) lists their tensors one convolution after the other.
            let values: Vec<&[f32]> = units.iter().flat_map(|p| p.in_file_order()).collect();
            if params.len() != values.len() {
                bail!(
                    "layer {index} ({}) stores {} parameter tensors, the weights hold {}",
                    spec.config.type_name(),
                    params.len(),
                    values.len()
                );
            }
            for (param, v) in params.iter().zip(values) {
                out.insert(
                    format!("layers.{index}.{}", param.name),
                    Tensor::from_slice(v, param.shape.as_slice(), device)?,
                );
            }
        }
        Ok(out)
    }

    /// Rebuilds the Darknet-ordered parameters from named tensors, checking every name and shape against the cfg.
    pub fn from_tensors(
        cfg: &NetworkConfig,
        header: Header,
        tensors: &HashMap<String, Tensor>,
    ) -> Result<Self> {
        let get = |name: &str, len: usize| -> Result<Vec<f32>> {
            let Some(t) = tensors.get(name) else {
                bail!(
                    "tensor '{name}' is missing (the cfg {} expects it)",
                    cfg.file.display()
                );
            };
            let v = t
                .flatten_all()?
                .to_dtype(candle_core::DType::F32)?
                .to_vec1::<f32>()?;
            if v.len() != len {
                bail!(
                    "tensor '{name}' has {} values, the cfg {} expects {len}",
                    v.len(),
                    cfg.file.display()
                );
            }
            Ok(v)
        };
        let mut convs = Vec::new();
        let mut expected = std::collections::HashSet::new();
        let units = parameter_layers(cfg);
        let mut k = 0;
        while k < units.len() {
            let index = units[k].0;
            let spec = &cfg.layers[index];
            let mut values = Vec::new();
            for param in spec.config.as_layer_type().parameters(spec) {
                let name = format!("layers.{index}.{}", param.name);
                values.push(get(&name, param.numel())?);
                expected.insert(name);
            }
            // Split the layer's tensors into its convolutions: biases, [scales, mean, variance], weights each.
            let mut values = values.into_iter();
            while k < units.len() && units[k].0 == index {
                let count = if units[k].3 { 5 } else { 2 };
                convs.push((
                    index,
                    ConvParams::from_file_order(values.by_ref().take(count).collect()),
                ));
                k += 1;
            }
        }
        if tensors.len() != expected.len() {
            let mut extra: Vec<&String> =
                tensors.keys().filter(|k| !expected.contains(*k)).collect();
            extra.sort();
            bail!(
                "{} tensors do not belong to any layer of {}: {:?}",
                extra.len(),
                cfg.file.display(),
                extra
            );
        }
        Ok(NetWeights { header, convs })
    }

    /// The convolutions grouped by layer, in file order.
    fn by_layer(&self) -> Vec<(usize, Vec<&ConvParams>)> {
        let mut out: Vec<(usize, Vec<&ConvParams>)> = Vec::new();
        for (index, p) in &self.convs {
            match out.last_mut() {
                Some((i, v)) if i == index => v.push(p),
                _ => out.push((*index, vec![p])),
            }
        }
        out
    }

    /// Number of f32 parameters.
    pub fn num_params(&self) -> usize {
        self.convs
            .iter()
            .map(|(_, p)| {
                p.biases.len() + p.weights.len() + p.bn.as_ref().map_or(0, |b| 3 * b.scales.len())
            })
            .sum()
    }
}

/// Loads weights from a `.weights` or `.safetensors` file, chosen by content (safetensors files start with an
/// 8-byte little-endian header length followed by `{`). A non-finite parameter is an error
/// ([`NetWeights::check_finite`]); [`load_any_with`] can allow it.
pub fn load_any(cfg: &NetworkConfig, path: &std::path::Path) -> Result<NetWeights> {
    load_any_with(cfg, path, false)
}

/// [`load_any`]; `allow_nonfinite` keeps NaN/inf parameters (`--allow-nonfinite`).
pub fn load_any_with(
    cfg: &NetworkConfig,
    path: &std::path::Path,
    allow_nonfinite: bool,
) -> Result<NetWeights> {
    let bytes = std::fs::read(path)
        .map_err(|e| anyhow::anyhow!("reading weights {}: {e}", path.display()))?;
    let w = if safetensors::looks_like_safetensors(&bytes) {
        safetensors::from_bytes(cfg, &bytes, path)?
    } else {
        darknet::from_bytes(cfg, &bytes, path)?
    };
    if !allow_nonfinite {
        w.check_finite(path)?;
    }
    Ok(w)
}

/// A NaN or infinite parameter: where it is, as layer, part and index, and as the byte offset it has in the
/// `.weights` layout (the file's offset for a `.weights` file).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{file}: layer {layer} (convolutional) {part}[{index}] = {value} at byte offset {offset} (.weights layout): non-finite weights make every output NaN (--allow-nonfinite loads them anyway)")]
pub struct NonFiniteError {
    pub file: String,
    pub layer: usize,
    pub part: &'static str,
    pub index: usize,
    pub value: f32,
    pub offset: u64,
}

impl NetWeights {
    /// The first non-finite parameter in file order, as an error (Darknet loads it silently and then detects
    /// nothing).
    pub fn check_finite(&self, path: &std::path::Path) -> std::result::Result<(), NonFiniteError> {
        let mut offset = if self.header.seen_is_u64() { 20u64 } else { 16 };
        for (layer, p) in &self.convs {
            let parts: &[&str] = if p.bn.is_some() {
                &[
                    "biases",
                    "batch-norm scales",
                    "rolling mean",
                    "rolling variance",
                    "weights",
                ]
            } else {
                &["biases", "weights"]
            };
            for (values, part) in p.in_file_order().into_iter().zip(parts) {
                if let Some(index) = values.iter().position(|v| !v.is_finite()) {
                    return Err(NonFiniteError {
                        file: path.display().to_string(),
                        layer: *layer,
                        part,
                        index,
                        value: values[index],
                        offset: offset + 4 * index as u64,
                    });
                }
                offset += 4 * values.len() as u64;
            }
        }
        Ok(())
    }
}

/// A tiny deterministic generator for test weights (SplitMix64), so the same seed gives the same file everywhere.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }
}
