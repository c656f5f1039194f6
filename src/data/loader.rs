//! A batch loader that runs `load_data_detection` on worker threads ahead of the training step, the
//! role of Darknet's `load_data` / `load_threads` (src/data.c), with two random-stream modes:
//!
//! * [`RngMode::Darknet`]: one worker with the single glibc `rand()` stream after `srand(seed)`,
//!   batch after batch: exactly what Darknet's `load_data_detection` gives when called from one thread
//!   (real Darknet training shares that stream between 64 threads and is not reproducible call by call).
//! * [`RngMode::PerBatch`]: batch `k` draws from its own [`FastRand`] seeded from `(seed, k)`, in
//!   Darknet's draw order, on `workers` threads. Results depend only on `(seed, k)`, not on the number of
//!   workers or on timing.
//!
//! Each worker has a bounded channel (`prefetch` batches); the consumer takes batch `k` from worker
//! `k % workers`, so batches arrive in order and memory stays bounded. Batches are numbered from
//! [`LoaderConfig::start`] (a resumed training run continues its stream); an optional [`Sizes`] gives
//! the network size of each batch (training's multi-scale): a [`SizeSchedule`], or in [`RngMode::Darknet`]
//! Darknet's own multi-scale draw from the same glibc stream ([`DarknetMultiscale`]).

use super::detection::{load_data_detection, AugmentConfig, DetectionBatch, Sources};
use super::rand::{rand_scale, FastRand, GlibcRand};
use crate::dataset::Resolver;
use anyhow::{anyhow, Result};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Which random stream feeds the augmentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RngMode {
    /// glibc `rand()` after `srand(seed)`, one thread (Darknet's single-thread semantics).
    Darknet,
    /// An independent fast stream per batch, seeded from (seed, batch index); any number of workers.
    PerBatch,
}

/// Loader settings.
#[derive(Clone, Debug)]
pub struct LoaderConfig {
    /// Samples per batch.
    pub batch: usize,
    /// Worker threads (forced to 1 in [`RngMode::Darknet`]).
    pub workers: usize,
    /// Batches each worker may hold ready ahead of the consumer.
    pub prefetch: usize,
    pub seed: u64,
    pub mode: RngMode,
    /// Keep decoded images in memory (per worker); for small datasets.
    pub cache_images: bool,
    /// The index of the first batch (seeds [`RngMode::PerBatch`] streams and the size schedule).
    pub start: u64,
    /// Stop at an unreadable image or label file instead of skipping it ([`Sources::strict`]).
    pub strict: bool,
}

/// The network `(width, height)` of batch `k` (multi-scale training); without one, the [`AugmentConfig`]'s.
pub type SizeSchedule = Arc<dyn Fn(u64) -> (usize, usize) + Send + Sync>;

/// How the loader sizes its batches (training's multi-scale).
#[derive(Clone)]
pub enum Sizes {
    /// Batch `k` at `schedule(k)`.
    Schedule(SizeSchedule),
    /// [`RngMode::Darknet`] only: `train_detector`'s multi-scale draw made from the loader's glibc stream
    /// before every 10th batch, as a single-threaded Darknet loop draws it (`rand_scale` in the main thread
    /// between two `load_data_detection` calls).
    Darknet(DarknetMultiscale),
}

/// `train_detector`'s multi-scale settings (`random` of the last yolo layer, the cfg's size and
/// `resize_step`, `max_batches`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DarknetMultiscale {
    pub random: f32,
    pub init_w: usize,
    pub init_h: usize,
    pub resize_step: usize,
    pub max_batches: usize,
}

impl DarknetMultiscale {
    /// `rand_coef`: 1.4 for `random=1`, else `random`.
    pub fn coef(&self) -> f32 {
        if self.random != 1.0 {
            self.random
        } else {
            1.4
        }
    }

    /// The size for one draw `val = rand_scale(coef)` (detector.c: `roundl(random_val*init_w/resize_step + 1)
    /// *resize_step` in float arithmetic, back to the cfg's size when `val < 1` rounds above it, the largest
    /// size when `largest`, at least `resize_step`).
    pub fn dims(&self, val: f32, largest: bool) -> (usize, usize) {
        let step = self.resize_step.max(1) as f32;
        let round =
            |v: f32, init: usize| (((v * init as f32) / step + 1.0).round() * step) as usize;
        let (mut w, mut h) = (round(val, self.init_w), round(val, self.init_h));
        if val < 1.0 && (w > self.init_w || h > self.init_h) {
            (w, h) = (self.init_w, self.init_h);
        }
        if largest {
            let c = self.coef();
            (w, h) = (round(c, self.init_w), round(c, self.init_h));
        }
        (w.max(step as usize), h.max(step as usize))
    }

    /// Whether batch `k` (0-based iteration) of a run that starts with `count` batches done in this process
    /// takes the largest size: the first block of the process (`avg_loss < 0`) and the last 100 iterations.
    fn largest(&self, count: u64, k: u64) -> bool {
        count == 0 || k + 100 > self.max_batches as u64
    }
}

/// The seed of batch `k` in [`RngMode::PerBatch`] (splitmix64 of seed and index; lives in [`crate::util`]).
pub use crate::util::batch_seed;

/// Background batch producer; dropping it stops the workers.
pub struct BatchLoader {
    receivers: Vec<Receiver<Result<DetectionBatch>>>,
    handles: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    next: usize,
}

impl BatchLoader {
    /// Starts the workers for the image list `paths` (resolved by `resolver`), every batch at `cfg`'s size.
    pub fn spawn(
        paths: Vec<String>,
        resolver: Resolver,
        cfg: AugmentConfig,
        lc: LoaderConfig,
    ) -> Result<Self> {
        Self::spawn_scheduled(paths, resolver, cfg, lc, None)
    }

    /// [`BatchLoader::spawn`] with the network size of batch `k` from `sizes`.
    pub fn spawn_scheduled(
        paths: Vec<String>,
        resolver: Resolver,
        cfg: AugmentConfig,
        lc: LoaderConfig,
        sizes: Option<Sizes>,
    ) -> Result<Self> {
        cfg.validate()?;
        if paths.is_empty() {
            return Err(anyhow!("batch loader: empty image list"));
        }
        if matches!(sizes, Some(Sizes::Darknet(_))) && lc.mode != RngMode::Darknet {
            return Err(anyhow!(
                "batch loader: Darknet's multi-scale draw needs the Darknet random stream"
            ));
        }
        let workers = if lc.mode == RngMode::Darknet {
            1
        } else {
            lc.workers.max(1)
        };
        let paths = Arc::new(paths);
        let stop = Arc::new(AtomicBool::new(false));
        let mut receivers = Vec::with_capacity(workers);
        let mut handles = Vec::with_capacity(workers);
        for w in 0..workers {
            let (tx, rx) = sync_channel(lc.prefetch.max(1));
            let worker = Worker {
                paths: paths.clone(),
                sources: {
                    let mut s = Sources::with_resolver(resolver.clone(), lc.cache_images);
                    s.strict = lc.strict;
                    s
                },
                cfg: cfg.clone(),
                sizes: sizes.clone(),
                size_now: (cfg.w, cfg.h),
                count: 0,
                glibc: GlibcRand::new(lc.seed as u32),
                seed: lc.seed,
                mode: lc.mode,
                batch: lc.batch,
            };
            let (stop, first, step) = (stop.clone(), lc.start + w as u64, workers as u64);
            let handle = std::thread::Builder::new()
                .name(format!("darknet-loader-{w}"))
                .spawn(move || worker.run(first, step, &stop, tx))
                .map_err(|e| anyhow!("cannot start loader thread: {e}"))?;
            receivers.push(rx);
            handles.push(handle);
        }
        Ok(Self {
            receivers,
            handles,
            stop,
            next: 0,
        })
    }

    /// The next batch, in order (blocks until its worker has produced it).
    pub fn next_batch(&mut self) -> Result<DetectionBatch> {
        let w = self.next % self.receivers.len();
        self.next += 1;
        self.receivers[w]
            .recv()
            .map_err(|_| anyhow!("batch loader worker {w} stopped"))?
    }
}

/// One loader thread's state: it produces batches `first, first + step, ...` until stopped or failing.
struct Worker {
    paths: Arc<Vec<String>>,
    sources: Sources,
    cfg: AugmentConfig,
    sizes: Option<Sizes>,
    /// The size of Darknet's last multi-scale draw ([`Sizes::Darknet`]).
    size_now: (usize, usize),
    /// Batches this worker produced (Darknet's `count` of train_detector).
    count: u64,
    glibc: GlibcRand,
    seed: u64,
    mode: RngMode,
    batch: usize,
}

impl Worker {
    fn run(
        mut self,
        first: u64,
        step: u64,
        stop: &AtomicBool,
        tx: std::sync::mpsc::SyncSender<Result<DetectionBatch>>,
    ) {
        let mut k = first;
        while !stop.load(Ordering::Relaxed) {
            let res = self.load(k);
            let failed = res.is_err();
            if tx.send(res).is_err() || failed {
                break;
            }
            k += step;
        }
    }

    /// Batch `k`: `load_data_detection` at the scheduled size with the mode's random stream.
    fn load(&mut self, k: u64) -> Result<DetectionBatch> {
        let mut cfg = self.cfg.clone();
        match &self.sizes {
            Some(Sizes::Schedule(sizes)) => (cfg.w, cfg.h) = sizes(k),
            Some(Sizes::Darknet(ms)) => {
                // detector.c: `if (l.random && count++ % 10 == 0)` before the batch is loaded.
                if ms.random != 0.0 && self.count.is_multiple_of(10) {
                    let val = rand_scale(&mut self.glibc, ms.coef());
                    self.size_now = ms.dims(val, ms.largest(self.count, k));
                }
                (cfg.w, cfg.h) = self.size_now;
            }
            None => {}
        }
        self.count += 1;
        let (paths, sources) = (&self.paths, &mut self.sources);
        match self.mode {
            RngMode::Darknet => {
                load_data_detection(&mut self.glibc, sources, paths, self.batch, &cfg)
            }
            RngMode::PerBatch => {
                let mut rng = FastRand::new(batch_seed(self.seed, k));
                load_data_detection(&mut rng, sources, paths, self.batch, &cfg)
            }
        }
    }
}

impl Drop for BatchLoader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receivers unblocks workers waiting on a full channel.
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny dataset: three gradient PNGs with two labels each.
    fn dataset() -> (tempfile::TempDir, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for (i, (w, h)) in [(64u32, 48u32), (50, 70), (33, 33)].into_iter().enumerate() {
            let img = image::RgbImage::from_fn(w, h, |x, y| {
                image::Rgb([(x * 4) as u8, (y * 3) as u8, (i * 80) as u8])
            });
            let name = format!("img{i}.png");
            img.save(dir.path().join(&name)).unwrap();
            std::fs::write(
                dir.path().join(format!("img{i}.txt")),
                "1 0.5 0.5 0.4 0.3\n2 0.3 0.6 0.2 0.2\n",
            )
            .unwrap();
            paths.push(name);
        }
        (dir, paths)
    }

    fn cfg() -> AugmentConfig {
        AugmentConfig {
            w: 32,
            h: 32,
            mosaic: true,
            ..Default::default()
        }
    }

    #[test]
    fn darknet_mode_equals_sequential_glibc_calls() {
        let (dir, paths) = dataset();
        let lc = LoaderConfig {
            batch: 2,
            workers: 4,
            prefetch: 2,
            seed: 5,
            mode: RngMode::Darknet,
            cache_images: true,
            start: 0,
            strict: true,
        };
        let mut loader =
            BatchLoader::spawn(paths.clone(), Resolver::under(dir.path()), cfg(), lc).unwrap();
        let mut rng = GlibcRand::new(5);
        let mut sources = Sources::new(dir.path(), false);
        for _ in 0..3 {
            let a = loader.next_batch().unwrap();
            let b = load_data_detection(&mut rng, &mut sources, &paths, 2, &cfg()).unwrap();
            assert_eq!(a.x, b.x);
            assert_eq!(a.y, b.y);
        }
    }

    /// With Darknet's multi-scale, the loader draws `rand_scale` from its glibc stream before batches 0, 10,
    /// 20, ... and loads at the drawn size, as a sequential `train_detector` loop does.
    #[test]
    fn darknet_multiscale_draws_from_the_same_stream() {
        let (dir, paths) = dataset();
        let lc = LoaderConfig {
            batch: 1,
            workers: 1,
            prefetch: 1,
            seed: 11,
            mode: RngMode::Darknet,
            cache_images: true,
            start: 0,
            strict: true,
        };
        let ms = DarknetMultiscale {
            random: 1.0,
            init_w: 64,
            init_h: 64,
            resize_step: 32,
            max_batches: 1000,
        };
        let r = Resolver::under(dir.path());
        let sizes = Some(Sizes::Darknet(ms));
        let mut loader = BatchLoader::spawn_scheduled(paths.clone(), r, cfg(), lc, sizes).unwrap();
        let mut rng = GlibcRand::new(11);
        let mut sources = Sources::new(dir.path(), false);
        let mut size = (0, 0);
        for k in 0..21 {
            if k % 10 == 0 {
                let v = rand_scale(&mut rng, 1.4);
                size = ms.dims(v, k == 0);
            }
            let c = AugmentConfig {
                w: size.0,
                h: size.1,
                ..cfg()
            };
            let b = load_data_detection(&mut rng, &mut sources, &paths, 1, &c).unwrap();
            let a = loader.next_batch().unwrap();
            assert_eq!((a.w, a.h, &a.x, &a.y), (b.w, b.h, &b.x, &b.y), "batch {k}");
        }
        // round(1.4·64/32 + 1)·32 for the first block.
        assert_eq!(ms.dims(0.9, true), (128, 128));
    }

    #[test]
    fn per_batch_mode_does_not_depend_on_worker_count() {
        let (dir, paths) = dataset();
        let run = |workers| {
            let lc = LoaderConfig {
                batch: 2,
                workers,
                prefetch: 1,
                seed: 9,
                mode: RngMode::PerBatch,
                cache_images: false,
                start: 0,
                strict: true,
            };
            let mut l =
                BatchLoader::spawn(paths.clone(), Resolver::under(dir.path()), cfg(), lc).unwrap();
            (0..5)
                .map(|_| l.next_batch().unwrap().y)
                .collect::<Vec<_>>()
        };
        let one = run(1);
        assert_eq!(one, run(3));
        assert_ne!(one[0], one[1]);
    }

    /// A loader started at batch `start` continues the stream of one started at 0, and a size schedule sets
    /// each batch's network size (training's multi-scale and exact resume).
    #[test]
    fn start_and_size_schedule() {
        let (dir, paths) = dataset();
        let lc = |start| LoaderConfig {
            batch: 2,
            workers: 2,
            prefetch: 1,
            seed: 3,
            mode: RngMode::PerBatch,
            cache_images: false,
            start,
            strict: true,
        };
        let sizes = Sizes::Schedule(Arc::new(|k| if k % 2 == 0 { (32, 32) } else { (64, 48) }));
        let spawn = |start| {
            let r = Resolver::under(dir.path());
            BatchLoader::spawn_scheduled(paths.clone(), r, cfg(), lc(start), Some(sizes.clone()))
                .unwrap()
        };
        let (mut from0, mut from3) = (spawn(0), spawn(3));
        let first: Vec<_> = (0..5).map(|_| from0.next_batch().unwrap()).collect();
        assert_eq!((first[0].w, first[0].h), (32, 32));
        assert_eq!((first[1].w, first[1].h), (64, 48));
        for b in &first[3..] {
            let c = from3.next_batch().unwrap();
            assert_eq!((c.w, c.h, &c.x, &c.y), (b.w, b.h, &b.x, &b.y));
        }
    }

    #[test]
    fn missing_image_is_reported_not_hung() {
        let dir = tempfile::tempdir().unwrap();
        let lc = LoaderConfig {
            batch: 1,
            workers: 2,
            prefetch: 1,
            seed: 1,
            mode: RngMode::PerBatch,
            cache_images: false,
            start: 0,
            strict: true,
        };
        let mut l = BatchLoader::spawn(
            vec!["nope.jpg".into()],
            Resolver::under(dir.path()),
            cfg(),
            lc,
        )
        .unwrap();
        let e = l.next_batch().unwrap_err();
        assert!(format!("{e:#}").contains("nope.jpg"), "{e:#}");
    }
}
