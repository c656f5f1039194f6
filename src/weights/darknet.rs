//! Darknet's `.weights` format: `load_weights_upto` / `save_weights_upto` and `load_convolutional_weights` /
//! `save_convolutional_weights` in src/parser.c.
//!
//! Layout: i32 major, i32 minor, i32 revision, then `seen` (u64 if `major*10+minor >= 2`, else u32), then for each
//! convolutional layer without `share_index`, in network order: `filters` biases, and if `batch_normalize`
//! `filters` scales, rolling means and rolling variances, then the weights (`filters × in_c/groups × size²`, or
//! its transpose when the layer says `flipped=1`). All little-endian f32.
//! Deliberate differences: Darknet silently stops at a short file and ignores trailing bytes; we report both as
//! errors with the layer and byte offset, because either means the cfg and weights do not belong together.

use std::path::Path;

use anyhow::Result;

use super::error::{Part, WeightsError, WeightsErrorKind, WeightsResult};
use super::{parameter_layers, BatchNormParams, ConvParams, Header, NetWeights};
use crate::cfg::{LayerConfig, NetworkConfig};

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl Cursor<'_> {
    fn error(&self, kind: WeightsErrorKind) -> WeightsError {
        WeightsError {
            file: self.path.to_path_buf(),
            kind,
        }
    }

    fn take(&mut self, n: usize, part: Part) -> WeightsResult<&[u8]> {
        if self.bytes.len() - self.pos < n {
            return Err(self.error(WeightsErrorKind::Truncated {
                part,
                needed: n,
                offset: self.pos,
                remaining: self.bytes.len() - self.pos,
                size: self.bytes.len(),
            }));
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn f32s(&mut self, n: usize, part: Part) -> WeightsResult<Vec<f32>> {
        let b = self.take(4 * n, part)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// Parses a `.weights` file for `cfg`.
pub fn read(cfg: &NetworkConfig, path: &Path) -> WeightsResult<NetWeights> {
    from_bytes(cfg, &read_file(path)?, path)
}

fn read_file(path: &Path) -> WeightsResult<Vec<u8>> {
    std::fs::read(path).map_err(|e| WeightsError {
        file: path.to_path_buf(),
        kind: WeightsErrorKind::Io(e),
    })
}

fn read_header(c: &mut Cursor) -> WeightsResult<Header> {
    let head = c.take(12, Part::Header("the header (major, minor, revision)"))?;
    let i = |k: usize| i32::from_le_bytes([head[k], head[k + 1], head[k + 2], head[k + 3]]);
    let (major, minor, revision) = (i(0), i(4), i(8));
    // Darknet has written versions 0.1 and 0.2; a major version >= 1000 (or minor >= 1000) is its transposed
    // layout with a 32-bit `seen`, which we do not read; anything else is not a file Darknet wrote.
    if !(0..=1).contains(&major) || !(0..1000).contains(&minor) || revision < 0 {
        return Err(c.error(WeightsErrorKind::BadHeader {
            major,
            minor,
            revision,
        }));
    }
    let mut h = Header {
        major,
        minor,
        revision,
        seen: 0,
    };
    h.seen = if h.seen_is_u64() {
        let b = c.take(8, Part::Header("the header's 64-bit 'seen'"))?;
        u64::from_le_bytes(b.try_into().expect("8 bytes"))
    } else {
        let b = c.take(4, Part::Header("the header's 32-bit 'seen'"))?;
        u32::from_le_bytes(b.try_into().expect("4 bytes")) as u64
    };
    Ok(h)
}

/// Parses `.weights` bytes; `path` only names the file in errors.
pub fn from_bytes(cfg: &NetworkConfig, bytes: &[u8], path: &Path) -> WeightsResult<NetWeights> {
    let mut c = Cursor {
        bytes,
        pos: 0,
        path,
    };
    let header = read_header(&mut c)?;
    let mut convs = Vec::new();
    for (index, n, per, bn) in parameter_layers(cfg) {
        convs.push((index, read_conv(&mut c, cfg, index, n, per, bn)?));
    }
    check_consumed(&c, cfg)?;
    Ok(NetWeights { header, convs })
}

/// One convolutional layer's parameters in `load_convolutional_weights` order: biases, [scales, rolling mean,
/// rolling variance], weights (transposed back for `flipped=1`).
fn read_conv(
    c: &mut Cursor,
    cfg: &NetworkConfig,
    index: usize,
    n: usize,
    per: usize,
    bn: bool,
) -> WeightsResult<ConvParams> {
    let at = |part: &'static str| Part::Layer { index, part };
    let biases = c.f32s(n, at("biases"))?;
    let bn = if bn {
        Some(BatchNormParams {
            scales: c.f32s(n, at("batch-norm scales"))?,
            rolling_mean: c.f32s(n, at("rolling mean"))?,
            rolling_var: c.f32s(n, at("rolling variance"))?,
        })
    } else {
        None
    };
    let mut weights = c.f32s(n * per, at("weights"))?;
    if flipped(cfg, index) {
        // Darknet transposes a (per × n) matrix into (n × per) after reading.
        weights = transpose(&weights, per, n);
    }
    Ok(ConvParams {
        biases,
        bn,
        weights,
    })
}

/// Bytes left after the last layer mean the cfg and the weights do not belong together.
fn check_consumed(c: &Cursor, cfg: &NetworkConfig) -> WeightsResult<()> {
    if c.pos != c.bytes.len() {
        return Err(c.error(WeightsErrorKind::TrailingBytes {
            count: c.bytes.len() - c.pos,
            offset: c.pos,
            size: c.bytes.len(),
            cfg: cfg.file.display().to_string(),
        }));
    }
    Ok(())
}

fn flipped(cfg: &NetworkConfig, index: usize) -> bool {
    matches!(&cfg.layers[index].config, LayerConfig::Convolutional(c) if c.flipped)
}

/// `transpose_matrix(a, rows, cols)`: `a` is rows × cols, the result cols × rows.
fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0f32; a.len()];
    for r in 0..rows {
        for col in 0..cols {
            out[col * rows + r] = a[r * cols + col];
        }
    }
    out
}

/// Serialises to `.weights` bytes (the header as given, so a read/write round trip is byte-identical).
pub fn to_bytes(cfg: &NetworkConfig, w: &NetWeights) -> WeightsResult<Vec<u8>> {
    let error = |kind| WeightsError {
        file: cfg.file.clone(),
        kind,
    };
    let mut out = Vec::with_capacity(20 + 4 * w.num_params());
    let h = &w.header;
    for v in [h.major, h.minor, h.revision] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    if h.seen_is_u64() {
        out.extend_from_slice(&h.seen.to_le_bytes());
    } else {
        let seen = u32::try_from(h.seen).map_err(|_| error(WeightsErrorKind::SeenOverflow))?;
        out.extend_from_slice(&seen.to_le_bytes());
    }
    let put = |out: &mut Vec<u8>, v: &[f32]| {
        for x in v {
            out.extend_from_slice(&x.to_le_bytes());
        }
    };
    let expected = parameter_layers(cfg);
    if expected.len() != w.convs.len() || expected.iter().zip(&w.convs).any(|(e, (i, _))| e.0 != *i)
    {
        return Err(error(WeightsErrorKind::LayerMismatch {
            cfg: cfg.file.display().to_string(),
        }));
    }
    for ((index, n, per, _), (_, p)) in expected.iter().zip(&w.convs) {
        put(&mut out, &p.biases);
        if let Some(bn) = &p.bn {
            put(&mut out, &bn.scales);
            put(&mut out, &bn.rolling_mean);
            put(&mut out, &bn.rolling_var);
        }
        if flipped(cfg, *index) {
            put(&mut out, &transpose(&p.weights, *n, *per));
        } else {
            put(&mut out, &p.weights);
        }
    }
    Ok(out)
}

/// Writes a `.weights` file atomically.
pub fn write(cfg: &NetworkConfig, w: &NetWeights, path: &Path) -> Result<()> {
    let bytes = to_bytes(cfg, w)?;
    crate::util::write_atomic(path, &bytes)
}

/// `save_weights_upto(net, file, cutoff)` as used by Darknet's `partial`: the header (with `seen` as given)
/// and the parameters of the convolutional layers with index `< cutoff` only.
pub fn to_bytes_upto(cfg: &NetworkConfig, w: &NetWeights, cutoff: usize) -> WeightsResult<Vec<u8>> {
    let kept: Vec<(usize, ConvParams)> = w
        .convs
        .iter()
        .filter(|(i, _)| *i < cutoff)
        .cloned()
        .collect();
    let cut_cfg = NetworkConfig {
        layers: cfg.layers[..cutoff.min(cfg.layers.len())].to_vec(),
        ..cfg.clone()
    };
    to_bytes(
        &cut_cfg,
        &NetWeights {
            header: w.header,
            convs: kept,
        },
    )
}

/// Reads a possibly truncated `.weights` file for fine-tuning, as Darknet's `load_weights` does with the output
/// of `partial` (e.g. `yolov4-tiny.conv.29`): layers present in the file are loaded, the file may end at a layer
/// boundary, and every convolutional layer after that keeps Darknet's initialisation from
/// `make_convolutional_layer`: weights `sqrt(2/(size·size·c/groups))·rand_uniform(-1, 1)`, biases 0, BN scales 1,
/// rolling mean 0, rolling variance 0 (calloc). The draws come from [`crate::util::FastRand`] seeded by
/// `(seed, layer index)` instead of glibc `rand()`. A file that ends inside a layer, or has trailing bytes, is
/// still an error. Returns the weights and the number of convolutional layers read from the file.
pub fn from_bytes_partial(
    cfg: &NetworkConfig,
    bytes: &[u8],
    path: &Path,
    seed: u64,
) -> WeightsResult<(NetWeights, usize)> {
    let mut c = Cursor {
        bytes,
        pos: 0,
        path,
    };
    let header = read_header(&mut c)?;
    let mut convs = Vec::new();
    let mut loaded = 0;
    for (index, n, per, bn) in parameter_layers(cfg) {
        if c.pos == bytes.len() {
            convs.push((index, darknet_init(index, n, per, bn, seed)));
            continue;
        }
        convs.push((index, read_conv(&mut c, cfg, index, n, per, bn)?));
        loaded += 1;
    }
    check_consumed(&c, cfg)?;
    Ok((NetWeights { header, convs }, loaded))
}

/// [`from_bytes_partial`] on a file.
pub fn read_partial(
    cfg: &NetworkConfig,
    path: &Path,
    seed: u64,
) -> WeightsResult<(NetWeights, usize)> {
    from_bytes_partial(cfg, &read_file(path)?, path, seed)
}

/// `make_convolutional_layer`'s initial parameters for a layer with `n` filters of `per` weights.
pub fn darknet_init(index: usize, n: usize, per: usize, bn: bool, seed: u64) -> ConvParams {
    use crate::util::{batch_seed, FastRand};
    let mut rng = FastRand::new(batch_seed(seed, index as u64));
    let scale = (2.0f32 / per as f32).sqrt();
    let weights = (0..n * per)
        .map(|_| scale * rng.uniform(-1.0, 1.0))
        .collect();
    ConvParams {
        biases: vec![0.0; n],
        bn: bn.then(|| BatchNormParams {
            scales: vec![1.0; n],
            rolling_mean: vec![0.0; n],
            rolling_var: vec![0.0; n],
        }),
        weights,
    }
}

#[cfg(test)]
mod partial_tests {
    use super::*;

    #[test]
    fn partial_round_trip_and_random_rest() {
        let text = "[net]\nwidth=16\nheight=16\nchannels=3\n[convolutional]\nfilters=4\nsize=3\nbatch_normalize=1\n\
                    activation=leaky\n[maxpool]\nsize=2\nstride=2\n[convolutional]\nfilters=5\nsize=1\nactivation=linear\n\
                    [convolutional]\nfilters=6\nsize=1\nbatch_normalize=1\nactivation=leaky\n";
        let cfg = NetworkConfig::parse(text, Path::new("p.cfg")).unwrap();
        let w = NetWeights::random(&cfg, 3);
        let full = to_bytes(&cfg, &w).unwrap();
        let cut = to_bytes_upto(&cfg, &w, 2).unwrap();
        // Header + layer 0 (4 biases, 3×4 bn, 4·27 weights).
        assert_eq!(cut.len(), 20 + 4 * (4 + 12 + 108));
        assert_eq!(&cut[..], &full[..cut.len()]);
        // The strict reader refuses the truncated file, naming the layer and byte offset; the partial reader
        // fills layers 2 and 3.
        match from_bytes(&cfg, &cut, Path::new("cut")).unwrap_err().kind {
            WeightsErrorKind::Truncated {
                part: Part::Layer { index: 2, .. },
                offset,
                ..
            } => assert_eq!(offset, cut.len()),
            other => panic!("{other:?}"),
        }
        let (p, loaded) = from_bytes_partial(&cfg, &cut, Path::new("cut"), 9).unwrap();
        assert_eq!(loaded, 1);
        assert_eq!(p.convs[0], w.convs[0]);
        assert_eq!(p.convs[1].1.biases, vec![0.0; 5]);
        let lim = (2.0f32 / 4.0).sqrt();
        assert!(p.convs[1].1.weights.iter().all(|v| v.abs() <= lim));
        assert!(p.convs[1].1.weights.iter().any(|v| *v != 0.0));
        assert_eq!(p.convs[2].1.bn.as_ref().unwrap().scales, vec![1.0; 6]);
        // The full file reads the same either way; a cut inside a layer is an error.
        assert_eq!(
            from_bytes_partial(&cfg, &full, Path::new("f"), 9)
                .unwrap()
                .0,
            w
        );
        assert!(from_bytes_partial(&cfg, &cut[..cut.len() - 4], Path::new("c"), 9).is_err());
    }
}
