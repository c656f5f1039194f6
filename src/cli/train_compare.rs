//! `candle-darknet train-compare <case dir>`: our training loop against a Darknet training-loop reference
//! written by `tools/train_loop_ref/make_ref.sh` (see docs/training.md, "Training-loop parity"). Prints one
//! table row per iteration and exits non-zero at the first divergence.

use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_darknet::layers::batchnorm::BnSums;
use candle_darknet::train::parity::{compare_training, ParityCase, ParityRun, ParityTolerance};

#[derive(clap::Args, Debug)]
pub struct TrainCompareArgs {
    /// The case directory (case.json, reference/, noise_floor.json).
    pub case: PathBuf,
    /// The `.data` file whose `train=` list holds the case's images in its train.txt order
    /// (default: <case>/train.data, written by make_ref.sh for the tiny case).
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Scratch directory (default: <case>/ours).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Also print every tensor of every iteration (weights rel, update rel, ulps, and with the reference's
    /// accumulators the accumulator rel).
    #[arg(long)]
    pub tensors: bool,
    /// Write our tensors and optimizer accumulators after each update to DIR/ours_NNN.safetensors.
    #[arg(long)]
    pub dump: Option<PathBuf>,
    /// Compare only the first N iterations of the case.
    #[arg(long, value_parser = super::bounds::positive)]
    pub iterations: Option<usize>,
    /// Batch-norm statistics from candle's reductions instead of Darknet's summation order (shows what the
    /// order alone costs).
    #[arg(long)]
    pub candle_bn_sums: bool,
}

pub fn run(args: TrainCompareArgs) -> Result<()> {
    let mut case = ParityCase::read(&args.case)?;
    if let Some(k) = args.iterations {
        case.iterations.truncate(k);
    }
    let run = ParityRun {
        data: args.data.unwrap_or_else(|| args.case.join("train.data")),
        out_dir: args.out.unwrap_or_else(|| args.case.join("ours")),
        dump_dir: args.dump.clone(),
        device: candle_core::Device::Cpu,
        tolerance: ParityTolerance::default(),
        bn_sums: if args.candle_bn_sums {
            BnSums::Candle
        } else {
            BnSums::DarknetCpu
        },
    };
    let report = compare_training(&case, &run, &mut |r| {
        eprintln!(
            "iteration {}: loss {} vs Darknet {}, weights rel {:.2e} ({})",
            r.iteration, r.loss.0, r.loss.1, r.weights_rel, r.worst_tensor
        )
    })?;
    println!("{}", report.table());
    if args.tensors {
        for r in &report.rows {
            for t in &r.tensors {
                let opt = |v: Option<f64>| v.map_or("-".into(), |u| format!("{u:.1e}"));
                println!(
                    "it {} {:32} weights {:.1e} update {} accum {} ulps {:.0}",
                    r.iteration,
                    t.name,
                    t.weights_rel,
                    opt(t.update_rel),
                    opt(t.accum_rel),
                    t.ulps
                );
            }
        }
    }
    if let Some((k, what)) = &report.first_divergence {
        bail!("first divergence at iteration {k}: {what}");
    }
    Ok(())
}
