//! The CPU-kernel flags shared by `detect`, `bench`, `compare` and `eval` (`#[command(flatten)]`).

use candle_darknet::cpu::{CpuOptions, WinogradChoice};

#[derive(clap::Args, Debug, Clone)]
pub struct CpuArgs {
    /// Run convolution, maxpool and the yolo head with candle's ops instead of the CPU kernels (the reference
    /// form, for comparisons; what CUDA and training always run).
    #[arg(long)]
    pub no_cpu_kernels: bool,
    /// Winograd tile size of the CPU's 3x3 stride-1 convolutions: auto (F(4x4) where a map has at least 32 of
    /// its 4x4 tiles per image, e.g. 21x21 and larger; F(2x2) on smaller maps), f2, f4 or off (im2col + GEMM).
    #[arg(long, default_value = "auto")]
    pub winograd: WinogradChoice,
}

impl CpuArgs {
    pub fn options(&self) -> CpuOptions {
        CpuOptions {
            enabled: !self.no_cpu_kernels,
            winograd: self.winograd,
        }
    }
}
