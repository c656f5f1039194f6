//! Flags shared by the commands that run a model over images (`detect`, `eval`), as one clap group.

use anyhow::Result;
use candle_darknet::inference::DetectOptions;

/// How the model runs: device, batch, letterbox and NMS.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Images per forward pass (results do not depend on it).
    #[arg(long, default_value_t = 1, value_parser = super::bounds::batch)]
    pub batch: usize,
    /// Letterbox instead of stretching (also implied by `letter_box=1` in the cfg).
    #[arg(long)]
    pub letterbox: bool,
    /// NMS threshold (`detector test` and `validate_detector_map` use .45).
    #[arg(long, default_value_t = 0.45, value_parser = super::bounds::unit)]
    pub nms: f32,
    /// Refuse a network whose estimated memory (parameters + feature maps at this size and batch) is above
    /// this (e.g. 8G); the default is the machine's RAM or `ulimit -v`.
    #[arg(long, value_parser = super::bounds::memory)]
    pub max_memory: Option<u64>,
    /// Load weights with NaN/inf parameters instead of refusing them.
    #[arg(long)]
    pub allow_nonfinite: bool,
    #[command(flatten)]
    pub cpu: super::cpu_args::CpuArgs,
}

impl RunArgs {
    pub fn device(&self) -> Result<candle_core::Device> {
        candle_darknet::util::device(&self.device)
    }

    /// How to build the network: fused BN (as `detector test`) and the CPU kernels of `--winograd` etc.
    pub fn load_options(&self) -> candle_darknet::network::LoadOptions {
        candle_darknet::network::LoadOptions {
            cpu: self.cpu.options(),
            batch: self.batch,
            max_memory: self.max_memory,
            allow_nonfinite: self.allow_nonfinite,
            ..Default::default()
        }
    }

    /// The detector's options with box threshold `thresh`.
    pub fn detect_options(&self, thresh: f32) -> DetectOptions {
        DetectOptions {
            thresh,
            nms: self.nms,
            letterbox: self.letterbox,
        }
    }
}
