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
//! `k % workers`, so batches arrive in order and memory stays bounded.

use super::detection::{load_data_detection, AugmentConfig, DetectionBatch, Sources};
use super::rand::{FastRand, GlibcRand};
use anyhow::{anyhow, Result};
use std::path::PathBuf;
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
    /// Starts the workers for the image list `paths` (resolved under `root`).
    pub fn spawn(
        paths: Vec<String>,
        root: PathBuf,
        cfg: AugmentConfig,
        lc: LoaderConfig,
    ) -> Result<Self> {
        cfg.validate()?;
        if paths.is_empty() {
            return Err(anyhow!("batch loader: empty image list"));
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
            let (paths, root, cfg, lc, stop) = (
                paths.clone(),
                root.clone(),
                cfg.clone(),
                lc.clone(),
                stop.clone(),
            );
            let handle = std::thread::Builder::new()
                .name(format!("darknet-loader-{w}"))
                .spawn(move || {
                    let mut sources = Sources::new(root, lc.cache_images);
                    let mut glibc = GlibcRand::new(lc.seed as u32);
                    let mut k = w as u64;
                    while !stop.load(Ordering::Relaxed) {
                        let res = match lc.mode {
                            RngMode::Darknet => load_data_detection(
                                &mut glibc,
                                &mut sources,
                                &paths,
                                lc.batch,
                                &cfg,
                            ),
                            RngMode::PerBatch => {
                                let mut rng = FastRand::new(batch_seed(lc.seed, k));
                                load_data_detection(&mut rng, &mut sources, &paths, lc.batch, &cfg)
                            }
                        };
                        let failed = res.is_err();
                        if tx.send(res).is_err() || failed {
                            break;
                        }
                        k += workers as u64;
                    }
                })
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
        };
        let mut loader = BatchLoader::spawn(paths.clone(), dir.path().into(), cfg(), lc).unwrap();
        let mut rng = GlibcRand::new(5);
        let mut sources = Sources::new(dir.path(), false);
        for _ in 0..3 {
            let a = loader.next_batch().unwrap();
            let b = load_data_detection(&mut rng, &mut sources, &paths, 2, &cfg()).unwrap();
            assert_eq!(a.x, b.x);
            assert_eq!(a.y, b.y);
        }
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
            };
            let mut l = BatchLoader::spawn(paths.clone(), dir.path().into(), cfg(), lc).unwrap();
            (0..5)
                .map(|_| l.next_batch().unwrap().y)
                .collect::<Vec<_>>()
        };
        let one = run(1);
        assert_eq!(one, run(3));
        assert_ne!(one[0], one[1]);
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
        };
        let mut l =
            BatchLoader::spawn(vec!["nope.jpg".into()], dir.path().into(), cfg(), lc).unwrap();
        let e = l.next_batch().unwrap_err();
        assert!(format!("{e:#}").contains("nope.jpg"), "{e:#}");
    }
}
