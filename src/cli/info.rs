//! `candle-darknet info <cfg> [--forward] [--size WxH]`: Darknet's layer table, and optionally one forward pass
//! with random weights to prove the cfg is fully supported.

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Tensor;

use candle_darknet::cfg::NetworkConfig;
use candle_darknet::limits::{human, memory_budget, MemoryEstimate};
use candle_darknet::network::{LoadOptions, Network};
use candle_darknet::weights::NetWeights;

#[derive(clap::Args)]
pub struct InfoArgs {
    /// Darknet .cfg file.
    pub cfg: PathBuf,
    /// Also run one forward pass with random weights and print each layer's output shape.
    #[arg(long)]
    pub forward: bool,
    /// Network input size WxH (default: the cfg's width/height).
    #[arg(long)]
    pub size: Option<String>,
    /// Print the unused-key warnings.
    #[arg(long)]
    pub warnings: bool,
    /// Refuse --forward when the estimated memory is above this (e.g. 8G); default: RAM or `ulimit -v`.
    #[arg(long, value_parser = super::bounds::memory)]
    pub max_memory: Option<u64>,
}

pub fn run(a: InfoArgs) -> Result<()> {
    let mut cfg = NetworkConfig::from_file(&a.cfg)?;
    if let Some(s) = &a.size {
        let (w, h) = candle_darknet::util::parse_size(s)?;
        cfg = cfg.with_size(w, h)?;
    }
    if a.warnings {
        for w in &cfg.warnings {
            eprintln!("{w}");
        }
    } else if !cfg.warnings.is_empty() {
        eprintln!(
            "({} unused cfg keys; --warnings lists them)",
            cfg.warnings.len()
        );
    }
    print!("{}", cfg.layer_table());
    let budget = memory_budget(a.max_memory);
    let mini_batch = (cfg.net.batch / cfg.net.subdivisions.max(1)).max(1);
    let inference = MemoryEstimate::of(&cfg, 1, false);
    let training = MemoryEstimate::of(&cfg, mini_batch, true);
    println!("Memory estimate: {inference}");
    println!("Memory estimate: {training} (batch/subdivisions of [net])");
    if let Some(b) = budget {
        println!("Memory this process may use: {}", human(b));
    }
    if a.forward {
        inference.check(budget, &cfg)?;
        let w = NetWeights::random(&cfg, 1);
        let dev = candle_core::Device::Cpu;
        let net = Network::from_weights(&cfg, &w, &dev, &LoadOptions::default())?;
        let s = cfg.input_shape();
        let x = Tensor::rand(0f32, 1f32, (1, s.c, s.h, s.w), &dev)?;
        let outs = net.forward_all(&x)?;
        for (l, o) in cfg.layers.iter().zip(&outs) {
            let finite = o
                .flatten_all()?
                .to_vec1::<f32>()?
                .iter()
                .all(|v| v.is_finite());
            println!(
                "{:4} {:<16} {:?}{}",
                l.index,
                l.config.type_name(),
                o.dims(),
                if finite { "" } else { "  (non-finite values)" }
            );
        }
        println!(
            "forward ok: {} layers, random weights, input {}x{}",
            outs.len(),
            s.w,
            s.h
        );
    }
    Ok(())
}
