//! Layer-by-layer comparison with a reference directory (the format of ../shared/reference: `manifest.json`,
//! `input.bin`, `layer_XXX_<type>.bin`, raw little-endian f32 in Darknet's CHW layout), as Darknet dumps it or
//! as `tools/opencv_reference.py` writes it from OpenCV DNN.
//!
//! A layer passes when every element satisfies `|ours - ref| <= atol + rtol·|ref|` (abs 1e-4 + rel 1e-4 is
//! how much Darknet itself varies between fused and unfused BN). The report names the first layer that fails.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use crate::cfg::NetworkConfig;
use crate::network::{LoadOptions, Network};
use crate::weights::NetWeights;

/// The parts of a reference `manifest.json` we use.
#[derive(Debug, Clone, Deserialize)]
pub struct Manifest {
    pub net_w: usize,
    pub net_h: usize,
    #[serde(default = "three")]
    pub net_c: usize,
    #[serde(default)]
    pub fused_conv_bn: u8,
    #[serde(default)]
    pub batch: Option<usize>,
    pub input: InputEntry,
    pub layers: Vec<LayerEntry>,
    /// Training-mode references (`mini-yolov4-train`): the `state.truth` array; its presence selects
    /// [`compare_train`].
    #[serde(default)]
    pub truth: Option<TruthEntry>,
    /// `get_network_cost()` of the training pass.
    #[serde(default)]
    pub total_loss_get_network_cost: Option<f32>,
}

/// `truth` of a training-mode manifest.
#[derive(Debug, Clone, Deserialize)]
pub struct TruthEntry {
    pub file: String,
    pub max_boxes: usize,
    pub truth_size: usize,
}

fn three() -> usize {
    3
}

#[derive(Debug, Clone, Deserialize)]
pub struct InputEntry {
    pub file: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct LayerEntry {
    pub index: usize,
    #[serde(rename = "type")]
    pub kind: String,
    pub c: usize,
    pub h: usize,
    pub w: usize,
    pub file: Option<String>,
    /// Yolo layers of a training reference: `l.delta` dump and `l.cost[0]`.
    #[serde(default)]
    pub delta_file: Option<String>,
    #[serde(default)]
    pub cost: Option<f32>,
}

impl Manifest {
    pub fn read(dir: &Path) -> Result<Self> {
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

/// Reads a raw little-endian f32 file.
pub fn read_f32_file(path: &Path) -> Result<Vec<f32>> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    if bytes.len() % 4 != 0 {
        bail!(
            "{}: size {} is not a multiple of 4 bytes",
            path.display(),
            bytes.len()
        );
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

/// The unit roundoff of f32, 2⁻²⁴.
pub const F32_UNIT_ROUNDOFF: f32 = 1.0 / 16_777_216.0;

/// Tolerances: an element passes when `|ours − ref| ≤ atol + rtol·|ref| + range_ulps·2⁻²⁴·max|ref|`, the max over
/// the tensor (a layer).
///
/// `range_ulps` is 0 for our own checks (Darknet's dumps, `export --verify`, `compare` by default): abs 1e-4 + rel
/// 1e-4 per element. A check against a third-party runtime (ONNX Runtime, OpenVINO, ncnn, OpenCV DNN) sets it from
/// that runtime's algorithms ([`Tolerance::peer`], docs/export.md "Peer tolerance"): a runtime picks its convolution
/// kernels by the CPU it finds, and a convolution's rounding grows with the magnitude of the products it sums, not
/// with its result, so an output near zero in a layer of large values can carry an error far above 1e-4·|ref| on
/// one machine and not on another. The layer's largest value stands for that magnitude.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Tolerance {
    pub atol: f32,
    pub rtol: f32,
    pub range_ulps: f32,
}

impl Tolerance {
    /// abs 1e-4 + rel 1e-4 + `range_ulps` units of roundoff of the layer's largest value.
    pub const fn peer(range_ulps: f32) -> Self {
        Tolerance {
            atol: 1e-4,
            rtol: 1e-4,
            range_ulps,
        }
    }
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance::peer(0.0)
    }
}

/// Element-wise difference statistics of one tensor against its reference.
#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct DiffStats {
    pub max_abs: f32,
    /// max |a-b| / |b| over elements with |b| > 0 (∞-free).
    pub max_rel: f32,
    /// Elements outside the [`Tolerance`] (NaN counts as outside).
    pub failing: usize,
    pub count: usize,
    /// max |ref| over the tensor.
    pub max_ref: f32,
    /// The smallest [`Tolerance::range_ulps`] with which every element would pass (0 when abs + rel suffice).
    pub needed_range_ulps: f32,
}

pub fn diff_stats(ours: &[f32], reference: &[f32], tol: Tolerance) -> DiffStats {
    let max_ref = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    let unit = F32_UNIT_ROUNDOFF * max_ref;
    let mut s = DiffStats {
        max_abs: 0.0,
        max_rel: 0.0,
        failing: 0,
        count: ours.len(),
        max_ref,
        needed_range_ulps: 0.0,
    };
    let mut nan = false;
    for (&a, &b) in ours.iter().zip(reference) {
        let d = (a - b).abs();
        let over = d - (tol.atol + tol.rtol * b.abs());
        // NaN differences fail too (`over <= bound` is false for NaN).
        let within = over <= tol.range_ulps * unit;
        if !within {
            s.failing += 1;
        }
        if d.is_nan() {
            nan = true;
            continue;
        }
        s.max_abs = s.max_abs.max(d);
        if b != 0.0 {
            s.max_rel = s.max_rel.max(d / b.abs());
        }
        if over > 0.0 {
            let needed = if unit > 0.0 {
                over / unit
            } else {
                f32::INFINITY
            };
            s.needed_range_ulps = s.needed_range_ulps.max(needed);
        }
    }
    if nan {
        // A NaN anywhere must show in the table, not hide behind f32::max.
        s.max_abs = f32::NAN;
    }
    s
}

/// One row of the comparison table.
#[derive(Debug, Clone, Serialize)]
pub struct LayerRow {
    pub index: usize,
    #[serde(rename = "type")]
    pub kind: String,
    pub shape: [usize; 3],
    /// `None` when the reference omits the layer (`file: null`).
    pub stats: Option<DiffStats>,
    pub status: Status,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Pass,
    Fail,
    NotInReference,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub reference: PathBuf,
    pub tolerance: Tolerance,
    pub fused_conv_bn: bool,
    pub input: Option<DiffStats>,
    pub layers: Vec<LayerRow>,
    pub first_failure: Option<usize>,
    pub passed: bool,
}

impl Report {
    /// The worst absolute error over the compared layers, with its layer.
    pub fn worst(&self) -> Option<(usize, f32)> {
        self.layers
            .iter()
            .filter_map(|r| r.stats.map(|s| (r.index, s.max_abs)))
            .max_by(|a, b| a.1.partial_cmp(&b.1).unwrap_or(std::cmp::Ordering::Greater))
    }

    /// The human-readable table.
    pub fn table(&self) -> String {
        let mut out = format!(
            "reference {} ({}), tolerance |d| <= {:e} + {:e}*|ref|\n",
            self.reference.display(),
            if self.fused_conv_bn {
                "fused conv+bn"
            } else {
                "unfused bn"
            },
            self.tolerance.atol,
            self.tolerance.rtol
        );
        if let Some(i) = self.input {
            out.push_str(&format!("input (our preprocessing vs reference): max abs {:.3e}, {} of {} outside tolerance\n", i.max_abs, i.failing, i.count));
        }
        out.push_str(&format!(
            "{:>5}  {:<16} {:>18}  {:>11}  {:>11}  {}\n",
            "layer", "type", "shape (c h w)", "max abs", "max rel", "result"
        ));
        for r in &self.layers {
            let shape = format!("{}x{}x{}", r.shape[0], r.shape[1], r.shape[2]);
            let (a, rel, res) = match (r.stats, r.status) {
                (Some(s), Status::Pass) => (
                    format!("{:.3e}", s.max_abs),
                    format!("{:.3e}", s.max_rel),
                    "pass".to_string(),
                ),
                (Some(s), _) => (
                    format!("{:.3e}", s.max_abs),
                    format!("{:.3e}", s.max_rel),
                    format!("FAIL ({} of {} elements)", s.failing, s.count),
                ),
                (None, _) => ("-".into(), "-".into(), "not in reference".into()),
            };
            out.push_str(&format!(
                "{:>5}  {:<16} {:>18}  {:>11}  {:>11}  {}\n",
                r.index, r.kind, shape, a, rel, res
            ));
        }
        match self.first_failure {
            Some(i) => out.push_str(&format!(
                "FIRST DIVERGENCE: layer {i} ({})\n",
                self.layers[i].kind
            )),
            None => {
                let (wi, wv) = self.worst().unwrap_or((0, 0.0));
                out.push_str(&format!(
                    "all compared layers pass (worst max abs error {wv:.3e} at layer {wi})\n"
                ));
            }
        }
        out
    }
}

/// Runs `cfg` with `weights` on the reference input and compares every layer.
///
/// The network size comes from the manifest; BN is fused or not as the manifest says. `our_input`, when given,
/// is our own preprocessing of the reference image, compared with the reference input (the network still runs
/// on the reference input, so the layer comparison isolates the network).
pub fn compare(
    cfg: &NetworkConfig,
    weights: &NetWeights,
    dir: &Path,
    device: &Device,
    tol: Tolerance,
    our_input: Option<&[f32]>,
) -> Result<Report> {
    compare_with(
        cfg,
        weights,
        dir,
        device,
        our_input,
        &CompareOptions {
            tol,
            ..Default::default()
        },
    )
}

/// How [`compare_with`] compares.
#[derive(Debug, Clone, Copy, Default)]
pub struct CompareOptions {
    pub tol: Tolerance,
    /// The CPU kernels of the network under test (e.g. its Winograd tile size).
    pub cpu: crate::cpu::CpuOptions,
}

/// The reference must describe the same network: as many layers, each of the same type and output shape.
fn check_layers_match(manifest: &Manifest, cfg: &NetworkConfig, dir: &Path) -> Result<()> {
    if manifest.layers.len() != cfg.layers.len() {
        bail!(
            "{}: the reference has {} layers, the cfg {} has {}",
            dir.display(),
            manifest.layers.len(),
            cfg.file.display(),
            cfg.layers.len()
        );
    }
    for (m, l) in manifest.layers.iter().zip(&cfg.layers) {
        if m.kind != l.config.type_name() || (m.c, m.h, m.w) != (l.output.c, l.output.h, l.output.w)
        {
            bail!(
                "{}: layer {} is {} {}x{}x{} in the reference but {} {}x{}x{} in the cfg",
                dir.display(),
                m.index,
                m.kind,
                m.c,
                m.h,
                m.w,
                l.config.type_name(),
                l.output.c,
                l.output.h,
                l.output.w
            );
        }
    }
    Ok(())
}

/// The reference input and the floats of one image (`c·h·w` of the cfg); the input must hold whole images.
fn read_reference_input(
    dir: &Path,
    manifest: &Manifest,
    cfg: &NetworkConfig,
) -> Result<(Vec<f32>, usize)> {
    let input = read_f32_file(&crate::util::join_within(dir, &manifest.input.file)?)?;
    let per = cfg.input_shape().numel();
    if input.is_empty() || input.len() % per != 0 {
        bail!(
            "{}: input has {} floats, not a multiple of {}",
            dir.display(),
            input.len(),
            per
        );
    }
    Ok((input, per))
}

/// The row of one inference layer: our output against the reference file, if the reference has one.
fn inference_row(m: &LayerEntry, out: &Tensor, dir: &Path, tol: Tolerance) -> Result<LayerRow> {
    let (stats, status) = match &m.file {
        None => (None, Status::NotInReference),
        Some(f) => {
            let reference = read_f32_file(&crate::util::join_within(dir, f)?)?;
            let ours = out.flatten_all()?.to_vec1::<f32>()?;
            if reference.len() != ours.len() {
                bail!(
                    "{}: {f} has {} floats, our layer {} has {}",
                    dir.display(),
                    reference.len(),
                    m.index,
                    ours.len()
                );
            }
            let s = diff_stats(&ours, &reference, tol);
            (
                Some(s),
                if s.failing == 0 {
                    Status::Pass
                } else {
                    Status::Fail
                },
            )
        }
    };
    Ok(LayerRow {
        index: m.index,
        kind: m.kind.clone(),
        shape: [m.c, m.h, m.w],
        stats,
        status,
    })
}

/// [`compare`] with explicit options.
pub fn compare_with(
    cfg: &NetworkConfig,
    weights: &NetWeights,
    dir: &Path,
    device: &Device,
    our_input: Option<&[f32]>,
    opts: &CompareOptions,
) -> Result<Report> {
    let tol = opts.tol;
    let manifest = Manifest::read(dir)?;
    let cfg = cfg.with_size(manifest.net_w, manifest.net_h)?;
    check_layers_match(&manifest, &cfg, dir)?;
    if manifest.truth.is_some() {
        return compare_train(&cfg, weights, dir, &manifest, device, tol);
    }
    let fused = manifest.fused_conv_bn != 0;
    let load = LoadOptions {
        fuse_bn: fused,
        cpu: opts.cpu,
        ..LoadOptions::default()
    };
    let net = Network::from_weights(&cfg, weights, device, &load)?;
    let (input, per) = read_reference_input(dir, &manifest, &cfg)?;
    let batch = manifest.batch.unwrap_or(input.len() / per);
    let input_stats = our_input.map(|ours| diff_stats(ours, &input[..per.min(input.len())], tol));
    let x = Tensor::from_vec(
        input,
        (batch, manifest.net_c, manifest.net_h, manifest.net_w),
        device,
    )?;
    let outs = net.forward_all(&x)?;
    let mut rows = Vec::with_capacity(outs.len());
    for (m, out) in manifest.layers.iter().zip(&outs) {
        rows.push(inference_row(m, out, dir, tol)?);
    }
    let first_failure = rows.iter().position(|r| r.status == Status::Fail);
    let input_ok = input_stats.is_none_or(|s| s.failing == 0);
    Ok(Report {
        reference: dir.to_path_buf(),
        tolerance: tol,
        fused_conv_bn: fused,
        input: input_stats,
        passed: first_failure.is_none() && input_ok,
        first_failure,
        layers: rows,
    })
}

fn row_of(
    index: usize,
    kind: &str,
    shape: [usize; 3],
    ours: &[f32],
    reference: &[f32],
    tol: Tolerance,
) -> LayerRow {
    let s = diff_stats(ours, reference, tol);
    LayerRow {
        index,
        kind: kind.to_string(),
        shape,
        stats: Some(s),
        status: if s.failing == 0 && ours.len() == reference.len() {
            Status::Pass
        } else {
            Status::Fail
        },
    }
}

/// The row of one training-forward layer output (no length check: a length mismatch fails the row).
fn train_output_row(m: &LayerEntry, out: &Tensor, dir: &Path, tol: Tolerance) -> Result<LayerRow> {
    Ok(match &m.file {
        None => LayerRow {
            index: m.index,
            kind: m.kind.clone(),
            shape: [m.c, m.h, m.w],
            stats: None,
            status: Status::NotInReference,
        },
        Some(f) => {
            let reference = read_f32_file(&crate::util::join_within(dir, f)?)?;
            let ours = out.flatten_all()?.to_vec1::<f32>()?;
            row_of(m.index, &m.kind, [m.c, m.h, m.w], &ours, &reference, tol)
        }
    })
}

/// The `yolo_delta` and `cost` rows of every yolo layer (Darknet's deltas and cost from our layer inputs and
/// the reference truth), appended to `rows`; returns the costs of the yolo layers in order.
fn yolo_rows(
    cfg: &NetworkConfig,
    manifest: &Manifest,
    dir: &Path,
    head_inputs: &[(usize, Tensor)],
    truth: &[f32],
    tol: Tolerance,
    rows: &mut Vec<LayerRow>,
) -> Result<Vec<f32>> {
    let mut costs = Vec::new();
    for (i, raw) in head_inputs {
        let crate::cfg::LayerConfig::Yolo(y) = &cfg.layers[*i].config else {
            continue;
        };
        let (_, res) = crate::train::yolo_train_head(raw, y, cfg.net.width, cfg.net.height, truth)?;
        let m = &manifest.layers[*i];
        if let Some(f) = &m.delta_file {
            let reference = read_f32_file(&crate::util::join_within(dir, f)?)?;
            rows.push(row_of(
                *i,
                "yolo_delta",
                [m.c, m.h, m.w],
                &res.delta,
                &reference,
                tol,
            ));
        }
        if let Some(c) = m.cost {
            rows.push(row_of(*i, "cost", [1, 1, 1], &[res.cost], &[c], tol));
        }
        costs.push(res.cost);
    }
    Ok(costs)
}

/// Training-mode comparison (`state.train = 1`, as the `mini-yolov4-train` reference): the training forward
/// ([`crate::network::TrainableNetwork::forward_train`], batch statistics in BN) on the reference input, then,
/// for every yolo layer, Darknet's deltas and cost from [`crate::train::yolo_train_head`] with the reference
/// truth, computed from OUR layer outputs. Rows: every layer output, then one `yolo_delta` and one `cost` row per
/// yolo layer, then `total_cost` (`get_network_cost`, the mean of the yolo costs), all with the same tolerance.
pub fn compare_train(
    cfg: &NetworkConfig,
    weights: &NetWeights,
    dir: &Path,
    manifest: &Manifest,
    device: &Device,
    tol: Tolerance,
) -> Result<Report> {
    let truth_entry = manifest
        .truth
        .as_ref()
        .context("not a training reference")?;
    if truth_entry.truth_size != crate::train::TRUTH_SIZE {
        bail!(
            "{}: truth_size {} (we use {})",
            dir.display(),
            truth_entry.truth_size,
            crate::train::TRUTH_SIZE
        );
    }
    let truth = read_f32_file(&crate::util::join_within(dir, &truth_entry.file)?)?;
    let net = Network::load_trainable(cfg, weights, device)?;
    let (input, per) = read_reference_input(dir, manifest, cfg)?;
    let batch = input.len() / per;
    let x = Tensor::from_vec(
        input,
        (batch, manifest.net_c, manifest.net_h, manifest.net_w),
        device,
    )?;
    let fwd = net.forward_train(&x)?;
    let mut rows = Vec::new();
    for (m, out) in manifest.layers.iter().zip(&fwd.outputs) {
        rows.push(train_output_row(m, out, dir, tol)?);
    }
    let costs = yolo_rows(cfg, manifest, dir, &fwd.head_inputs, &truth, tol, &mut rows)?;
    if let Some(total) = manifest.total_loss_get_network_cost {
        let ours = costs.iter().sum::<f32>() / costs.len().max(1) as f32;
        rows.push(row_of(
            manifest.layers.len(),
            "total_cost",
            [1, 1, 1],
            &[ours],
            &[total],
            tol,
        ));
    }
    let first_failure = rows.iter().position(|r| r.status == Status::Fail);
    Ok(Report {
        reference: dir.to_path_buf(),
        tolerance: tol,
        fused_conv_bn: false,
        input: None,
        passed: first_failure.is_none(),
        first_failure,
        layers: rows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_stats_counts_nan_and_tolerance() {
        let t = Tolerance::default();
        let s = diff_stats(
            &[1.0, 2.0, f32::NAN, 100.0],
            &[1.0, 2.00015, 0.0, 100.005],
            t,
        );
        // 2.0 vs 2.00015: 1.5e-4 > 1e-4 + 2e-4? no (3e-4) -> pass; NaN fails; 100 vs 100.005: 5e-3 <= 1e-4+1e-2 -> pass.
        assert_eq!(s.failing, 1);
        assert!(s.max_abs.is_nan());
    }

    /// The peer term: 2⁻²⁴·range_ulps of the tensor's largest |ref|. A layer of range 64 (unit 64·2⁻²⁴ ≈ 3.8e-6)
    /// with an error of 3e-4 at a value near zero needs (3e-4 − 1e-4) / 3.8e-6 ≈ 52 units: it fails at 0 and 32,
    /// passes at 64.
    #[test]
    fn range_ulps_allow_the_layer_range_times_roundoff() {
        let reference = [64.0f32, 0.0, -8.0];
        let ours = [64.0f32, 3e-4, -8.0];
        let needed = (3e-4f32 - 1e-4) / (64.0 * F32_UNIT_ROUNDOFF);
        for (ulps, failing) in [(0.0, 1), (32.0, 1), (64.0, 0)] {
            let s = diff_stats(&ours, &reference, Tolerance::peer(ulps));
            assert_eq!(s.failing, failing, "range_ulps {ulps}");
            assert_eq!(s.max_ref, 64.0);
            assert!(
                (s.needed_range_ulps - needed).abs() < 1e-3 * needed,
                "{s:?}"
            );
        }
        // NaN still fails whatever the range term.
        let s = diff_stats(&[f32::NAN], &[1.0], Tolerance::peer(1e9));
        assert_eq!(s.failing, 1);
    }
}
