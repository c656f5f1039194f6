//! `candle-darknet train <cfg> --data <.data>`: Darknet's `detector train` loop
//! ([`candle_darknet::train::trainer`]).

use std::path::PathBuf;

use anyhow::Result;
use candle_darknet::layers::batchnorm::BnSums;
use candle_darknet::train::trainer::{train, TrainEvent, TrainOptions};

#[derive(clap::Args, Debug)]
pub struct TrainArgs {
    /// Model cfg (training keys of [net]: batch, subdivisions, learning_rate, burn_in, policy, ...).
    pub cfg: PathBuf,
    /// Darknet `.data` file (train=, valid=, names=), or a COCO instances json (see --images).
    #[arg(long)]
    pub data: PathBuf,
    /// Image folder of a COCO json.
    #[arg(long)]
    pub images: Option<PathBuf>,
    /// Initial weights: `.weights` (a `partial` file is fine), or safetensors.
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Overrides the cfg's max_batches.
    #[arg(long, value_parser = super::bounds::positive)]
    pub max_batches: Option<usize>,
    /// Output directory (checkpoints, chart.png, final weights).
    #[arg(long, default_value = "backup")]
    pub out: PathBuf,
    /// Continue from the newest checkpoint in --out.
    #[arg(long)]
    pub resume: bool,
    /// Use Darknet's single glibc rand() stream for augmentation (not resumable exactly).
    #[arg(long)]
    pub darknet_rng: bool,
    /// Sum the batch-norm mean and variance in Darknet's CPU order (mean_cpu / variance_cpu: one float
    /// accumulator per channel) instead of candle's reductions: for parity runs, slower.
    #[arg(long)]
    pub darknet_bn_sums: bool,
    /// Compute mAP@0.5 on valid= periodically and at the end.
    #[arg(long)]
    pub map: bool,
    /// mAP interval in iterations (default: max(100, one epoch)).
    #[arg(long, value_parser = super::bounds::positive)]
    pub map_every: Option<usize>,
    /// Checkpoint interval in iterations.
    #[arg(long, default_value_t = 100, value_parser = super::bounds::positive)]
    pub checkpoint_every: usize,
    /// Checkpoints to keep (0 = all).
    #[arg(long, default_value_t = 3, value_parser = super::bounds::count)]
    pub keep: usize,
    /// Loader threads.
    #[arg(long, default_value_t = 1, value_parser = super::bounds::workers)]
    pub workers: usize,
    /// Refuse to start when the estimated training memory (parameters, gradients, feature maps of one
    /// mini-batch) is above this (e.g. 8G); default: RAM or `ulimit -v`.
    #[arg(long, value_parser = super::bounds::memory)]
    pub max_memory: Option<u64>,
    /// Reset `seen` of the initial weights (Darknet's -clear).
    #[arg(long)]
    pub clear: bool,
    /// Stop with an error at an unreadable image or label file (default: skip it with a warning, count it
    /// and draw another image, as Darknet keeps going).
    #[arg(long)]
    pub strict: bool,
    /// No per-iteration line.
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: TrainArgs) -> Result<()> {
    let mut o = TrainOptions::new(args.cfg, args.data, args.out);
    o.weights = args.weights;
    o.images = args.images;
    o.device = candle_darknet::util::device(&args.device)?;
    o.seed = args.seed;
    o.max_batches = args.max_batches;
    o.resume = args.resume;
    o.darknet_rng = args.darknet_rng;
    if args.darknet_bn_sums {
        o.bn_sums = BnSums::DarknetCpu;
    }
    o.map = args.map;
    o.map_every = args.map_every;
    o.checkpoint_every = args.checkpoint_every;
    o.keep_checkpoints = args.keep;
    o.workers = args.workers;
    o.clear = args.clear;
    o.max_memory = args.max_memory;
    o.strict = args.strict;
    let quiet = args.quiet;
    // The library reports; the command line prints (Darknet's lines: results on stdout, the rest on stderr).
    let print = move |ev: TrainEvent| {
        if quiet && ev.is_detail() {
            return;
        }
        if ev.is_result() {
            println!("{ev}");
        } else {
            eprintln!("{ev}");
        }
    };
    let s = train(&o, Box::new(print))?;
    let last = s.history.last().copied().unwrap_or((0, f32::NAN, f32::NAN));
    println!(
        "done: {} iterations, {} images seen, last loss {:.4}, avg loss {:.4}, {:.2} images/s, {:.0}% of the iteration time waiting for data",
        s.iterations, s.seen, last.1, last.2, s.images_per_sec, 100.0 * s.data_wait_share
    );
    for (it, m) in &s.maps {
        println!("mAP@0.50 at {it}: {m:.4}");
    }
    if !s.finished {
        println!(
            "stopped before max_batches: the weights are `_last`, not `_final`; `--resume` continues"
        );
    }
    println!(
        "wrote {}, {}, {}",
        s.weights.display(),
        s.safetensors.display(),
        s.chart.display()
    );
    Ok(())
}
