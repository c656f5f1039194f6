//! CPU inference kernels: the convolution Darknet runs as `im2col_cpu_ext` + `gemm` in
//! `forward_convolutional_layer` (src/convolutional_layer.c), with its bias, batch norm and activation fused into
//! the GEMM's epilogue ([`conv`], [`activation`]). Used automatically by
//! [`crate::layers::convolutional::Convolutional::forward`] when the tensors are on the CPU and no gradient is
//! tracked; CUDA and autograd keep candle's `conv2d`. Set `CANDLE_DARKNET_CPU_CONV=0` to disable it (for
//! comparisons).

pub mod activation;
pub mod conv;
pub mod pool;
pub mod winograd;

/// Whether the CPU fast path may be used (`CANDLE_DARKNET_CPU_CONV=0` turns it off).
pub fn enabled() -> bool {
    std::env::var("CANDLE_DARKNET_CPU_CONV").map_or(true, |v| v != "0")
}

/// Whether 3×3 stride-1 convolutions use Winograd F(2×2, 3×3) (`CANDLE_DARKNET_WINOGRAD=0` turns it off).
pub fn winograd_enabled() -> bool {
    std::env::var("CANDLE_DARKNET_WINOGRAD").map_or(true, |v| v != "0")
}

/// Makes glibc keep freed memory in the heap for reuse (`mallopt(M_MMAP_MAX, 0)`, `M_TRIM_THRESHOLD` = max):
/// every forward allocates its activation buffers afresh, and by default buffers over glibc's mmap threshold
/// are mapped and unmapped on every call, so each forward pays the page faults and the kernel's zeroing again
/// (measured: yolov4-tiny 416 batch 8, 2 threads, ~10% of the forward time). The process keeps its peak heap
/// (the peak RSS was lower in that measurement: 225 vs 263 MiB). Process-global, so left to the application;
/// the CLI calls it. No effect outside glibc.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}
