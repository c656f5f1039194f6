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

use anyhow::{bail, Context, Result};

use super::{parameter_layers, BatchNormParams, ConvParams, Header, NetWeights};
use crate::cfg::{LayerConfig, NetworkConfig};

struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    path: &'a Path,
}

impl Cursor<'_> {
    fn take(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<&[u8]> {
        if self.bytes.len() - self.pos < n {
            bail!(
                "{}: truncated weights file: {} needs {n} bytes at byte offset {}, but only {} remain (file size {})",
                self.path.display(),
                what(),
                self.pos,
                self.bytes.len() - self.pos,
                self.bytes.len()
            );
        }
        let s = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn f32s(&mut self, n: usize, what: &dyn Fn() -> String) -> Result<Vec<f32>> {
        let b = self.take(4 * n, what)?;
        Ok(b.chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
}

/// Parses a `.weights` file for `cfg`.
pub fn read(cfg: &NetworkConfig, path: &Path) -> Result<NetWeights> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading weights {}", path.display()))?;
    from_bytes(cfg, &bytes, path)
}

fn read_header(c: &mut Cursor) -> Result<Header> {
    let head = c.take(12, &|| "the header (major, minor, revision)".into())?;
    let i = |k: usize| i32::from_le_bytes([head[k], head[k + 1], head[k + 2], head[k + 3]]);
    let (major, minor, revision) = (i(0), i(4), i(8));
    if major < 0 || minor < 0 || revision < 0 {
        bail!(
            "{}: bad weights header: version {major}.{minor}.{revision} (not a Darknet .weights file?)",
            c.path.display()
        );
    }
    let mut h = Header {
        major,
        minor,
        revision,
        seen: 0,
    };
    h.seen = if h.seen_is_u64() {
        let b = c.take(8, &|| "the header's 64-bit 'seen'".into())?;
        u64::from_le_bytes(b.try_into().expect("8 bytes"))
    } else {
        let b = c.take(4, &|| "the header's 32-bit 'seen'".into())?;
        u32::from_le_bytes(b.try_into().expect("4 bytes")) as u64
    };
    Ok(h)
}

/// Parses `.weights` bytes; `path` only names the file in errors.
pub fn from_bytes(cfg: &NetworkConfig, bytes: &[u8], path: &Path) -> Result<NetWeights> {
    let mut c = Cursor {
        bytes,
        pos: 0,
        path,
    };
    let header = read_header(&mut c)?;
    let mut convs = Vec::new();
    for (index, n, per, bn) in parameter_layers(cfg) {
        let what = |part: &'static str| move || format!("layer {index} (convolutional) {part}");
        let biases = c.f32s(n, &what("biases"))?;
        let bn = if bn {
            Some(BatchNormParams {
                scales: c.f32s(n, &what("batch-norm scales"))?,
                rolling_mean: c.f32s(n, &what("rolling mean"))?,
                rolling_var: c.f32s(n, &what("rolling variance"))?,
            })
        } else {
            None
        };
        let mut weights = c.f32s(n * per, &what("weights"))?;
        if flipped(cfg, index) {
            // Darknet transposes a (per × n) matrix into (n × per) after reading.
            weights = transpose(&weights, per, n);
        }
        convs.push((
            index,
            ConvParams {
                biases,
                bn,
                weights,
            },
        ));
    }
    if c.pos != bytes.len() {
        bail!(
            "{}: {} trailing bytes after the last layer (byte offset {} of {}): the weights do not match the cfg {} \
             (more layers, or different filters/classes)",
            path.display(),
            bytes.len() - c.pos,
            c.pos,
            bytes.len(),
            cfg.file.display()
        );
    }
    Ok(NetWeights { header, convs })
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
pub fn to_bytes(cfg: &NetworkConfig, w: &NetWeights) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(20 + 4 * w.num_params());
    let h = &w.header;
    for v in [h.major, h.minor, h.revision] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    if h.seen_is_u64() {
        out.extend_from_slice(&h.seen.to_le_bytes());
    } else {
        let seen = u32::try_from(h.seen)
            .context("'seen' does not fit the 32-bit field of this header version")?;
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
        bail!(
            "the weights do not list the same convolutional layers as the cfg {}",
            cfg.file.display()
        );
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
