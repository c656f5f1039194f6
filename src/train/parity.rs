//! Training-loop parity with Darknet: runs [`Trainer`] for the iterations of a reference written by
//! `tools/train_loop_ref` (Darknet's own `train_detector` loop body: multi-scale draw, `load_data_detection`,
//! `train_network`, one loader thread, fixed `srand`) from the same initial weights, with Darknet's random
//! stream (`--darknet-rng`) and Darknet's CPU bias rule ([`TrainOptions::freeze_bn_biases`]), and compares
//! every iteration: the network size, the batch (hashes of X and y), `seen`, the rate, the loss, every yolo
//! layer's cost, and every tensor after the update.
//!
//! Weight difference of a tensor: `max|ours − Darknet| / max|Darknet|` (relative to the tensor's scale, as
//! the layer references are judged; 0 when both are all zero); an iteration's figure is its worst tensor.
//! The noise floor (`noise_floor.json`, written by `tools/train_loop_ref/noise_floor.py`) is the same metric
//! between Darknet's reference build (AVX, `-Ofast`, 2 OpenMP threads) and the same source built without AVX
//! at `-O2` (1 thread). An iteration passes when the batch, size, `seen` and rate agree exactly (rate to
//! 1e-6), and the loss, the costs and the weights are within the tolerance or within
//! [`ParityTolerance::noise_factor`] times the noise floor of that iteration, whichever is larger.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};
use serde::Deserialize;

use super::trainer::{TrainEvent, TrainOptions, Trainer};

/// One line of the reference's `iterations.jsonl` (the harness's record of an iteration).
#[derive(Debug, Clone, Deserialize)]
pub struct DarknetIteration {
    pub iteration: usize,
    pub seen: u64,
    pub w: usize,
    pub h: usize,
    pub rate: f32,
    pub loss: f32,
    pub costs: Vec<DarknetCost>,
    pub x_fnv: String,
    pub y_fnv: String,
}

/// A yolo layer's `l.cost[0]` after `train_network` (its last mini-batch).
#[derive(Debug, Clone, Deserialize)]
pub struct DarknetCost {
    pub layer: usize,
    pub cost: f32,
}

/// One iteration of `noise_floor.json`.
#[derive(Debug, Clone, Deserialize)]
pub struct NoiseFloor {
    pub iteration: usize,
    pub loss_rel: f64,
    /// The worst yolo layer's cost difference (older files: absent, the loss's is used).
    #[serde(default)]
    pub cost_rel: Option<f64>,
    pub weights_rel: f64,
}

#[derive(Deserialize)]
struct NoiseFile {
    iterations: Vec<NoiseFloor>,
}

#[derive(Deserialize)]
struct CaseFile {
    cfg: String,
    seed: u64,
    iterations: usize,
}

/// A reference directory of `tools/train_loop_ref/make_ref.sh`.
#[derive(Debug, Clone)]
pub struct ParityCase {
    pub dir: PathBuf,
    pub cfg: PathBuf,
    pub seed: u64,
    pub iterations: Vec<DarknetIteration>,
    pub noise: Vec<NoiseFloor>,
}

impl ParityCase {
    /// Reads `case.json`, `reference/iterations.jsonl` and (if present) `noise_floor.json`.
    pub fn read(dir: &Path) -> Result<Self> {
        let p = dir.join("case.json");
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let case: CaseFile =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
        let p = dir.join("reference/iterations.jsonl");
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        let iterations = text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
            .map(|(n, l)| {
                serde_json::from_str(l).with_context(|| format!("{}:{}", p.display(), n + 1))
            })
            .collect::<Result<Vec<DarknetIteration>>>()?;
        if iterations.len() < case.iterations {
            bail!(
                "{}: {} iterations, case.json says {}",
                p.display(),
                iterations.len(),
                case.iterations
            );
        }
        let p = dir.join("noise_floor.json");
        let noise = if p.exists() {
            let text = std::fs::read_to_string(&p)?;
            let n: NoiseFile =
                serde_json::from_str(&text).with_context(|| format!("parsing {}", p.display()))?;
            n.iterations
        } else {
            vec![]
        };
        Ok(ParityCase {
            dir: dir.to_path_buf(),
            cfg: dir.join(case.cfg),
            seed: case.seed,
            iterations,
            noise,
        })
    }

    /// Darknet's tensors after update `k` (1-based).
    pub fn tensors(&self, k: usize) -> Result<HashMap<String, Tensor>> {
        let p = self.dir.join(format!("reference/iter_{k:03}.safetensors"));
        candle_core::safetensors::load(&p, &Device::Cpu)
            .with_context(|| format!("reading {}", p.display()))
    }
}

impl ParityCase {
    /// Darknet's accumulators after update `k` (`DUMP_UPDATES=1`), when the reference has them.
    pub fn updates(&self, k: usize) -> Result<Option<HashMap<String, Tensor>>> {
        let p = self
            .dir
            .join(format!("reference/iter_{k:03}_updates.safetensors"));
        if !p.exists() {
            return Ok(None);
        }
        candle_core::safetensors::load(&p, &Device::Cpu)
            .map(Some)
            .with_context(|| format!("reading {}", p.display()))
    }
}

/// Tolerances of [`compare_training`]: an iteration's loss, costs and weights must be within
/// `max(tolerance, noise_factor × Darknet's noise floor of that iteration)`.
///
/// The floor is Darknet's reference build (AVX, `-Ofast`) against the same source built without AVX at `-O2`
/// (make_ref.sh): the same code with another float evaluation order, as ours is. Why a factor: which of
/// the ill-conditioned gradients (a BN layer's weight gradient is the small rest after BN removes the mean
/// and the correlation with its output) an evaluation order moves most is a matter of chance, so ours may
/// sit a few times above the floor in one iteration and below it in the next; the default factor 10 accepts
/// that, not a faster growth.
#[derive(Debug, Clone, Copy)]
pub struct ParityTolerance {
    pub loss_rel: f64,
    pub weights_rel: f64,
    pub noise_factor: f64,
}

impl Default for ParityTolerance {
    fn default() -> Self {
        ParityTolerance {
            loss_rel: 1e-4,
            weights_rel: 1e-4,
            noise_factor: 10.0,
        }
    }
}

/// One iteration, ours against Darknet's.
#[derive(Debug, Clone)]
pub struct ParityRow {
    pub iteration: usize,
    pub size: (usize, usize),
    pub darknet_size: (usize, usize),
    /// X and y of the batch bit-identical (FNV-1a of the float bytes).
    pub same_batch: bool,
    pub seen: (u64, u64),
    pub rate: (f32, f32),
    pub loss: (f32, f32),
    pub loss_rel: f64,
    /// The worst relative difference of the yolo costs and its layer.
    pub cost_rel: f64,
    pub cost_layer: usize,
    pub weights_rel: f64,
    pub worst_tensor: String,
    /// The update of this iteration (tensor after − Darknet's tensor before), ours against Darknet's:
    /// `max|Δours − Δdk| / max|Δdk|`, worst tensor (a diagnostic: exact only while both start equal).
    pub update_rel: f64,
    pub worst_update: String,
    /// Every tensor of this iteration in network order.
    pub tensors: Vec<TensorDiff>,
    /// Darknet's reference build against its `-O2` build (noise_floor.json), when the reference has it.
    pub noise: Option<NoiseFloor>,
    /// What failed in this iteration (beyond the noise-widened tolerance; empty: passed).
    pub failures: Vec<String>,
    /// What exceeded the plain tolerance (1e-4), noise floor or not.
    pub over_tolerance: Vec<String>,
}

/// One tensor after one update, ours against Darknet's.
#[derive(Debug, Clone)]
pub struct TensorDiff {
    pub name: String,
    /// `max|ours − dk| / max|dk|`.
    pub weights_rel: f64,
    /// The same on this iteration's change (from Darknet's tensor before); `None` when Darknet's did not move.
    pub update_rel: Option<f64>,
    /// `max|ours − dk| / ulp(dk)` per element: 1 or less means the two differ only by the final rounding
    /// of `w + Δw`, whatever `update_rel` says (a change of a few ulps has no finer resolution).
    pub ulps: f64,
    /// With the reference's accumulators (`DUMP_UPDATES=1`): `tensor_rel` of ours against Darknet's
    /// (`weight_updates` etc. after the update: the momentum-scaled sum of gradients, at full precision).
    pub accum_rel: Option<f64>,
}

/// The comparison of a whole run.
#[derive(Debug, Clone)]
pub struct ParityReport {
    pub rows: Vec<ParityRow>,
    /// The first iteration with a failure and what failed first.
    pub first_divergence: Option<(usize, String)>,
    /// The first iteration where something exceeded the plain tolerance, and what (network order).
    pub first_over_tolerance: Option<(usize, String)>,
}

impl ParityReport {
    pub fn passed(&self) -> bool {
        self.first_divergence.is_none()
    }

    /// A markdown table, one row per iteration.
    pub fn table(&self) -> String {
        let mut s = String::from(
            "| it | size | batch | seen | rate | loss ours | loss Darknet | loss rel | worst cost rel | weights rel (worst tensor) | update rel (worst tensor) | noise floor loss / weights |\n\
             |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        );
        for r in &self.rows {
            let noise = r.noise.as_ref().map_or("–".to_string(), |n| {
                format!("{:.1e} / {:.1e}", n.loss_rel, n.weights_rel)
            });
            let _ = writeln!(
                s,
                "| {} | {}x{} | {} | {} | {:.6} | {:.6} | {:.6} | {:.1e} | {:.1e} (l{}) | {:.1e} ({}) | {:.1e} ({}) | {} |",
                r.iteration,
                r.size.0,
                r.size.1,
                if r.same_batch { "identical" } else { "DIFFERS" },
                r.seen.0,
                r.rate.0,
                r.loss.0,
                r.loss.1,
                r.loss_rel,
                r.cost_rel,
                r.cost_layer,
                r.weights_rel,
                r.worst_tensor,
                r.update_rel,
                r.worst_update,
                noise
            );
        }
        if let Some((k, what)) = &self.first_over_tolerance {
            let _ = writeln!(s, "\nfirst value over 1e-4: iteration {k}: {what}");
        }
        match &self.first_divergence {
            None => {
                s.push_str("all iterations within max(tolerance, noise factor × noise floor)\n")
            }
            Some((k, what)) => {
                let _ = writeln!(
                    s,
                    "first divergence beyond the noise floor: iteration {k}: {what}"
                );
            }
        }
        s
    }
}

/// FNV-1a (64 bit) of the little-endian bytes of `v`, as the harness hashes Darknet's `X` and `y`.
pub fn fnv1a(v: &[f32]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64;
    for x in v {
        for b in x.to_le_bytes() {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// `max|a − b| / max|b|` over two tensors of the same number of elements (0 when both are all zero).
pub fn tensor_rel(a: &Tensor, b: &Tensor) -> Result<f64> {
    let a = a.flatten_all()?.to_vec1::<f32>()?;
    let b = b.flatten_all()?.to_vec1::<f32>()?;
    if a.len() != b.len() {
        bail!("{} elements against {}", a.len(), b.len());
    }
    let scale = b.iter().fold(0f64, |m, v| m.max((*v as f64).abs()));
    let diff = a
        .iter()
        .zip(&b)
        .fold(0f64, |m, (x, y)| m.max((*x as f64 - *y as f64).abs()));
    Ok(if scale == 0.0 {
        if diff == 0.0 {
            0.0
        } else {
            f64::INFINITY
        }
    } else {
        diff / scale
    })
}

/// `max |a − b| / ulp(b)` per element, the unit in the last place of each of `b`'s f32 values.
pub fn tensor_ulps(a: &Tensor, b: &Tensor) -> Result<f64> {
    let a = a.flatten_all()?.to_vec1::<f32>()?;
    let b = b.flatten_all()?.to_vec1::<f32>()?;
    if a.len() != b.len() {
        bail!("{} elements against {}", a.len(), b.len());
    }
    let ulp = |v: f32| {
        let v = v.abs();
        let next = f32::from_bits(v.to_bits() + 1);
        (next - v).max(f32::from_bits(1)) as f64
    };
    Ok(a.iter().zip(&b).fold(0f64, |m, (x, y)| {
        m.max((*x as f64 - *y as f64).abs() / ulp(*y))
    }))
}

/// With the batch dumped (`DUMP_X=1`): `": first at element i, ours v vs Darknet w"`.
fn first_difference(case: &ParityCase, k: usize, which: &str, ours: &[f32]) -> String {
    let p = case.dir.join(format!("reference/iter_{k:03}_{which}.bin"));
    let Ok(theirs) = crate::compare::read_f32_file(&p) else {
        return String::new();
    };
    if theirs.len() != ours.len() {
        return format!(": {} values vs Darknet {}", ours.len(), theirs.len());
    }
    match ours
        .iter()
        .zip(&theirs)
        .position(|(a, b)| a.to_bits() != b.to_bits())
    {
        Some(i) => format!(
            ": first at element {i}, ours {} vs Darknet {}",
            ours[i], theirs[i]
        ),
        None => String::new(),
    }
}

fn rel(a: f32, b: f32) -> f64 {
    (a as f64 - b as f64).abs() / (b as f64).abs().max(1e-30)
}

/// What [`compare_training`] needs besides the case: the `.data` file whose `train=` list is the case's
/// `train.txt` (same images, same order), a scratch directory and the device.
#[derive(Debug, Clone)]
pub struct ParityRun {
    pub data: PathBuf,
    /// Also write our tensors and accumulators after each update here (`ours_NNN.safetensors`).
    pub dump_dir: Option<PathBuf>,
    pub out_dir: PathBuf,
    pub device: Device,
    pub tolerance: ParityTolerance,
    /// How batch norm sums its statistics ([`TrainOptions::bn_sums`]): Darknet's order for parity; candle's
    /// measures what that order alone costs.
    pub bn_sums: crate::layers::batchnorm::BnSums,
}

/// Runs our training loop for the case's iterations and compares each with Darknet's (see the module doc).
/// `progress` gets each finished row.
pub fn compare_training(
    case: &ParityCase,
    run: &ParityRun,
    progress: &mut dyn FnMut(&ParityRow),
) -> Result<ParityReport> {
    let mut opts = TrainOptions::new(case.cfg.clone(), run.data.clone(), run.out_dir.clone());
    opts.weights = Some(case.dir.join("reference/initial.weights"));
    opts.seed = case.seed;
    opts.darknet_rng = true;
    opts.freeze_bn_biases = true;
    opts.bn_sums = run.bn_sums;
    opts.device = run.device.clone();
    opts.workers = 1;
    let mut trainer = Trainer::new(opts, Box::new(|_: TrainEvent| {}))?;
    let cfg = crate::cfg::NetworkConfig::from_file(&case.cfg)?;
    let initial = crate::weights::load_any(&cfg, &case.dir.join("reference/initial.weights"))?;
    let mut before = initial.to_tensors(&cfg, &Device::Cpu)?;
    let mut rows = Vec::new();
    let mut first_divergence = None;
    let mut first_over_tolerance = None;
    for dk in &case.iterations {
        let stats = trainer
            .step()
            .with_context(|| format!("our iteration {}", dk.iteration))?;
        let (row, after) = compare_iteration(case, &trainer, dk, &stats, &run.tolerance, &before)?;
        before = after;
        if first_over_tolerance.is_none() {
            if let Some(f) = row.over_tolerance.first() {
                first_over_tolerance = Some((row.iteration, f.clone()));
            }
        }
        if first_divergence.is_none() {
            if let Some(f) = row.failures.first() {
                first_divergence = Some((row.iteration, f.clone()));
            }
        }
        if let Some(d) = &run.dump_dir {
            let mut all: HashMap<String, Tensor> = trainer.tensors().into_iter().collect();
            all.extend(trainer.optimizer_state());
            let p = d.join(format!("ours_{:03}.safetensors", dk.iteration));
            candle_core::safetensors::save(&all, &p)
                .with_context(|| format!("writing {}", p.display()))?;
        }
        progress(&row);
        rows.push(row);
    }
    Ok(ParityReport {
        rows,
        first_divergence,
        first_over_tolerance,
    })
}

fn compare_iteration(
    case: &ParityCase,
    trainer: &Trainer<'_>,
    dk: &DarknetIteration,
    stats: &super::trainer::IterationStats,
    tol: &ParityTolerance,
    before: &HashMap<String, Tensor>,
) -> Result<(ParityRow, HashMap<String, Tensor>)> {
    let k = dk.iteration;
    let mut failures = Vec::new();
    let mut over = Vec::new();
    let size = trainer.network_size();
    if size != (dk.w, dk.h) {
        failures.push(format!(
            "network size {}x{} vs Darknet {}x{}",
            size.0, size.1, dk.w, dk.h
        ));
    }
    let batch = trainer.last_batch().context("no batch after a step")?;
    let same_x = format!("{:016x}", fnv1a(&batch.x)) == dk.x_fnv;
    let same_y = format!("{:016x}", fnv1a(&batch.y)) == dk.y_fnv;
    if !same_x {
        let at = first_difference(case, k, "x", &batch.x);
        failures.push(format!(
            "batch X (load_data_detection image tensor) differs{at}"
        ));
    }
    if !same_y {
        let at = first_difference(case, k, "y", &batch.y);
        failures.push(format!("batch y (load_data_detection truth) differs{at}"));
    }
    if stats.seen != dk.seen {
        failures.push(format!("seen {} vs Darknet {}", stats.seen, dk.seen));
    }
    if rel(stats.rate, dk.rate) > 1e-6 {
        failures.push(format!("rate {} vs Darknet {}", stats.rate, dk.rate));
    }
    let noise = case.noise.iter().find(|n| n.iteration == k).cloned();
    let f = tol.noise_factor;
    let (nl, nc, nw) = noise.as_ref().map_or((0.0, 0.0, 0.0), |n| {
        let c = n.cost_rel.unwrap_or(n.loss_rel);
        (n.loss_rel * f, c * f, n.weights_rel * f)
    });
    // Exact checks above fail either way; a value over the plain tolerance is recorded, over the
    // noise-widened one it fails.
    over.extend(failures.iter().cloned());
    let mut check = |r: f64, plain: f64, widened: f64, what: String| {
        if r > plain {
            over.push(what.clone());
        }
        if r > plain.max(widened) {
            failures.push(what);
        }
    };
    let loss_rel = rel(stats.loss, dk.loss);
    check(
        loss_rel,
        tol.loss_rel,
        nl,
        format!(
            "loss {} vs Darknet {} (rel {loss_rel:.2e})",
            stats.loss, dk.loss
        ),
    );
    let (mut cost_rel, mut cost_layer) = (0f64, 0usize);
    let ours: HashMap<usize, f32> = trainer.last_costs().iter().copied().collect();
    for c in &dk.costs {
        let Some(o) = ours.get(&c.layer) else {
            check(
                f64::INFINITY,
                0.0,
                0.0,
                format!("no yolo cost of layer {} on our side", c.layer),
            );
            continue;
        };
        let r = rel(*o, c.cost);
        if r >= cost_rel {
            (cost_rel, cost_layer) = (r, c.layer);
        }
        let what = format!(
            "yolo layer {} cost {o} vs Darknet {} (rel {r:.2e})",
            c.layer, c.cost
        );
        check(r, tol.loss_rel, nc, what);
    }
    let theirs = case.tensors(k)?;
    let ours: HashMap<String, Tensor> = trainer.tensors().into_iter().collect();
    let mut names: Vec<&String> = theirs.keys().collect();
    // Network order (layer index, then name), so the first failing tensor is the earliest layer's.
    names.sort_by_key(|n| {
        let i = n.split('.').nth(1).and_then(|i| i.parse::<usize>().ok());
        (i, n.to_string())
    });
    let (mut weights_rel, mut worst_tensor) = (0f64, String::new());
    let (mut update_rel, mut worst_update) = (0f64, String::new());
    let mut diffs = Vec::new();
    let their_accum = case.updates(k)?;
    let our_accum: HashMap<String, Tensor> = trainer.optimizer_state().into_iter().collect();
    for name in names {
        let Some(o) = ours.get(name) else {
            check(
                f64::INFINITY,
                0.0,
                0.0,
                format!("tensor {name} missing on our side"),
            );
            continue;
        };
        let mut upd = None;
        if let Some(b) = before.get(name) {
            let d_dk = (&theirs[name] - b)?;
            if d_dk.abs()?.max_all()?.to_scalar::<f32>()? > 0.0 {
                let r = tensor_rel(&(o - b)?, &d_dk)?;
                upd = Some(r);
                if r > update_rel || worst_update.is_empty() {
                    (update_rel, worst_update) = (r, name.clone());
                }
            }
        }
        let r = tensor_rel(o, &theirs[name]).with_context(|| format!("iteration {k}: {name}"))?;
        diffs.push(TensorDiff {
            name: name.clone(),
            weights_rel: r,
            update_rel: upd,
            ulps: tensor_ulps(o, &theirs[name])?,
            accum_rel: match their_accum
                .as_ref()
                .and_then(|a| a.get(&format!("{name}.update")))
            {
                Some(a) => our_accum
                    .get(&format!("{name}.update"))
                    .map(|u| tensor_rel(u, a))
                    .transpose()?,
                None => None,
            },
        });
        if r > weights_rel || worst_tensor.is_empty() {
            (weights_rel, worst_tensor) = (r, name.clone());
        }
        check(
            r,
            tol.weights_rel,
            nw,
            format!("tensor {name}: rel {r:.2e}"),
        );
    }
    let row = ParityRow {
        iteration: k,
        size,
        darknet_size: (dk.w, dk.h),
        same_batch: same_x && same_y,
        seen: (stats.seen, dk.seen),
        rate: (stats.rate, dk.rate),
        loss: (stats.loss, dk.loss),
        loss_rel,
        cost_rel,
        cost_layer,
        weights_rel,
        worst_tensor,
        update_rel,
        worst_update,
        tensors: diffs,
        noise,
        failures,
        over_tolerance: over,
    };
    Ok((row, theirs))
}
