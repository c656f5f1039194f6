//! The detector training loop: mirrors `train_detector` (src/detector.c) with `train_network` /
//! `train_network_datum` / `update_network` (src/network.c).
//!
//! Per iteration: one batch of `batch` images (the cfg's `batch`, Darknet's `net.batch·net.subdivisions`)
//! from `load_data_detection`, cut into `subdivisions` mini-batches; each mini-batch runs the training-mode
//! forward ([`crate::network::TrainableNetwork::forward_train`]), the yolo deltas of every head
//! ([`crate::train::yolo_train_head`]) and one backward pass whose gradients are accumulated
//! ([`DarknetSgd::accumulate`], Darknet's `*_updates += delta`); `seen += mini_batch` per mini-batch. Then
//! the update with `lr = get_current_rate(current_batch(seen))` (burn-in included) and
//! `batch = mini_batch·subdivisions` ([`DarknetSgd::apply`]).
//!
//! * loss = `Σ_mini get_network_cost / (subdivisions·mini_batch)`, where `get_network_cost` is the mean of the
//!   yolo layers' `cost`; `avg_loss = .9·avg_loss + .1·loss` (set to `loss` first), as `train_detector`.
//! * multi-scale (`random` of the last yolo layer): every 10 iterations the size is redrawn exactly as
//!   `train_detector` (`rand_scale(1.4 or random)`, rounded to `resize_step`, the maximum size first and in the
//!   last 100 iterations); `dynamic_minibatch` is not reproduced.
//!
//! Deliberate differences: the data stream (see [`crate::data::loader`]) is by default an independent
//! generator per iteration seeded by `(seed, iteration)` (so a resumed run is identical to an uninterrupted
//! one), and the multi-scale draw uses its own generator seeded by `(seed, iteration/10)`; `--darknet-rng` uses
//! Darknet's single glibc stream for the data (not restorable on resume). Checkpoints keep the optimizer
//! accumulators (Darknet restarts with zero momentum). `ema_alpha`, `weights_reject_freq`, `adam` and
//! tracking are not reproduced.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};

use crate::cfg::{LayerConfig, NetworkConfig, YoloConfig};
use crate::data::detection::{load_data_detection, AugmentConfig, DetectionBatch, Sources};
use crate::data::loader::batch_seed;
use crate::data::rand::{rand_scale, FastRand, GlibcRand};
use crate::dataset::{read_names, DataCfg, ImageList, Resolver};
use crate::network::{Network, TrainableNetwork};
use crate::train::checkpoint::{self, TrainerState};
use crate::train::{current_batch, current_rate, yolo_train_head, DarknetSgd, ParamKind};
use crate::weights::NetWeights;

/// Settings of a training run (the `train` subcommand's flags).
#[derive(Debug, Clone)]
pub struct TrainOptions {
    pub cfg: PathBuf,
    /// A Darknet `.data` file (`train=`, `valid=`, `names=`), or a COCO instances json (with `images`).
    pub data: PathBuf,
    /// Image folder of a COCO json (prepended to `file_name`).
    pub images: Option<PathBuf>,
    /// Initial weights (`.weights`, possibly truncated by `partial`, or safetensors).
    pub weights: Option<PathBuf>,
    pub device: Device,
    pub seed: u64,
    /// Overrides the cfg's `max_batches`.
    pub max_batches: Option<usize>,
    /// Checkpoints, chart and final weights go here.
    pub out_dir: PathBuf,
    /// Continue from the newest checkpoint in `out_dir`.
    pub resume: bool,
    /// Darknet's single glibc `rand()` data stream instead of the per-iteration streams.
    pub darknet_rng: bool,
    /// Evaluate mAP@0.5 on the `valid=` set every `map_every` iterations and at the end.
    pub map: bool,
    /// mAP interval; `None`: Darknet's `max(100, epoch)` rule (`calc_map_for_each`, at least `burn_in`).
    pub map_every: Option<usize>,
    /// Checkpoint interval in iterations (Darknet writes `_last.weights` every 100).
    pub checkpoint_every: usize,
    /// How many checkpoints to keep (0 = all).
    pub keep_checkpoints: usize,
    /// Loader threads.
    pub workers: usize,
    /// Reset `seen` of the initial weights (Darknet's `-clear`).
    pub clear: bool,
    /// Print the per-iteration line.
    pub verbose: bool,
}

impl TrainOptions {
    pub fn new(cfg: PathBuf, data: PathBuf, out_dir: PathBuf) -> Self {
        TrainOptions {
            cfg,
            data,
            images: None,
            weights: None,
            device: Device::Cpu,
            seed: 0,
            max_batches: None,
            out_dir,
            resume: false,
            darknet_rng: false,
            map: false,
            map_every: None,
            checkpoint_every: 100,
            keep_checkpoints: 3,
            workers: 1,
            clear: false,
            verbose: true,
        }
    }
}

/// What a finished run reports.
#[derive(Debug, Clone)]
pub struct TrainSummary {
    pub iterations: usize,
    pub seen: u64,
    pub history: Vec<(usize, f32, f32)>,
    pub maps: Vec<(usize, f64)>,
    /// Images per second over the iterations of this process.
    pub images_per_sec: f64,
    pub final_weights: PathBuf,
    pub final_safetensors: PathBuf,
    pub chart: PathBuf,
}

/// The multi-scale draw of `train_detector` for the iteration block starting at `iteration`.
pub fn multiscale_size(
    net: &NetworkConfig,
    random: f32,
    iteration: usize,
    first: bool,
    max_batches: usize,
    seed: u64,
) -> (usize, usize) {
    let (init_w, init_h) = (net.net.width as f64, net.net.height as f64);
    let step = net.net.resize_step.max(1) as f64;
    let coef = if random != 1.0 { random } else { 1.4 };
    let mut rng = FastRand::new(batch_seed(seed ^ 0x5EED_517E, (iteration / 10) as u64));
    let val = rand_scale(&mut rng, coef) as f64;
    let round = |v: f64| (v / step + 1.0).round() * step;
    let (mut w, mut h) = (round(val * init_w), round(val * init_h));
    if val < 1.0 && (w > init_w || h > init_h) {
        (w, h) = (init_w, init_h);
    }
    if first || iteration + 100 > max_batches {
        (w, h) = (round(coef as f64 * init_w), round(coef as f64 * init_h));
    }
    (w.max(step) as usize, h.max(step) as usize)
}

/// The batch producer: `load_data_detection` on worker threads, batch `k` on worker `k % workers`,
/// starting at iteration `start`; the network size of each batch comes from `size_of(k)`.
struct Producer {
    receivers: Vec<Receiver<Result<DetectionBatch>>>,
    handles: Vec<std::thread::JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    next: usize,
}

impl Producer {
    #[allow(clippy::too_many_arguments)]
    fn spawn(
        paths: Vec<String>,
        resolver: Resolver,
        base: AugmentConfig,
        batch: usize,
        seed: u64,
        darknet_rng: bool,
        workers: usize,
        start: usize,
        size_of: Arc<dyn Fn(usize) -> (usize, usize) + Send + Sync>,
    ) -> Result<Self> {
        let workers = if darknet_rng { 1 } else { workers.max(1) };
        let paths = Arc::new(paths);
        let stop = Arc::new(AtomicBool::new(false));
        let mut receivers = Vec::new();
        let mut handles = Vec::new();
        for w in 0..workers {
            let (tx, rx) = sync_channel(2);
            let (paths, resolver, base, stop, size_of) = (
                paths.clone(),
                resolver.clone(),
                base.clone(),
                stop.clone(),
                size_of.clone(),
            );
            let h = std::thread::Builder::new()
                .name(format!("train-loader-{w}"))
                .spawn(move || {
                    let mut sources = Sources::with_resolver(resolver, true);
                    let mut glibc = GlibcRand::new(seed as u32);
                    let mut k = start + w;
                    while !stop.load(Ordering::Relaxed) {
                        let (nw, nh) = size_of(k);
                        let cfg = AugmentConfig {
                            w: nw,
                            h: nh,
                            ..base.clone()
                        };
                        let res = if darknet_rng {
                            load_data_detection(&mut glibc, &mut sources, &paths, batch, &cfg)
                        } else {
                            let mut rng = FastRand::new(batch_seed(seed, k as u64));
                            load_data_detection(&mut rng, &mut sources, &paths, batch, &cfg)
                        };
                        let failed = res.is_err();
                        if tx.send(res).is_err() || failed {
                            break;
                        }
                        k += workers;
                    }
                })
                .context("starting a loader thread")?;
            receivers.push(rx);
            handles.push(h);
        }
        Ok(Producer {
            receivers,
            handles,
            stop,
            next: 0,
        })
    }

    fn next(&mut self) -> Result<DetectionBatch> {
        let w = self.next % self.receivers.len();
        self.next += 1;
        self.receivers[w]
            .recv()
            .map_err(|_| anyhow::anyhow!("loader thread {w} stopped"))?
    }
}

impl Drop for Producer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.receivers.clear();
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
    }
}

/// The training images of a `.data` file (paths resolved by [`crate::dataset`]'s rule).
fn train_list(data: &DataCfg) -> Result<ImageList> {
    let list = ImageList::train_of(data)?;
    if list.is_empty() {
        bail!("{}: no training images", list.list.display());
    }
    Ok(list)
}

/// The last `[yolo]` layer (Darknet takes `jitter`, `resize`, `max_boxes`, `classes` and `random` from it).
fn last_yolo(cfg: &NetworkConfig) -> Result<&YoloConfig> {
    cfg.layers
        .iter()
        .rev()
        .find_map(|l| match &l.config {
            LayerConfig::Yolo(y) => Some(y),
            _ => None,
        })
        .with_context(|| format!("{}: no [yolo] layer to train", cfg.file.display()))
}

/// Initial weights: a checkpoint's model, a (possibly partial) `.weights`/safetensors file, or Darknet's
/// random initialisation.
fn initial_weights(cfg: &NetworkConfig, path: Option<&Path>, seed: u64) -> Result<NetWeights> {
    match path {
        Some(p) => {
            let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
            if crate::weights::safetensors::looks_like_safetensors(&bytes) {
                crate::weights::safetensors::from_bytes(cfg, &bytes, p)
            } else {
                let (w, loaded) =
                    crate::weights::darknet::from_bytes_partial(cfg, &bytes, p, seed)?;
                let total = w.convs.len();
                if loaded < total {
                    eprintln!(
                        "{}: {loaded} of {total} convolutional layers loaded, the rest initialised randomly",
                        p.display()
                    );
                }
                Ok(w)
            }
        }
        None => {
            let convs = crate::weights::parameter_layers(cfg)
                .into_iter()
                .map(|(i, n, per, bn)| {
                    (
                        i,
                        crate::weights::darknet::darknet_init(i, n, per, bn, seed),
                    )
                })
                .collect();
            Ok(NetWeights {
                header: crate::weights::Header::current(0),
                convs,
            })
        }
    }
}

fn optimizer_for(net: &TrainableNetwork, cfg: &NetworkConfig) -> Result<DarknetSgd> {
    let params = net
        .parameters()
        .into_iter()
        .map(|(name, var)| {
            let kind = if name.ends_with("conv.weight") {
                ParamKind::Weights
            } else {
                ParamKind::NoDecay
            };
            (name, var, kind)
        })
        .collect();
    DarknetSgd::new(params, cfg.net.momentum, cfg.net.decay)
}

/// The result of one mini-batch: Darknet's `get_network_cost` and the per-head costs.
pub struct MiniBatchResult {
    pub network_cost: f32,
    pub costs: Vec<f32>,
}

/// Forward + yolo deltas + backward for one mini-batch; accumulates into `opt`.
pub fn train_minibatch(
    net: &TrainableNetwork,
    opt: &mut DarknetSgd,
    x: &Tensor,
    truth: &[f32],
) -> Result<MiniBatchResult> {
    let cfg = &net.net.cfg;
    let fwd = net.forward_train(x)?;
    let mut total: Option<Tensor> = None;
    let mut costs = Vec::new();
    for (i, raw) in &fwd.head_inputs {
        let LayerConfig::Yolo(y) = &cfg.layers[*i].config else {
            unreachable!("head_inputs are yolo layers")
        };
        let (surrogate, res) = yolo_train_head(raw, y, cfg.net.width, cfg.net.height, truth)
            .with_context(|| format!("yolo layer {i}"))?;
        costs.push(res.cost);
        total = Some(match total {
            None => surrogate,
            Some(t) => (t + surrogate)?,
        });
    }
    let total = total.context("the network has no [yolo] layer")?;
    let grads = total.backward()?;
    opt.accumulate(&grads)?;
    let network_cost = costs.iter().sum::<f32>() / costs.len() as f32;
    Ok(MiniBatchResult {
        network_cost,
        costs,
    })
}

/// mAP@0.5 (Darknet's `validate_detector_map`: thresh .005, NMS .45, area under the curve) of `weights` on
/// the `valid=` set of `data`.
pub fn evaluate_map(
    cfg: &NetworkConfig,
    weights: &NetWeights,
    data: &Path,
    device: &Device,
) -> Result<f64> {
    use crate::eval::{Dataset, Det, ImageDetections, MapParams};
    use crate::inference::{DetectOptions, Detector};
    let ds = Dataset::from_darknet_data(data)?;
    let det = Detector::from_parts(cfg.clone(), weights, None, device)?;
    let opts = DetectOptions {
        thresh: 0.005,
        nms: 0.45,
        letterbox: false,
    };
    let mut all = Vec::with_capacity(ds.images.len());
    for (k, im) in ds.images.iter().enumerate() {
        let img = crate::image::load::load_image(&im.path, 3)?;
        let dets = det.detect(std::slice::from_ref(&img), &opts)?;
        let mut out = Vec::new();
        for d in &dets[0] {
            // Untrained layers (rolling variance 0, as Darknet initialises it) can give infinite boxes; they
            // cannot match anything and the evaluator rejects them, so they are left out.
            let b = [d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h];
            if b.iter().any(|v| !v.is_finite()) {
                continue;
            }
            for (class, &p) in d.prob.iter().enumerate() {
                if p > 0.0 && p.is_finite() {
                    out.push(Det {
                        class,
                        prob: p,
                        objectness: d.objectness,
                        bbox_rel_cxcywh: [d.bbox.x, d.bbox.y, d.bbox.w, d.bbox.h],
                    });
                }
            }
        }
        all.push(ImageDetections {
            image_index: k,
            dets: out,
        });
    }
    let outcome = crate::eval::evaluate(&ds, &all, &MapParams::default())?;
    Ok(outcome.report.darknet.map)
}

/// Runs the training loop (see the module doc).
pub fn train(opts: &TrainOptions) -> Result<TrainSummary> {
    let cfg_text = std::fs::read_to_string(&opts.cfg)
        .with_context(|| format!("reading {}", opts.cfg.display()))?;
    let cfg = NetworkConfig::parse(&cfg_text, &opts.cfg)?;
    let cfg_hash = checkpoint::text_hash(&cfg_text);
    let max_batches = opts.max_batches.unwrap_or(cfg.net.max_batches);
    if max_batches == 0 {
        bail!("{}: max_batches is 0", opts.cfg.display());
    }
    // A COCO json is written out once in Darknet's layout (labels beside image links) under the output folder.
    let data_path = if opts
        .data
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        let ds = crate::eval::dataset::Dataset::from_coco_json(
            &opts.data,
            opts.images.as_deref(),
            None,
        )?;
        ds.write_darknet(&opts.out_dir.join("coco-as-darknet"))?
    } else {
        opts.data.clone()
    };
    let data = DataCfg::read(&data_path)?;
    let list = train_list(&data)?;
    let missing = list.missing_labels();
    if let Some(first) = missing.first() {
        eprintln!(
            "warning: {} label files not found (those images have no objects), e.g. {}",
            missing.len(),
            first.display()
        );
    }
    let yolo = last_yolo(&cfg)?.clone();
    if let Some(other) = cfg.layers.iter().find_map(|l| match &l.config {
        LayerConfig::Yolo(y) if y.max_boxes != yolo.max_boxes => Some(y.max_boxes),
        _ => None,
    }) {
        bail!(
            "the [yolo] layers disagree on max ({} vs {other}); one truth array serves all",
            yolo.max_boxes
        );
    }
    let names = data.get("names").map(|_| data.names());
    if let Some(n) = &names {
        let k = read_names(n)?.len();
        if k != yolo.classes {
            bail!(
                "{}: {k} names, but the cfg's last [yolo] has classes={}",
                n.display(),
                yolo.classes
            );
        }
    }
    let mini = cfg.net.mini_batch();
    let subdivisions = cfg.net.subdivisions.max(1);
    let batch = mini * subdivisions;
    if batch < 2 {
        bail!(
            "batch=1: Darknet refuses to train with batch 1 (batch norm needs at least 2 values)"
        );
    }
    std::fs::create_dir_all(&opts.out_dir)
        .with_context(|| format!("creating {}", opts.out_dir.display()))?;
    checkpoint::remove_stale_temporaries(&opts.out_dir)?;

    // Weights, optimizer state and loop state: from the newest checkpoint or from scratch.
    let resume_from = if opts.resume {
        checkpoint::latest(&opts.out_dir)?
    } else {
        None
    };
    let (weights, opt_state, mut state) = match &resume_from {
        Some(p) => {
            let ck = checkpoint::load(p, &opts.device)?;
            if ck.state.cfg_hash != cfg_hash {
                bail!(
                    "{}: written for another cfg than {}",
                    p.display(),
                    opts.cfg.display()
                );
            }
            if ck.state.darknet_rng {
                eprintln!(
                    "warning: the run used --darknet-rng; its data stream restarts on resume"
                );
            }
            let w = NetWeights::from_tensors(
                &cfg,
                crate::weights::Header::current(ck.state.seen),
                &ck.model,
            )?;
            eprintln!(
                "resuming from {} (iteration {})",
                p.display(),
                ck.state.iteration
            );
            (w, Some(ck.optimizer), ck.state)
        }
        None => {
            let w = initial_weights(&cfg, opts.weights.as_deref(), opts.seed)?;
            let seen = if opts.clear { 0 } else { w.header.seen };
            let iteration = current_batch(&cfg.net, seen);
            (
                w,
                None,
                TrainerState {
                    iteration,
                    seen,
                    avg_loss: -1.0,
                    history: vec![],
                    maps: vec![],
                    seed: opts.seed,
                    darknet_rng: opts.darknet_rng,
                    cfg_hash,
                },
            )
        }
    };
    let start_iteration = state.iteration;
    let mut net = Network::load_trainable(&cfg, &weights, &opts.device)?;
    let mut opt = optimizer_for(&net, &cfg)?;
    if let Some(s) = &opt_state {
        opt.load_state(s)?;
    }
    let base = AugmentConfig {
        w: cfg.net.width,
        h: cfg.net.height,
        jitter: yolo.jitter,
        hue: cfg.net.hue,
        saturation: cfg.net.saturation,
        exposure: cfg.net.exposure,
        flip: cfg.net.flip,
        mosaic: cfg.net.mixup == 3,
        letter_box: cfg.net.letter_box,
        resize: yolo.resize,
        max_boxes: yolo.max_boxes,
        classes: yolo.classes,
    };
    let random = yolo.random;
    let size_cfg = cfg.clone();
    let seed = state.seed;
    let fresh_start = start_iteration == 0 && resume_from.is_none();
    let size_of: Arc<dyn Fn(usize) -> (usize, usize) + Send + Sync> = Arc::new(move |k| {
        if random == 0.0 {
            return (size_cfg.net.width, size_cfg.net.height);
        }
        // The size of the block of 10 iterations containing k; the first block of a fresh run is the largest.
        let block = k - k % 10;
        multiscale_size(
            &size_cfg,
            random,
            block,
            fresh_start && block == 0,
            max_batches,
            seed,
        )
    });
    let n_train = list.len();
    let mut producer = Producer::spawn(
        list.paths,
        list.resolver,
        base,
        batch,
        seed,
        opts.darknet_rng,
        opts.workers,
        start_iteration,
        size_of.clone(),
    )?;

    // calc_map_for_each = max(one epoch in iterations, 100).
    let map_every = opts.map_every.unwrap_or(100usize.max(n_train / batch));
    let t0 = Instant::now();
    let mut images_done = 0u64;
    let mut avg_time = -1.0f64;
    let mut last_map_at = state.maps.last().map(|m| m.0).unwrap_or(start_iteration);
    if opts.verbose {
        eprintln!(
            "training {} from iteration {} to {max_batches}: batch {batch} = {subdivisions} x {mini}, lr {}, momentum {}, decay {}",
            opts.cfg.display(),
            state.iteration,
            cfg.net.learning_rate,
            cfg.net.momentum,
            cfg.net.decay
        );
    }
    if opts.map && resume_from.is_none() {
        // mAP of the initial weights (Darknet does not do this; it shows what fine-tuning gained).
        let m = evaluate_map(&cfg, &weights, &data_path, &opts.device)?;
        state.maps.push((state.iteration, m));
        println!(
            " mAP@0.50 at iteration {} (initial weights) = {:.4}",
            state.iteration, m
        );
    }
    while state.iteration < max_batches {
        let k = state.iteration;
        let (w, h) = size_of(k);
        if (w, h) != (net.net.cfg.net.width, net.net.cfg.net.height) {
            net = net.resized(w, h)?;
            if opts.verbose {
                eprintln!("resizing to {w} x {h}");
            }
        }
        let tick = Instant::now();
        let b = producer.next()?;
        if (b.w, b.h, b.n) != (w, h, batch) {
            bail!(
                "loader produced {}x{} x{}, expected {w}x{h} x{batch}",
                b.w,
                b.h,
                b.n
            );
        }
        let per_x = 3 * h * w;
        let per_y = b.max_boxes * 6;
        let mut sum = 0f32;
        for s in 0..subdivisions {
            let x = Tensor::from_slice(
                &b.x[s * mini * per_x..(s + 1) * mini * per_x],
                (mini, 3, h, w),
                &opts.device,
            )?;
            let truth = &b.y[s * mini * per_y..(s + 1) * mini * per_y];
            let r = train_minibatch(&net, &mut opt, &x, truth)
                .with_context(|| format!("iteration {}, subdivision {s}", k + 1))?;
            sum += r.network_cost;
            state.seen += mini as u64;
        }
        state.iteration += 1;
        let lr = current_rate(&cfg.net, current_batch(&cfg.net, state.seen));
        opt.apply(lr, batch)?;
        let loss = sum / (subdivisions * mini) as f32;
        if state.avg_loss < 0.0 || state.avg_loss.is_nan() {
            state.avg_loss = loss;
        }
        state.avg_loss = state.avg_loss * 0.9 + loss * 0.1;
        state.history.push((state.iteration, loss, state.avg_loss));
        images_done += batch as u64;
        let secs = tick.elapsed().as_secs_f64();
        avg_time = if avg_time < 0.0 {
            secs
        } else {
            0.99 * avg_time + 0.01 * secs
        };
        let left = (max_batches - state.iteration) as f64 * avg_time;
        if opts.verbose {
            println!(
                " {}: {loss:.6}, {:.6} avg loss, {lr:.6} rate, {secs:.3} seconds, {} images, {:.2} images/s, ETA {}",
                state.iteration,
                state.avg_loss,
                state.seen,
                batch as f64 / secs.max(1e-9),
                format_eta(left)
            );
        }
        let done = state.iteration == max_batches;
        if opts.map && (state.iteration >= last_map_at + map_every || done) {
            let cfg0 = cfg.clone();
            let m = evaluate_map(
                &cfg0,
                &net.to_weights(state.seen)?,
                &data_path,
                &opts.device,
            )?;
            last_map_at = state.iteration;
            state.maps.push((state.iteration, m));
            println!(" mAP@0.50 at iteration {} = {:.4}", state.iteration, m);
        }
        if state.iteration % opts.checkpoint_every.max(1) == 0 || done {
            let p = save_checkpoint(&opts.out_dir, &state, &net, &opt, opts.keep_checkpoints)?;
            write_chart(&opts.out_dir.join("chart.png"), &state, max_batches)?;
            if opts.verbose {
                eprintln!("checkpoint {}", p.display());
            }
        }
    }
    drop(producer);
    // Final export at the cfg's own size, with `seen` updated (Darknet's `_final.weights`).
    let final_w = net.to_weights(state.seen)?;
    let base_name = opts
        .cfg
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let final_weights = opts.out_dir.join(format!("{base_name}_final.weights"));
    let final_st = opts.out_dir.join(format!("{base_name}_final.safetensors"));
    crate::weights::darknet::write(&cfg, &final_w, &final_weights)?;
    crate::weights::safetensors::write(&cfg, &final_w, &cfg_text, &final_st)?;
    let chart = opts.out_dir.join("chart.png");
    write_chart(&chart, &state, max_batches)?;
    let elapsed = t0.elapsed().as_secs_f64();
    Ok(TrainSummary {
        iterations: state.iteration,
        seen: state.seen,
        history: state.history.clone(),
        maps: state.maps.clone(),
        images_per_sec: images_done as f64 / elapsed.max(1e-9),
        final_weights,
        final_safetensors: final_st,
        chart,
    })
}

fn save_checkpoint(
    dir: &Path,
    state: &TrainerState,
    net: &TrainableNetwork,
    opt: &DarknetSgd,
    keep: usize,
) -> Result<PathBuf> {
    let model: Vec<(String, Tensor)> = {
        let data = net.varmap.data().lock().expect("VarMap lock");
        let mut v: Vec<_> = data
            .iter()
            .map(|(k, var)| (k.clone(), var.as_tensor().clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    };
    checkpoint::save(dir, state, &model, &opt.state(), keep)
}

fn format_eta(secs: f64) -> String {
    let s = secs.max(0.0) as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// The loss chart (Darknet's `chart.png` from `draw_train_chart`/`draw_train_loss`): average loss (blue,
/// left axis up to min(max, 20)·1.2) against the iteration, mAP@0.5 (red, right axis 0..1) where evaluated.
pub fn render_chart(state: &TrainerState, max_batches: usize) -> image::RgbImage {
    use crate::eval::plot::{line, text};
    use image::{Rgb, RgbImage};
    let (w, h) = (800i64, 500i64);
    let (l, r, t, b) = (70i64, 60i64, 40i64, 50i64);
    let mut img = RgbImage::from_pixel(w as u32, h as u32, Rgb([255, 255, 255]));
    // Darknet's chart tops out at `max_chart_loss` (default 20) so the start of training does not flatten the rest.
    let max_loss = state
        .history
        .iter()
        .map(|&(_, _, a)| a)
        .fold(0f32, f32::max)
        .clamp(1e-6, 20.0)
        * 1.2;
    let px = |it: usize| l + ((w - l - r) as f64 * it as f64 / max_batches.max(1) as f64) as i64;
    let py = |v: f64, top: f64| h - b - ((h - t - b) as f64 * (v / top).clamp(0.0, 1.0)) as i64;
    let grey = Rgb([160, 160, 160]);
    line(&mut img, (l, t), (l, h - b), grey);
    line(&mut img, (l, h - b), (w - r, h - b), grey);
    line(&mut img, (w - r, t), (w - r, h - b), grey);
    for k in 0..=4 {
        let v = max_loss as f64 * k as f64 / 4.0;
        text(
            &mut img,
            4,
            py(v, max_loss as f64) - 3,
            &format!("{v:.2}"),
            1,
            Rgb([0, 0, 0]),
        );
        text(
            &mut img,
            w - r + 6,
            py(k as f64 / 4.0, 1.0) - 3,
            &format!("{:.2}", k as f64 / 4.0),
            1,
            Rgb([200, 0, 0]),
        );
        let it = max_batches * k / 4;
        text(
            &mut img,
            px(it) - 10,
            h - b + 8,
            &it.to_string(),
            1,
            Rgb([0, 0, 0]),
        );
    }
    text(
        &mut img,
        l,
        10,
        "LOSS (BLUE: AVG)  MAP@0.5 (RED)",
        2,
        Rgb([0, 0, 0]),
    );
    text(&mut img, w / 2 - 40, h - 20, "ITERATION", 1, Rgb([0, 0, 0]));
    let mut prev: Option<(i64, i64)> = None;
    for &(it, _, a) in &state.history {
        let p = (px(it), py(a as f64, max_loss as f64));
        if let Some(q) = prev {
            line(&mut img, q, p, Rgb([0, 0, 255]));
        }
        prev = Some(p);
    }
    let mut prev: Option<(i64, i64)> = None;
    for &(it, m) in &state.maps {
        let p = (px(it), py(m, 1.0));
        if let Some(q) = prev {
            line(&mut img, q, p, Rgb([220, 0, 0]));
        }
        line(&mut img, (p.0 - 3, p.1), (p.0 + 3, p.1), Rgb([220, 0, 0]));
        prev = Some(p);
    }
    img
}

fn write_chart(path: &Path, state: &TrainerState, max_batches: usize) -> Result<()> {
    let img = render_chart(state, max_batches);
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .context("encoding chart.png")?;
    crate::util::write_atomic(path, &bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multiscale_follows_train_detector() {
        let text = "[net]\nwidth=416\nheight=416\nchannels=3\n[convolutional]\nfilters=18\nsize=1\nactivation=linear\n\
                    [yolo]\nmask=0,1,2\nanchors=10,10, 20,20, 30,30\nclasses=1\nnum=3\nrandom=1\n";
        let cfg = NetworkConfig::parse(text, Path::new("m.cfg")).unwrap();
        // First block of a fresh run and the last 100 iterations: the largest size, round(1.4·416/32 + 1)·32.
        assert_eq!(multiscale_size(&cfg, 1.0, 0, true, 1000, 1), (608, 608));
        assert_eq!(multiscale_size(&cfg, 1.0, 950, false, 1000, 1), (608, 608));
        for it in (10..800).step_by(10) {
            let (w, h) = multiscale_size(&cfg, 1.0, it, false, 1000, 1);
            assert_eq!(w, h);
            assert!(w % 32 == 0 && (320..=608).contains(&w), "{w}");
            // Deterministic per block.
            assert_eq!(multiscale_size(&cfg, 1.0, it, false, 1000, 1), (w, h));
        }
    }

    #[test]
    fn chart_renders() {
        let st = TrainerState {
            iteration: 3,
            seen: 3,
            avg_loss: 1.0,
            history: vec![(1, 3.0, 3.0), (2, 2.0, 2.9), (3, 1.0, 2.7)],
            maps: vec![(3, 0.5)],
            seed: 0,
            darknet_rng: false,
            cfg_hash: 0,
        };
        let img = render_chart(&st, 10);
        assert_eq!(img.dimensions(), (800, 500));
        assert!(img.pixels().any(|p| p.0 == [0, 0, 255]));
        assert!(img.pixels().any(|p| p.0 == [220, 0, 0]));
    }
}
