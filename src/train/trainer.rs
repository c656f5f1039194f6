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
//! Shaped like torchvision's detection `engine.py`: [`Trainer::new`] settles everything `train_detector` does
//! before its loop ([`super::setup`]), [`Trainer::step`] runs one iteration, [`Trainer::evaluate`] the mAP
//! ([`super::map`]), [`Trainer::checkpoint`] writes a checkpoint and the chart ([`super::chart`]),
//! [`Trainer::finish`] the final weights; [`train`] is that loop. Progress goes to a callback as
//! [`TrainEvent`]s; nothing here prints. Batches come from the one batch loader ([`BatchLoader`]).
//!
//! Deliberate differences: the data stream (see [`crate::data::loader`]) is by default an independent
//! generator per iteration seeded by `(seed, iteration)` (so a resumed run is identical to an uninterrupted
//! one), and the multi-scale draw uses its own generator seeded by `(seed, iteration/10)`; `--darknet-rng` uses
//! Darknet's single glibc stream for the data (not restorable on resume). Checkpoints keep the optimizer
//! accumulators (Darknet restarts with zero momentum) and the `ema_alpha` average ([`super::ema`]; Darknet
//! re-initialises it). `weights_reject_freq`, `adam` and tracking are not reproduced.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};

use crate::cfg::{LayerConfig, NetworkConfig};
use crate::data::detection::DetectionBatch;
use crate::data::loader::{BatchLoader, DarknetMultiscale, LoaderConfig, RngMode, Sizes};
use crate::dataset::DataCfg;
use crate::layers::batchnorm::BnSums;
use crate::network::{Network, TrainableNetwork};
use crate::train::checkpoint::{self, TrainerState};
use crate::train::ema::Ema;
use crate::train::{current_batch, current_rate, yolo_train_head, DarknetSgd};
use crate::weights::NetWeights;

pub use super::chart::render_chart;
pub use super::map::evaluate_map;
pub use super::progress::{IterationStats, TrainEvent};
use super::setup;
pub use super::setup::multiscale_size;

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
    /// Leave the biases of batch-normalised convolutions untrained, as Darknet's CPU build does
    /// (`backward_batchnorm_layer` has no `backward_bias`, so their `bias_updates` stay 0); the CUDA build
    /// and the default here train them.
    pub freeze_bn_biases: bool,
    /// How the training-mode batch norm sums its mean and variance: candle's reductions (default), or the
    /// order and rounding of Darknet's CPU `mean_cpu` / `variance_cpu` ([`BnSums::DarknetCpu`]) for parity runs
    /// against Darknet (slower: the activations go through the host).
    pub bn_sums: BnSums,
    /// The memory the training estimate may reach (`--max-memory`); `None`: RAM or `ulimit -v`.
    pub max_memory: Option<u64>,
    /// Stop at an unreadable image or label file (`--strict`); otherwise it is skipped with a warning and
    /// counted in [`TrainSummary::skipped`] (see [`crate::data::detection::Sources::strict`]).
    pub strict: bool,
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
            freeze_bn_biases: false,
            bn_sums: BnSums::Candle,
            max_memory: None,
            strict: false,
        }
    }
}

/// Unreadable samples met so far: the distinct files (images and label files apart), the draws they
/// cost, and the first `(path, reason)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Skipped {
    pub images: std::collections::BTreeSet<String>,
    pub labels: std::collections::BTreeSet<String>,
    /// Samples replaced (a bad file drawn twice counts twice).
    pub draws: usize,
    pub first: Option<(String, String)>,
}

impl Skipped {
    fn add(&mut self, path: &str, reason: &str) {
        self.draws += 1;
        let set = if reason.starts_with(crate::data::detection::LABEL_SKIP) {
            &mut self.labels
        } else {
            &mut self.images
        };
        set.insert(path.to_string());
        if self.first.is_none() {
            self.first = Some((path.to_string(), reason.to_string()));
        }
    }

    /// "skipped N images (I unreadable, L with unreadable labels; D draws replaced): first: <file>: <reason>",
    /// or `None` when nothing was skipped.
    pub fn summary(&self) -> Option<String> {
        let (path, reason) = self.first.as_ref()?;
        let (i, l) = (self.images.len(), self.labels.len());
        Some(format!(
            "skipped {} images ({i} unreadable, {l} with unreadable labels; {} draws replaced): first: {path}: {reason}",
            i + l,
            self.draws
        ))
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
    /// The share of the iterations' wall time spent waiting for the data loader (0..1).
    pub data_wait_share: f64,
    /// Whether the run reached `max_batches` (false: stopped early, e.g. by Ctrl-C).
    pub finished: bool,
    /// `<cfg name>_final.weights` of a finished run, `<cfg name>_last.weights` of one stopped early.
    pub weights: PathBuf,
    /// The same weights as safetensors (`_final` or `_last`).
    pub safetensors: PathBuf,
    pub chart: PathBuf,
    /// Training samples skipped as unreadable.
    pub skipped: Skipped,
}

/// The result of one mini-batch: Darknet's `get_network_cost` and the per-head costs.
pub struct MiniBatchResult {
    pub network_cost: f32,
    /// `(layer index, l.cost)` of every yolo layer.
    pub costs: Vec<(usize, f32)>,
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
        check_finite_cost(*i, res.cost)?;
        costs.push((*i, res.cost));
        total = Some(match total {
            None => surrogate,
            Some(t) => (t + surrogate)?,
        });
    }
    let total = total.context("the network has no [yolo] layer")?;
    let grads = total.backward()?;
    opt.accumulate(&grads)?;
    let network_cost = costs.iter().map(|c| c.1).sum::<f32>() / costs.len() as f32;
    Ok(MiniBatchResult {
        network_cost,
        costs,
    })
}

/// A yolo layer's cost that is NaN or infinite stops training. Darknet's `train_detector` keeps going (it
/// only resets `avg_loss` when it is NaN), but one non-finite cost makes its gradients non-finite too, and
/// the update would spread them into every weight. The check runs before `backward` and `accumulate`, so
/// neither the accumulated updates nor the weights (nor any checkpoint) hold anything of this mini-batch;
/// [`Trainer::step`] adds the iteration and subdivision to the message.
pub fn check_finite_cost(layer: usize, cost: f32) -> Result<()> {
    if !cost.is_finite() {
        bail!(
            "the loss of yolo layer {layer} is {cost} (not finite): training stopped before the update; \
             try a lower learning_rate or a longer burn_in, and check the labels"
        );
    }
    Ok(())
}

/// The progress callback: receives every [`TrainEvent`] of a run.
pub type Progress<'a> = Box<dyn FnMut(TrainEvent) + 'a>;

/// A training run between its set-up and its final weights (see the module doc).
pub struct Trainer<'a> {
    opts: TrainOptions,
    cfg: NetworkConfig,
    cfg_text: String,
    /// The `.data` file (a COCO json's Darknet copy) whose `valid=` list the mAP uses.
    data_path: PathBuf,
    net: TrainableNetwork,
    opt: DarknetSgd,
    /// The `ema_alpha` average of the weights (None without it).
    ema: Option<Ema>,
    state: TrainerState,
    loader: BatchLoader,
    max_batches: usize,
    mini_batch: usize,
    subdivisions: usize,
    map_every: usize,
    last_map_at: usize,
    resumed: bool,
    started: Instant,
    images_done: u64,
    /// Wall time of the iterations of this process, and the part spent waiting for batches.
    step_seconds: f64,
    data_wait_seconds: f64,
    avg_time: f64,
    /// The batch of the last step and the yolo costs `(layer, l.cost)` of its last mini-batch.
    last_batch: Option<DetectionBatch>,
    last_costs: Vec<(usize, f32)>,
    /// Training samples skipped as unreadable (not `strict`), and the first with its reason.
    skipped: Skipped,
    progress: Progress<'a>,
}

/// The parsed cfg, its text and `max_batches` (the option's, else the cfg's).
fn read_cfg(opts: &TrainOptions) -> Result<(NetworkConfig, String, usize)> {
    let text = std::fs::read_to_string(&opts.cfg)
        .with_context(|| format!("reading {}", opts.cfg.display()))?;
    let cfg = NetworkConfig::parse(&text, &opts.cfg)?;
    let max_batches = opts.max_batches.unwrap_or(cfg.net.max_batches);
    if max_batches == 0 {
        bail!("{}: max_batches is 0", opts.cfg.display());
    }
    Ok((cfg, text, max_batches))
}

impl<'a> Trainer<'a> {
    /// Everything `train_detector` does before its loop: reads the cfg and the dataset, checks the heads,
    /// loads the weights (or the newest checkpoint with `resume`), and starts the batch loader.
    pub fn new(opts: TrainOptions, mut progress: Progress<'a>) -> Result<Self> {
        let (cfg, cfg_text, max_batches) = read_cfg(&opts)?;
        let data_path = setup::darknet_data(&opts.data, opts.images.as_deref(), &opts.out_dir)?;
        let data = DataCfg::read(&data_path)?;
        let list = setup::train_list(&data)?;
        let missing = list.missing_labels();
        if let Some(first) = missing.first() {
            progress(TrainEvent::Warning(format!(
                "{} label files not found (those images have no objects), e.g. {}",
                missing.len(),
                first.display()
            )));
        }
        let yolo = setup::checked_last_yolo(&cfg, &data)?;
        let (mini_batch, subdivisions) = (cfg.net.mini_batch(), cfg.net.subdivisions.max(1));
        let batch = mini_batch * subdivisions;
        if batch < 2 {
            bail!(
                "{}: batch=1: Darknet refuses to train with batch 1 (batch norm needs at least 2 values)",
                opts.cfg.display()
            );
        }
        // Checked before the weights, the network or the loader allocate anything.
        crate::limits::MemoryEstimate::of(&cfg, mini_batch, true)
            .check(crate::limits::memory_budget(opts.max_memory), &cfg)?;
        std::fs::create_dir_all(&opts.out_dir)
            .with_context(|| format!("creating {}", opts.out_dir.display()))?;
        checkpoint::remove_stale_temporaries(&opts.out_dir)?;
        let start = setup::start(&cfg, checkpoint::text_hash(&cfg_text), &opts, &mut progress)?;
        let mut net = Network::load_trainable(&cfg, &start.weights, &opts.device)?;
        net.bn_sums = opts.bn_sums;
        let mut opt = setup::optimizer_for(&net, &cfg, opts.freeze_bn_biases)?;
        if let Some(s) = &start.optimizer {
            opt.load_state(s)?;
        }
        let mut ema = Ema::new(&cfg, &net, max_batches);
        if let Some(e) = ema.as_mut() {
            if !start.ema.is_empty() && !e.restore(&start.ema) {
                bail!("the checkpoint's ema tensors do not match the cfg's convolutions");
            }
        }
        let state = start.state;
        let fresh = state.iteration == 0 && start.resumed.is_none();
        let sizes = if opts.darknet_rng {
            Sizes::Darknet(DarknetMultiscale {
                random: yolo.random,
                init_w: cfg.net.width,
                init_h: cfg.net.height,
                resize_step: cfg.net.resize_step,
                max_batches,
            })
        } else {
            Sizes::Schedule(setup::size_schedule(
                &cfg,
                yolo.random,
                fresh,
                max_batches,
                state.seed,
            ))
        };
        let lc = LoaderConfig {
            batch,
            workers: opts.workers,
            prefetch: 2,
            seed: state.seed,
            mode: if opts.darknet_rng {
                RngMode::Darknet
            } else {
                RngMode::PerBatch
            },
            cache_images: true,
            start: state.iteration as u64,
            strict: opts.strict,
        };
        let aug = setup::augment_config(&cfg, &yolo);
        let n_train = list.len();
        let loader = BatchLoader::spawn_scheduled(list.paths, list.resolver, aug, lc, Some(sizes))?;
        let mut trainer = Trainer {
            // calc_map_for_each = max(one epoch in iterations, 100).
            map_every: opts.map_every.unwrap_or(100usize.max(n_train / batch)),
            last_map_at: state.maps.last().map(|m| m.0).unwrap_or(state.iteration),
            resumed: start.resumed.is_some(),
            opts,
            cfg,
            cfg_text,
            data_path,
            net,
            opt,
            ema,
            state,
            loader,
            max_batches,
            mini_batch,
            subdivisions,
            started: Instant::now(),
            images_done: 0,
            step_seconds: 0.0,
            data_wait_seconds: 0.0,
            avg_time: -1.0,
            last_batch: None,
            last_costs: Vec::new(),
            skipped: Skipped::default(),
            progress,
        };
        trainer.report_start();
        Ok(trainer)
    }

    /// The loop state (iteration, seen, loss history, mAPs).
    pub fn state(&self) -> &TrainerState {
        &self.state
    }

    /// The batch of the last [`Trainer::step`].
    pub fn last_batch(&self) -> Option<&DetectionBatch> {
        self.last_batch.as_ref()
    }

    /// `(layer index, l.cost)` of every yolo layer for the last mini-batch of the last step (what Darknet's
    /// `l.cost[0]` holds after `train_network`).
    pub fn last_costs(&self) -> &[(usize, f32)] {
        &self.last_costs
    }

    /// Every parameter and rolling statistic now, by name (docs/weights.md).
    pub fn tensors(&self) -> Vec<(String, Tensor)> {
        let data = self.net.varmap.data().lock().expect("VarMap lock");
        let mut v: Vec<_> = data
            .iter()
            .map(|(k, var)| (k.clone(), var.as_tensor().clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// The optimizer's accumulators (`<param name>.update`, Darknet's `weight_updates`, `bias_updates`,
    /// `scale_updates` after the last update).
    pub fn optimizer_state(&self) -> Vec<(String, Tensor)> {
        self.opt.state()
    }

    /// The network's current input size `(width, height)`.
    pub fn network_size(&self) -> (usize, usize) {
        (self.net.net.cfg.net.width, self.net.net.cfg.net.height)
    }

    /// Whether `max_batches` iterations are done.
    pub fn done(&self) -> bool {
        self.state.iteration >= self.max_batches
    }

    /// The `Started` event (the line `train_detector` prints before its loop), sent when set-up is done.
    fn report_start(&mut self) {
        let n = &self.cfg.net;
        let ev = TrainEvent::Started {
            cfg: self.opts.cfg.clone(),
            from: self.state.iteration,
            max_batches: self.max_batches,
            batch: self.mini_batch * self.subdivisions,
            subdivisions: self.subdivisions,
            mini_batch: self.mini_batch,
            learning_rate: n.learning_rate,
            momentum: n.momentum,
            decay: n.decay,
        };
        (self.progress)(ev);
    }

    /// One iteration (`train_network`): the network resized to this iteration's size, one batch cut into
    /// `subdivisions` mini-batches whose gradients accumulate, then one update at `get_current_rate`.
    pub fn step(&mut self) -> Result<IterationStats> {
        let k = self.state.iteration;
        let tick = Instant::now();
        // The loader sizes the batch (the multi-scale schedule, or Darknet's draw from its stream).
        let b = self.loader.next_batch()?;
        let data_wait = tick.elapsed().as_secs_f64();
        let (w, h) = (b.w, b.h);
        if (w, h) != (self.net.net.cfg.net.width, self.net.net.cfg.net.height) {
            self.net = self.net.resized(w, h)?;
            (self.progress)(TrainEvent::Resized {
                width: w,
                height: h,
            });
        }
        for (path, reason) in &b.skipped {
            self.skipped.add(path, reason);
            let w = format!("skipped unreadable training sample {path}: {reason}");
            (self.progress)(TrainEvent::Warning(w));
        }
        for path in b.invalid_resizes() {
            let w = format!("invalid resize of {path}; the whole image was used (as Darknet)");
            (self.progress)(TrainEvent::Warning(w));
        }
        let (mini, batch) = (self.mini_batch, self.mini_batch * self.subdivisions);
        if (b.w, b.h, b.n) != (w, h, batch) {
            bail!(
                "loader produced {}x{} x{}, expected {w}x{h} x{batch}",
                b.w,
                b.h,
                b.n
            );
        }
        let (per_x, per_y) = (3 * h * w, b.max_boxes * 6);
        let mut sum = 0f32;
        self.last_costs.clear();
        for s in 0..self.subdivisions {
            let x = &b.x[s * mini * per_x..(s + 1) * mini * per_x];
            let x = Tensor::from_slice(x, (mini, 3, h, w), &self.opts.device)?;
            let truth = &b.y[s * mini * per_y..(s + 1) * mini * per_y];
            let r = train_minibatch(&self.net, &mut self.opt, &x, truth)
                .with_context(|| format!("iteration {}, subdivision {s}", k + 1))?;
            sum += r.network_cost;
            self.last_costs = r.costs;
            self.state.seen += mini as u64;
        }
        self.last_batch = Some(b);
        self.state.iteration += 1;
        let rate = current_rate(&self.cfg.net, current_batch(&self.cfg.net, self.state.seen));
        self.opt.apply(rate, batch)?;
        if let Some(e) = self.ema.as_mut() {
            // train_network_waitkey: after update_network, with cur_iteration already incremented.
            let step = e.after_update(self.state.iteration, &self.net)?;
            if step.initialized || step.updated || step.applied {
                let alpha = self.cfg.net.ema_alpha;
                (self.progress)(TrainEvent::Ema { alpha, step });
            }
        }
        let stats = self.record(
            sum / batch as f32,
            rate,
            tick.elapsed().as_secs_f64(),
            data_wait,
        );
        (self.progress)(TrainEvent::Iteration(stats));
        Ok(stats)
    }

    /// Darknet's loss bookkeeping after an update: `avg_loss`, the history, `avg_time` and the ETA.
    fn record(&mut self, loss: f32, rate: f32, seconds: f64, data_wait: f64) -> IterationStats {
        let st = &mut self.state;
        if st.avg_loss < 0.0 || st.avg_loss.is_nan() {
            st.avg_loss = loss;
        }
        st.avg_loss = st.avg_loss * 0.9 + loss * 0.1;
        st.history.push((st.iteration, loss, st.avg_loss));
        let batch = (self.mini_batch * self.subdivisions) as u64;
        self.images_done += batch;
        self.step_seconds += seconds;
        self.data_wait_seconds += data_wait;
        self.avg_time = if self.avg_time < 0.0 {
            seconds
        } else {
            0.99 * self.avg_time + 0.01 * seconds
        };
        IterationStats {
            iteration: st.iteration,
            loss,
            avg_loss: st.avg_loss,
            rate,
            seconds,
            data_wait_seconds: data_wait,
            seen: st.seen,
            images_per_sec: batch as f64 / seconds.max(1e-9),
            eta_seconds: (self.max_batches - st.iteration) as f64 * self.avg_time,
        }
    }

    /// mAP@0.5 of the current weights on the `valid=` list (recorded in the state and reported).
    pub fn evaluate(&mut self) -> Result<f64> {
        let weights = self.net.to_weights(self.state.seen)?;
        let map = evaluate_map(&self.cfg, &weights, &self.data_path, &self.opts.device)?;
        let iteration = self.state.iteration;
        self.last_map_at = iteration;
        self.state.maps.push((iteration, map));
        // Before any step of this run: the weights it started from.
        let initial = self.state.history.is_empty();
        (self.progress)(TrainEvent::Map {
            iteration,
            map,
            initial,
        });
        Ok(map)
    }

    /// Writes a checkpoint (weights, optimizer accumulators, loop state) and the chart.
    pub fn checkpoint(&mut self) -> Result<PathBuf> {
        let p = save_checkpoint(
            &self.opts.out_dir,
            &self.state,
            &self.net,
            &self.opt,
            self.ema.as_ref(),
            self.opts.keep_checkpoints,
        )?;
        super::chart::write_chart(
            &self.opts.out_dir.join("chart.png"),
            &self.state,
            self.max_batches,
        )?;
        (self.progress)(TrainEvent::Checkpoint(p.clone()));
        // train_detector writes `_ema.weights` with each `_last.weights` once the average is initialised.
        if let Some(e) = &self.ema {
            if e.is_initialized()? {
                let path = self
                    .opts
                    .out_dir
                    .join(format!("{}_ema.weights", self.base_name()));
                let tensors = e.weights_tensors(&self.net);
                let header = crate::weights::Header::current(self.state.seen);
                let w = NetWeights::from_tensors(&self.net.net.cfg, header, &tensors)?;
                crate::weights::darknet::write(&self.cfg, &w, &path)?;
                (self.progress)(TrainEvent::EmaWeights(path));
            }
        }
        Ok(p)
    }

    /// The cfg's file stem (`train_detector`'s `base`).
    fn base_name(&self) -> String {
        base_name(&self.opts.cfg)
    }

    fn map_due(&self) -> bool {
        self.opts.map && (self.state.iteration >= self.last_map_at + self.map_every || self.done())
    }

    fn checkpoint_due(&self) -> bool {
        let every = self.opts.checkpoint_every.max(1);
        self.state.iteration.is_multiple_of(every) || self.done()
    }

    /// The loop of `train_detector`: an mAP of the initial weights (with `map`, on a fresh start), then
    /// step, mAP and checkpoint when due, until `max_batches`; then [`Trainer::finish`].
    pub fn run(mut self) -> Result<TrainSummary> {
        if self.opts.map && !self.resumed {
            // Darknet does not do this; it shows what fine-tuning gained.
            self.evaluate()?;
        }
        while !self.done() {
            if crate::util::interrupted() {
                // Ctrl-C: a checkpoint of the last finished iteration, then the weights as `_last` (the run
                // did not reach max_batches, see `finish`).
                self.checkpoint()?;
                (self.progress)(TrainEvent::Warning(format!(
                    "interrupted at iteration {}: checkpoint written, `--resume` continues",
                    self.state.iteration
                )));
                return self.finish();
            }
            self.step()?;
            if self.map_due() {
                self.evaluate()?;
            }
            if self.checkpoint_due() {
                self.checkpoint()?;
            }
        }
        self.finish()
    }

    /// Stops the loader and writes the weights at the cfg's own size with `seen` updated, plus safetensors,
    /// and the chart. Named as `train_detector` names them: `<cfg name>_final.*` only when the run reached
    /// `max_batches` (the `_final.weights` written after its loop), `<cfg name>_last.*` otherwise (its
    /// `_last.weights`, the weights of a run still under way), so that a run stopped early (Ctrl-C, or a
    /// step-by-step caller that stops) never leaves a file that reads as "training finished".
    pub fn finish(self) -> Result<TrainSummary> {
        let Trainer {
            opts,
            cfg,
            cfg_text,
            net,
            state,
            loader,
            max_batches,
            started,
            images_done,
            step_seconds,
            data_wait_seconds,
            skipped,
            mut progress,
            ..
        } = self;
        drop(loader);
        if let Some(s) = skipped.summary() {
            progress(TrainEvent::Warning(s));
        }
        let w = net.to_weights(state.seen)?;
        let finished = state.iteration >= max_batches;
        let stem = weights_stem(&base_name(&opts.cfg), finished);
        let weights = opts.out_dir.join(format!("{stem}.weights"));
        let safetensors = opts.out_dir.join(format!("{stem}.safetensors"));
        crate::weights::darknet::write(&cfg, &w, &weights)?;
        crate::weights::safetensors::write(&cfg, &w, &cfg_text, &safetensors)?;
        let chart = opts.out_dir.join("chart.png");
        super::chart::write_chart(&chart, &state, max_batches)?;
        let elapsed = started.elapsed().as_secs_f64();
        Ok(TrainSummary {
            iterations: state.iteration,
            seen: state.seen,
            history: state.history,
            maps: state.maps,
            images_per_sec: images_done as f64 / elapsed.max(1e-9),
            data_wait_share: if step_seconds > 0.0 {
                data_wait_seconds / step_seconds
            } else {
                0.0
            },
            finished,
            weights,
            safetensors,
            chart,
            skipped,
        })
    }
}

/// Runs the training loop (see the module doc), reporting progress to `progress`.
pub fn train(opts: &TrainOptions, progress: Progress<'_>) -> Result<TrainSummary> {
    Trainer::new(opts.clone(), progress)?.run()
}

/// The cfg's file stem, `model` without one.
fn base_name(cfg: &std::path::Path) -> String {
    cfg.file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

/// The file stem of the weights [`Trainer::finish`] writes: `train_detector`'s `%s/%s_final.weights` after
/// its loop, `%s/%s_last.weights` for a run not at its end (src/detector.c).
fn weights_stem(base_name: &str, finished: bool) -> String {
    let kind = if finished { "final" } else { "last" };
    format!("{base_name}_{kind}")
}

fn save_checkpoint(
    dir: &std::path::Path,
    state: &TrainerState,
    net: &TrainableNetwork,
    opt: &DarknetSgd,
    ema: Option<&Ema>,
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
    let mut avg: Vec<(String, Tensor)> = ema
        .map(|e| {
            e.average()
                .iter()
                .map(|(k, t)| (k.clone(), t.clone()))
                .collect()
        })
        .unwrap_or_default();
    avg.sort_by(|a, b| a.0.cmp(&b.0));
    checkpoint::save(dir, state, &model, &opt.state(), &avg, keep)
}
