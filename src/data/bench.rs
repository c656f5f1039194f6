//! Loader throughput: images/s of [`load_data_detection`](super::detection::load_data_detection) on 1..N
//! threads, decode included, after a warm-up, with the time per stage (`augment --bench`; `make
//! bench-loader` runs it beside Darknet's own loader, tools/loader_bench/).
//!
//! Each thread runs the loop of a [`BatchLoader`](super::loader::BatchLoader) worker: its own [`Sources`]
//! (its own decoded-image cache when `cache_images`) and its own glibc `rand()` stream (`srand(seed +
//! thread)`). With one thread the batches are exactly those of Darknet's `load_data_detection` called in a
//! loop after `srand(seed)`, so the two loaders do the same work draw for draw.

use super::detection::{load_data_detection_timed, AugmentConfig, Sources, StageTimes};
use super::rand::GlibcRand;
use crate::dataset::Resolver;
use anyhow::{bail, Result};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// What to measure.
#[derive(Clone, Debug)]
pub struct LoaderBenchConfig {
    /// Augmentation settings; `w`, `h` and `mosaic` are set per row.
    pub base: AugmentConfig,
    /// Network sizes (square).
    pub sizes: Vec<usize>,
    /// `mosaic=0` and/or `mosaic=1` (with mosaic=1 the per-batch coin enables it for about half the batches,
    /// as in Darknet).
    pub mosaic: Vec<bool>,
    /// Thread counts.
    pub threads: Vec<usize>,
    /// Samples per `load_data_detection` call.
    pub batch: usize,
    /// Untimed time per row before the measurement (decoder, caches and allocator warm).
    pub warmup: Duration,
    /// Timed time per row (each thread finishes the batch it is in).
    pub duration: Duration,
    pub seed: u32,
    /// Keep decoded images (each thread its own cache).
    pub cache_images: bool,
    /// Measure the step-by-step pixel path instead of the fused one ([`Sources::stepwise`]).
    pub stepwise: bool,
}

/// One measured configuration.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoaderBenchRow {
    pub size: usize,
    pub mosaic: bool,
    pub threads: usize,
    pub cache_images: bool,
    pub stepwise: bool,
    /// `load_data_detection` calls in the timed window, of which the mosaic coin enabled mosaic in
    /// `mosaic_batches`.
    pub batches: usize,
    pub mosaic_batches: usize,
    pub images: usize,
    pub seconds: f64,
    pub images_per_s: f64,
    /// Stage times summed over the threads (thread-seconds).
    pub stages: StageTimes,
}

impl LoaderBenchRow {
    /// The share of the loader's time in each stage: (name, fraction of `stages.total`).
    pub fn stage_shares(&self) -> Vec<(&'static str, f64)> {
        let s = &self.stages;
        let total = s.total.max(f64::MIN_POSITIVE);
        [
            ("decode", s.decode),
            ("crop_resize", s.crop_resize),
            ("hsv", s.hsv),
            ("mosaic", s.mosaic),
            ("to_float", s.to_float),
            ("truth", s.truth),
            ("other", s.other()),
        ]
        .into_iter()
        .map(|(n, v)| (n, v / total))
        .collect()
    }
}

/// The whole measurement.
#[derive(Clone, Debug, serde::Serialize)]
pub struct LoaderBenchReport {
    pub images_in_list: usize,
    pub batch: usize,
    pub seed: u32,
    pub rows: Vec<LoaderBenchRow>,
}

/// Runs every (size, mosaic, threads) combination of `cfg` on the image list `paths`.
pub fn bench_loader(
    paths: &[String],
    resolver: &Resolver,
    cfg: &LoaderBenchConfig,
) -> Result<LoaderBenchReport> {
    if paths.is_empty() {
        bail!("loader benchmark: empty image list");
    }
    if cfg.batch == 0 || cfg.threads.contains(&0) {
        bail!("loader benchmark: batch and thread counts must be positive");
    }
    let mut rows = Vec::new();
    for &size in &cfg.sizes {
        for &mosaic in &cfg.mosaic {
            let aug = AugmentConfig {
                w: size,
                h: size,
                mosaic,
                ..cfg.base.clone()
            };
            aug.validate()?;
            for &threads in &cfg.threads {
                rows.push(bench_row(paths, resolver, cfg, &aug, threads)?);
            }
        }
    }
    Ok(LoaderBenchReport {
        images_in_list: paths.len(),
        batch: cfg.batch,
        seed: cfg.seed,
        rows,
    })
}

/// What one thread did in the timed window.
#[derive(Default)]
struct ThreadTally {
    batches: usize,
    mosaic_batches: usize,
    images: usize,
    stages: StageTimes,
}

fn bench_row(
    paths: &[String],
    resolver: &Resolver,
    cfg: &LoaderBenchConfig,
    aug: &AugmentConfig,
    threads: usize,
) -> Result<LoaderBenchRow> {
    let barrier = Barrier::new(threads + 1);
    let (tallies, seconds) = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let barrier = &barrier;
                scope.spawn(move || -> Result<ThreadTally> {
                    let mut sources = Sources::with_resolver(resolver.clone(), cfg.cache_images);
                    sources.stepwise = cfg.stepwise;
                    let mut rng = GlibcRand::new(cfg.seed.wrapping_add(t as u32));
                    let mut scratch = StageTimes::default();
                    let warm_end = Instant::now() + cfg.warmup;
                    // At least one untimed batch, so that a decode error is reported before the barrier
                    // (then every thread still reaches it).
                    let mut warm = Ok(());
                    loop {
                        let r = load_data_detection_timed(
                            &mut rng,
                            &mut sources,
                            paths,
                            cfg.batch,
                            aug,
                            &mut scratch,
                        );
                        if let Err(e) = r {
                            warm = Err(e);
                            break;
                        }
                        if Instant::now() >= warm_end {
                            break;
                        }
                    }
                    barrier.wait();
                    warm?;
                    let end = Instant::now() + cfg.duration;
                    let mut tally = ThreadTally::default();
                    while Instant::now() < end {
                        let b = load_data_detection_timed(
                            &mut rng,
                            &mut sources,
                            paths,
                            cfg.batch,
                            aug,
                            &mut tally.stages,
                        )?;
                        tally.batches += 1;
                        tally.mosaic_batches += b.mosaic as usize;
                        tally.images += b.n;
                    }
                    Ok(tally)
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        let tallies: Vec<_> = handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect();
        (tallies, start.elapsed().as_secs_f64())
    });
    let mut sum = ThreadTally::default();
    for t in tallies {
        let t = t?;
        sum.batches += t.batches;
        sum.mosaic_batches += t.mosaic_batches;
        sum.images += t.images;
        sum.stages.add(&t.stages);
    }
    Ok(LoaderBenchRow {
        size: aug.w,
        mosaic: aug.mosaic,
        threads,
        cache_images: cfg.cache_images,
        stepwise: cfg.stepwise,
        batches: sum.batches,
        mosaic_batches: sum.mosaic_batches,
        images: sum.images,
        seconds,
        images_per_s: sum.images as f64 / seconds.max(f64::MIN_POSITIVE),
        stages: sum.stages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A short run over a generated PNG counts images, batches and stage time consistently.
    #[test]
    fn counts_and_stage_times_add_up() {
        let dir = tempfile::tempdir().unwrap();
        let img = image::RgbImage::from_fn(80, 60, |x, y| image::Rgb([x as u8, y as u8, 7]));
        img.save(dir.path().join("a.png")).unwrap();
        std::fs::write(dir.path().join("a.txt"), "1 0.5 0.5 0.4 0.3\n").unwrap();
        let cfg = LoaderBenchConfig {
            base: AugmentConfig::default(),
            sizes: vec![64],
            mosaic: vec![true],
            threads: vec![1, 2],
            batch: 2,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(50),
            seed: 3,
            cache_images: true,
            stepwise: false,
        };
        let r = bench_loader(&["a.png".into()], &Resolver::under(dir.path()), &cfg).unwrap();
        assert_eq!(r.rows.len(), 2);
        for row in &r.rows {
            assert!(row.batches > 0);
            assert_eq!(row.images, row.batches * 2);
            assert!(row.mosaic_batches <= row.batches);
            let s = &row.stages;
            let named = s.decode + s.crop_resize + s.hsv + s.mosaic + s.to_float + s.truth;
            assert!(named > 0.0 && named <= s.total * 1.0001, "{s:?}");
            let share: f64 = row.stage_shares().iter().map(|(_, v)| v).sum();
            assert!((share - 1.0).abs() < 1e-3, "{share}");
        }
    }

    #[test]
    fn missing_image_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = LoaderBenchConfig {
            base: AugmentConfig::default(),
            sizes: vec![32],
            mosaic: vec![false],
            threads: vec![2],
            batch: 1,
            warmup: Duration::ZERO,
            duration: Duration::from_millis(10),
            seed: 1,
            cache_images: false,
            stepwise: true,
        };
        let e = bench_loader(&["nope.jpg".into()], &Resolver::under(dir.path()), &cfg).unwrap_err();
        assert!(format!("{e:#}").contains("nope.jpg"), "{e:#}");
    }
}
