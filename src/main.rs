//! The `candle-darknet` command line: argument parsing only; every subcommand calls into the library.

use anyhow::Result;
use clap::{Parser, Subcommand};

mod cli;

/// mimalloc instead of glibc's malloc: a layer's output (up to 22 MB at 416) is then mostly placed in memory that a
/// layer freed just before, still in the cache, where glibc often handed out memory last touched long ago, so the
/// kernels' first writes went to DRAM (measured: yolov4 416 b1 layer sums 186-194 → 173-191 ms; the 208×208
/// layers 0, 2 and 5 about 30% faster; yolov4-tiny b1 forward 20.6 → 19.5 ms with purging off, below;
/// docs/cpu-inference.md). A library user picks their own allocator; the `mimalloc` feature (default) chooses it here.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc v3's `mi_option_e` (include/mimalloc.h; libmimalloc-sys names no constant
/// for it).
#[cfg(feature = "mimalloc")]
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Tells mimalloc never to return freed memory to the OS (`purge_delay = -1`; what `cpu::keep_freed_memory` does
/// for glibc). By default it purges memory freed for 10 ms, so the buffers of one forward were unmapped before the
/// next and every forward paid the page faults and the kernel's zeroing again: yolov4-tiny 416 b1 forward median
/// 24 ms with the default, 19 with this (glibc with `keep_freed_memory`: 20.6). The peak RSS is unchanged.
fn keep_freed_memory_mimalloc() {
    // SAFETY: sets one of mimalloc's global tuning options; allowed at any time (mimalloc.h), called before any
    // other thread exists.
    #[cfg(feature = "mimalloc")]
    unsafe {
        libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1)
    };
}

#[derive(Parser)]
#[command(
    name = "candle-darknet",
    version,
    about = "Darknet YOLO detectors on candle, checked layer by layer against the original"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Print Darknet's layer table (and optionally run a forward pass with random weights).
    Info(cli::info::InfoArgs),
    /// Convert weights: .weights <-> .safetensors (bit-exact both ways).
    Convert(cli::convert::ConvertArgs),
    /// Export to ONNX, verified layer by layer against the network (docs/export.md).
    Export(cli::export::ExportArgs),
    /// Write random weights (Darknet's init, fixed seed) for a cfg.
    RandomWeights(cli::random_weights::RandomWeightsArgs),
    /// Compare every layer's output with a reference dump (Darknet's or OpenCV DNN's).
    Compare(cli::compare::CompareArgs),
    /// Detect objects in images, as `darknet detector test` does.
    Detect(cli::detect::DetectArgs),
    /// Measure forward and pipeline latency, throughput and memory.
    Bench(cli::bench::BenchArgs),
    /// Score detections: Darknet mAP and COCO metrics.
    Eval(cli::eval::EvalArgs),
    /// Darknet training-data augmentation: regenerate a reference case or write augmented samples.
    Augment(cli::augment::AugmentArgs),
    /// Train a detector as `darknet detector train` (checkpoints, --resume, chart, mAP).
    Train(cli::train::TrainArgs),
    /// Keep the first K layers' weights, as `darknet partial` (e.g. yolov4-tiny.conv.29).
    Partial(cli::partial::PartialArgs),
    /// Our training loop against a Darknet training-loop reference (tools/train_loop_ref).
    TrainCompare(cli::train_compare::TrainCompareArgs),
    /// Anchor boxes by k-means over the training labels (Darknet's `detector calc_anchors`).
    Anchors(cli::anchors::AnchorsArgs),
    /// List the built-in named models and what is present locally.
    Models(cli::models::ModelsArgs),
}

/// cuDNN and cuBLAS use TF32 for f32 convolutions and matmuls on Ampere and newer by default, which moves layer
/// outputs by ~1e-2 (measured on an H200) — far outside Darknet parity. The libraries read
/// `NVIDIA_TF32_OVERRIDE` when they initialise, so a CUDA build re-executes itself once with TF32 off unless the
/// user opted in with `CANDLE_DARKNET_TF32=1` (or set the override explicitly).
#[cfg(feature = "cuda")]
fn ensure_no_tf32() {
    if std::env::var_os("NVIDIA_TF32_OVERRIDE").is_some()
        || std::env::var("CANDLE_DARKNET_TF32").is_ok_and(|v| v == "1")
    {
        return;
    }
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("NVIDIA_TF32_OVERRIDE", "0")
        .status();
    match status {
        Ok(s) => std::process::exit(s.code().unwrap_or(1)),
        Err(e) => eprintln!(
            "warning: could not restart with NVIDIA_TF32_OVERRIDE=0 ({e}); TF32 may be used"
        ),
    }
}

/// SIGINT: the first asks the loops to stop (train writes a checkpoint, detect/eval report what was done);
/// a second one exits at once with status 130. Only async-signal-safe work here: an atomic load and store,
/// and `_exit`.
extern "C" fn on_sigint(_: libc::c_int) {
    if candle_darknet::util::interrupted() {
        // SAFETY: _exit is async-signal-safe and ends the process without running destructors.
        unsafe { libc::_exit(130) };
    }
    candle_darknet::util::request_interrupt();
}

fn install_interrupt_handler() {
    let handler = on_sigint as extern "C" fn(libc::c_int);
    // SAFETY: `on_sigint` has the C signature `signal` expects and only does async-signal-safe work.
    let previous = unsafe { libc::signal(libc::SIGINT, handler as libc::sighandler_t) };
    if previous == libc::SIG_ERR {
        eprintln!("warning: no Ctrl-C handler; Ctrl-C will stop at once");
    }
}

fn main() {
    #[cfg(feature = "cuda")]
    ensure_no_tf32();
    keep_freed_memory_mimalloc();
    let cli = Cli::parse();
    candle_darknet::cpu::keep_freed_memory();
    if matches!(
        cli.command,
        Command::Detect(_) | Command::Eval(_) | Command::Train(_)
    ) {
        install_interrupt_handler();
    }
    let result: Result<()> = match cli.command {
        Command::Info(a) => cli::info::run(a),
        Command::Convert(a) => cli::convert::run(a),
        Command::Export(a) => cli::export::run(a),
        Command::RandomWeights(a) => cli::random_weights::run(a),
        Command::Compare(a) => cli::compare::run(a),
        Command::Detect(a) => cli::detect::run(a),
        Command::Bench(a) => cli::bench::run(a),
        Command::Eval(a) => cli::eval::run(a),
        Command::Augment(a) => cli::augment::run(a),
        Command::Train(a) => cli::train::run(a),
        Command::Partial(a) => cli::partial::run(a),
        Command::TrainCompare(a) => cli::train_compare::run(a),
        Command::Anchors(a) => cli::anchors::run(a),
        Command::Models(a) => cli::models::run(a),
    };
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}
