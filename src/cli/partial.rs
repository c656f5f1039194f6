//! `candle-darknet partial <cfg> <weights> <out> <K>`: Darknet's `partial` (src/darknet.c): load the
//! weights of the layers before K, set `seen` to 0 and write a truncated `.weights` with only those layers
//! (e.g. `partial yolov4-tiny.cfg yolov4-tiny.weights yolov4-tiny.conv.29 29`). `train --weights` accepts the
//! result and initialises the remaining layers as Darknet does.

use std::path::PathBuf;

use anyhow::{bail, Result};
use candle_darknet::cfg::NetworkConfig;
use candle_darknet::weights;

#[derive(clap::Args, Debug)]
pub struct PartialArgs {
    /// Model cfg.
    pub cfg: PathBuf,
    /// Full (or partial) weights to cut.
    pub weights: PathBuf,
    /// Output `.weights` file.
    pub out: PathBuf,
    /// Keep the layers with index < K.
    pub k: usize,
}

pub fn run(args: PartialArgs) -> Result<()> {
    let cfg = NetworkConfig::from_file(&args.cfg)?;
    if args.k == 0 || args.k > cfg.layers.len() {
        bail!(
            "K = {} is outside 1..={} (the layers of {})",
            args.k,
            cfg.layers.len(),
            args.cfg.display()
        );
    }
    let (mut w, loaded) = weights::darknet::read_partial(&cfg, &args.weights, 0)?;
    w.check_finite(&args.weights)?;
    let wanted = w.convs.iter().filter(|(i, _)| *i < args.k).count();
    if loaded < wanted {
        eprintln!(
            "warning: {} holds {loaded} of the {wanted} convolutional layers below K = {}; the rest keep Darknet's initial values (as `darknet partial` does)",
            args.weights.display(),
            args.k
        );
    }
    let kept = w.convs.iter().filter(|(i, _)| *i < args.k).count();
    // `partial` saves after `*net.seen = 0`.
    w.header = weights::Header::current(0);
    let bytes = weights::darknet::to_bytes_upto(&cfg, &w, args.k)?;
    candle_darknet::util::write_atomic(&args.out, &bytes)?;
    eprintln!(
        "wrote {} ({} convolutional layers of layers 0..{}, {} bytes)",
        args.out.display(),
        kept,
        args.k,
        bytes.len()
    );
    Ok(())
}
