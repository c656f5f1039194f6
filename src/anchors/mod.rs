//! Anchor boxes by k-means on the (w, h) of the training boxes, mirroring `calc_anchors` in `src/detector.c`
//! and `do_kmeans` / `kmeans_expectation` / `kmeans_maximization` / `random_centers` / `dist` in
//! `src/matrix.c` of AlexeyAB/darknet (commit 59596d7).
//!
//! What is the same as Darknet:
//! - a box is its (w, h) in network pixels (relative label size × network width / height);
//! - the distance between a box and a centre is `1 − IoU` of the two (w, h) pairs aligned at a corner,
//!   computed in `f32` exactly as `dist()` does;
//! - Lloyd iterations: assign every box to its closest centre (lowest index wins ties), stop when no
//!   assignment changed, at most 1000 iterations; a centre with no boxes keeps its old value; with k = 1
//!   one maximization runs before the loop;
//! - anchors sorted by area (ascending, `anchors_data_comparator`), printed as `%3.0f,%3.0f` pairs (`%2.4f`
//!   when the network width is ≤ 32), and the average IoU is `100 · Σ best IoU / number of boxes` where a
//!   box whose best IoU is outside [0, 1] adds nothing but still counts in the denominator.
//!
//! Deliberate differences:
//! - k-means++ initialisation (IoU distance, D² sampling) is the default; Darknet's `random_centers`
//!   (a backward Fisher–Yates shuffle of the box indices, first k taken) is [`Init::Darknet`], driven by a
//!   seeded ChaCha RNG instead of `rand()` seeded with `time(0)`, so the exact anchors of a given Darknet
//!   run are not reproduced, only the procedure;
//! - several restarts, keeping the one with the best average IoU;
//! - centre sums and the average IoU accumulate in `f64` (Darknet: `float`), in fixed-size chunks summed
//!   in order, so the result does not depend on the number of threads;
//! - per-anchor counts (how many boxes each anchor is best for) are reported; Darknet prints per-class
//!   counts, which [`labels::BoxSizes::class_counts`] keeps too.

pub mod labels;
pub mod plot;

use anyhow::{bail, Result};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

pub use labels::{load_box_sizes, replace_image_to_label, BoxSizes, BoxSource};

/// Darknet's cap on Lloyd iterations (`for (i = 0; i < 1000 && ...)` in `do_kmeans`).
pub const MAX_ITERATIONS: usize = 1000;

/// Boxes per parallel work item; fixed so that partial sums are added in the same order on any machine.
const CHUNK: usize = 8192;

/// How the k centres are chosen before the Lloyd iterations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Init {
    /// Darknet's `random_centers`: the first k boxes of a random permutation.
    Darknet,
    /// k-means++ with the `1 − IoU` distance: each next centre is a box drawn with probability ∝ D².
    KmeansPlusPlus,
}

impl std::str::FromStr for Init {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "darknet" | "random" => Ok(Init::Darknet),
            "kmeans++" | "kmeans-pp" | "kmeanspp" => Ok(Init::KmeansPlusPlus),
            _ => bail!("unknown init '{s}': expected 'darknet' or 'kmeans++'"),
        }
    }
}

impl std::fmt::Display for Init {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Init::Darknet => "darknet",
            Init::KmeansPlusPlus => "kmeans++",
        })
    }
}

/// Options of [`calc_anchors`].
#[derive(Clone, Debug)]
pub struct KmeansOptions {
    /// Number of clusters (Darknet's `-num_of_clusters`).
    pub k: usize,
    pub init: Init,
    /// Independent runs; the one with the best average IoU is kept.
    pub restarts: usize,
    pub seed: u64,
}

/// One k-means run (Darknet's `model` of `do_kmeans`), centres not yet sorted.
#[derive(Clone, Debug)]
pub struct KmeansRun {
    pub centers: Vec<[f32; 2]>,
    pub assignments: Vec<u32>,
    /// Lloyd iterations done, as Darknet prints `iterations = %d`.
    pub iterations: usize,
}

/// The anchors chosen by [`calc_anchors`].
#[derive(Clone, Debug, PartialEq)]
pub struct AnchorResult {
    /// (w, h) in network pixels, sorted by area ascending.
    pub anchors: Vec<[f32; 2]>,
    /// Average best IoU in percent, as Darknet prints `avg IoU = %2.2f %%`.
    pub avg_iou: f64,
    /// For each anchor, the number of boxes for which it is the closest.
    pub counts: Vec<usize>,
    /// Lloyd iterations of the kept run.
    pub iterations: usize,
    /// Index of the kept restart.
    pub restart: usize,
    /// Average IoU (percent) of every restart, in order.
    pub restart_avg_ious: Vec<f64>,
    /// Wall-clock seconds of every restart (init + Lloyd + average IoU), in order.
    pub restart_seconds: Vec<f64>,
    /// Lloyd iterations of every restart, in order.
    pub restart_iterations: Vec<usize>,
}

/// IoU of two (w, h) pairs aligned at a corner, computed as Darknet's `dist()` does (`1 − dist`).
#[inline]
pub fn iou_wh(a: [f32; 2], b: [f32; 2]) -> f32 {
    let inter = a[0].min(b[0]) * a[1].min(b[1]);
    let union = (a[0] * a[1] + b[0] * b[1]) - inter;
    inter / union
}

/// Darknet's `dist()`: `1 − IoU`, in `f32`; comparisons use this value, not the IoU, so ties break the same.
#[inline]
pub fn dist_wh(a: [f32; 2], b: [f32; 2]) -> f32 {
    1.0 - iou_wh(a, b)
}

/// Darknet's `closest_center`: index of the centre with the smallest distance, the lowest index on ties.
#[inline]
pub fn closest_center(b: [f32; 2], centers: &[[f32; 2]]) -> usize {
    let mut best = 0;
    let mut best_dist = dist_wh(b, centers[0]);
    for (j, c) in centers.iter().enumerate().skip(1) {
        let d = dist_wh(b, *c);
        if d < best_dist {
            best_dist = d;
            best = j;
        }
    }
    best
}

/// Darknet's `random_centers` with `sample()`: backward Fisher–Yates over all indices, first k taken.
pub fn darknet_init(boxes: &[[f32; 2]], k: usize, rng: &mut impl Rng) -> Vec<[f32; 2]> {
    let mut s: Vec<usize> = (0..boxes.len()).collect();
    // sample(): for (i = n - 1; i >= 0; --i) swap(s[i], s[rand() % (i + 1)])
    for i in (0..s.len()).rev() {
        let j = rng.random_range(0..=i);
        s.swap(i, j);
    }
    s[..k].iter().map(|&i| boxes[i]).collect()
}

/// k-means++ seeding with D = 1 − IoU: first centre uniform, then each next one drawn ∝ D² to the closest
/// centre chosen so far. Falls back to a uniform draw if every box already coincides with a centre.
pub fn kmeans_pp_init(boxes: &[[f32; 2]], k: usize, rng: &mut impl Rng) -> Vec<[f32; 2]> {
    let mut centers = Vec::with_capacity(k);
    centers.push(boxes[rng.random_range(0..boxes.len())]);
    let mut d2: Vec<f32> = boxes
        .par_iter()
        .map(|b| {
            let d = dist_wh(*b, centers[0]).max(0.0);
            d * d
        })
        .collect();
    while centers.len() < k {
        let total: f64 = chunked_sum(&d2);
        let pick = if total > 0.0 {
            let target = rng.random::<f64>() * total;
            let mut acc = 0.0f64;
            let mut pick = boxes.len() - 1;
            for (i, &w) in d2.iter().enumerate() {
                acc += w as f64;
                if acc > target && w > 0.0 {
                    pick = i;
                    break;
                }
            }
            pick
        } else {
            rng.random_range(0..boxes.len())
        };
        let c = boxes[pick];
        centers.push(c);
        d2.par_iter_mut().zip(boxes.par_iter()).for_each(|(w, b)| {
            let d = dist_wh(*b, c).max(0.0);
            *w = w.min(d * d);
        });
    }
    centers
}

/// Sum of `f32` values in `f64`, chunk by chunk in order, independent of the thread count.
fn chunked_sum(v: &[f32]) -> f64 {
    let parts: Vec<f64> = v
        .par_chunks(CHUNK)
        .map(|c| c.iter().map(|&x| x as f64).sum())
        .collect();
    parts.iter().sum()
}

/// Per-cluster sums of w and h and counts over one chunk of boxes.
struct Partial {
    sums: Vec<[f64; 2]>,
    counts: Vec<usize>,
    changed: bool,
}

/// Darknet's `kmeans_expectation` fused with the accumulation half of `kmeans_maximization`: reassigns
/// every box and returns (converged, per-cluster sums, counts). Parallel over fixed chunks.
fn expectation(
    boxes: &[[f32; 2]],
    assignments: &mut [u32],
    centers: &[[f32; 2]],
) -> (bool, Vec<[f64; 2]>, Vec<usize>) {
    let k = centers.len();
    let partials: Vec<Partial> = boxes
        .par_chunks(CHUNK)
        .zip(assignments.par_chunks_mut(CHUNK))
        .map(|(bs, asg)| {
            let mut p = Partial {
                sums: vec![[0.0; 2]; k],
                counts: vec![0; k],
                changed: false,
            };
            for (b, a) in bs.iter().zip(asg.iter_mut()) {
                let c = closest_center(*b, centers);
                if c as u32 != *a {
                    p.changed = true;
                }
                *a = c as u32;
                p.sums[c][0] += b[0] as f64;
                p.sums[c][1] += b[1] as f64;
                p.counts[c] += 1;
            }
            p
        })
        .collect();
    let mut sums = vec![[0.0f64; 2]; k];
    let mut counts = vec![0usize; k];
    let mut changed = false;
    for p in &partials {
        changed |= p.changed;
        for j in 0..k {
            sums[j][0] += p.sums[j][0];
            sums[j][1] += p.sums[j][1];
            counts[j] += p.counts[j];
        }
    }
    (!changed, sums, counts)
}

/// Darknet's `kmeans_maximization` given the sums: a centre becomes the mean of its boxes; a coordinate
/// that would be 0 (no boxes) keeps its old value.
fn maximization(centers: &mut [[f32; 2]], sums: &[[f64; 2]], counts: &[usize]) {
    for ((c, s), &n) in centers.iter_mut().zip(sums).zip(counts) {
        for j in 0..2 {
            let v = if n > 0 { (s[j] / n as f64) as f32 } else { 0.0 };
            if v != 0.0 {
                c[j] = v;
            }
        }
    }
}

/// Darknet's `do_kmeans` from given initial centres: Lloyd iterations until no assignment changes, at most
/// [`MAX_ITERATIONS`]. Assignments start at 0, as Darknet's `xcalloc`.
pub fn lloyd(boxes: &[[f32; 2]], mut centers: Vec<[f32; 2]>) -> KmeansRun {
    let mut assignments = vec![0u32; boxes.len()];
    if centers.len() == 1 {
        // `if (k == 1) kmeans_maximization(...)`: with all assignments 0 the loop below would stop at once.
        let (_, sums, counts) = expectation(boxes, &mut assignments, &centers);
        maximization(&mut centers, &sums, &counts);
    }
    let mut i = 0;
    while i < MAX_ITERATIONS {
        let (converged, sums, counts) = expectation(boxes, &mut assignments, &centers);
        if converged {
            break;
        }
        maximization(&mut centers, &sums, &counts);
        i += 1;
    }
    KmeansRun {
        centers,
        assignments,
        iterations: i,
    }
}

/// One full k-means run: initialisation then [`lloyd`].
pub fn kmeans(boxes: &[[f32; 2]], k: usize, init: Init, rng: &mut impl Rng) -> KmeansRun {
    let centers = match init {
        Init::Darknet => darknet_init(boxes, k, rng),
        Init::KmeansPlusPlus => kmeans_pp_init(boxes, k, rng),
    };
    lloyd(boxes, centers)
}

/// Sorts anchors by area ascending, as `qsort(..., anchors_data_comparator)` in `calc_anchors`.
pub fn sort_by_area(anchors: &mut [[f32; 2]]) {
    anchors.sort_by(|a, b| {
        (a[0] * a[1])
            .partial_cmp(&(b[0] * b[1]))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
}

/// The average-IoU loop of `calc_anchors`: for each box the anchor with the smallest `1 − IoU` (first one
/// on ties); its IoU is added when it lies in [0, 1]; result `100 · sum / number of boxes`. Also returns
/// how many boxes pick each anchor.
pub fn average_iou(boxes: &[[f32; 2]], anchors: &[[f32; 2]]) -> (f64, Vec<usize>) {
    let k = anchors.len();
    let parts: Vec<(f64, Vec<usize>)> = boxes
        .par_chunks(CHUNK)
        .map(|bs| {
            let mut sum = 0.0f64;
            let mut counts = vec![0usize; k];
            for b in bs {
                let mut min_dist = f32::MAX;
                let mut best = 0;
                let mut best_iou = 0.0f32;
                for (j, a) in anchors.iter().enumerate() {
                    let iou = iou_wh(*b, *a);
                    let d = 1.0 - iou;
                    if d < min_dist {
                        min_dist = d;
                        best = j;
                        best_iou = iou;
                    }
                }
                counts[best] += 1;
                if (0.0..=1.0).contains(&best_iou) {
                    sum += best_iou as f64;
                }
            }
            (sum, counts)
        })
        .collect();
    let mut sum = 0.0;
    let mut counts = vec![0usize; k];
    for (s, c) in parts {
        sum += s;
        for j in 0..k {
            counts[j] += c[j];
        }
    }
    (100.0 * sum / boxes.len() as f64, counts)
}

/// `calc_anchors` after loading: `restarts` k-means runs from one seeded RNG, the best average IoU kept
/// (the earliest on ties), anchors sorted by area.
pub fn calc_anchors(boxes: &[[f32; 2]], opts: &KmeansOptions) -> Result<AnchorResult> {
    if opts.k == 0 {
        bail!("the number of clusters must be at least 1");
    }
    if boxes.is_empty() {
        bail!("no boxes: the dataset has no labels");
    }
    if opts.k > crate::limits::MAX_CLUSTERS {
        bail!(
            "-n {} clusters is beyond the limit {} (docs/limits.md)",
            opts.k,
            crate::limits::MAX_CLUSTERS
        );
    }
    if boxes.len() < opts.k {
        bail!(
            "only {} boxes for {} clusters (-n): need at least as many boxes as clusters",
            boxes.len(),
            opts.k
        );
    }
    // Each restart costs up to MAX_ITERATIONS passes of boxes × clusters IoUs: bounded before the loop.
    let work = (opts.restarts.max(1) as u128) * (boxes.len() as u128) * (opts.k as u128);
    if opts.restarts > crate::limits::MAX_RESTARTS || work > crate::limits::MAX_KMEANS_WORK as u128
    {
        bail!(
            "--restarts {} x {} boxes x {} clusters = {work} IoUs per iteration is beyond the limit {} \
             (--restarts at most {}; docs/limits.md)",
            opts.restarts,
            boxes.len(),
            opts.k,
            crate::limits::MAX_KMEANS_WORK,
            crate::limits::MAX_RESTARTS
        );
    }
    if let Some((i, b)) = boxes
        .iter()
        .enumerate()
        // NaN sizes fail `> 0.0` as well as `is_finite`.
        .find(|(_, b)| !(b[0].is_finite() && b[1].is_finite() && b[0] > 0.0 && b[1] > 0.0))
    {
        bail!(
            "box {i} has a non-positive or non-finite size {} x {}",
            b[0],
            b[1]
        );
    }
    let restarts = opts.restarts.max(1);
    let mut rng = ChaCha8Rng::seed_from_u64(opts.seed);
    // (anchors, average IoU, counts per anchor, restart, iterations) of the best restart so far.
    type Best = (Vec<[f32; 2]>, f64, Vec<usize>, usize, usize);
    let mut best: Option<Best> = None;
    let (mut ious, mut secs, mut iters) = (Vec::new(), Vec::new(), Vec::new());
    for r in 0..restarts {
        let t = std::time::Instant::now();
        let run = kmeans(boxes, opts.k, opts.init, &mut rng);
        let mut anchors = run.centers;
        sort_by_area(&mut anchors);
        let (avg, counts) = average_iou(boxes, &anchors);
        secs.push(t.elapsed().as_secs_f64());
        ious.push(avg);
        iters.push(run.iterations);
        if best.as_ref().is_none_or(|b| avg > b.1) {
            best = Some((anchors, avg, counts, run.iterations, r));
        }
    }
    let (anchors, avg_iou, counts, iterations, restart) = best.expect("restarts >= 1");
    Ok(AnchorResult {
        anchors,
        avg_iou,
        counts,
        iterations,
        restart,
        restart_avg_ious: ious,
        restart_seconds: secs,
        restart_iterations: iters,
    })
}

/// The anchors line as `calc_anchors` prints it: `%3.0f,%3.0f` pairs joined by `", "` when the network width
/// is above 32, else `%2.4f,%2.4f`.
pub fn format_anchors(anchors: &[[f32; 2]], width: u32) -> String {
    let pairs: Vec<String> = anchors
        .iter()
        .map(|a| {
            if width > 32 {
                format!("{:3.0},{:3.0}", a[0], a[1])
            } else {
                format!("{:2.4},{:2.4}", a[0], a[1])
            }
        })
        .collect();
    format!("anchors = {}", pairs.join(", "))
}

/// Synthetic (w, h) boxes in network pixels for tests and benchmarks: a mixture of `centres` with
/// uniform multiplicative jitter in [1 − spread, 1 + spread], clamped to (1, width] × (1, height].
pub fn synthetic_boxes(
    n: usize,
    centres: &[[f32; 2]],
    spread: f32,
    size: [f32; 2],
    seed: u64,
) -> Vec<[f32; 2]> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let c = centres[rng.random_range(0..centres.len())];
            let jw = 1.0 + spread * (rng.random::<f32>() * 2.0 - 1.0);
            let jh = 1.0 + spread * (rng.random::<f32>() * 2.0 - 1.0);
            [
                (c[0] * jw).clamp(1.0, size[0]),
                (c[1] * jh).clamp(1.0, size[1]),
            ]
        })
        .collect()
}

#[cfg(test)]
mod tests;
